// Original file: proto/drover.proto

import type { Long } from '@grpc/proto-loader';

/**
 * A slice [offset, offset + data.length) of a transfer's bytes.
 */
export interface Chunk {
  'transferId'?: (number);
  'offset'?: (number | string | Long);
  'data'?: (Buffer | Uint8Array | string);
}

/**
 * A slice [offset, offset + data.length) of a transfer's bytes.
 */
export interface Chunk__Output {
  'transferId': (number);
  'offset': (number);
  'data': (Buffer);
}
