import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ReplicaThreadError } from '../../errors.ts';
import type { ReplicaThreadData, ThreadMessage, ThreadReplies, ThreadRequest, ThreadRequestKind } from './thread-messages.ts';

const THREAD_MODULE = fileURLToPath(new URL('./replica-thread.ts', import.meta.url));

/**
 * The thread's entry, as code: drover runs from TypeScript sources, so the thread registers tsx's
 * loader (as bin/drover.js does) before importing its module; an eval'd entry needs no file.
 */
function threadEntry(): string {
  const module = JSON.stringify(pathToFileURL(THREAD_MODULE).href);
  if (!THREAD_MODULE.endsWith('.ts')) return `import(${module})`;
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return `import(${tsx}).then((tsx) => { tsx.register(); return import(${module}); })`;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  kind: ThreadRequestKind;
}

/**
 * One replica thread as the engine sees it: requests in, one reply each. A thread that dies or
 * throws fails its pending requests and every later one with a ReplicaThreadError.
 */
export class ReplicaThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: ReplicaThreadError | undefined;
  private closing = false;
  private readonly failureListeners: (() => void)[] = [];

  constructor(
    readonly rank: number,
    backend: string,
  ) {
    const data: ReplicaThreadData = { rank, backend };
    this.worker = new Worker(threadEntry(), { eval: true, workerData: data, execArgv: process.execArgv });
    this.worker.on('message', (message: ThreadMessage) => this.settle(message));
    this.worker.on('error', (error) => this.die(new ReplicaThreadError(`replica thread ${rank} failed: ${error.message}`, rank, undefined, { cause: error })));
    this.worker.on('exit', (code) => {
      if (!this.closing) this.die(new ReplicaThreadError(`replica thread ${rank} exited (code ${code})`, rank));
    });
  }

  /** Sends a request; `transfer` moves those buffers to the thread instead of copying them. */
  call<K extends ThreadRequestKind>(request: Extract<ThreadRequest, { kind: K }>, transfer: ArrayBuffer[] = []): Promise<ThreadReplies[K]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<ThreadReplies[K]>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, kind: request.kind });
      this.worker.postMessage({ id, request }, transfer);
    });
  }

  /** Calls `listener` if the thread dies (not when closed). */
  onDeath(listener: () => void): void {
    this.failureListeners.push(listener);
  }

  /** Ends the thread as a crash would: pending requests fail and death listeners run (fault tests). */
  kill(): void {
    void this.worker.terminate();
  }

  /** Stops the thread; pending requests fail. */
  async close(): Promise<void> {
    this.closing = true;
    this.fail(new ReplicaThreadError(`replica thread ${this.rank} closed`, this.rank));
    await this.worker.terminate();
  }

  private settle(message: ThreadMessage): void {
    const pending = this.pending.get(message.id);
    if (!pending) return;
    this.pending.delete(message.id);
    if (message.ok) pending.resolve(message.value);
    else pending.reject(new ReplicaThreadError(`replica thread ${this.rank}, ${pending.kind}: ${message.error.message}`, this.rank, message.error.code));
  }

  private die(error: ReplicaThreadError): void {
    this.fail(error);
    for (const listener of this.failureListeners) listener();
  }

  private fail(error: ReplicaThreadError): void {
    this.failure ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
