// Original file: proto/drover.proto

import type { Transfer as _drover_v1_Transfer, Transfer__Output as _drover_v1_Transfer__Output } from '../../drover/v1/Transfer.ts';

/**
 * Answers StateRequest: every weight in model order, and the optimizer's slots.
 */
export interface StateReply {
  'requestId'?: (number);
  'version'?: (number);
  'weights'?: (_drover_v1_Transfer | null);
  'optimizerIterations'?: (number);
  'optimizerSlots'?: (_drover_v1_Transfer | null);
}

/**
 * Answers StateRequest: every weight in model order, and the optimizer's slots.
 */
export interface StateReply__Output {
  'requestId': (number);
  'version': (number);
  'weights': (_drover_v1_Transfer__Output | null);
  'optimizerIterations': (number);
  'optimizerSlots': (_drover_v1_Transfer__Output | null);
}
