import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/drover.ts';
import type { CoordinatorClient, CoordinatorDefinition } from './generated/drover/v1/Coordinator.ts';
import type { CoordinatorMessage, CoordinatorMessage__Output } from './generated/drover/v1/CoordinatorMessage.ts';
import type { Envelope } from './generated/drover/v1/Envelope.ts';
import type { WorkerMessage, WorkerMessage__Output } from './generated/drover/v1/WorkerMessage.ts';

/**
 * Version of the wire contract in proto/drover.proto. Bump it on any change a peer of the
 * previous version would misread; both sides refuse a mismatch with FAILED_PRECONDITION.
 */
export const PROTOCOL_VERSION = 1;

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

/** The exact (de)serialization of the Session stream's messages. */
export function sessionCodec(): SessionCodec {
  const session = (packageDefinition()['drover.v1.Coordinator'] as protoLoader.ServiceDefinition).Session!;
  return {
    encodeWorkerMessage: (m) => session.requestSerialize(m),
    decodeWorkerMessage: (b) => session.requestDeserialize(b) as WorkerMessage__Output,
    encodeCoordinatorMessage: (m) => session.responseSerialize(m),
    decodeCoordinatorMessage: (b) => session.responseDeserialize(b) as CoordinatorMessage__Output,
  };
}

/**
 * The Coordinator service definition, for `server.addService`. Session messages are serialized
 * once per message object: a weight broadcast is one array of messages written to every
 * worker's stream, so N workers cost one protobuf encoding of the model, not N.
 */
export function coordinatorService(): CoordinatorDefinition {
  const service = loadProtocol().drover.v1.Coordinator.service;
  const session = service.Session;
  const encoded = new WeakMap<object, Buffer>();
  const serialize = (message: CoordinatorMessage): Buffer => {
    let bytes = encoded.get(message);
    if (!bytes) {
      bytes = session.responseSerialize(message);
      encoded.set(message, bytes);
    }
    return bytes;
  };
  return { ...service, Session: { ...session, responseSerialize: serialize } };
}

/** A client of the Coordinator service. */
export function createCoordinatorClient(address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): CoordinatorClient {
  const Client = loadProtocol().drover.v1.Coordinator;
  return new Client(address, credentials, options);
}

/** The envelope every top-level message carries. */
export function envelope(jobId: string): Envelope {
  return { jobId, protocolVersion: PROTOCOL_VERSION };
}
