import { ConfigError } from '../errors.ts';
import { deriveSeed, Rng, shuffleInPlace } from './rng.ts';

/** Where a sampler stands: JSON-safe, saved in checkpoints, passed back to resume. */
export interface SamplerPosition {
  /** Epoch of the next batch (0-based). */
  epoch: number;
  /** Samples of that epoch already handed out. */
  offset: number;
  /**
   * Batches of that epoch already handed out, when batches varied in size (a per-worker batch on
   * a changing cluster); absent, it is offset / batchSize, as for a fixed batch.
   */
  step?: number;
}

export interface SamplerOptions {
  /** Number of samples in the split. */
  length: number;
  /** Global batch size B: the size of every batch unless `next` is given another. */
  batchSize: number;
  /** Seed of the per-epoch shuffles. */
  seed: number;
  /** Shuffle every epoch (default true); false walks 0..length-1 in order (evaluation). */
  shuffle?: boolean;
  /** Drop the last, smaller batch of each epoch (default false). */
  dropLast?: boolean;
  /** Resume from a saved position (default: epoch 0, offset 0). */
  position?: SamplerPosition;
}

/** One global batch: the sample ids and where it sits in the run. */
export interface SampledBatch {
  epoch: number;
  /** Step within the epoch (0-based). */
  step: number;
  /** Offset of the first sample within the epoch's order. */
  offset: number;
  indices: Uint32Array;
}

function requireInt(value: unknown, field: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(`sampler.${field} must be an integer >= ${min}, got ${String(value)}`, `sampler.${field}`);
  }
  return value;
}

/** The order in which an epoch visits the samples: a seeded permutation, the same on every call. */
export function epochOrder(length: number, seed: number, epoch: number, shuffle = true): Uint32Array {
  const order = new Uint32Array(length);
  for (let i = 0; i < length; i++) order[i] = i;
  if (shuffle) shuffleInPlace(order, new Rng(deriveSeed(seed, epoch, 0x5a3f)));
  return order;
}

/**
 * Seeded shuffle per epoch, batch after batch. Deterministic: the same options give the same
 * batches on every machine, and a sampler built with `position` continues exactly where the
 * saved one stood.
 */
export class Sampler {
  readonly length: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  private epoch: number;
  private offset: number;
  private step: number;
  private order: Uint32Array | undefined;
  private orderEpoch = -1;

  constructor(options: SamplerOptions) {
    this.length = requireInt(options.length, 'length', 1);
    this.batchSize = requireInt(options.batchSize, 'batchSize', 1);
    this.seed = requireInt(options.seed, 'seed', 0);
    this.shuffle = options.shuffle ?? true;
    this.dropLast = options.dropLast ?? false;
    if (this.dropLast && this.batchSize > this.length) {
      throw new ConfigError(
        `sampler.batchSize ${this.batchSize} exceeds the ${this.length} samples and dropLast is set: no batch would ever be produced`,
        'sampler.batchSize',
      );
    }
    const position = options.position ?? { epoch: 0, offset: 0 };
    this.epoch = requireInt(position.epoch, 'position.epoch', 0);
    this.offset = requireInt(position.offset, 'position.offset', 0);
    if (this.offset > this.length) {
      throw new ConfigError(
        `sampler.position.offset ${this.offset} exceeds the split's ${this.length} samples: the position belongs to another dataset`,
        'sampler.position.offset',
      );
    }
    this.step = position.step === undefined ? Math.floor(this.offset / this.batchSize) : requireInt(position.step, 'position.step', 0);
    this.normalise();
  }

  /** Batches per epoch at the fixed batch size. */
  get stepsPerEpoch(): number {
    return this.dropLast ? Math.floor(this.length / this.batchSize) : Math.ceil(this.length / this.batchSize);
  }

  /** Position of the next batch; save it to resume. */
  get position(): SamplerPosition {
    // `step` only when batches varied: a fixed-batch position stays what it always was.
    const varied = this.step !== Math.floor(this.offset / this.batchSize);
    return { epoch: this.epoch, offset: this.offset, ...(varied ? { step: this.step } : {}) };
  }

  /**
   * The next global batch, of `size` samples (default batchSize), or what is left of the epoch
   * when fewer; moves into the next epoch after the last one. Sizes may change from batch to
   * batch: every sample still comes exactly once per epoch.
   */
  next(size = this.batchSize): SampledBatch {
    requireInt(size, 'size', 1);
    if (this.orderEpoch !== this.epoch) {
      this.order = epochOrder(this.length, this.seed, this.epoch, this.shuffle);
      this.orderEpoch = this.epoch;
    }
    const taken = Math.min(size, this.length - this.offset);
    const batch: SampledBatch = {
      epoch: this.epoch,
      step: this.step,
      offset: this.offset,
      indices: this.order!.slice(this.offset, this.offset + taken),
    };
    this.offset += taken;
    this.step += 1;
    this.normalise();
    return batch;
  }

  /** Rolls over to the next epoch when the current one has no (full, if dropLast) batch left. */
  private normalise(): void {
    const left = this.length - this.offset;
    if (left === 0 || (this.dropLast && left < this.batchSize)) {
      this.epoch += 1;
      this.offset = 0;
      this.step = 0;
    }
  }
}

/**
 * Splits `total` into integer shard sizes proportional to `weights` (largest remainder), so
 * they always sum to `total`; e.g. a global batch over workers of different measured speed.
 */
export function proportionalSizes(total: number, weights: readonly number[]): number[] {
  requireInt(total, 'total', 0);
  if (weights.length === 0) throw new ConfigError('shard weights must not be empty', 'weights');
  let sum = 0;
  for (const [i, w] of weights.entries()) {
    if (!(Number.isFinite(w) && w >= 0)) throw new ConfigError(`shard weight ${i} must be a finite number >= 0, got ${w}`, `weights.${i}`);
    sum += w;
  }
  if (sum === 0) throw new ConfigError('shard weights must not all be zero', 'weights');
  const exact = weights.map((w) => (total * w) / sum);
  const sizes = exact.map(Math.floor);
  let left = total - sizes.reduce((a, b) => a + b, 0);
  // Hand the remainder to the largest fractional parts; ties go to the lower index.
  const byRemainder = exact.map((e, i) => [e - Math.floor(e), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0; left > 0; k++, left--) sizes[byRemainder[k % byRemainder.length]![1]] += 1;
  return sizes;
}

/** Cuts a global batch into consecutive shards of the given sizes (views, no copies). */
export function splitShards(indices: Uint32Array, sizes: readonly number[]): Uint32Array[] {
  let total = 0;
  for (const [i, size] of sizes.entries()) total += requireInt(size, `sizes.${i}`, 0);
  if (total !== indices.length) {
    throw new ConfigError(`shard sizes sum to ${total} but the batch holds ${indices.length} samples`, 'sizes');
  }
  const shards: Uint32Array[] = [];
  let start = 0;
  for (const size of sizes) {
    shards.push(indices.subarray(start, start + size));
    start += size;
  }
  return shards;
}
