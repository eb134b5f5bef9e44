import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/drover.ts';
import type { CoordinatorClient, CoordinatorDefinition } from './generated/drover/v1/Coordinator.ts';
import type { CoordinatorMessage, CoordinatorMessage__Output } from './generated/drover/v1/CoordinatorMessage.ts';
import type { Envelope } from './generated/drover/v1/Envelope.ts';
import type { WorkerMessage, WorkerMessage__Output } from './generated/drover/v1/WorkerMessage.ts';
import { COORDINATOR_CHUNK_FIELD, decodeChunkMessage, encodeChunkMessage, WORKER_CHUNK_FIELD } from './chunk-codec.ts';
import { FRAME_PREFIX_BYTES, framedSerializer, installFramedSerialize, writeFramePrefix } from './framed-serialize.ts';

/**
 * Version of the wire contract in proto/drover.proto. Bump it on any change a peer of the
 * previous version would misread; both sides refuse a mismatch with FAILED_PRECONDITION.
 */
export const PROTOCOL_VERSION = 4;

/** The contract file. */
export const PROTO_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto/drover.proto');

/**
 * How proto-loader turns messages into JS objects. `proto:types` (src/wire/generate-types.ts)
 * derives the generator's flags from this object, so the generated types describe exactly what
 * loadSync produces at run time.
 */
export const LOAD_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const satisfies protoLoader.Options;

/** Largest payload of one Chunk message: ~1 MiB keeps every message far below gRPC's 4 MiB default. */
export const MAX_CHUNK_BYTES = 1024 * 1024;

/**
 * Largest message either side accepts: a full chunk plus its envelope, or an assignment with a
 * few thousand sample ids. Anything bigger is refused by gRPC before it reaches drover.
 */
export const MAX_MESSAGE_BYTES = MAX_CHUNK_BYTES + 256 * 1024;

let definition: protoLoader.PackageDefinition | undefined;
let loaded: ProtoGrpcType | undefined;

function packageDefinition(): protoLoader.PackageDefinition {
  definition ??= protoLoader.loadSync(PROTO_FILE, LOAD_OPTIONS);
  return definition;
}

/** The loaded contract (parsed once per process). */
export function loadProtocol(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(packageDefinition()) as unknown as ProtoGrpcType;
  return loaded;
}

/** The serializers gRPC uses for the session stream, for tests and size checks without a socket. */
export interface SessionCodec {
  encodeWorkerMessage(message: WorkerMessage): Buffer;
  decodeWorkerMessage(bytes: Buffer): WorkerMessage__Output;
  encodeCoordinatorMessage(message: CoordinatorMessage): Buffer;
  decodeCoordinatorMessage(bytes: Buffer): CoordinatorMessage__Output;
}

function sessionMethod(): protoLoader.MethodDefinition<object, object> {
  return (packageDefinition()['drover.v1.Coordinator'] as protoLoader.ServiceDefinition).Session!;
}

/** Plain protobufjs (de)serialization of the Session stream: the reference any protobuf peer uses. */
export function protobufSessionCodec(): SessionCodec {
  const session = sessionMethod();
  return {
    encodeWorkerMessage: (m) => session.requestSerialize(m),
    decodeWorkerMessage: (b) => session.requestDeserialize(b) as WorkerMessage__Output,
    encodeCoordinatorMessage: (m) => session.responseSerialize(m),
    decodeCoordinatorMessage: (b) => session.responseDeserialize(b) as CoordinatorMessage__Output,
  };
}

/**
 * The exact (de)serialization of the Session stream's messages as drover sends and reads them:
 * chunk messages by the hand-written codec (src/wire/chunk-codec.ts), the rest by protobufjs.
 */
export function sessionCodec(): SessionCodec {
  const reference = protobufSessionCodec();
  return {
    encodeWorkerMessage: (m) => encodeChunkMessage(m, WORKER_CHUNK_FIELD) ?? reference.encodeWorkerMessage(m),
    decodeWorkerMessage: (b) => (decodeChunkMessage(b, WORKER_CHUNK_FIELD) as WorkerMessage__Output | undefined) ?? reference.decodeWorkerMessage(b),
    encodeCoordinatorMessage: (m) => encodeChunkMessage(m, COORDINATOR_CHUNK_FIELD) ?? reference.encodeCoordinatorMessage(m),
    decodeCoordinatorMessage: (b) => (decodeChunkMessage(b, COORDINATOR_CHUNK_FIELD) as CoordinatorMessage__Output | undefined) ?? reference.decodeCoordinatorMessage(b),
  };
}

let protobufCodec: SessionCodec | undefined;

/** A coordinator message as a whole gRPC frame (prefix + message), the chunk's bytes copied once. */
function frameCoordinatorMessage(message: CoordinatorMessage): Buffer {
  const chunk = encodeChunkMessage(message, COORDINATOR_CHUNK_FIELD, FRAME_PREFIX_BYTES);
  if (chunk) return writeFramePrefix(chunk);
  protobufCodec ??= protobufSessionCodec();
  const bytes = protobufCodec.encodeCoordinatorMessage(message);
  const frame = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + bytes.length);
  frame.set(bytes, FRAME_PREFIX_BYTES);
  return writeFramePrefix(frame);
}

/**
 * The Coordinator service definition, for `server.addService`, with the session codec. Session
 * messages are framed once per message object: a weight broadcast is one array of messages
 * written to every worker's stream, so N workers cost one encoding and one copy of the model,
 * not N (src/wire/framed-serialize.ts).
 */
export function coordinatorService(): CoordinatorDefinition {
  installFramedSerialize();
  const service = loadProtocol().drover.v1.Coordinator.service;
  const session = service.Session;
  const codec = sessionCodec();
  const frames = new WeakMap<object, Buffer>();
  const framed = (message: CoordinatorMessage): Buffer => {
    let frame = frames.get(message);
    if (!frame) {
      frame = frameCoordinatorMessage(message);
      frames.set(message, frame);
    }
    return frame;
  };
  return { ...service, Session: { ...session, responseSerialize: framedSerializer(framed), requestDeserialize: codec.decodeWorkerMessage } };
}

/** A client of the Coordinator service, with the session codec. */
export function createCoordinatorClient(address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): CoordinatorClient {
  const service = loadProtocol().drover.v1.Coordinator.service;
  const codec = sessionCodec();
  const Client = grpc.makeClientConstructor(
    { ...service, Session: { ...service.Session, requestSerialize: codec.encodeWorkerMessage, responseDeserialize: codec.decodeCoordinatorMessage } } as grpc.ServiceDefinition,
    'Coordinator',
  );
  return new Client(address, credentials, options) as unknown as CoordinatorClient;
}

/** The envelope every top-level message carries. */
export function envelope(jobId: string): Envelope {
  return { jobId, protocolVersion: PROTOCOL_VERSION };
}
