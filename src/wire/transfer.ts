import os from 'node:os';
import { ProtocolError, TransferLimitError, WeightsError } from '../errors.ts';
import { decodeBf16, encodeBf16 } from './bf16.ts';
import type { BufferPool } from './buffer-pool.ts';
import { firstNonFinite } from './finite-check.ts';
import type { Chunk, Chunk__Output } from './generated/drover/v1/Chunk.ts';
import type { TensorSpec__Output } from './generated/drover/v1/TensorSpec.ts';
import type { Transfer, Transfer__Output } from './generated/drover/v1/Transfer.ts';
import { MAX_CHUNK_BYTES } from './protocol.ts';
import { TENSOR_ENCODING, type WireEncoding } from './tensor-encoding.ts';
import { align4, elementCount, layoutOf, localDType, WIRE_DTYPE, zeroGaps, type Segment, type TensorDType } from './transfer-layout.ts';

/**
 * Payloads as little-endian bytes in chunks of at most ~1 MiB, declared up front by a manifest
 * (names, shapes, dtypes, encodings, offsets). Float32 tensors travel raw or, when the job asks
 * (cluster.wire: bf16), as bfloat16 in half the bytes. A raw sender never copies: chunks are
 * views of its arrays. The receiver fills one buffer per transfer (from a pool when it has one),
 * decoding bf16 back to float32 as each chunk lands, and hands back typed views of it: whoever
 * reads a received tensor gets float32, whatever the wire carried.
 */

if (os.endianness() !== 'LE') {
  // Tensors travel as the sender's memory; a big-endian peer would read garbage.
  throw new ProtocolError('drover needs a little-endian machine: tensors travel as raw little-endian bytes');
}

export type { TensorDType };
export type TensorData = Float32Array | Uint8Array | Int32Array;

/** One tensor to send. */
export interface TensorPart {
  name: string;
  shape: readonly number[];
  data: TensorData;
}

/** A received tensor: its declared spec and a view of the transfer's buffer. */
export interface ReceivedTensor {
  name: string;
  shape: number[];
  dtype: TensorDType;
  data: TensorData;
  /** Every value was checked finite as it arrived (float32 tensors of transfers expected with `finite`). */
  finite?: boolean;
}

/** A complete transfer: the whole buffer, and the tensors in it (none for an opaque payload). */
export interface ReceivedTransfer {
  transferId: number;
  /** The receive buffer: an opaque payload as sent; tensors' values as read (bf16 decoded to float32). */
  bytes: Uint8Array;
  tensors: ReceivedTensor[];
  /**
   * Gives the buffer back to the assembler's pool for a later transfer: call it once nothing
   * reads `bytes` or the tensors any more. Optional (the garbage collector takes what is not
   * released) and idempotent.
   */
  release(): void;
}

function dtypeOf(data: TensorData): TensorDType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Int32Array) return 'int32';
  return 'uint8';
}

/** A transfer ready to send: its header (manifest) and its chunks, in order. */
export interface OutgoingTransfer {
  header: Transfer;
  chunks: Chunk[];
  /** Payload bytes on the wire (excluding alignment padding). */
  bytes: number;
}

function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Chunks of [start, end) of `view`, placed at `offset` in the transfer. Views, not copies. */
function pushChunks(out: Chunk[], transferId: number, view: Uint8Array, offset: number, maxChunk: number): void {
  for (let start = 0; start < view.length; start += maxChunk) {
    const end = Math.min(view.length, start + maxChunk);
    out.push({ transferId, offset: offset + start, data: Buffer.from(view.buffer, view.byteOffset + start, end - start) });
  }
}

/**
 * Lays tensors out in one transfer: each starts at a 4-byte aligned offset (so the receiver can
 * view it as Float32Array / Int32Array without copying), and each is cut into chunks of at
 * most `maxChunk` bytes that never straddle two tensors. With `encoding` bf16, float32 tensors
 * are encoded to bfloat16 first (a copy of half their size; the only time a sender copies).
 */
export function tensorTransfer(transferId: number, parts: readonly TensorPart[], maxChunk = MAX_CHUNK_BYTES, encoding: WireEncoding = 'fp32'): OutgoingTransfer {
  checkChunkSize(maxChunk);
  const tensors: Transfer['tensors'] = [];
  const chunks: Chunk[] = [];
  let offset = 0;
  let bytes = 0;
  for (const part of parts) {
    const dtype = dtypeOf(part.data);
    const count = elementCount(part.shape);
    if (count !== part.data.length) {
      throw new ProtocolError(`tensor ${part.name}: shape [${part.shape}] holds ${count} values but ${part.data.length} were given`);
    }
    offset = align4(offset);
    const bf16 = encoding === 'bf16' && part.data instanceof Float32Array;
    const view = bytesOf(bf16 ? encodeBf16(part.data as Float32Array) : part.data);
    const wireEncoding = dtype === 'float32' ? TENSOR_ENCODING[encoding] : 'TENSOR_ENCODING_RAW';
    tensors.push({ name: part.name, shape: [...part.shape], dtype: WIRE_DTYPE[dtype], byteOffset: offset, byteLength: view.length, encoding: wireEncoding });
    pushChunks(chunks, transferId, view, offset, maxChunk);
    offset += view.length;
    bytes += view.length;
  }
  return { header: { transferId, totalBytes: offset, tensors }, chunks, bytes };
}

