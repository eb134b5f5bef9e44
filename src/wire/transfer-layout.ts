import { ProtocolError } from '../errors.ts';
import type { DType__Output } from './generated/drover/v1/DType.ts';
import type { TensorSpec__Output } from './generated/drover/v1/TensorSpec.ts';
import type { Transfer__Output } from './generated/drover/v1/Transfer.ts';
import type { WireEncoding } from './tensor-encoding.ts';

/**
 * Where a received transfer's bytes go. A manifest declares each tensor's bytes on the wire; the
 * receive buffer holds each tensor's values as the receiver reads them (a bf16 tensor as
 * float32, twice its wire bytes), tensors at 4-byte aligned offsets in manifest order. Raw
 * tensors land where they are read; a bf16 tensor's bytes land in the upper half of its values'
 * bytes and are decoded forward, in place, as they arrive (value j's float32 only ever overwrites
 * the bf16 of values before j, already decoded).
 */

export type TensorDType = 'float32' | 'uint8' | 'int32';

export const WIRE_DTYPE = { float32: 'FLOAT32', uint8: 'UINT8', int32: 'INT32' } as const satisfies Record<TensorDType, DType__Output>;
export const BYTES_PER_ELEMENT: Record<TensorDType, number> = { float32: 4, uint8: 1, int32: 4 };

export function localDType(wire: DType__Output): TensorDType | undefined {
  switch (wire) {
    case 'FLOAT32':
      return 'float32';
    case 'UINT8':
      return 'uint8';
    case 'INT32':
      return 'int32';
    default:
      return undefined;
  }
}

export function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A run of wire bytes that must arrive, in order, and where it goes. */
export interface Segment {
  /** The transfer's wire bytes [start, end). */
  start: number;
  end: number;
  /** Receive-buffer offset where wire byte `start` lands. */
  landing: number;
  /** Receive-buffer bytes [at, at + size) its values occupy once in (decoded, for bf16). */
  at: number;
  size: number;
  /** The tensor the bytes belong to (undefined for an opaque payload). */
  tensor?: { index: number; name: string; float: boolean; bf16: boolean };
}

export interface TransferLayout {
  /** The non-empty runs of wire bytes, in order. */
  segments: Segment[];
  /** Receive-buffer offset of every declared tensor's values (empty ones included). */
  placements: number[];
  /** Bytes of the receive buffer. */
  size: number;
}

/**
 * Validates a manifest (dtypes, encodings, sizes, placement) and lays out its receive buffer.
 * Float32 tensors must travel in `encoding`, the job's; a ProtocolError names the first
 * problem.
 */
export function layoutOf(header: Transfer__Output, what: string, encoding: WireEncoding): TransferLayout {
  const total = header.totalBytes;
  if (header.tensors.length === 0) {
    return { segments: total > 0 ? [{ start: 0, end: total, landing: 0, at: 0, size: total }] : [], placements: [], size: total };
  }
  const segments: Segment[] = [];
  const placements: number[] = [];
  let previousEnd = 0;
  let size = 0;
  for (const [index, spec] of header.tensors.entries()) {
    const dtype = localDType(spec.dtype);
    if (!dtype) throw new ProtocolError(`${what}: tensor ${spec.name} has unsupported dtype ${spec.dtype}`);
    const bf16 = travelsAsBf16(spec, dtype, encoding, what);
    const start = spec.byteOffset;
    const length = spec.byteLength;
    const count = elementCount(spec.shape);
    const expected = count * (bf16 ? 2 : BYTES_PER_ELEMENT[dtype]);
    if (length !== expected) {
      throw new ProtocolError(`${what}: tensor ${spec.name} [${spec.shape}] ${dtype}${bf16 ? ' as bf16' : ''} needs ${expected} bytes, manifest says ${length}`);
    }
    if (start % 4 !== 0 || start < previousEnd || start + length > total) {
      throw new ProtocolError(`${what}: tensor ${spec.name} at bytes [${start}, ${start + length}) is misplaced in a transfer of ${total} bytes`);
    }
    const at = align4(size);
    const valueBytes = count * BYTES_PER_ELEMENT[dtype];
    placements.push(at);
    if (length > 0) {
      segments.push({ start, end: start + length, landing: at + valueBytes - length, at, size: valueBytes, tensor: { index, name: spec.name, float: dtype === 'float32', bf16 } });
    }
    size = at + valueBytes;
    previousEnd = start + length;
  }
  return { segments, placements, size };
}

/** Whether a tensor travels as bf16; refuses an encoding the receiver did not ask for. */
function travelsAsBf16(spec: TensorSpec__Output, dtype: TensorDType, encoding: WireEncoding, what: string): boolean {
  // A sender that predates the field sends raw bytes, which proto3 reads as the default.
  const wire = spec.encoding ?? 'TENSOR_ENCODING_RAW';
  if (wire !== 'TENSOR_ENCODING_RAW' && wire !== 'TENSOR_ENCODING_BF16') {
    throw new ProtocolError(`${what}: tensor ${spec.name} has unsupported encoding ${String(wire)}`);
  }
  const bf16 = wire === 'TENSOR_ENCODING_BF16';
  if (dtype !== 'float32') {
    if (bf16) throw new ProtocolError(`${what}: tensor ${spec.name} is ${dtype}: only float32 tensors travel as bf16`);
    return false;
  }
  const sent: WireEncoding = bf16 ? 'bf16' : 'fp32';
  if (sent !== encoding) throw new ProtocolError(`${what}: tensor ${spec.name} travels as ${sent}, but this job's wire is ${encoding} (cluster.wire)`);
  return bf16;
}

/** Zeroes the bytes no value fills (alignment padding), so a reused buffer holds no stale bytes there. */
export function zeroGaps(buffer: Uint8Array, segments: readonly Segment[]): void {
  let filled = 0;
  for (const segment of segments) {
    if (segment.at > filled) buffer.fill(0, filled, segment.at);
    filled = segment.at + segment.size;
  }
  if (buffer.length > filled) buffer.fill(0, filled);
}
