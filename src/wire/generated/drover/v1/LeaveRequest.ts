// Original file: proto/drover.proto

import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from '../../drover/v1/Envelope.ts';

export interface LeaveRequest {
  'envelope'?: (_drover_v1_Envelope | null);
  'workerId'?: (string);
  'reason'?: (string);
  /**
   * The session_key of worker_id's JoinReply.
   */
  'sessionKey'?: (string);
}

export interface LeaveRequest__Output {
  'envelope': (_drover_v1_Envelope__Output | null);
  'workerId': (string);
  'reason': (string);
  /**
   * The session_key of worker_id's JoinReply.
   */
  'sessionKey': (string);
}
