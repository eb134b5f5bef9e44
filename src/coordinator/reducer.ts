import { WeightsError } from '../errors.ts';
import type { WeightEntry } from '../model/weights.ts';
import { assertFinite } from '../model/weights.ts';
import type { ReceivedTensor } from '../wire/transfer.ts';

/** One shard's contribution, as decoded from the wire. */
export interface ShardGradients {
  /** Mean loss over the shard. */
  loss: number;
  correct: number;
  n: number;
  /** Gradients of the shard's mean loss, one per trainable weight. */
  grads: readonly ReceivedTensor[];
  /** Non-trainable weights after the shard's forward pass (batch-norm statistics); may be empty. */
  buffers: readonly ReceivedTensor[];
}

/** One contribution to add: the shard, who sent it (for messages), and the size of the shard it answers. */
export interface Contribution {
  shard: ShardGradients;
  from: string;
  maxN?: number;
}

/** Contributions summed in one pass over the sums. */
const GROUP = 4;

/** The step's result: the global-batch mean gradient and metrics. */
export interface ReducedStep {
  grads: Float32Array[];
  /** Averaged non-trainable weights, or undefined when no shard reported any. */
  buffers: Float32Array[] | undefined;
  loss: number;
  correct: number;
  n: number;
}

/**
 * Averages shard gradients weighted by n: the mean of per-shard mean gradients weighted by
 * their sizes is exactly the mean gradient of the global batch. Every contribution is checked
 * in full (names, shapes, dtype, length, finite values) before it touches the sums, so a bad
 * one leaves the reducer as it was. Values the transfer already checked as they arrived
 * (`ReceivedTensor.finite`) are not scanned twice.
 *
 * When the batch size is known up front, each contribution is added as g x n / batch, so the
 * sums are the mean when the last one is in: no pass over the model after the last byte, which
 * is on the step's critical path. Only a batch with skipped samples is rescaled at the end.
 *
 * Batch-norm moving statistics are averaged the same way. For the moving mean this equals the
 * update with the global batch mean; for the moving variance it omits the spread between shard
 * means (as DDP without SyncBatchNorm does), which is small for shards drawn from one shuffle.
 */
export class GradientReducer {
  private readonly sums: Float32Array[];
  private bufferSums: Float32Array[] | undefined;
  private bufferN = 0;
  private lossSum = 0;
  private correctSum = 0;
  private covered = 0;
  /** Ranks of the round's tasks that may still contribute (ordered summation). */
  private readonly expected = new Set<number>();
  /** Checked contributions waiting for the ones ranked before them. */
  private readonly offered = new Map<number, { shard: ShardGradients; release: (() => void) | undefined }>();

  constructor(
    private readonly gradientManifest: readonly WeightEntry[],
    private readonly bufferManifest: readonly WeightEntry[],
    /** Arrays of an earlier step's result to sum into (zeroed here): large models churn less memory. */
    reuse?: Float32Array[],
    /** Samples the step should cover (its global batch), when known. */
    private readonly expectedSamples?: number,
  ) {
    const fits = reuse !== undefined && reuse.length === gradientManifest.length && reuse.every((a, i) => a.length === size(gradientManifest[i]!));
    this.sums = fits ? reuse.map((a) => a.fill(0)) : gradientManifest.map((entry) => new Float32Array(size(entry)));
  }

  /** Samples whose gradients are in. */
  get samples(): number {
    return this.covered;
  }

  /**
   * Throws a WeightsError naming what is wrong with a contribution; changes nothing.
   * `maxN` is the size of the shard it answers (skipped samples make n smaller, never larger).
   */
  check(shard: ShardGradients, from: string, maxN = Number.MAX_SAFE_INTEGER): void {
    if (!Number.isInteger(shard.n) || shard.n <= 0 || shard.n > maxN) throw new WeightsError(`${from}: n is ${shard.n}, the shard holds ${maxN === Number.MAX_SAFE_INTEGER ? 'more' : maxN}`);
    if (!Number.isFinite(shard.loss)) throw new WeightsError(`${from}: loss is ${shard.loss}`);
    if (!Number.isInteger(shard.correct) || shard.correct < 0 || shard.correct > shard.n) {
      throw new WeightsError(`${from}: correct count ${shard.correct} is outside 0..${shard.n}`);
    }
    checkTensors(this.gradientManifest, shard.grads, `${from} gradients`);
    if (shard.buffers.length > 0) checkTensors(this.bufferManifest, shard.buffers, `${from} batch-norm statistics`);
  }

