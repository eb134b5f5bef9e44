import { NonFiniteUpdateError } from '../errors.ts';
import type { WeightEntry, WeightSet } from '../model/weights.ts';
import { readWeights, writeWeightsAt } from '../model/weights.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Trainer } from '../train/trainer.ts';
import type { GradientGuard } from './gradient-guard.ts';
import { GradientReducer, type Contribution } from './reducer.ts';
import type { ReducingStep, ReductionOutcome, StepReduction } from './step-reduction.ts';
import type { WeightPublisher } from './weight-publisher.ts';

/**
 * The star: every worker sends its gradient to the coordinator, which checks it (and its norm,
 * with a gradient guard), sums the gradients in task-rank order (GradientReducer: runs repeat
 * bit for bit), clips the mean when asked, applies the optimizer it alone holds, and publishes
 * the weights that changed to every worker.
 */
export class StarReduction implements StepReduction {
  /** Gradient sum arrays of applied steps, reused by the next reducers. */
  private readonly spareSums: Float32Array[][] = [];
  private readonly gradientManifest: readonly WeightEntry[];
  private readonly bufferManifest: readonly WeightEntry[];
  /** Indices of the non-trainable weights (batch-norm statistics) in the model's weights. */
  private readonly bufferIndices: number[];

  constructor(
    private readonly trainer: Trainer,
    weightManifest: readonly WeightEntry[],
    private readonly publisher: WeightPublisher,
    private readonly guard: GradientGuard | undefined,
    private readonly log: Logger,
  ) {
    this.gradientManifest = trainer.gradientManifest;
    this.bufferManifest = weightManifest.filter((w) => !w.trainable);
    this.bufferIndices = weightManifest.flatMap((entry, i) => (entry.trainable ? [] : [i]));
  }

  open(expectedSamples: number): ReducingStep {
    const reducer = new GradientReducer(this.gradientManifest, this.bufferManifest, this.spareSums.pop(), expectedSamples);
    const { guard } = this;
    return {
      expect: (rank) => reducer.expect(rank),
      withdraw: (rank) => reducer.withdraw(rank),
      offer: (rank: number, contribution: Contribution, release: () => void) => {
        const { shard, from, maxN } = contribution;
        reducer.check(shard, from, maxN);
        if (guard?.checksContributions) guard.checkContribution(shard.grads.map((g) => g.data), from);
        reducer.offer(rank, contribution, release);
      },
      get samples() {
        return reducer.samples;
      },
      apply: (update) => this.apply(reducer, update),
      dispose: () => reducer.dispose(),
    };
  }

  weights(): Promise<WeightSet> {
    return readWeights(this.trainer.model);
  }

  optimizerState(): ReturnType<StepReduction['optimizerState']> {
    return this.trainer.optimizer.getState();
  }

  private async apply(reducer: GradientReducer, { step, lr, version }: { step: number; lr: number; version: number }): Promise<ReductionOutcome> {
    if (reducer.samples === 0) {
      // Same weights, next version: the prefetched shards were planned for it.
      await this.publisher.publish(version, { buffers: false });
      return { kind: 'empty' };
    }
    const reduced = reducer.result();
    const clip = this.guard?.clip(reduced.grads);
    if (clip?.clipped) this.log.debug({ step, norm: clip.norm, clipNorm: this.guard!.spec.clipNorm }, `step ${step}: gradient norm ${clip.norm.toPrecision(3)} clipped to ${this.guard!.spec.clipNorm}`);
    try {
      await this.trainer.applyGradients(reduced.grads, lr);
    } catch (error) {
      if (!(error instanceof NonFiniteUpdateError)) throw error;
      // Weights and optimizer state are as before the step: it is skipped, training goes on.
      this.spare(reduced.grads);
      await this.publisher.publish(version, { buffers: false });
      return { kind: 'refused', error };
    }
    // The optimizer has copied them: the arrays can take the sums of a later step.
    this.spare(reduced.grads);
    if (reduced.buffers) writeWeightsAt(this.trainer.model, this.bufferIndices, reduced.buffers);
    await this.publisher.publish(version, { buffers: reduced.buffers !== undefined });
    return { kind: 'applied', loss: reduced.loss, correct: reduced.correct, n: reduced.n };
  }

  private spare(sums: Float32Array[]): void {
    if (this.spareSums.length < 2) this.spareSums.push(sums);
  }
}
