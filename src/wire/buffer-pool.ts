/**
 * Reuses the large receive buffers of transfers. A coordinator takes in a full gradient per
 * worker per step; allocating each one anew costs page faults on first touch and, worse, puts
 * hundreds of megabytes of external memory a step on V8's books, which it answers with a full
 * garbage collection every few dozen megabytes. Buffers given back are handed out again for a
 * transfer of the same size; their old contents are overwritten by the next transfer.
 */
export class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  private retained = 0;

  constructor(
    /** Most bytes kept for reuse; buffers given back beyond it are left to the garbage collector. */
    private readonly maxRetainedBytes: number,
  ) {}

  /** Bytes held for reuse now. */
  get retainedBytes(): number {
    return this.retained;
  }

  /** A buffer of exactly `size` bytes, with arbitrary contents. */
  take(size: number): Uint8Array {
    const buffer = this.free.get(size)?.pop();
    if (!buffer) return new Uint8Array(size);
    this.retained -= size;
    return buffer;
  }

  /** Hands a buffer back; the caller must not touch it (or any view of it) afterwards. */
  give(buffer: Uint8Array): void {
    const size = buffer.byteLength;
    if (size === 0 || buffer.byteOffset !== 0 || buffer.buffer.byteLength !== size) return;
    if (this.retained + size > this.maxRetainedBytes) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buffer);
    this.retained += size;
  }
}
