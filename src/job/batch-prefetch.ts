import type { SampledBatch } from '../data/sampler.ts';
import type { Batch, DataSplit } from '../data/types.ts';

/**
 * The training split's batches for an engine in this process: each step's batch, and the next
 * one loading (decoded, augmented) while this one computes.
 */
export class BatchPrefetch {
  private next: { batch: SampledBatch; loaded: Promise<Batch> } | undefined;

  constructor(private readonly train: DataSplit) {}

  /** `batch` loaded (by an earlier `prefetch` when it asked for this one), and `following` starts loading. */
  async take(batch: SampledBatch, following?: SampledBatch): Promise<Batch> {
    const current = this.next?.batch === batch ? this.next.loaded : this.load(batch);
    this.next = undefined;
    const loaded = await current;
    if (following) this.next = { batch: following, loaded: this.load(following) };
    return loaded;
  }

  /** Drops the batch loading for a step that will not come (a stop). */
  discard(): void {
    this.next?.loaded.then((b) => b.release?.(), () => {});
    this.next = undefined;
  }

  private load(batch: SampledBatch): Promise<Batch> {
    // The sampler's epoch (0-based) seeds the augmentation, as workers do.
    return this.train.loadBatch(batch.indices, { augment: true, epoch: batch.epoch });
  }
}
