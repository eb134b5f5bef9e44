// Original file: proto/drover.proto

import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from '../../drover/v1/Envelope.ts';
import type { Capabilities as _drover_v1_Capabilities, Capabilities__Output as _drover_v1_Capabilities__Output } from '../../drover/v1/Capabilities.ts';

export interface JoinRequest {
  'envelope'?: (_drover_v1_Envelope | null);
  'capabilities'?: (_drover_v1_Capabilities | null);
  /**
   * Optional human name; the coordinator makes ids unique.
   */
  'name'?: (string);
}

export interface JoinRequest__Output {
  'envelope': (_drover_v1_Envelope__Output | null);
  'capabilities': (_drover_v1_Capabilities__Output | null);
  /**
   * Optional human name; the coordinator makes ids unique.
   */
  'name': (string);
}
