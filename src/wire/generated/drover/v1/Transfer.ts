// Original file: proto/drover.proto

import type { TensorSpec as _drover_v1_TensorSpec, TensorSpec__Output as _drover_v1_TensorSpec__Output } from '../../drover/v1/TensorSpec.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * Declares a payload that follows as Chunk messages with the same transfer_id on the same stream.
 */
export interface Transfer {
  'transferId'?: (number);
  'totalBytes'?: (number | string | Long);
  /**
   * Empty for opaque byte payloads (encoded samples).
   */
  'tensors'?: (_drover_v1_TensorSpec)[];
}

/**
 * Declares a payload that follows as Chunk messages with the same transfer_id on the same stream.
 */
export interface Transfer__Output {
  'transferId': (number);
  'totalBytes': (number);
  /**
   * Empty for opaque byte payloads (encoded samples).
   */
  'tensors': (_drover_v1_TensorSpec__Output)[];
}