/** An opaque payload (e.g. concatenated encoded samples) as one transfer. */
export function bytesTransfer(transferId: number, payload: Uint8Array, maxChunk = MAX_CHUNK_BYTES): OutgoingTransfer {
  checkChunkSize(maxChunk);
  const chunks: Chunk[] = [];
  pushChunks(chunks, transferId, payload, 0, maxChunk);
  return { header: { transferId, totalBytes: payload.length, tensors: [] }, chunks, bytes: payload.length };
}

function checkChunkSize(maxChunk: number): void {
  if (!Number.isInteger(maxChunk) || maxChunk < 4 || maxChunk > MAX_CHUNK_BYTES) {
    throw new ProtocolError(`chunk size must be an integer in 4..${MAX_CHUNK_BYTES}, got ${maxChunk}`);
  }
}

/** Limits a receiver puts on one transfer. */
export interface TransferLimits {
  /** Largest size accepted, on the wire and as received (a bf16 value counts 4 bytes there). */
  maxBytes: number;
  /** What the transfer is, for messages ("gradients of task t-3-1"). */
  what: string;
  /**
   * Refuse (WeightsError) a NaN or infinite value in any float32 tensor, checked chunk by chunk
   * as the bytes land, while they are still in cache (bf16 ones once decoded: a bfloat16
   * infinity or NaN decodes to a float32 one).
   */
  finite?: boolean;
  /**
   * How float32 tensors must travel (default fp32). A transfer in another encoding is refused
   * (ProtocolError): the job chose its wire, and a peer that sends otherwise misread the
   * contract; accepting it would silently double the bytes or change the job's numerics.
   */
  encoding?: WireEncoding;
}

interface Pending {
  header: Transfer__Output;
  what: string;
  buffer: Uint8Array;
  segments: Segment[];
  /** Receive-buffer offset of each declared tensor. */
  placements: number[];
  /** Index of the segment being filled, and the next byte expected in it. */
  segment: number;
  next: number;
  pool: BufferPool | undefined;
  /** Check float32 values for finiteness; wire bytes of the current segment before `checked` are decoded and checked. */
  finite: boolean;
  checked: number;
  resolve: (value: ReceivedTransfer) => void;
  reject: (error: Error) => void;
}

/**
 * Reassembles transfers from chunks on one stream. Strict, because the bytes come from a peer:
 * the manifest must be self-consistent and within limits, chunks must arrive in order, inside
 * their tensor, and only for declared transfers; anything else is a ProtocolError.
 */
export class TransferAssembler {
  private readonly pending = new Map<number, Pending>();
  private pendingBytes = 0;

  constructor(
    /** Cap on the bytes of all incomplete transfers together (memory bound per stream). */
    private readonly maxPendingBytes: number,
    /** Where receive buffers come from and go back to (released transfers); fresh ones without. */
    private readonly pool?: BufferPool,
  ) {}

