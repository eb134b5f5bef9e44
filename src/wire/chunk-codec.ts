import type { Chunk, Chunk__Output } from './generated/drover/v1/Chunk.ts';
import type { Envelope, Envelope__Output } from './generated/drover/v1/Envelope.ts';

/**
 * A hand-written protobuf codec for the one message that carries nearly every byte of a run:
 * a session message holding only an envelope and a Chunk (CoordinatorMessage field 4,
 * WorkerMessage field 5, proto/drover.proto). protobufjs spends more time per megabyte in its
 * generic writer and reader than the copy itself costs; this codec writes the header and copies
 * the payload once, and decodes to a view of the received bytes.
 *
 * The bytes are exactly those protobufjs writes (fields in number order, present fields written
 * even when default), so any protobuf peer reads them. The decoder takes only the canonical
 * shape: anything else (other or unknown fields, repeated fields, odd wire types, non-ASCII job
 * ids, varints past 2^49, truncation) returns undefined and the caller falls back to protobufjs,
 * which keeps its exact semantics (merging, skipping, errors) for everything unusual.
 */

/** Field number of the `chunk` member of a session message's body. */
export const COORDINATOR_CHUNK_FIELD = 4;
export const WORKER_CHUNK_FIELD = 5;

const ENVELOPE_FIELD = 1;
const LEN = 2;
const VARINT = 0;

/** A session message that is an envelope plus a chunk, as proto-loader decodes it. */
export interface ChunkMessage {
  envelope: Envelope__Output;
  chunk: Chunk__Output;
  body: 'chunk';
}

/** What the encoder takes: the session message types' input shape, narrowed to the fast case. */
interface ChunkMessageInput {
  envelope?: Envelope | null;
  chunk?: Chunk | null;
}

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    length++;
  }
  return length;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[at++] = value;
  return at;
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

function isCount(value: unknown, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max;
}

/**
 * Encodes `{ envelope, chunk }` as a session message whose chunk is field `chunkField`, or
 * returns undefined when the message is not of that plain shape (the caller uses protobufjs).
 * The message starts `headroom` bytes into the returned buffer (room for gRPC's frame prefix).
 */
export function encodeChunkMessage(message: ChunkMessageInput, chunkField: number, headroom = 0): Buffer | undefined {
  const { envelope, chunk } = message;
  if (!envelope || !chunk) return undefined;
  const fields = message as Record<string, unknown>;
  for (const key in fields) {
    if (key !== 'envelope' && key !== 'chunk' && fields[key] !== undefined && fields[key] !== null) return undefined;
  }
  const jobId = envelope.jobId ?? '';
  const version = envelope.protocolVersion ?? 0;
  const { transferId = 0, offset = 0, data } = chunk;
  if (typeof jobId !== 'string' || !isAscii(jobId) || !isCount(version, 0xffffffff)) return undefined;
  if (!isCount(transferId, 0xffffffff) || !isCount(offset, Number.MAX_SAFE_INTEGER) || !(data instanceof Uint8Array)) return undefined;

  const envelopeBody = 1 + varintLength(jobId.length) + jobId.length + 1 + varintLength(version);
  const chunkBody = 1 + varintLength(transferId) + 1 + varintLength(offset) + 1 + varintLength(data.length) + data.length;
  const total = 1 + varintLength(envelopeBody) + envelopeBody + 1 + varintLength(chunkBody) + chunkBody;
  const out = Buffer.allocUnsafe(headroom + total);
  let at = headroom;
  out[at++] = (ENVELOPE_FIELD << 3) | LEN;
  at = writeVarint(out, at, envelopeBody);
  out[at++] = (1 << 3) | LEN;
  at = writeVarint(out, at, jobId.length);
  at += out.write(jobId, at, 'latin1');
  out[at++] = (2 << 3) | VARINT;
  at = writeVarint(out, at, version);
  out[at++] = (chunkField << 3) | LEN;
  at = writeVarint(out, at, chunkBody);
  out[at++] = (1 << 3) | VARINT;
  at = writeVarint(out, at, transferId);
  out[at++] = (2 << 3) | VARINT;
  at = writeVarint(out, at, offset);
  out[at++] = (3 << 3) | LEN;
  at = writeVarint(out, at, data.length);
  out.set(data, at);
  return out;
}

