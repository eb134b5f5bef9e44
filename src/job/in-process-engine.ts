import type { SampledBatch } from '../data/sampler.ts';
import type { Batch, DataSplit } from '../data/types.ts';
import { readWeights, writeWeights, type WeightSet } from '../model/weights.ts';
import type { OptimizerSlot } from '../train/optimizers.ts';
import type { Trainer } from '../train/trainer.ts';
import { evaluateSplit } from './split-evaluation.ts';
import type { EvaluationMetrics, StepContext, StepEngine, StepOutcome } from './step-engine.ts';

/** A batch being loaded for the step that will ask for it. */
interface Loading {
  batch: SampledBatch;
  loaded: Promise<Batch>;
}

/**
 * Steps taken in this process (`drover train`): the training split's batches are loaded (decoded,
 * augmented) by the dataset, the next one while this one computes, and one Trainer computes the
 * gradients and applies them.
 */
export class InProcessEngine implements StepEngine {
  private prefetched: Loading | undefined;

  constructor(
    private readonly trainer: Trainer,
    private readonly train: DataSplit,
    private readonly classes: number,
  ) {}

  async ready(): Promise<boolean> {
    return true;
  }

  async step(batch: SampledBatch, context: StepContext, next?: SampledBatch): Promise<StepOutcome> {
    const started = performance.now();
    const current = this.prefetched?.batch === batch ? this.prefetched : this.load(batch);
    this.prefetched = undefined;
    const loaded = await current.loaded;
    const computeStart = performance.now();
    if (next) this.prefetched = this.load(next);
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
    this.prefetched?.loaded.then((b) => b.release?.(), () => {});
    this.prefetched = undefined;
  }

  private load(batch: SampledBatch): Loading {
    // The sampler's epoch (0-based) seeds the augmentation, as workers do.
    return { batch, loaded: this.train.loadBatch(batch.indices, { augment: true, epoch: batch.epoch }) };
  }
}
