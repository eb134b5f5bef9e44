// Original file: proto/drover.proto

import type { Timings as _drover_v1_Timings, Timings__Output as _drover_v1_Timings__Output } from '../../drover/v1/Timings.ts';
import type { Transfer as _drover_v1_Transfer, Transfer__Output as _drover_v1_Transfer__Output } from '../../drover/v1/Transfer.ts';
import type { SkippedSample as _drover_v1_SkippedSample, SkippedSample__Output as _drover_v1_SkippedSample__Output } from '../../drover/v1/SkippedSample.ts';

export interface GradientResult {
  'taskId'?: (string);
  'step'?: (number);
  'weightsVersion'?: (number);
  /**
   * Mean loss over the shard (with regularisation), correct top-1 count, shard size.
   */
  'loss'?: (number | string);
  'correct'?: (number);
  'n'?: (number);
  'timings'?: (_drover_v1_Timings | null);
  /**
   * Gradients of the mean loss, one float32 tensor per trainable weight, in model order.
   */
  'gradients'?: (_drover_v1_Transfer | null);
  /**
   * Non-trainable weights after the forward pass (batch-norm moving statistics); empty
   * when the model has none. The coordinator averages them weighted by n.
   */
  'buffers'?: (_drover_v1_Transfer | null);
  /**
   * Sample ids of the shard that could not be decoded (counted skips); n is smaller by as many.
   */
  'skipped'?: (number)[];
  /**
   * Why each skipped sample could not be decoded (the coordinator logs it with the sample's path).
   */
  'skipReasons'?: (_drover_v1_SkippedSample)[];
}

export interface GradientResult__Output {
  'taskId': (string);
  'step': (number);
  'weightsVersion': (number);
  /**
   * Mean loss over the shard (with regularisation), correct top-1 count, shard size.
   */
  'loss': (number);
  'correct': (number);
  'n': (number);
  'timings': (_drover_v1_Timings__Output | null);
  /**
   * Gradients of the mean loss, one float32 tensor per trainable weight, in model order.
   */
  'gradients': (_drover_v1_Transfer__Output | null);
  /**
   * Non-trainable weights after the forward pass (batch-norm moving statistics); empty
   * when the model has none. The coordinator averages them weighted by n.
   */
  'buffers': (_drover_v1_Transfer__Output | null);
  /**
   * Sample ids of the shard that could not be decoded (counted skips); n is smaller by as many.
   */
  'skipped': (number)[];
  /**
   * Why each skipped sample could not be decoded (the coordinator logs it with the sample's path).
   */
  'skipReasons': (_drover_v1_SkippedSample__Output)[];
}
