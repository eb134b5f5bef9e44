import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { ExecutionContext } from 'ava';
import pino from 'pino';
import { parseJob, type Job, type JobInput } from '../../src/job/job-file.ts';
import { runCoordinator, type CoordinatorRunResult } from '../../src/coordinator/run-coordinator.ts';
import { FASHION_MNIST_DIR, openIdxDataset } from '../../src/data/idx.ts';
import type { Dataset } from '../../src/data/types.ts';
import type { WeightSet } from '../../src/model/weights.ts';
import type { Logger } from '../../src/telemetry/logger.ts';

export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/** A JSON log record as a test reads it. */
export type LogLine = Record<string, unknown> & { event?: string; msg?: string };

/**
 * A pino destination that keeps every line, parsed, and lets a test wait (with a bound) for
 * the first line matching a predicate: logs asserted through a sink, never by sleeping.
 */
export class EventSink extends Writable {
  readonly lines: LogLine[] = [];
  private readonly waiters = new Set<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void; reject: (error: Error) => void }>();
  private partial = '';
  /** Why no more lines will come (the process exited), once it is so. */
  private ended: string | undefined;

  constructor() {
    super({ decodeStrings: false });
  }

  override _write(chunk: string | Buffer, _encoding: string, callback: () => void): void {
    this.push(String(chunk));
    callback();
  }

  /** Adds raw text (e.g. a child process's stdout). */
  push(text: string): void {
    this.partial += text;
    let newline: number;
    while ((newline = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, newline);
      this.partial = this.partial.slice(newline + 1);
      if (!line.startsWith('{')) continue;
      let record: LogLine;
      try {
        record = JSON.parse(line) as LogLine;
      } catch {
        continue;
      }
      this.lines.push(record);
      for (const waiter of [...this.waiters]) {
        if (waiter.match(record)) {
          this.waiters.delete(waiter);
          waiter.resolve(record);
        }
      }
    }
  }

  /** No more lines will come: pending and later waits that are not met fail at once with `reason`. */
  finish(reason: string): void {
    this.ended = reason;
    for (const waiter of this.waiters) waiter.reject(new Error(reason));
    this.waiters.clear();
  }

  /** Lines that are event `name` (and match `where`). */
  events(name: string, where: (line: LogLine) => boolean = () => true): LogLine[] {
    return this.lines.filter((l) => l.event === name && where(l));
  }

  /** The first line (seen or to come) matching `match`; rejects after `timeoutMs` naming `what`. */
  waitFor(match: (line: LogLine) => boolean, what: string, timeoutMs = 60_000): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    if (this.ended !== undefined) return Promise.reject(new Error(`${this.ended} before ${what}`));
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (line: LogLine) => { clearTimeout(timer); resolve(line); },
        reject: (error: Error) => { clearTimeout(timer); reject(new Error(`${error.message} before ${what}`)); },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last lines:\n${this.lines.slice(-8).map((l) => JSON.stringify(l).slice(0, 300)).join('\n')}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }
}

/** A logger writing into a sink. */
export function sinkLogger(sink: EventSink): Logger {
  return pino({ level: 'debug' }, sink);
}

/** A temp folder removed in teardown. */
export async function tempDir(t: ExecutionContext, prefix = 'drover-cluster-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The first Fashion-MNIST samples as a small in-memory dataset (no test split unless asked). */
export async function smallFashionMnist(train: number, validation = 0, test = 0): Promise<Dataset> {
  const full = await openIdxDataset({ dir: FASHION_MNIST_DIR, name: 'fashion-mnist', limitTrain: train + validation, validationSize: validation, limitTest: Math.max(1, test) });
  return { ...full, test: test > 0 ? full.test : undefined, validation: validation > 0 ? full.validation : undefined };
}

/** A job for tests: dense model, wasm backend, a port of 0, fast deadlines; override anything. */
export function testJob(outputDir: string, overrides: Partial<JobInput> & { cluster?: Record<string, unknown> } = {}): Job {
  const base: JobInput = {
    name: 'cluster-test',
    seed: 3,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 32 }] },
    train: { epochs: 1, batchSize: 32, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } },
    output: { dir: outputDir },
  };
  const { cluster, ...rest } = overrides;
  return parseJob({ ...base, ...rest, cluster: { port: 0, host: '127.0.0.1', joinTimeoutMs: 60_000, stepDeadlineMs: 30_000, ...cluster } });
}

/** An in-process coordinator on port 0, its events in `sink`; stopped in teardown. */
/**
 * A coordinator that waits for more workers than will come: nothing trains, so membership and
 * the transport can be tested on their own.
 */
