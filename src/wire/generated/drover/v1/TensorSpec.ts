// Original file: proto/drover.proto

import type { DType as _drover_v1_DType, DType__Output as _drover_v1_DType__Output } from '../../drover/v1/DType.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * One tensor inside a transfer: its bytes start at byte_offset (a multiple of 4).
 */
export interface TensorSpec {
  'name'?: (string);
  'shape'?: (number)[];
  'dtype'?: (_drover_v1_DType);
  'byteOffset'?: (number | string | Long);
  'byteLength'?: (number | string | Long);
}

/**
 * One tensor inside a transfer: its bytes start at byte_offset (a multiple of 4).
 */
export interface TensorSpec__Output {
  'name': (string);
  'shape': (number)[];
  'dtype': (_drover_v1_DType__Output);
  'byteOffset': (number);
  'byteLength': (number);
}
