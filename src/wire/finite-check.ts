/**
 * Index of the first NaN or infinite value of `values[from, to)`, or -1 when all are finite.
 * The scan is branch-free (x - x is 0 for a finite x and NaN otherwise, and NaN sticks in the
 * sum), about twice as fast as testing each value; only a bad block is searched value by value.
 */
export function firstNonFinite(values: Float32Array, from = 0, to = values.length): number {
  const BLOCK = 4096;
  for (let start = from; start < to; start += BLOCK) {
    const end = Math.min(to, start + BLOCK);
    let poison = 0;
    for (let j = start; j < end; j++) {
      const x = values[j]!;
      poison += x - x;
    }
    if (poison !== 0) {
      for (let j = start; j < end; j++) if (!Number.isFinite(values[j]!)) return j;
    }
  }
  return -1;
}
