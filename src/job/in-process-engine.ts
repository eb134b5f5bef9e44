import type { SampledBatch } from '../data/sampler.ts';
import type { DataSplit } from '../data/types.ts';
import { readWeights, writeWeights, type WeightSet } from '../model/weights.ts';
import type { OptimizerSlot } from '../train/optimizers.ts';
import type { Trainer } from '../train/trainer.ts';
import { BatchPrefetch } from './batch-prefetch.ts';
import { evaluateSplit } from './split-evaluation.ts';
import type { EvaluationMetrics, StepContext, StepEngine, StepOutcome } from './step-engine.ts';

/**
 * Steps taken in this process (`drover train`): the training split's batches are loaded (decoded,
 * augmented) by the dataset, the next one while this one computes, and one Trainer computes the
 * gradients and applies them.
 */
export class InProcessEngine implements StepEngine {
  private readonly batches: BatchPrefetch;

  constructor(
    private readonly trainer: Trainer,
    train: DataSplit,
    private readonly classes: number,
  ) {
    this.batches = new BatchPrefetch(train);
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async step(batch: SampledBatch, context: StepContext, next?: SampledBatch): Promise<StepOutcome> {
    const started = performance.now();
    const loaded = await this.batches.take(batch, next);
    const computeStart = performance.now();
    if (loaded.n === 0) return { kind: 'empty' };
    const metrics = await this.trainer.trainStep(loaded, context.lr);
    loaded.release?.();
    const done = performance.now();
    const timing = { dataWaitMs: computeStart - started, computeMs: done - computeStart, transferMs: 0, reduceMs: 0, stepMs: done - started };
    return { kind: 'applied', loss: metrics.loss, correct: metrics.correct, n: metrics.n, timing };
  }

  evaluate(_split: 'validation' | 'test', data: DataSplit, _epoch: number, signal?: AbortSignal): Promise<EvaluationMetrics> {
    return evaluateSplit(this.trainer, data, this.classes, { signal });
  }

  async weights(): Promise<WeightSet> {
    return readWeights(this.trainer.model);
  }

  async setWeights(weights: WeightSet): Promise<void> {
    writeWeights(this.trainer.model, weights);
  }

  async optimizerState(): Promise<{ iterations: number; slots: OptimizerSlot[] }> {
    const state = await this.trainer.optimizer.getState();
    // Copies: the optimizer may reuse its arrays on the next step.
    return { iterations: state.iterations, slots: state.slots.map((slot) => ({ name: slot.name, values: new Float32Array(slot.values) })) };
  }

  discardPrefetched(): void {
    this.batches.discard();
  }
}
