// Original file: proto/drover.proto

import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from '../../drover/v1/Envelope.ts';
import type { WeightBroadcast as _drover_v1_WeightBroadcast, WeightBroadcast__Output as _drover_v1_WeightBroadcast__Output } from '../../drover/v1/WeightBroadcast.ts';
import type { TaskAssignment as _drover_v1_TaskAssignment, TaskAssignment__Output as _drover_v1_TaskAssignment__Output } from '../../drover/v1/TaskAssignment.ts';
import type { Chunk as _drover_v1_Chunk, Chunk__Output as _drover_v1_Chunk__Output } from '../../drover/v1/Chunk.ts';
import type { Stop as _drover_v1_Stop, Stop__Output as _drover_v1_Stop__Output } from '../../drover/v1/Stop.ts';

export interface CoordinatorMessage {
  'envelope'?: (_drover_v1_Envelope | null);
  'weights'?: (_drover_v1_WeightBroadcast | null);
  'task'?: (_drover_v1_TaskAssignment | null);
  'chunk'?: (_drover_v1_Chunk | null);
  'stop'?: (_drover_v1_Stop | null);
  'body'?: "weights"|"task"|"chunk"|"stop";
}

export interface CoordinatorMessage__Output {
  'envelope': (_drover_v1_Envelope__Output | null);
  'weights'?: (_drover_v1_WeightBroadcast__Output | null);
  'task'?: (_drover_v1_TaskAssignment__Output | null);
  'chunk'?: (_drover_v1_Chunk__Output | null);
  'stop'?: (_drover_v1_Stop__Output | null);
  'body'?: "weights"|"task"|"chunk"|"stop";
}
