import type { Writable } from 'node:stream';

/**
 * Writes messages to a gRPC stream in order, waiting for 'drain' when the stream's buffer is
 * full, so a slow peer holds at most a stream buffer (plus this queue) in memory rather than
 * every weight broadcast of the run. Writes after close are dropped: the stream's own 'error'
 * and 'close' events report the failure.
 */
export class StreamWriter<T> {
  private readonly queue: T[] = [];
  private pumping = false;
  private closed = false;
  private idle: Promise<void> = Promise.resolve();
  private release: (() => void) | undefined;

  constructor(private readonly stream: Writable) {
    const stop = (): void => this.close();
    stream.once('close', stop);
    stream.once('error', stop);
    stream.once('finish', stop);
  }

  /** Messages waiting to be handed to the stream. */
  get queued(): number {
    return this.queue.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Queues messages after everything queued before them. */
  send(messages: Iterable<T>): void {
    if (this.closed) return;
    for (const message of messages) this.queue.push(message);
    if (!this.pumping && this.queue.length > 0) this.pump();
  }

  /** Resolves once everything queued so far was accepted by the stream (or the stream closed). */
  flushed(): Promise<void> {
    return this.idle;
  }

  /** Drops what is queued; later sends are ignored. */
  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.finish();
  }

  private pump(): void {
    this.pumping = true;
    this.idle = new Promise<void>((resolve) => {
      this.release = resolve;
    });
    void this.drainLoop();
  }

  private async drainLoop(): Promise<void> {
    while (!this.closed && this.queue.length > 0) {
      const message = this.queue.shift()!;
      let writable: boolean;
      try {
        writable = this.stream.write(message);
      } catch {
        this.close();
        return;
      }
      if (!writable) await this.waitForDrain();
    }
    this.finish();
  }

  private waitForDrain(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        this.stream.off('error', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
      this.stream.on('error', done);
    });
  }

  private finish(): void {
    this.pumping = false;
    const release = this.release;
    this.release = undefined;
    release?.();
  }
}
