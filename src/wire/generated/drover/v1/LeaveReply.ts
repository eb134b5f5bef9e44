// Original file: proto/drover.proto

import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from '../../drover/v1/Envelope.ts';

export interface LeaveReply {
  'envelope'?: (_drover_v1_Envelope | null);
}

export interface LeaveReply__Output {
  'envelope': (_drover_v1_Envelope__Output | null);
}