  /**
   * Ordered summation (what makes two runs bit-identical): the sums are built in rank order,
   * whatever order results arrive in, GROUP ranks per pass. Each task of the round is announced
   * with `expect(rank)`; its result is `offer`ed (checked at once, summed when every rank before
   * it in its group and the groups before are in) or it is `withdraw`n (reassigned, no samples).
   */
  expect(rank: number): void {
    this.expected.add(rank);
  }

  /** A task that will not contribute (reassigned, failed, or every sample skipped). */
  withdraw(rank: number): void {
    if (!this.expected.delete(rank)) return;
    const held = this.offered.get(rank);
    this.offered.delete(rank);
    held?.release?.();
    this.drain();
  }

  /**
   * Checks a contribution (throws a WeightsError, changing nothing, when it is bad) and sums it
   * in its turn. `release` is called once its values are in the sums (or the reducer is disposed).
   */
  offer(rank: number, contribution: Contribution, release?: () => void): void {
    if (!this.expected.has(rank) || this.offered.has(rank)) throw new WeightsError(`${contribution.from}: no contribution of rank ${rank} is awaited`);
    this.check(contribution.shard, contribution.from, contribution.maxN);
    this.offered.set(rank, { shard: contribution.shard, release });
    this.drain();
  }

  /** Whether announced contributions are not summed yet. */
  get waiting(): number {
    return this.expected.size;
  }

  /** Releases contributions never summed (the round was abandoned). */
  dispose(): void {
    for (const held of this.offered.values()) held.release?.();
    this.offered.clear();
    this.expected.clear();
  }

  /** Sums the next groups of GROUP ranks while every rank of the group is in. */
  private drain(): void {
    for (;;) {
      const ranks = [...this.expected].sort((a, b) => a - b).slice(0, GROUP);
      if (ranks.length === 0 || !ranks.every((rank) => this.offered.has(rank))) return;
      const held = ranks.map((rank) => this.offered.get(rank)!);
      this.sum(held.map((h) => h.shard));
      for (const rank of ranks) {
        this.expected.delete(rank);
        this.offered.delete(rank);
      }
      for (const h of held) h.release?.();
    }
  }

  /** Checks a contribution, then adds it (sum of g * n); throws, changing nothing, when it is bad. */
  add(shard: ShardGradients, from: string, maxN?: number): void {
    const [error] = this.addMany([{ shard, from, maxN }]);
    if (error) throw error;
  }

  /**
   * Checks each contribution and adds the good ones together, up to four per pass over the sums:
   * the passes (memory traffic over model-sized arrays), not the arithmetic, are what a sum
   * costs, and the gradients of a step tend to arrive together. Returns, per contribution, the
   * error that refused it or undefined; a refused one changes nothing.
   */
  addMany(contributions: readonly Contribution[]): (unknown | undefined)[] {
    const errors = contributions.map(({ shard, from, maxN }) => {
      try {
        this.check(shard, from, maxN);
        return undefined;
      } catch (error) {
        return error;
      }
    });
    this.sum(contributions.filter((_, k) => errors[k] === undefined).map((c) => c.shard));
    return errors;
  }

  /** Adds checked contributions, in the order given, GROUP per pass. */
  private sum(good: readonly ShardGradients[]): void {
    const weights = good.map((shard) => (this.expectedSamples ? shard.n / this.expectedSamples : shard.n));
    this.sums.forEach((sum, i) => accumulateMany(sum, good.map((shard) => shard.grads[i]!.data as Float32Array), weights));
    for (const shard of good) this.count(shard);
  }

