// Original file: proto/peer.proto

import type { Phase as _drover_peer_v1_Phase, Phase__Output as _drover_peer_v1_Phase__Output } from '../../../drover/peer/v1/Phase.ts';
import type { Encoding as _drover_peer_v1_Encoding, Encoding__Output as _drover_peer_v1_Encoding__Output } from '../../../drover/peer/v1/Encoding.ts';
import type { Long } from '@grpc/proto-loader';

export interface PeerChunk {
  'jobId'?: (string);
  'protocolVersion'?: (number);
  /**
   * Membership generation: raised by the coordinator each time the group of ranks changes, so a
   * step redone by a smaller group never mixes with chunks of the attempt it replaces.
   */
  'generation'?: (number | string | Long);
  'step'?: (number | string | Long);
  'phase'?: (_drover_peer_v1_Phase);
  'senderRank'?: (number);
  /**
   * Index of the range (scatter: the receiver's rank; gather: the sender's).
   */
  'rangeIndex'?: (number);
  /**
   * First element of this chunk, counted from the start of the range.
   */
  'offset'?: (number | string | Long);
  /**
   * Elements in this chunk.
   */
  'count'?: (number);
  'encoding'?: (_drover_peer_v1_Encoding);
  /**
   * count values in `encoding`.
   */
  'payload'?: (Buffer | Uint8Array | string);
}

export interface PeerChunk__Output {
  'jobId': (string);
  'protocolVersion': (number);
  /**
   * Membership generation: raised by the coordinator each time the group of ranks changes, so a
   * step redone by a smaller group never mixes with chunks of the attempt it replaces.
   */
  'generation': (number);
  'step': (number);
  'phase': (_drover_peer_v1_Phase__Output);
  'senderRank': (number);
  /**
   * Index of the range (scatter: the receiver's rank; gather: the sender's).
   */
  'rangeIndex': (number);
  /**
   * First element of this chunk, counted from the start of the range.
   */
  'offset': (number);
  /**
   * Elements in this chunk.
   */
  'count': (number);
  'encoding': (_drover_peer_v1_Encoding__Output);
  /**
   * count values in `encoding`.
   */
  'payload': (Buffer);
}
