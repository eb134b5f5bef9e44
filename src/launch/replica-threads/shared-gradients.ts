/**
 * The gradient exchange of replica threads, in shared memory: one slot per replica for its scaled
 * contribution (gradients, then batch-norm statistics, flattened in model order) and one sum.
 * Replica r sums its own range of every slot in rank order (so a run repeats bit for bit), then
 * every replica reads the whole sum: a reduce-scatter + all-gather with no copies on the way.
 */
export class SharedGradients {
  private readonly slots: Float32Array[];
  readonly sum: Float32Array;

  /** `buffer` holds replicas + 1 vectors of `length` floats (allocate() makes one). */
  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly length: number,
    readonly replicas: number,
  ) {
    if (buffer.byteLength < (replicas + 1) * length * 4) throw new RangeError(`shared gradient buffer of ${buffer.byteLength} bytes is too small for ${replicas} replicas of ${length} values`);
    this.slots = Array.from({ length: replicas }, (_, r) => new Float32Array(buffer, r * length * 4, length));
    this.sum = new Float32Array(buffer, replicas * length * 4, length);
  }

  static allocate(length: number, replicas: number): SharedGradients {
    return new SharedGradients(new SharedArrayBuffer((replicas + 1) * length * 4), length, replicas);
  }

  /** Writes replica `rank`'s arrays times `scale` into its slot, back to back. */
  writeScaled(rank: number, parts: readonly Float32Array[], scale: number): void {
    const slot = this.slots[rank]!;
    let offset = 0;
    for (const part of parts) {
      const n = part.length;
      if (offset + n > this.length) throw new RangeError(`replica ${rank}'s contribution exceeds the ${this.length} shared values`);
      for (let j = 0; j < n; j++) slot[offset + j] = part[j]! * scale;
      offset += n;
    }
    if (offset !== this.length) throw new RangeError(`replica ${rank} contributed ${offset} values, expected ${this.length}`);
  }

  /** Replica `rank`'s contribution of nothing (no usable sample): zeros. */
  writeZeros(rank: number): void {
    this.slots[rank]!.fill(0);
  }

  /** The values replica `rank` sums: contiguous, near-equal ranges covering the vector. */
  range(rank: number): { start: number; end: number } {
    const per = Math.floor(this.length / this.replicas);
    const extra = this.length % this.replicas;
    const start = rank * per + Math.min(rank, extra);
    return { start, end: start + per + (rank < extra ? 1 : 0) };
  }

  /**
   * Sums replica `rank`'s range over every slot in rank order into the sum; returns the index of
   * the first non-finite sum there, or -1.
   */
  reduceRange(rank: number): number {
    const { start, end } = this.range(rank);
    const sum = this.sum;
    const last = this.replicas - 1;
    if (last === 0) sum.set(this.slots[0]!.subarray(start, end), start);
    else {
      const first = this.slots[0]!;
      for (let r = 1; r < last; r++) {
        const slot = this.slots[r]!;
        const from = r === 1 ? first : sum;
        for (let j = start; j < end; j++) sum[j] = from[j]! + slot[j]!;
      }
      // The last slot's pass checks what it writes (one pass fewer than checking after).
      const slot = this.slots[last]!;
      const from = last === 1 ? first : sum;
      let bad = -1;
      for (let j = start; j < end; j++) {
        const value = from[j]! + slot[j]!;
        sum[j] = value;
        if (bad < 0 && value - value !== 0) bad = j;
      }
      return bad;
    }
    for (let j = start; j < end; j++) if (!Number.isFinite(sum[j]!)) return j;
    return -1;
  }

  /** The sum cut into arrays of `sizes` from `start` (views: valid until the next step's reduce). */
  sumParts(sizes: readonly number[], start = 0): Float32Array[] {
    let offset = start;
    return sizes.map((n) => {
      const part = this.sum.subarray(offset, offset + n);
      offset += n;
      return part;
    });
  }
}
