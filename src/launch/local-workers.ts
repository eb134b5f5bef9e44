import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClusterError, ConfigError } from '../errors.ts';
import type { Job } from '../job/job-file.ts';
import type { BackendChoice } from '../model/backend.ts';
import type { GpuAdapterEntry } from '../model/webgpu.ts';
import { runCoordinator, type CoordinatorRunResult } from '../coordinator/run-coordinator.ts';
import type { Logger } from '../telemetry/logger.ts';

/** drover's own command line: workers are `drover worker` processes, as on any other machine. */
const DROVER_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/drover.js');

export interface LocalWorkersOptions {
  job: Job;
  /** Worker processes to start on this machine. */
  workers: number;
  /** Backend of the worker processes (default: the job's). */
  backend?: BackendChoice;
  /** One worker per adapter, each bound to it (webgpu, `--gpu N`); `workers` must match. */
  gpus?: GpuAdapterEntry[];
  /** Events of the coordinator, and the workers' warnings and errors. */
  log: Logger;
  /** Ctrl-C: finish the step, checkpoint, stop every process. */
  signal?: AbortSignal;
  /** Resume from the job's last checkpoint. */
  resume?: boolean;
  /** How long workers are given to exit after the job before they are killed. */
  exitGraceMs?: number;
  /** Called with the pids of the worker processes once they are started (tests). */
  onWorkers?: (pids: number[]) => void;
}

/**
 * `drover train --workers N`: a coordinator in this process and N worker processes on this
 * machine, on loopback with a fresh secret. Workers run in their own process group, so a
 * terminal's Ctrl-C reaches only the coordinator, which finishes the step, checkpoints and
 * dismisses them. A worker that crashes with an error fails the job with that error; every
 * process is gone when this returns or throws.
 */
export async function runWithLocalWorkers(options: LocalWorkersOptions): Promise<CoordinatorRunResult> {
  const { job, log } = options;
  if (!Number.isInteger(options.workers) || options.workers < 1) {
    throw new ConfigError(`workers must be an integer >= 1, got ${options.workers}`, 'workers');
  }
  if (options.gpus && options.gpus.length !== options.workers) {
    throw new ConfigError(`${options.gpus.length} GPUs for ${options.workers} workers: one worker per GPU`, 'workers');
  }
  const token = randomBytes(18).toString('base64url');
  const controller = new AbortController();
  const forward = (): void => controller.abort(options.signal?.reason);
  if (options.signal?.aborted) forward();
  options.signal?.addEventListener('abort', forward, { once: true });
  const children = new Set<ChildProcess>();
  let finished = false;

  const startWorkers = (port: number): void => {
    const pids: number[] = [];
    for (let i = 1; i <= options.workers; i++) {
      const gpu = options.gpus?.[i - 1];
      const name = gpu ? `gpu-${gpu.index}` : `local-${i}`;
      const compute = gpu ? ['--backend', 'webgpu', '--gpu', String(gpu.index)] : ['--backend', options.backend ?? job.backend, '--threads', String(job.threads)];
      const child = spawn(
        process.execPath,
        [DROVER_BIN, 'worker', '--coordinator', `127.0.0.1:${port}`, '--name', name, ...compute, '--reconnect-ms', '10000'],
        { env: { ...process.env, DROVER_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
      );
      children.add(child);
      pids.push(child.pid!);
      const workerLog = log.child({ local: name });
      let lastError = '';
      forwardLines(child, (record, raw) => {
        // Lines that are not JSON come from stderr (a crash's stack trace, runtime warnings).
        const level = typeof record?.level === 'number' ? record.level : 40;
        if (level >= 50 || !record) lastError = String(record?.msg ?? raw);
        if (level >= 40) workerLog[level >= 50 ? 'error' : 'warn']({ workerPid: child.pid, code: record?.code }, String(record?.msg ?? raw));
      });
      child.once('exit', (code, signal) => {
        children.delete(child);
        if (finished) return;
        if (code !== 0 && code !== null) {
          controller.abort(new ClusterError(`local worker ${name} (pid ${child.pid}) failed with exit code ${code}: ${lastError || 'no error message'}`));
        } else if (signal) {
          log.warn({ local: name, signal }, `local worker ${name} was killed (${signal}); its shards go to the others`);
          if (children.size === 0) controller.abort(new ClusterError(`every local worker is gone (the last, ${name}, was killed by ${signal})`));
        }
      });
    }
    options.onWorkers?.(pids);
  };

  try {
    return await runCoordinator({
      job,
      host: '127.0.0.1',
      port: 0,
      minWorkers: options.workers,
      token,
      resume: options.resume,
      log,
      signal: controller.signal,
      onListening: ({ port }) => startWorkers(port),
    });
  } finally {
    finished = true;
    options.signal?.removeEventListener('abort', forward);
    await stopAll(children, options.exitGraceMs ?? 10_000);
  }
}

/** Waits for the children to exit (they were dismissed), then kills what is left, and waits for that too. */
async function stopAll(children: Set<ChildProcess>, graceMs: number): Promise<void> {
  const exits = [...children].map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  }));
  const timer = setTimeout(() => {
    for (const child of children) child.kill('SIGKILL');
  }, graceMs);
  await Promise.all(exits);
  clearTimeout(timer);
}

/** Calls `onLine` with each stdout/stderr line of a child, parsed when it is JSON. */
function forwardLines(child: ChildProcess, onLine: (record: Record<string, unknown> | undefined, raw: string) => void): void {
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = '';
    stream.setEncoding('utf8').on('data', (text: string) => {
      partial += text;
      let newline: number;
      while ((newline = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, newline).trim();
        partial = partial.slice(newline + 1);
        if (!line) continue;
        let record: Record<string, unknown> | undefined;
        try {
          record = line.startsWith('{') ? (JSON.parse(line) as Record<string, unknown>) : undefined;
        } catch {
          record = undefined;
        }
        onLine(record, line);
      }
    });
  }
}
