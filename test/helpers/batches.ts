import type { Batch, InputShape } from '../../src/data/types.ts';
import { Rng } from '../../src/data/rng.ts';

/** A seeded random batch whose label is a simple function of the pixels, so it can be learnt. */
export function learnableBatch(n: number, shape: InputShape, classes: number, seed: number): Batch {
  const rng = new Rng(seed);
  const size = shape[0] * shape[1] * shape[2];
  const x = new Float32Array(n * size);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = rng.int(classes);
    y[i] = label;
    for (let j = 0; j < size; j++) {
      // The class lights up its own band of pixels.
      const band = Math.floor((j / size) * classes) === label ? 0.6 : 0;
      x[i * size + j] = band + rng.uniform(0, 0.4);
    }
  }
  return { x, y, n, shape };
}
