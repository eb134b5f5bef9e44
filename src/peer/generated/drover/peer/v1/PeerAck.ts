// Original file: proto/peer.proto

import type { Long } from '@grpc/proto-loader';

export interface PeerAck {
  'receiverRank'?: (number);
  /**
   * Elements of the range received.
   */
  'received'?: (number | string | Long);
}

export interface PeerAck__Output {
  'receiverRank': (number);
  /**
   * Elements of the range received.
   */
  'received': (number);
}
