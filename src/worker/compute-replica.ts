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