/** Reads protobuf fields of one message strictly; `fail` set means "not the fast case". */
class FieldReader {
  at: number;
  fail = false;

  constructor(
    readonly bytes: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.at = start;
  }

  get done(): boolean {
    return this.fail || this.at >= this.end;
  }

  /** A varint of at most 7 bytes (values below 2^49, exact as a JS number). */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.at >= this.end) break;
      const byte = this.bytes[this.at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    this.fail = true;
    return 0;
  }

  /** The [start, end) of a length-delimited field's payload. */
  span(): [number, number] {
    const length = this.varint();
    const start = this.at;
    if (this.fail || length > this.end - start) {
      this.fail = true;
      return [start, start];
    }
    this.at = start + length;
    return [start, this.at];
  }
}

function decodeEnvelope(bytes: Buffer, start: number, end: number): Envelope__Output | undefined {
  const reader = new FieldReader(bytes, start, end);
  let jobId: string | undefined;
  let version: number | undefined;
  while (!reader.done) {
    const tag = reader.varint();
    if (tag === ((1 << 3) | LEN) && jobId === undefined) {
      const [from, to] = reader.span();
      for (let i = from; i < to; i++) if (bytes[i]! > 0x7f) return undefined;
      jobId = bytes.toString('latin1', from, to);
    } else if (tag === ((2 << 3) | VARINT) && version === undefined) {
      version = reader.varint();
      if (version > 0xffffffff) return undefined;
    } else {
      return undefined;
    }
  }
  return reader.fail ? undefined : { jobId: jobId ?? '', protocolVersion: version ?? 0 };
}

function decodeChunk(bytes: Buffer, start: number, end: number): Chunk__Output | undefined {
  const reader = new FieldReader(bytes, start, end);
  let transferId: number | undefined;
  let offset: number | undefined;
  let data: Buffer | undefined;
  while (!reader.done) {
    const tag = reader.varint();
    if (tag === ((1 << 3) | VARINT) && transferId === undefined) {
      transferId = reader.varint();
      if (transferId > 0xffffffff) return undefined;
    } else if (tag === ((2 << 3) | VARINT) && offset === undefined) {
      offset = reader.varint();
    } else if (tag === ((3 << 3) | LEN) && data === undefined) {
      const [from, to] = reader.span();
      data = bytes.subarray(from, to);
    } else {
      return undefined;
    }
  }
  return reader.fail ? undefined : { transferId: transferId ?? 0, offset: offset ?? 0, data: data ?? Buffer.alloc(0) };
}

/**
 * Decodes a session message that holds exactly an envelope and a chunk (field `chunkField`);
 * the chunk's data is a view of `bytes`. Undefined for any other message: decode it with
 * protobufjs.
 */
export function decodeChunkMessage(bytes: Buffer, chunkField: number): ChunkMessage | undefined {
  const reader = new FieldReader(bytes, 0, bytes.length);
  let envelope: Envelope__Output | undefined;
  let chunk: Chunk__Output | undefined;
  while (!reader.done) {
    const tag = reader.varint();
    if (tag === ((ENVELOPE_FIELD << 3) | LEN) && envelope === undefined) {
      const [from, to] = reader.span();
      if (reader.fail) return undefined;
      envelope = decodeEnvelope(bytes, from, to);
      if (!envelope) return undefined;
    } else if (tag === ((chunkField << 3) | LEN) && chunk === undefined) {
      const [from, to] = reader.span();
      if (reader.fail) return undefined;
      chunk = decodeChunk(bytes, from, to);
      if (!chunk) return undefined;
    } else {
      return undefined;
    }
  }
  if (reader.fail || !envelope || !chunk) return undefined;
  return { envelope, chunk, body: 'chunk' };
}
