import { ProtocolError } from '../errors.ts';
import type { TensorEncoding__Output } from './generated/drover/v1/TensorEncoding.ts';

/**
 * How float32 tensors travel (a job's `cluster.wire`): `fp32`, their own 4 bytes a value, or
 * `bf16`, bfloat16 in 2 bytes a value (src/wire/bf16.ts). Tensors of other dtypes always travel
 * as their own bytes.
 */
export type WireEncoding = 'fp32' | 'bf16';

/** The TensorEncoding a float32 tensor carries on the wire in each encoding. */
export const TENSOR_ENCODING = { fp32: 'TENSOR_ENCODING_RAW', bf16: 'TENSOR_ENCODING_BF16' } as const satisfies Record<WireEncoding, TensorEncoding__Output>;

/** Bytes one float32 value takes on the wire. */
export function bytesPerFloat(encoding: WireEncoding): number {
  return encoding === 'bf16' ? 2 : 4;
}

/**
 * The encoding a peer named (JoinReply.gradient_encoding), or a ProtocolError for a value this
 * version does not know (proto-loader hands an unknown enum value over as its number).
 */
export function wireEncodingFrom(value: TensorEncoding__Output | number | undefined, what: string): WireEncoding {
  switch (value) {
    case undefined:
    case 'TENSOR_ENCODING_RAW':
      return 'fp32';
    case 'TENSOR_ENCODING_BF16':
      return 'bf16';
    default:
      throw new ProtocolError(`${what}: unknown tensor encoding ${String(value)}`);
  }
}
