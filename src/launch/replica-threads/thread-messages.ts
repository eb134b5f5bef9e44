import type { InputShape } from '../../data/types.ts';
import type { ModelSpec } from '../../model/model-spec.ts';
import type { WeightEntry } from '../../model/weights.ts';
import type { OptimizerSlot } from '../../train/optimizers.ts';

/** What a replica thread is started with (workerData). */
export interface ReplicaThreadData {
  rank: number;
  backend: string;
}

/** Samples as a replica thread gets them: its rows of the step's batch. */
export interface ThreadBatch {
  x: Float32Array;
  y: Int32Array;
  n: number;
  shape: InputShape;
}

/** The requests the engine sends a replica thread; each is answered once, in order. */
export type ThreadRequest =
  /** Builds the phase's model with these weights (and optimizer state, when continuing). */
  | {
      kind: 'phase';
      model: ModelSpec;
      manifest: WeightEntry[];
      weights: Float32Array[];
      optimizerJson: string;
      optimizerState?: { iterations: number; slots: OptimizerSlot[] };
      /** Training passes of the phase already run (a resumed run continues the dropout masks). */
      passesDone: number;
    }
  /** Shared memory: the phase's gradients (its length is what `phase` answered) and the job's step barrier. */
  | { kind: 'share'; shared: SharedArrayBuffer; length: number; barrier: SharedArrayBuffer; replicas: number }
  /**
   * One optimizer step: gradients of `batch` times `scale` into this replica's slot; once every
   * replica wrote its slot, the sum of this replica's range; once all are summed, the sum applied
   * at `lr` (or refused alike everywhere when any range holds a non-finite value).
   */
  | { kind: 'step'; batch: ThreadBatch; scale: number; lr: number; version: number }
  | { kind: 'evaluate'; batch: ThreadBatch }
  | { kind: 'state' }
  | { kind: 'set-weights'; weights: Float32Array[] }
  /** Tensors alive in the thread's tfjs (leak checks). */
  | { kind: 'tensors' };

export type ThreadRequestKind = ThreadRequest['kind'];

/** The answer to each kind of request. */
export interface ThreadReplies {
  /** `sharedLength`: the values this replica contributes per step (gradients, then statistics). */
  phase: { manifest: WeightEntry[]; sharedLength: number };
  share: Record<string, never>;
  /** `nonFinite`: the first non-finite value of the sum (-1: none), or of this replica's range; `applied` false when refused. */
  step: { loss: number; correct: number; n: number; computeMs: number; reduceMs: number; nonFinite: number; applied: boolean };
  evaluate: { loss: number; correct: number; n: number; predicted: Int32Array };
  state: { weights: Float32Array[]; optimizer: { iterations: number; slots: OptimizerSlot[] } };
  'set-weights': Record<string, never>;
  tensors: { count: number };
}

export type ThreadMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { name: string; message: string; code?: string } };
