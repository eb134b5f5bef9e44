// Original file: proto/drover.proto

import type { DType as _drover_v1_DType, DType__Output as _drover_v1_DType__Output } from '../../drover/v1/DType.ts';
import type { TensorEncoding as _drover_v1_TensorEncoding, TensorEncoding__Output as _drover_v1_TensorEncoding__Output } from '../../drover/v1/TensorEncoding.ts';
import type { Long } from '@grpc/proto-loader';

/**
 * One tensor inside a transfer: its bytes start at byte_offset (a multiple of 4).
 */
export interface TensorSpec {
  'name'?: (string);
  'shape'?: (number)[];
  /**
   * The dtype of the values the receiver gets.
   */
  'dtype'?: (_drover_v1_DType);
  'byteOffset'?: (number | string | Long);
  /**
   * Bytes on the wire: element count x the encoding's bytes per value.
   */
  'byteLength'?: (number | string | Long);
  'encoding'?: (_drover_v1_TensorEncoding);
}

/**
 * One tensor inside a transfer: its bytes start at byte_offset (a multiple of 4).
 */
export interface TensorSpec__Output {
  'name': (string);
  'shape': (number)[];
  /**
   * The dtype of the values the receiver gets.
   */
  'dtype': (_drover_v1_DType__Output);
  'byteOffset': (number);
  /**
   * Bytes on the wire: element count x the encoding's bytes per value.
   */
  'byteLength': (number);
  'encoding': (_drover_v1_TensorEncoding__Output);
}
