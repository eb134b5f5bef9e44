import { createRequire } from 'node:module';
import { checkGrpcJsVersion, missingInternal } from './grpc-internals.ts';

/**
 * gRPC frames every message as [compressed flag, 4-byte big-endian length, message]. grpc-js
 * builds that frame by copying the serialized message into a new buffer, once per stream: a
 * weight broadcast to N workers costs N copies (and N allocations the garbage collector must
 * chase) of the whole model every step. A serializer that also offers a *framed* variant lets
 * every stream write the same frame instead.
 *
 * grpc-js has no option for this, so `installFramedSerialize` wraps its server call's
 * `serializeMessage` (an internal method): when the method's serializer carries a framed variant
 * that one is used, otherwise grpc-js does what it always did. It refuses (GrpcInternalsError)
 * a grpc-js other than the tested one, or one without that method (src/wire/grpc-internals.ts).
 */

/** Bytes of gRPC's message prefix. */
export const FRAME_PREFIX_BYTES = 5;

const FRAMED = Symbol('drover.framedSerialize');

type Serialize<T> = (value: T) => Buffer;
type WithFramed<T> = Serialize<T> & { [FRAMED]?: Serialize<T> };

/** Writes gRPC's prefix (uncompressed, length) into the first 5 bytes of `frame`, whose message follows. */
export function writeFramePrefix(frame: Buffer): Buffer {
  frame[0] = 0;
  frame.writeUInt32BE(frame.length - FRAME_PREFIX_BYTES, 1);
  return frame;
}

/**
 * A serializer for gRPC method definitions built from `framed` (which returns whole frames):
 * grpc-js with the hook installed writes the frames as they are; anything else gets the message.
 */
export function framedSerializer<T>(framed: Serialize<T>): Serialize<T> {
  const serialize: WithFramed<T> = (value) => framed(value).subarray(FRAME_PREFIX_BYTES);
  serialize[FRAMED] = framed;
  return serialize;
}

type ServerCallPrototype = { serializeMessage?: (this: { handler?: { serialize?: WithFramed<unknown> } }, value: unknown) => Buffer };

/** Where the patched method lives, in grpc-js's build. */
const SERVER_CALL_MODULE = '@grpc/grpc-js/build/src/server-interceptors.js';
const INTERNAL = 'BaseServerInterceptingCall.prototype.serializeMessage';

let installed = false;

/**
 * Makes grpc-js server calls use framed serializers (once per process). Throws
 * GrpcInternalsError when grpc-js is not the tested version or lacks the method.
 */
export function installFramedSerialize(): void {
  if (installed) return;
  checkGrpcJsVersion(INTERNAL);
  const require = createRequire(import.meta.url);
  const internals = require(SERVER_CALL_MODULE) as { BaseServerInterceptingCall?: { prototype: ServerCallPrototype } };
  const prototype = internals.BaseServerInterceptingCall?.prototype;
  const original = prototype?.serializeMessage;
  if (!prototype || typeof original !== 'function') throw missingInternal(INTERNAL);
  prototype.serializeMessage = function (value) {
    const framed = this.handler?.serialize?.[FRAMED];
    return framed ? framed(value) : original.call(this, value);
  };
  installed = true;
}
