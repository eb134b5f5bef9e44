import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { LOAD_OPTIONS, MAX_CHUNK_BYTES } from '../wire/protocol.ts';
import type { ProtoGrpcType } from './generated/peer.ts';
import { framedChunkSerializer, installClientFramedWrite } from './framed-push.ts';
import type { PeerClient, PeerDefinition } from './generated/drover/peer/v1/Peer.ts';

/**
 * Version of the peer contract in proto/peer.proto. Bump it on any change a worker of the
 * previous version would misread; a receiver refuses a mismatch with FAILED_PRECONDITION.
 */
export const PEER_PROTOCOL_VERSION = 1;

/** The contract file. */
export const PEER_PROTO_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto/peer.proto');

/** Largest payload of one PeerChunk: the coordinator's chunk size, far below gRPC's 4 MiB default. */
export const MAX_PEER_CHUNK_BYTES = MAX_CHUNK_BYTES;

/** Largest message a peer accepts: a full chunk plus its header fields. Bigger is refused by gRPC itself. */
export const MAX_PEER_MESSAGE_BYTES = MAX_PEER_CHUNK_BYTES + 4096;

export type Phase = 'scatter' | 'gather';
export type Encoding = 'fp32' | 'bf16';

/** Bytes a value takes on the wire. */
export function bytesPerValue(encoding: Encoding): number {
  return encoding === 'bf16' ? 2 : 4;
}

export const PHASE_ON_WIRE = { scatter: 'PHASE_SCATTER', gather: 'PHASE_GATHER' } as const;
export const ENCODING_ON_WIRE = { fp32: 'ENCODING_FP32', bf16: 'ENCODING_BF16' } as const;

/** The phase a wire value names, or undefined for an unknown one. */
export function phaseFromWire(value: string): Phase | undefined {
  return value === 'PHASE_SCATTER' ? 'scatter' : value === 'PHASE_GATHER' ? 'gather' : undefined;
}

/** The encoding a wire value names, or undefined for an unknown one. */
export function encodingFromWire(value: string): Encoding | undefined {
  return value === 'ENCODING_FP32' ? 'fp32' : value === 'ENCODING_BF16' ? 'bf16' : undefined;
}

let loaded: ProtoGrpcType | undefined;

/** The loaded contract (parsed once per process), with the same options as drover.proto's. */
export function loadPeerProtocol(): ProtoGrpcType {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(PEER_PROTO_FILE, LOAD_OPTIONS)) as unknown as ProtoGrpcType;
  return loaded;
}

/** The Peer service definition, for `server.addService`. */
export function peerService(): PeerDefinition {
  return loadPeerProtocol().drover.peer.v1.Peer.service;
}

let PeerClientWithFrames: grpc.ServiceClientConstructor | undefined;

/**
 * A client of one worker's Peer service, whose Push chunks are framed with one copy of their
 * payload (src/peer/framed-push.ts).
 */
export function createPeerClient(address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): PeerClient {
  if (!PeerClientWithFrames) {
    installClientFramedWrite();
    const service = peerService();
    const push = service.Push;
    PeerClientWithFrames = grpc.makeClientConstructor({ ...service, Push: { ...push, requestSerialize: framedChunkSerializer(push.requestSerialize) } } as grpc.ServiceDefinition, 'Peer');
  }
  return new PeerClientWithFrames(address, credentials, options) as unknown as PeerClient;
}
