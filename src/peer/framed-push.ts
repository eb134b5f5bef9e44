import { createRequire } from 'node:module';
import { checkGrpcJsVersion, missingInternal } from '../wire/grpc-internals.ts';
import { FRAME_PREFIX_BYTES, writeFramePrefix } from '../wire/framed-serialize.ts';
import type { PeerChunk } from './generated/drover/peer/v1/PeerChunk.ts';
import { MAX_PEER_MESSAGE_BYTES } from './protocol.ts';

/**
 * The send side of a Push copies each chunk's payload once, into the gRPC frame that goes to
 * the socket. Left to itself, grpc-js with proto-loader copies it three times: protobufjs
 * encodes the message (copy), proto-loader turns the result into a Buffer (copy), and the
 * client's compression filter frames it (copy), all for ~150 MB a step per worker at 25 M
 * parameters and 4 ranks, plus as many short-lived buffers for the garbage collector.
 *
 * `framedChunkSerializer` encodes the small header fields with the contract's own serializer,
 * then writes the payload field by hand behind them in a buffer that has room for gRPC's 5-byte
 * prefix, and returns the message as a view of that frame. `installClientFramedWrite` makes the
 * client's identity "compression" (an internal of grpc-js, as in src/wire/framed-serialize.ts
 * for the server) send such a frame as it is instead of copying the message into a new one.
 * Other messages are framed as grpc-js always did.
 *
 * Frames of full chunks come from a small pool and go back to it once gRPC wrote them
 * (`releaseChunkFrame`, from the write's callback): a new 1 MiB buffer per chunk is external
 * memory that makes V8 run a full garbage collection every few dozen megabytes sent, and those
 * collections were a third of a peer's CPU. The write callback means "written" only with gRPC's
 * retry buffering off (PeerLink's channel options); else grpc-js calls it early for small messages.
 */

/** Frames of messages built by `framedChunkSerializer`, keyed by the message view. */
const frames = new WeakMap<Buffer, Buffer>();
/** Pooled frames, by the chunk they carry, until their write completes. */
const pooledFrames = new WeakMap<PeerChunk, Buffer>();

/** Frames kept free at most (per process; in flight there can be more, allocated anew). */
const POOL_SIZE = 32;
const freeFrames: Buffer[] = [];

/** Hands a chunk's frame back to the pool: call it once gRPC wrote the chunk (the write callback). */
export function releaseChunkFrame(chunk: PeerChunk): void {
  const frame = pooledFrames.get(chunk);
  if (!frame) return;
  pooledFrames.delete(chunk);
  if (freeFrames.length < POOL_SIZE) freeFrames.push(frame);
}

/** A frame of `size` bytes: a view of a pooled one when it fits (tied to `chunk`), else a new buffer. */
function frameFor(chunk: PeerChunk, size: number): Buffer {
  // Room of a pooled frame: a full chunk's message and prefix (read here: protocol.ts imports this module).
  const room = FRAME_PREFIX_BYTES + MAX_PEER_MESSAGE_BYTES;
  if (size > room) return Buffer.allocUnsafe(size);
  const pooled = freeFrames.pop() ?? Buffer.allocUnsafeSlow(room);
  pooledFrames.set(chunk, pooled);
  return pooled.subarray(0, size);
}

/** Tag of PeerChunk.payload: field 11, length-delimited (proto/peer.proto). */
const PAYLOAD_TAG = (11 << 3) | 2;

/** Bytes of `value` as a protobuf varint. */
function varintLength(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    bytes++;
  }
  return bytes;
}

/**
 * A Push request serializer from the contract's own (`serialize`, used for everything but the
 * payload): the same bytes on the wire, one copy of the payload.
 */
export function framedChunkSerializer(serialize: (chunk: PeerChunk) => Buffer): (chunk: PeerChunk) => Buffer {
  return (chunk) => {
    const payload = chunk.payload as Uint8Array | undefined;
    if (!payload || payload.byteLength === 0) return serialize(chunk);
    const header = serialize({ ...chunk, payload: undefined });
    const length = payload.byteLength;
    const frame = frameFor(chunk, FRAME_PREFIX_BYTES + header.length + 1 + varintLength(length) + length);
    let at = FRAME_PREFIX_BYTES;
    frame.set(header, at);
    at += header.length;
    frame[at++] = PAYLOAD_TAG;
    for (let rest = length; ; ) {
      if (rest < 0x80) {
        frame[at++] = rest;
        break;
      }
      frame[at++] = (rest & 0x7f) | 0x80;
      rest = Math.floor(rest / 128);
    }
    frame.set(payload, at);
    writeFramePrefix(frame);
    const message = frame.subarray(FRAME_PREFIX_BYTES);
    frames.set(message, frame);
    return message;
  };
}

type WriteMessage = (this: unknown, message: Buffer, compress: boolean) => Promise<Buffer>;

const COMPRESSION_MODULE = '@grpc/grpc-js/build/src/compression-filter.js';
const INTERNAL = 'IdentityHandler.prototype.writeMessage (compression-filter.js)';

let installed = false;

/**
 * Makes grpc-js clients send frames built by `framedChunkSerializer` without copying them
 * (once per process). Throws GrpcInternalsError when grpc-js is not the tested version or the
 * internal is not where it was.
 */
export function installClientFramedWrite(): void {
  if (installed) return;
  checkGrpcJsVersion(INTERNAL);
  const require = createRequire(import.meta.url);
  const internals = require(COMPRESSION_MODULE) as { CompressionFilter?: new (options: object, shared: object) => { sendCompression?: object } };
  // IdentityHandler is not exported: a filter's default send handler is one.
  const identity = internals.CompressionFilter ? new internals.CompressionFilter({}, {}).sendCompression : undefined;
  const prototype = identity ? (Object.getPrototypeOf(identity) as { writeMessage?: WriteMessage }) : undefined;
  const original = prototype?.writeMessage;
  if (!prototype || typeof original !== 'function' || prototype.constructor?.name !== 'IdentityHandler') throw missingInternal(INTERNAL);
  prototype.writeMessage = function (message, compress) {
    const frame = frames.get(message);
    return frame ? Promise.resolve(frame) : original.call(this, message, compress);
  };
  installed = true;
}
