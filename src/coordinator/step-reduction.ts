import type { NonFiniteUpdateError } from '../errors.ts';
import type { WeightSet } from '../model/weights.ts';
import type { OptimizerSlot } from '../train/optimizers.ts';
import type { Contribution } from './reducer.ts';

/**
 * How one step's task results become the update, and where the updated weights end up. The
 * step loop in `Coordinator.step` is the same whatever the reduction:
 *
 *   const reducing = reduction.open(batchSize);   // when the step's round is planned (maybe a step ahead)
 *   reducing.expect(rank) / withdraw(rank)        // as task dispatch plans, reassigns and drops tasks
 *   reducing.offer(rank, contribution, release)   // as results arrive (gradient intake)
 *   await reducing.apply({ step, lr, version })   // once the round is done: the update is applied
 *   reducing.dispose()                            // always, when the round closes
 *
 * Two implementations. The star (star-reduction.ts): every worker sends its whole gradient to
 * the coordinator, which sums them in task-rank order, applies the optimizer it alone holds, and
 * broadcasts the weights. The peer reduction (peer-reduction.ts, cluster.reduction: peer):
 * workers reduce-scatter and all-gather their gradients among themselves and each applies the
 * same optimizer step; its `offer` receives a task's metrics rather than its gradient, its
 * `apply` commits the step to the group, and its `weights` / `optimizerState` pull from a worker
 * that holds them. A peer reduction cannot replan one task (its peers wait for that rank), so the
 * coordinator drives its steps through `PeerReduction.step`, which abandons and replans the
 * whole step when a worker is lost.
 */
export interface StepReduction {
  /** Starts the reduction of one step whose round covers `expectedSamples` samples. */
  open(expectedSamples: number): ReducingStep;
  /** The model's weights as of the last applied update (checkpoints, early stopping). */
  weights(): Promise<WeightSet>;
  /** The optimizer's state as of the last applied update (checkpoints). */
  optimizerState(): Promise<{ iterations: number; slots: OptimizerSlot[] }>;
}

/** One step being reduced. Ranks are the round's task ranks: they fix the summation order. */
export interface ReducingStep {
  /** A task that will contribute (planned or planned again). */
  expect(rank: number): void;
  /** A task that will not contribute (reassigned, failed, or every sample skipped). */
  withdraw(rank: number): void;
  /**
   * A task's result. Throws a WeightsError (changing nothing) when it is bad: the worker is then
   * refused. `release` is called once its received buffers are no longer needed.
   */
  offer(rank: number, contribution: Contribution, release: () => void): void;
  /** Samples whose contributions are in. */
  readonly samples: number;
  /**
   * Turns the contributions (every expected rank offered or withdrawn) into the update, applies it
   * at learning rate `lr`, and makes weights version `version` the one workers compute on: when it
   * resolves, the next step's tasks may be answered. An empty or refused step leaves the weights
   * as they were, still as version `version`.
   */
  apply(update: { step: number; lr: number; version: number }): Promise<ReductionOutcome>;
  /** Releases what the step holds (its round closed, applied or abandoned). */
  dispose(): void;
}

export type ReductionOutcome =
  /** The update was applied; metrics are over the `n` samples used. */
  | { kind: 'applied'; loss: number; correct: number; n: number }
  /** No sample of the step could be used: no update. */
  | { kind: 'empty' }
  /** The update would have made a weight non-finite: weights and optimizer state unchanged. */
  | { kind: 'refused'; error: NonFiniteUpdateError };
