import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { PeerClient as _drover_peer_v1_PeerClient, PeerDefinition as _drover_peer_v1_PeerDefinition } from './drover/peer/v1/Peer.ts';
import type { PeerAck as _drover_peer_v1_PeerAck, PeerAck__Output as _drover_peer_v1_PeerAck__Output } from './drover/peer/v1/PeerAck.ts';
import type { PeerChunk as _drover_peer_v1_PeerChunk, PeerChunk__Output as _drover_peer_v1_PeerChunk__Output } from './drover/peer/v1/PeerChunk.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  drover: {
    peer: {
      v1: {
        Encoding: EnumTypeDefinition
        Peer: SubtypeConstructor<typeof grpc.Client, _drover_peer_v1_PeerClient> & { service: _drover_peer_v1_PeerDefinition }
        PeerAck: MessageTypeDefinition<_drover_peer_v1_PeerAck, _drover_peer_v1_PeerAck__Output>
        PeerChunk: MessageTypeDefinition<_drover_peer_v1_PeerChunk, _drover_peer_v1_PeerChunk__Output>
        Phase: EnumTypeDefinition
      }
    }
  }
}