  /** Bytes allocated for transfers not yet complete. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /**
   * Registers a transfer announced by a header; resolves when its last chunk arrives. The
   * returned promise is already marked handled: an abandoned transfer never crashes the process.
   */
  expect(header: Transfer__Output | null | undefined, limits: TransferLimits): Promise<ReceivedTransfer> {
    if (!header) throw new ProtocolError(`${limits.what}: transfer header missing`);
    const id = header.transferId;
    if (this.pending.has(id)) throw new ProtocolError(`${limits.what}: transfer ${id} is already in progress`);
    const total = header.totalBytes;
    if (!Number.isSafeInteger(total) || total < 0) throw new ProtocolError(`${limits.what}: transfer size ${total} is not a byte count`);
    if (total > limits.maxBytes) {
      throw new TransferLimitError(`${limits.what}: transfer of ${total} bytes exceeds the limit of ${limits.maxBytes}`);
    }
    const { segments, placements, size } = layoutOf(header, limits.what, limits.encoding ?? 'fp32');
    if (size > limits.maxBytes) {
      throw new TransferLimitError(`${limits.what}: transfer of ${size} bytes once decoded exceeds the limit of ${limits.maxBytes}`);
    }
    if (this.pendingBytes + size > this.maxPendingBytes) {
      throw new TransferLimitError(`${limits.what}: ${this.pendingBytes + size} bytes in flight exceed the stream's limit of ${this.maxPendingBytes}`);
    }
    let resolve!: (value: ReceivedTransfer) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<ReceivedTransfer>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {});
    const buffer = this.pool ? this.pool.take(size) : new Uint8Array(size);
    if (this.pool) zeroGaps(buffer, segments);
    const next = segments[0]?.start ?? 0;
    const entry: Pending = { header, what: limits.what, buffer, segments, placements, segment: 0, next, pool: this.pool, finite: limits.finite === true, checked: next, resolve, reject };
    this.pending.set(id, entry);
    this.pendingBytes += size;
    this.completeIfDone(id, entry);
    return promise;
  }

  /** Takes one chunk; throws a ProtocolError for a chunk that does not fit what was declared. */
  accept(chunk: Chunk__Output): void {
    const entry = this.pending.get(chunk.transferId);
    if (!entry) throw new ProtocolError(`chunk for transfer ${chunk.transferId}, which was never declared (or is complete)`);
    const data = chunk.data;
    const segment = entry.segments[entry.segment]!;
    if (chunk.offset !== entry.next) {
      throw new ProtocolError(`${entry.what}: chunk at byte ${chunk.offset}, expected byte ${entry.next} (chunks must arrive in order)`);
    }
    if (data.length === 0 || entry.next + data.length > segment.end) {
      throw new ProtocolError(`${entry.what}: chunk of ${data.length} bytes at ${chunk.offset} does not fit its tensor [${segment.start}, ${segment.end})`);
    }
    entry.buffer.set(data, segment.landing + (entry.next - segment.start));
    entry.next += data.length;
    if (segment.tensor?.bf16 || (entry.finite && segment.tensor?.float)) this.settle(entry, segment);
    if (entry.next === segment.end) {
      entry.segment++;
      entry.next = entry.segments[entry.segment]?.start ?? segment.end;
      entry.checked = entry.next;
    }
    this.completeIfDone(chunk.transferId, entry);
  }

  /**
   * Decodes (bf16) and checks (with `finite`) the float32 values completed by the last chunk,
   * while they are in cache; a value split between two chunks waits for the second. A bad value
   * fails the whole stream's transfer.
   */
  private settle(entry: Pending, segment: Segment): void {
    const tensor = segment.tensor!;
    const width = tensor.bf16 ? 2 : 4;
    const upTo = entry.checked + Math.floor((entry.next - entry.checked) / width) * width;
    if (upTo === entry.checked) return;
    const first = (entry.checked - segment.start) / width;
    const count = (upTo - entry.checked) / width;
    const base = entry.buffer.byteOffset;
    const values = new Float32Array(entry.buffer.buffer, base + segment.at + 4 * first, count);
    if (tensor.bf16) decodeBf16(new Uint16Array(entry.buffer.buffer, base + segment.landing + 2 * first, count), values);
    if (entry.finite) {
      const bad = firstNonFinite(values);
      if (bad >= 0) throw new WeightsError(`${entry.what}[${tensor.index}] ${tensor.name}: value ${first + bad} is ${values[bad]}`);
    }
    entry.checked = upTo;
  }

  /** Fails every incomplete transfer (stream closed) and frees their buffers. */
  abort(error: Error): void {
    for (const entry of this.pending.values()) entry.reject(error);
    this.pending.clear();
    this.pendingBytes = 0;
  }

  private completeIfDone(id: number, entry: Pending): void {
    if (entry.segment < entry.segments.length) return;
    this.pending.delete(id);
    this.pendingBytes -= entry.buffer.length;
    const { pool, buffer } = entry;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      pool?.give(buffer);
    };
    entry.resolve({ transferId: id, bytes: buffer, tensors: viewTensors(entry.header.tensors, entry.placements, buffer, entry.finite), release });
  }
}

function viewTensors(specs: readonly TensorSpec__Output[], placements: readonly number[], buffer: Uint8Array, checkedFinite: boolean): ReceivedTensor[] {
  return specs.map((spec, i) => {
    const dtype = localDType(spec.dtype)!;
    const count = elementCount(spec.shape);
    const offset = buffer.byteOffset + placements[i]!;
    const data: TensorData =
      dtype === 'float32'
        ? new Float32Array(buffer.buffer, offset, count)
        : dtype === 'int32'
          ? new Int32Array(buffer.buffer, offset, count)
          : new Uint8Array(buffer.buffer, offset, count);
    return { name: spec.name, shape: [...spec.shape], dtype, data, ...(checkedFinite && dtype === 'float32' ? { finite: true } : {}) };
  });
}
