// Original file: proto/drover.proto

import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from '../../drover/v1/Envelope.ts';
import type { WeightBroadcast as _drover_v1_WeightBroadcast, WeightBroadcast__Output as _drover_v1_WeightBroadcast__Output } from '../../drover/v1/WeightBroadcast.ts';
import type { TaskAssignment as _drover_v1_TaskAssignment, TaskAssignment__Output as _drover_v1_TaskAssignment__Output } from '../../drover/v1/TaskAssignment.ts';
import type { Chunk as _drover_v1_Chunk, Chunk__Output as _drover_v1_Chunk__Output } from '../../drover/v1/Chunk.ts';
import type { Stop as _drover_v1_Stop, Stop__Output as _drover_v1_Stop__Output } from '../../drover/v1/Stop.ts';
import type { StepCommit as _drover_v1_StepCommit, StepCommit__Output as _drover_v1_StepCommit__Output } from '../../drover/v1/StepCommit.ts';
import type { StepAbort as _drover_v1_StepAbort, StepAbort__Output as _drover_v1_StepAbort__Output } from '../../drover/v1/StepAbort.ts';
import type { StateRequest as _drover_v1_StateRequest, StateRequest__Output as _drover_v1_StateRequest__Output } from '../../drover/v1/StateRequest.ts';

export interface CoordinatorMessage {
  'envelope'?: (_drover_v1_Envelope | null);
  'weights'?: (_drover_v1_WeightBroadcast | null);
  'task'?: (_drover_v1_TaskAssignment | null);
  'chunk'?: (_drover_v1_Chunk | null);
  'stop'?: (_drover_v1_Stop | null);
  'commit'?: (_drover_v1_StepCommit | null);
  'abort'?: (_drover_v1_StepAbort | null);
  'stateRequest'?: (_drover_v1_StateRequest | null);
  'body'?: "weights"|"task"|"chunk"|"stop"|"commit"|"abort"|"stateRequest";
}

export interface CoordinatorMessage__Output {
  'envelope': (_drover_v1_Envelope__Output | null);
  'weights'?: (_drover_v1_WeightBroadcast__Output | null);
  'task'?: (_drover_v1_TaskAssignment__Output | null);
  'chunk'?: (_drover_v1_Chunk__Output | null);
  'stop'?: (_drover_v1_Stop__Output | null);
  'commit'?: (_drover_v1_StepCommit__Output | null);
  'abort'?: (_drover_v1_StepAbort__Output | null);
  'stateRequest'?: (_drover_v1_StateRequest__Output | null);
  'body'?: "weights"|"task"|"chunk"|"stop"|"commit"|"abort"|"stateRequest";
}
