// Original file: proto/drover.proto

import type { Transfer as _drover_v1_Transfer, Transfer__Output as _drover_v1_Transfer__Output } from '../../drover/v1/Transfer.ts';

/**
 * The weights of version `version` (= optimizer steps applied). Workers compute a task only on
 * the weights it names.
 */
export interface WeightBroadcast {
  'version'?: (number);
  /**
   * Full: every weight of the model (trainable and not), in model order. Partial: only the
   * weights a step can change (every trainable weight, and batch-norm statistics when workers
   * report them), in model order and named; all others are as in version `base_version`.
   */
  'weights'?: (_drover_v1_Transfer | null);
  /**
   * A worker applies a partial broadcast only on top of a full one it holds, at base_version,
   * received in this session; anything else is refused.
   */
  'partial'?: (boolean);
  'baseVersion'?: (number);
  /**
   * Peer reduction: the optimizer's state as of `version` (a full broadcast to a worker that
   * joins, or a restored checkpoint); every slot a float32 tensor, named. Absent otherwise.
   */
  'hasOptimizerState'?: (boolean);
  'optimizerIterations'?: (number);
  'optimizerSlots'?: (_drover_v1_Transfer | null);
}

/**
 * The weights of version `version` (= optimizer steps applied). Workers compute a task only on
 * the weights it names.
 */
export interface WeightBroadcast__Output {
  'version': (number);
  /**
   * Full: every weight of the model (trainable and not), in model order. Partial: only the
   * weights a step can change (every trainable weight, and batch-norm statistics when workers
   * report them), in model order and named; all others are as in version `base_version`.
   */
  'weights': (_drover_v1_Transfer__Output | null);
  /**
   * A worker applies a partial broadcast only on top of a full one it holds, at base_version,
   * received in this session; anything else is refused.
   */
  'partial': (boolean);
  'baseVersion': (number);
  /**
   * Peer reduction: the optimizer's state as of `version` (a full broadcast to a worker that
   * joins, or a restored checkpoint); every slot a float32 tensor, named. Absent otherwise.
   */
  'hasOptimizerState': (boolean);
  'optimizerIterations': (number);
  'optimizerSlots': (_drover_v1_Transfer__Output | null);
}
