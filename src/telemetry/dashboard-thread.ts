import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { ConfigError, DroverError } from '../errors.ts';
import type { Dashboard, DashboardOptions } from './dashboard.ts';

type WorkerReply = { kind: 'listening'; url: string; port: number } | { kind: 'error'; message: string; code?: string; field?: string };

/**
 * The dashboard on a thread of its own: a training loop keeps its thread busy with tensor
 * work for a whole step at a time, and a page served from that thread answers only between
 * steps (seconds apart on a slow backend). The dashboard needs nothing from the trainer but
 * the run log, so it runs beside it. Same options and errors as startDashboard.
 */
export async function startDashboardThread(options: DashboardOptions): Promise<Dashboard> {
  const worker = new Worker(new URL('./dashboard-worker.mjs', import.meta.url), { workerData: options });
  // An error inside the thread ends the page, never the run that started it.
  let failure: Error | undefined;
  worker.on('error', (error) => (failure = error));
  const exited = once(worker, 'exit');
  const reply = await Promise.race([
    once(worker, 'message').then(([message]) => message as WorkerReply),
    exited.then((): WorkerReply => ({ kind: 'error', message: `the dashboard thread ended before it listened${failure ? `: ${failure.message}` : ''}` })),
  ]);
  if (reply.kind === 'error') {
    await worker.terminate();
    throw reply.code === 'DROVER_ERR_CONFIG' ? new ConfigError(reply.message, reply.field ?? 'dashboard') : new DroverError(reply.message);
  }
  let closing: Promise<void> | undefined;
  return {
    url: reply.url,
    port: reply.port,
    close() {
      closing ??= (async () => {
        if (worker.threadId === -1) return;
        worker.postMessage('close');
        const timer = setTimeout(() => void worker.terminate(), 5_000);
        await exited;
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}
