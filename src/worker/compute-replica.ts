import type { Batch } from '../data/types.ts';
import type { WeightEntry } from '../model/weights.ts';
import type { WeightUpdate } from './weight-update.ts';

/** What a worker sends back for a training task. */
export interface ReplicaGradients {
  loss: number;
  correct: number;
  n: number;
  /** One per trainable weight, in model order. */
  grads: Float32Array[];
  /** Non-trainable weights after the forward pass (batch-norm statistics); empty when none. */
  buffers: Float32Array[];
}

/** What a worker sends back for an evaluation task. */
export interface ReplicaEvaluation {
  lossSum: number;
  correct: number;
  n: number;
  predicted: number[];
}

/** The computation a worker runs on its shards: a real model, or a stand-in for benchmarks. */
export interface ComputeReplica {
  /** Weights version the replica holds, undefined before the first broadcast. */
  readonly version: number | undefined;
  /** Manifest of every weight (what full broadcasts hold). */
  readonly manifest: readonly WeightEntry[];
  /**
   * setWeights copies what it keeps, so the broadcast's receive buffer can take the next
   * broadcast once it returns. False (or absent): the replica may keep views of the tensors.
   */
  readonly copiesWeights?: boolean;
  /** Applies a broadcast (full, or partial on top of the version held); refuses one that does not fit with a WeightsError. */
  setWeights(update: WeightUpdate): void;
  train(batch: Batch): Promise<ReplicaGradients>;
  evaluate(batch: Batch): Promise<ReplicaEvaluation>;
  dispose(): void;
}

/** The model's state as one replica holds it: what a joining peer or a checkpoint needs. */
export interface ReplicaState {
  /** Every weight, in manifest order. */
  weights: Float32Array[];
  optimizer: { iterations: number; slots: { name: string; values: Float32Array }[] };
}

/**
 * A replica that applies updates itself (peer reduction): it holds an optimizer, and every
 * replica of the group applies the same reduced gradient to the same weights and state.
 */
export interface PeerReplica extends ComputeReplica {
  /** Builds the optimizer (once per session; the state follows with the weights or starts fresh). */
  enableOptimizer(optimizerJson: string): void;
  /** Whether `train` reports batch-norm statistics (they are averaged with the gradient). */
  readonly reportsBuffers: boolean;
  /**
   * Applies the group's mean gradient at `lr` and writes the averaged statistics, then holds
   * `version`. Returns false when the optimizer refused the step (a weight would turn non-finite):
   * every replica refuses it alike, and the weights stay as they were.
   */
  applyReduced(grads: readonly Float32Array[], buffers: readonly Float32Array[], lr: number, version: number): Promise<boolean>;
  /** Holds `version` without an update (a step with no usable sample). */
  skipTo(version: number): void;
  readState(): Promise<ReplicaState>;
  setOptimizerState(state: ReplicaState['optimizer']): void;
}

export function isPeerReplica(replica: ComputeReplica): replica is PeerReplica {
  return typeof (replica as Partial<PeerReplica>).applyReduced === 'function';
}
