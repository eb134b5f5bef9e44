// Original file: proto/drover.proto

import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from '../../drover/v1/Envelope.ts';
import type { Ready as _drover_v1_Ready, Ready__Output as _drover_v1_Ready__Output } from '../../drover/v1/Ready.ts';
import type { GradientResult as _drover_v1_GradientResult, GradientResult__Output as _drover_v1_GradientResult__Output } from '../../drover/v1/GradientResult.ts';
import type { EvaluationResult as _drover_v1_EvaluationResult, EvaluationResult__Output as _drover_v1_EvaluationResult__Output } from '../../drover/v1/EvaluationResult.ts';
import type { Chunk as _drover_v1_Chunk, Chunk__Output as _drover_v1_Chunk__Output } from '../../drover/v1/Chunk.ts';
import type { TaskFailure as _drover_v1_TaskFailure, TaskFailure__Output as _drover_v1_TaskFailure__Output } from '../../drover/v1/TaskFailure.ts';
import type { PeerReduced as _drover_v1_PeerReduced, PeerReduced__Output as _drover_v1_PeerReduced__Output } from '../../drover/v1/PeerReduced.ts';
import type { PeerFault as _drover_v1_PeerFault, PeerFault__Output as _drover_v1_PeerFault__Output } from '../../drover/v1/PeerFault.ts';
import type { StateReply as _drover_v1_StateReply, StateReply__Output as _drover_v1_StateReply__Output } from '../../drover/v1/StateReply.ts';

export interface WorkerMessage {
  'envelope'?: (_drover_v1_Envelope | null);
  'ready'?: (_drover_v1_Ready | null);
  'gradient'?: (_drover_v1_GradientResult | null);
  'evaluation'?: (_drover_v1_EvaluationResult | null);
  'chunk'?: (_drover_v1_Chunk | null);
  'failure'?: (_drover_v1_TaskFailure | null);
  'reduced'?: (_drover_v1_PeerReduced | null);
  'peerFault'?: (_drover_v1_PeerFault | null);
  'state'?: (_drover_v1_StateReply | null);
  'body'?: "ready"|"gradient"|"evaluation"|"chunk"|"failure"|"reduced"|"peerFault"|"state";
}

export interface WorkerMessage__Output {
  'envelope': (_drover_v1_Envelope__Output | null);
  'ready'?: (_drover_v1_Ready__Output | null);
  'gradient'?: (_drover_v1_GradientResult__Output | null);
  'evaluation'?: (_drover_v1_EvaluationResult__Output | null);
  'chunk'?: (_drover_v1_Chunk__Output | null);
  'failure'?: (_drover_v1_TaskFailure__Output | null);
  'reduced'?: (_drover_v1_PeerReduced__Output | null);
  'peerFault'?: (_drover_v1_PeerFault__Output | null);
  'state'?: (_drover_v1_StateReply__Output | null);
  'body'?: "ready"|"gradient"|"evaluation"|"chunk"|"failure"|"reduced"|"peerFault"|"state";
}
