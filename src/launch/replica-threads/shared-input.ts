import type { Batch } from '../../data/types.ts';
import { DatasetError } from '../../errors.ts';

/**
 * The step's samples in shared memory: the engine copies each loaded batch in once, and every
 * replica thread reads its rows in place, so a step allocates nothing for its input (per-step
 * buffers sent to threads kept V8's collector busy on the cores the replicas compute on).
 * Overwritten by the next step: valid until every thread answered the step it was held for.
 */
export class SharedInput {
  private x = new Float32Array(new SharedArrayBuffer(0));
  private y = new Int32Array(new SharedArrayBuffer(0));

  /** `batch` copied into shared memory (grown to fit when needed), as a batch of shared views. */
  hold(batch: Batch): Batch {
    const values = batch.n * batch.shape[0] * batch.shape[1] * batch.shape[2];
    if (batch.x.length < values || batch.y.length < batch.n) {
      throw new DatasetError(`a batch of ${batch.n} samples of shape [${batch.shape}] holds ${batch.x.length} values and ${batch.y.length} labels`);
    }
    if (this.x.length < values) this.x = new Float32Array(new SharedArrayBuffer(values * 4));
    if (this.y.length < batch.n) this.y = new Int32Array(new SharedArrayBuffer(batch.n * 4));
    const x = this.x.subarray(0, values);
    const y = this.y.subarray(0, batch.n);
    x.set(batch.x.subarray(0, values));
    y.set(batch.y.subarray(0, batch.n));
    return { x, y, n: batch.n, shape: batch.shape };
  }
}