export async function idleCoordinator(t: Parameters<typeof startCoordinator>[0], token: string) {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(64);
  return startCoordinator(t, testJob(dir, { cluster: { minWorkers: 9, token } }), { dataset });
}

export async function startCoordinator(
  t: ExecutionContext,
  job: Job,
  options: { dataset?: Dataset; sink?: EventSink; token?: string; resume?: boolean } = {},
): Promise<{ port: number; jobId: string; sink: EventSink; result: Promise<CoordinatorRunResult>; stop: () => void }> {
  const sink = options.sink ?? new EventSink();
  const controller = new AbortController();
  let listening!: (info: { port: number; jobId: string }) => void;
  const ready = new Promise<{ port: number; jobId: string }>((resolve) => {
    listening = resolve;
  });
  const result = runCoordinator({ job, dataset: options.dataset, token: options.token, resume: options.resume, log: sinkLogger(sink), signal: controller.signal, onListening: listening });
  result.catch(() => {});
  t.teardown(async () => {
    controller.abort();
    await result.catch(() => {});
  });
  const info = await Promise.race([ready, result.then(() => { throw new Error('coordinator ended before listening'); })]);
  return { ...info, sink, result, stop: () => controller.abort() };
}

/** A child process with its JSON log lines in a sink. */
export interface ChildHandle {
  readonly process: ChildProcess;
  readonly sink: EventSink;
  readonly exited: Promise<number | null>;
  /** SIGKILL now (kill -9). */
  kill(signal?: NodeJS.Signals): void;
  /** What the process wrote to stderr so far. */
  stderr(): string;
}

/** Spawns `node <script> ...args` in the repo root (TypeScript through tsx); killed (and awaited) in teardown. */
export function spawnScript(t: ExecutionContext, script: string, args: string[], env: Record<string, string> = {}): ChildHandle {
  const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...loader, script, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, DROVER_LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const sink = new EventSink();
  child.stdout!.setEncoding('utf8').on('data', (text: string) => sink.push(text));
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const exited = once(child, 'exit').then(([code, signal]) => {
    sink.finish(`${path.basename(script)} ${args[0] ?? ''} exited (${signal ?? `code ${code}`}; stderr: ${stderr.trim().slice(-500) || 'empty'})`);
    return code as number | null;
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
    await exited;
    if (stderr.trim()) t.log(`${path.basename(script)} stderr: ${stderr.slice(-2000)}`);
  });
  return { process: child, sink, exited, kill: (signal = 'SIGKILL') => child.kill(signal), stderr: () => stderr };
}

/** Spawns `node bin/drover.js ...args` (the command line users run) in the repo root. */
export function spawnDrover(t: ExecutionContext, args: string[], env: Record<string, string> = {}): ChildHandle {
  return spawnScript(t, 'bin/drover.js', args, env);
}

/** A worker process joined to a coordinator on this machine. */
export function spawnWorker(t: ExecutionContext, port: number, options: { name: string; token?: string; args?: string[] }): ChildHandle {
  const args = ['--coordinator', `127.0.0.1:${port}`, '--backend', 'wasm', '--name', options.name, '--reconnect-ms', '30000'];
  if (options.token) args.push('--token', options.token);
  return spawnDrover(t, ['worker', ...args, ...(options.args ?? [])]);
}

/** Whether a process with this pid is still running. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** How one weight's update (final minus initial) compares with a reference run's. */
export interface UpdateComparison {
  name: string;
  trainable: boolean;
  /** relativeError of the update against the reference's update. */
  error: number;
  /** Whether the weight changed at all. */
  moved: boolean;
}

/**
 * Compares, weight by weight, the update a run made (`actual` - `initial`) with the update of
 * a reference run from the same initial weights (`expected` - `initial`).
 */
export function compareUpdates(initial: WeightSet, actual: WeightSet, expected: WeightSet): UpdateComparison[] {
  return expected.manifest.map((entry, i) => {
    const w0 = initial.values[i]!;
    const update = (w: Float32Array): Float32Array => w.map((v, j) => v - w0[j]!);
    const mine = update(actual.values[i]!);
    return { name: entry.name, trainable: entry.trainable, error: relativeError(mine, update(expected.values[i]!)), moved: mine.some((v) => v !== 0) };
  });
}

/** Relative error of two vectors: ||a - b|| / ||b|| (b non-zero). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < b.length; i++) {
    diff += (a[i]! - b[i]!) ** 2;
    norm += b[i]! ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}
