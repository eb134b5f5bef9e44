/**
 * The decode pool: piscina threads running `decodeBatch` (decode + augment) or, for
 * augmentation on the device, `decodeForDevice` (decode only), with one bounded queue that
 * makes callers wait (backpressure) instead of growing without limit, a deadline per task so a
 * stuck decoder is an error and never a hang, and a close that leaves no thread behind.
 */
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { ConfigError, DatasetError } from '../errors.ts';
import { runBatchTask, type BatchTask, type BatchTaskResult } from './batch-task.ts';
import { runDecodeForDevice, type DecodeForDeviceResult, type DecodeForDeviceTask } from './gpu-decode.ts';

export interface DecodePoolOptions {
  /** Worker threads (default: available cores, at most 4). 0 runs tasks on the calling thread. */
  threads?: number;
  /** Tasks that may wait for a thread before `run` itself waits (default 2 per thread). */
  maxQueue?: number;
  /** A task running longer than this fails (default 120 s). */
  taskTimeoutMs?: number;
}

const TASK_FILE = fileURLToPath(new URL('./batch-task.ts', import.meta.url));
const DEVICE_TASK_FILE = fileURLToPath(new URL('./gpu-decode.ts', import.meta.url));

/** The pool's task kinds: a module and the function it exports. */
interface TaskEntry {
  filename: string;
  name: string;
}
const DECODE_AND_AUGMENT: TaskEntry = { filename: TASK_FILE, name: 'decodeBatch' };
const DECODE_FOR_DEVICE: TaskEntry = { filename: DEVICE_TASK_FILE, name: 'decodeForDevice' };

/** execArgv that lets a worker load TypeScript: the parent's flags plus tsx's loader, once. */
export function tsWorkerExecArgv(filename: string): string[] {
  const args = [...process.execArgv];
  if (!filename.endsWith('.ts')) return args;
  const hasTsx = args.some((arg, i) => arg === '--import=tsx' || (arg === '--import' && args[i + 1] === 'tsx'));
  return hasTsx ? args : [...args, '--import', 'tsx'];
}

function check(value: number | undefined, field: string, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(`decode pool option ${field} must be an integer >= ${min}, got ${String(value)}`, field);
  }
  return value;
}

/** Thread count used when none is given: the cores this process may use, at most 4. */
export function defaultThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

export class DecodePool {
  readonly threads: number;
  readonly maxQueue: number;
  readonly taskTimeoutMs: number;
  private readonly piscina: Piscina | null;
  private readonly waiters: Array<() => void> = [];
  private active = 0;
  private closed = false;

  constructor(options: DecodePoolOptions = {}) {
    for (const key of Object.keys(options)) {
      if (!['threads', 'maxQueue', 'taskTimeoutMs'].includes(key)) {
        throw new ConfigError(`unknown decode pool option ${key} (known: threads, maxQueue, taskTimeoutMs)`, key);
      }
    }
    this.threads = check(options.threads, 'threads', 0, defaultThreads());
    this.maxQueue = check(options.maxQueue, 'maxQueue', 0, 2 * Math.max(1, this.threads));
    this.taskTimeoutMs = check(options.taskTimeoutMs, 'taskTimeoutMs', 1, 120_000);
    this.piscina = this.threads === 0
      ? null
      : new Piscina({
          filename: DECODE_AND_AUGMENT.filename,
          name: DECODE_AND_AUGMENT.name,
          minThreads: this.threads,
          maxThreads: this.threads,
          // Our own gate below keeps piscina's queue within this bound; a full piscina queue
          // would reject, ours waits.
          maxQueue: this.maxQueue,
          idleTimeout: 30_000,
          execArgv: tsWorkerExecArgv(TASK_FILE),
        });
  }

  /** Samples each task keeps in flight: enough to keep libuv's pool busy across all threads. */
  get laneCount(): number {
    const uv = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    return Math.max(2, Math.ceil(uv / Math.max(1, this.threads)));
  }

  /** Tasks started and not yet settled (running or queued in piscina). */
  get pending(): number {
    return this.active;
  }

  /**
   * Runs one decode + augment task; waits while `threads + maxQueue` tasks are pending
   * (backpressure). Rejects with a DatasetError on timeout, on a crashed thread, or after `close()`.
   */
  async run(task: BatchTask, transferList: ArrayBuffer[] = []): Promise<BatchTaskResult> {
    return this.submit(DECODE_AND_AUGMENT, task, transferList, runBatchTask);
  }

  /**
   * Runs one decode-only task for augmentation on the device (gpu-decode.ts): same queue,
   * backpressure and deadline as `run`.
   */
  async runForDevice(task: DecodeForDeviceTask, transferList: ArrayBuffer[] = []): Promise<DecodeForDeviceResult> {
    return this.submit(DECODE_FOR_DEVICE, task, transferList, runDecodeForDevice);
  }

  private async submit<T extends DecodeForDeviceTask, R>(entry: TaskEntry, task: T, transferList: ArrayBuffer[], inline: (task: T) => Promise<R>): Promise<R> {
    if (this.closed) throw new DatasetError('the decode pool is closed');
    if (!this.piscina) return inline(task);
    while (this.active >= this.threads + this.maxQueue) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      if (this.closed) throw new DatasetError('the decode pool was closed while a batch waited for it');
    }
    this.active++;
    const signal = AbortSignal.timeout(this.taskTimeoutMs);
    try {
      return (await this.piscina.run({ ...task, concurrency: task.concurrency ?? this.laneCount }, { ...entry, signal, transferList })) as R;
    } catch (cause) {
      if (signal.aborted) {
        throw new DatasetError(
          `decoding a batch of ${task.samples.length} samples took longer than ${this.taskTimeoutMs} ms; the thread was stopped (raise taskTimeoutMs for huge images)`,
          { cause },
        );
      }
      if (this.closed) throw new DatasetError('the decode pool was closed while a batch was decoding', { cause });
      throw new DatasetError(`a decode thread failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    } finally {
      this.active--;
      this.waiters.shift()?.();
    }
  }

  /** Stops every thread; pending and waiting tasks reject. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wake of this.waiters.splice(0)) wake();
    await this.piscina?.destroy();
  }

  /** Live worker threads (0 after close): tests use it to prove nothing is left running. */
  get liveThreads(): number {
    return this.piscina?.threads.length ?? 0;
  }
}