  private count(shard: ShardGradients): void {
    const n = shard.n;
    if (shard.buffers.length > 0) {
      this.bufferSums ??= this.bufferManifest.map((entry) => new Float32Array(size(entry)));
      shard.buffers.forEach((tensor, i) => accumulate(this.bufferSums![i]!, tensor.data as Float32Array, n));
      this.bufferN += n;
    }
    this.lossSum += shard.loss * n;
    this.correctSum += shard.correct;
    this.covered += n;
  }

  /** The weighted means over every contribution added (call once, when the step's round is done). */
  result(): ReducedStep {
    if (this.expected.size > 0) throw new WeightsError(`${this.expected.size} contribution(s) of the step are still awaited`);
    if (this.covered === 0) throw new WeightsError('no sample of the step could be used: nothing to average');
    const scale = 1 / this.covered;
    const rescale = this.expectedSamples ? this.expectedSamples / this.covered : scale;
    if (rescale !== 1) for (const sum of this.sums) for (let j = 0; j < sum.length; j++) sum[j]! *= rescale;
    let buffers: Float32Array[] | undefined;
    if (this.bufferSums) {
      const bufferScale = 1 / this.bufferN;
      for (const sum of this.bufferSums) for (let j = 0; j < sum.length; j++) sum[j]! *= bufferScale;
      buffers = this.bufferSums;
    }
    return { grads: this.sums, buffers, loss: this.lossSum * scale, correct: this.correctSum, n: this.covered };
  }
}

function size(entry: WeightEntry): number {
  return entry.shape.reduce((a, b) => a * b, 1);
}

function accumulate(sum: Float32Array, values: Float32Array, weight: number): void {
  for (let j = 0; j < sum.length; j++) sum[j]! += values[j]! * weight;
}

/** sum += a x wa + b x wb: one pass for two contributions. */
function accumulate2(sum: Float32Array, a: Float32Array, wa: number, b: Float32Array, wb: number): void {
  for (let j = 0; j < sum.length; j++) sum[j]! += a[j]! * wa + b[j]! * wb;
}

/** sum += a x wa + b x wb + c x wc + d x wd: one pass for four contributions. */
function accumulate4(sum: Float32Array, a: Float32Array, wa: number, b: Float32Array, wb: number, c: Float32Array, wc: number, d: Float32Array, wd: number): void {
  for (let j = 0; j < sum.length; j++) sum[j]! += a[j]! * wa + b[j]! * wb + c[j]! * wc + d[j]! * wd;
}

/** Adds every `values[k] x weights[k]` into `sum`, four (then two, then one) per pass. */
function accumulateMany(sum: Float32Array, values: readonly Float32Array[], weights: readonly number[]): void {
  let k = 0;
  for (; k + 4 <= values.length; k += 4) accumulate4(sum, values[k]!, weights[k]!, values[k + 1]!, weights[k + 1]!, values[k + 2]!, weights[k + 2]!, values[k + 3]!, weights[k + 3]!);
  if (k + 2 <= values.length) {
    accumulate2(sum, values[k]!, weights[k]!, values[k + 1]!, weights[k + 1]!);
    k += 2;
  }
  if (k < values.length) accumulate(sum, values[k]!, weights[k]!);
}

/** Same names, shapes and dtype as the manifest, and finite. */
function checkTensors(manifest: readonly WeightEntry[], tensors: readonly ReceivedTensor[], what: string): void {
  if (tensors.length !== manifest.length) throw new WeightsError(`${what}: got ${tensors.length} tensors for ${manifest.length} weights`);
  manifest.forEach((entry, i) => {
    const tensor = tensors[i]!;
    if (tensor.name !== entry.name) throw new WeightsError(`${what}[${i}]: name ${tensor.name} does not match ${entry.name}`);
    if (tensor.dtype !== 'float32') throw new WeightsError(`${what}[${i}] ${entry.name}: dtype ${tensor.dtype}, expected float32`);
    if (tensor.shape.join('x') !== entry.shape.join('x') || tensor.data.length !== size(entry)) {
      throw new WeightsError(`${what}[${i}] ${entry.name}: shape [${tensor.shape}] with ${tensor.data.length} values, expected [${entry.shape}]`);
    }
    if (!tensor.finite) assertFinite(tensor.data as Float32Array, `${what}[${i}] ${entry.name}`);
  });
}
