// Original file: proto/peer.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { PeerAck as _drover_peer_v1_PeerAck, PeerAck__Output as _drover_peer_v1_PeerAck__Output } from '../../../drover/peer/v1/PeerAck.ts';
import type { PeerChunk as _drover_peer_v1_PeerChunk, PeerChunk__Output as _drover_peer_v1_PeerChunk__Output } from '../../../drover/peer/v1/PeerChunk.ts';

export interface PeerClient extends grpc.Client {
  /**
   * Streams one range to its receiver. Answered once the whole range is in; refused with
   * UNAUTHENTICATED (token), FAILED_PRECONDITION (other job or version, a step or generation the
   * receiver no longer expects), INVALID_ARGUMENT (a chunk that does not fit the range it names),
   * RESOURCE_EXHAUSTED (too many streams waiting) or DEADLINE_EXCEEDED (never expected in time).
   */
  Push(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  Push(metadata: grpc.Metadata, callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  Push(options: grpc.CallOptions, callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  Push(callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  /**
   * Streams one range to its receiver. Answered once the whole range is in; refused with
   * UNAUTHENTICATED (token), FAILED_PRECONDITION (other job or version, a step or generation the
   * receiver no longer expects), INVALID_ARGUMENT (a chunk that does not fit the range it names),
   * RESOURCE_EXHAUSTED (too many streams waiting) or DEADLINE_EXCEEDED (never expected in time).
   */
  push(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  push(metadata: grpc.Metadata, callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  push(options: grpc.CallOptions, callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  push(callback: grpc.requestCallback<_drover_peer_v1_PeerAck__Output>): grpc.ClientWritableStream<_drover_peer_v1_PeerChunk>;
  
}

export interface PeerHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Streams one range to its receiver. Answered once the whole range is in; refused with
   * UNAUTHENTICATED (token), FAILED_PRECONDITION (other job or version, a step or generation the
   * receiver no longer expects), INVALID_ARGUMENT (a chunk that does not fit the range it names),
   * RESOURCE_EXHAUSTED (too many streams waiting) or DEADLINE_EXCEEDED (never expected in time).
   */
  Push: grpc.handleClientStreamingCall<_drover_peer_v1_PeerChunk__Output, _drover_peer_v1_PeerAck>;
  
}

export interface PeerDefinition extends grpc.ServiceDefinition {
  Push: MethodDefinition<_drover_peer_v1_PeerChunk, _drover_peer_v1_PeerAck, _drover_peer_v1_PeerChunk__Output, _drover_peer_v1_PeerAck__Output>
}
