import type { SampledBatch } from '../data/sampler.ts';
import type { DataSplit } from '../data/types.ts';
import type { WeightSet } from '../model/weights.ts';
import type { OptimizerSlot } from '../train/optimizers.ts';

/**
 * The seam between the one training loop (epochs, schedule, phases, checkpoints, evaluation,
 * early stopping, events) and what takes a step. `drover train` runs the loop over an
 * in-process engine; `drover coordinator` over the cluster engine, whose gradients come from
 * workers and are combined by a StepReduction. A new way to compute or combine gradients is a
 * new engine (or reduction), never an edit of the loop.
 */
export interface StepEngine {
  /**
   * Resolves when the engine can take steps (a cluster: enough workers joined); false when
   * `signal` stopped the wait first.
   */
  ready(signal?: AbortSignal): Promise<boolean>;
  /**
   * One optimizer step on `batch` at learning rate `lr`. `next`, when given, is the batch of the
   * following step: the engine may start loading it now (prefetch) and must use that work when
   * it is asked for that step.
   */
  step(batch: SampledBatch, context: StepContext, next?: SampledBatch): Promise<StepOutcome>;
  /** Inference over a whole split on the current weights. */
  evaluate(split: 'validation' | 'test', data: DataSplit, epoch: number, signal?: AbortSignal): Promise<EvaluationMetrics>;
  /** The model's weights now (early stopping's best snapshot, checkpoints, export). */
  weights(): Promise<WeightSet>;
  /** Replaces the model's weights (best weights restored) wherever replicas hold them. */
  setWeights(weights: WeightSet): Promise<void>;
  /** The optimizer's state for a checkpoint. */
  optimizerState(): Promise<{ iterations: number; slots: OptimizerSlot[] }>;
  /** Drops prefetched work that no step will use (a stop). */
  discardPrefetched(): void;
  /**
   * Replicas that would share a step drawn now (a cluster: its live workers); a per-worker batch
   * multiplies by it. Absent: one.
   */
  replicas?(): number;
}

export interface StepContext {
  /** The optimizer step this is, counted over the whole job (1-based). */
  step: number;
  epoch: number;
  lr: number;
}

/** How a step ended; the loop counts samples and logs `step` events from it. */
export type StepOutcome =
  /** The update was applied. `loss` is the sample mean over the `n` samples used. */
  | { kind: 'applied'; loss: number; correct: number; n: number; timing: StepTiming }
  /** No sample of the batch could be decoded (each logged as a skip): no update. */
  | { kind: 'empty' }
  /** The update was refused (it would make a weight non-finite; logged by the engine): weights unchanged. */
  | { kind: 'refused' };

/** Where a step's time went, in ms; fields a single process does not have are 0. */
export interface StepTiming {
  dataWaitMs: number;
  computeMs: number;
  transferMs: number;
  reduceMs: number;
  stepMs: number;
  /** Per worker (cluster engines only). */
  workers?: { worker: string; n: number; computeMs: number; dataWaitMs: number }[];
}

/** Metrics of a whole split in inference mode, with the confusion matrix (rows: true class). */
export interface EvaluationMetrics {
  loss: number;
  accuracy: number;
  n: number;
  confusion: number[][];
}
