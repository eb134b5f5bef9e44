import { WeightsError } from '../errors.ts';
import type { Batch } from '../data/types.ts';
import type { WeightEntry } from '../model/weights.ts';
import type { ReceivedTensor } from '../wire/transfer.ts';

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
  /** Manifest of every weight (what broadcasts hold). */
  readonly manifest: readonly WeightEntry[];
  /**
   * setWeights copies what it keeps, so the broadcast's receive buffer can take the next
   * broadcast once it returns. False (or absent): the replica may keep views of the tensors.
   */
  readonly copiesWeights?: boolean;
  setWeights(version: number, tensors: readonly ReceivedTensor[]): void;
  train(batch: Batch): Promise<ReplicaGradients>;
  evaluate(batch: Batch): Promise<ReplicaEvaluation>;
  dispose(): void;
}

/** Checks a broadcast against the expected manifest: the coordinator and this worker must build the same model. */
export function checkBroadcast(manifest: readonly WeightEntry[], tensors: readonly ReceivedTensor[]): void {
  if (tensors.length !== manifest.length) throw new WeightsError(`weight broadcast holds ${tensors.length} tensors, this replica has ${manifest.length} weights`);
  manifest.forEach((entry, i) => {
    const t = tensors[i]!;
    if (t.name !== entry.name || t.dtype !== 'float32' || t.shape.join('x') !== entry.shape.join('x')) {
      throw new WeightsError(`weight broadcast[${i}] is ${t.name} [${t.shape}] ${t.dtype}, this replica expects ${entry.name} [${entry.shape}] float32`);
    }
  });
}

