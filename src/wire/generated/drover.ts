import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Capabilities as _drover_v1_Capabilities, Capabilities__Output as _drover_v1_Capabilities__Output } from './drover/v1/Capabilities.ts';
import type { Chunk as _drover_v1_Chunk, Chunk__Output as _drover_v1_Chunk__Output } from './drover/v1/Chunk.ts';
import type { CoordinatorClient as _drover_v1_CoordinatorClient, CoordinatorDefinition as _drover_v1_CoordinatorDefinition } from './drover/v1/Coordinator.ts';
import type { CoordinatorMessage as _drover_v1_CoordinatorMessage, CoordinatorMessage__Output as _drover_v1_CoordinatorMessage__Output } from './drover/v1/CoordinatorMessage.ts';
import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from './drover/v1/Envelope.ts';
import type { EvaluationResult as _drover_v1_EvaluationResult, EvaluationResult__Output as _drover_v1_EvaluationResult__Output } from './drover/v1/EvaluationResult.ts';
import type { GradientResult as _drover_v1_GradientResult, GradientResult__Output as _drover_v1_GradientResult__Output } from './drover/v1/GradientResult.ts';
import type { JoinReply as _drover_v1_JoinReply, JoinReply__Output as _drover_v1_JoinReply__Output } from './drover/v1/JoinReply.ts';
import type { JoinRequest as _drover_v1_JoinRequest, JoinRequest__Output as _drover_v1_JoinRequest__Output } from './drover/v1/JoinRequest.ts';
import type { LeaveReply as _drover_v1_LeaveReply, LeaveReply__Output as _drover_v1_LeaveReply__Output } from './drover/v1/LeaveReply.ts';
import type { LeaveRequest as _drover_v1_LeaveRequest, LeaveRequest__Output as _drover_v1_LeaveRequest__Output } from './drover/v1/LeaveRequest.ts';
import type { Ready as _drover_v1_Ready, Ready__Output as _drover_v1_Ready__Output } from './drover/v1/Ready.ts';
import type { Shard as _drover_v1_Shard, Shard__Output as _drover_v1_Shard__Output } from './drover/v1/Shard.ts';
import type { SkippedSample as _drover_v1_SkippedSample, SkippedSample__Output as _drover_v1_SkippedSample__Output } from './drover/v1/SkippedSample.ts';
import type { Stop as _drover_v1_Stop, Stop__Output as _drover_v1_Stop__Output } from './drover/v1/Stop.ts';
import type { TaskAssignment as _drover_v1_TaskAssignment, TaskAssignment__Output as _drover_v1_TaskAssignment__Output } from './drover/v1/TaskAssignment.ts';
import type { TaskFailure as _drover_v1_TaskFailure, TaskFailure__Output as _drover_v1_TaskFailure__Output } from './drover/v1/TaskFailure.ts';
import type { TensorSpec as _drover_v1_TensorSpec, TensorSpec__Output as _drover_v1_TensorSpec__Output } from './drover/v1/TensorSpec.ts';
import type { Timings as _drover_v1_Timings, Timings__Output as _drover_v1_Timings__Output } from './drover/v1/Timings.ts';
import type { Transfer as _drover_v1_Transfer, Transfer__Output as _drover_v1_Transfer__Output } from './drover/v1/Transfer.ts';
import type { WeightBroadcast as _drover_v1_WeightBroadcast, WeightBroadcast__Output as _drover_v1_WeightBroadcast__Output } from './drover/v1/WeightBroadcast.ts';
import type { WorkerMessage as _drover_v1_WorkerMessage, WorkerMessage__Output as _drover_v1_WorkerMessage__Output } from './drover/v1/WorkerMessage.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  drover: {
    v1: {
      Capabilities: MessageTypeDefinition<_drover_v1_Capabilities, _drover_v1_Capabilities__Output>
      Chunk: MessageTypeDefinition<_drover_v1_Chunk, _drover_v1_Chunk__Output>
      Coordinator: SubtypeConstructor<typeof grpc.Client, _drover_v1_CoordinatorClient> & { service: _drover_v1_CoordinatorDefinition }
      CoordinatorMessage: MessageTypeDefinition<_drover_v1_CoordinatorMessage, _drover_v1_CoordinatorMessage__Output>
      DType: EnumTypeDefinition
      Envelope: MessageTypeDefinition<_drover_v1_Envelope, _drover_v1_Envelope__Output>
      EvaluationResult: MessageTypeDefinition<_drover_v1_EvaluationResult, _drover_v1_EvaluationResult__Output>
      GradientResult: MessageTypeDefinition<_drover_v1_GradientResult, _drover_v1_GradientResult__Output>
      JoinReply: MessageTypeDefinition<_drover_v1_JoinReply, _drover_v1_JoinReply__Output>
      JoinRequest: MessageTypeDefinition<_drover_v1_JoinRequest, _drover_v1_JoinRequest__Output>
      LeaveReply: MessageTypeDefinition<_drover_v1_LeaveReply, _drover_v1_LeaveReply__Output>
      LeaveRequest: MessageTypeDefinition<_drover_v1_LeaveRequest, _drover_v1_LeaveRequest__Output>
      Ready: MessageTypeDefinition<_drover_v1_Ready, _drover_v1_Ready__Output>
      SampleEncoding: EnumTypeDefinition
      Shard: MessageTypeDefinition<_drover_v1_Shard, _drover_v1_Shard__Output>
      SkippedSample: MessageTypeDefinition<_drover_v1_SkippedSample, _drover_v1_SkippedSample__Output>
      Stop: MessageTypeDefinition<_drover_v1_Stop, _drover_v1_Stop__Output>
      TaskAssignment: MessageTypeDefinition<_drover_v1_TaskAssignment, _drover_v1_TaskAssignment__Output>
      TaskFailure: MessageTypeDefinition<_drover_v1_TaskFailure, _drover_v1_TaskFailure__Output>
      TaskKind: EnumTypeDefinition
      TensorEncoding: EnumTypeDefinition
      TensorSpec: MessageTypeDefinition<_drover_v1_TensorSpec, _drover_v1_TensorSpec__Output>
      Timings: MessageTypeDefinition<_drover_v1_Timings, _drover_v1_Timings__Output>
      Transfer: MessageTypeDefinition<_drover_v1_Transfer, _drover_v1_Transfer__Output>
      WeightBroadcast: MessageTypeDefinition<_drover_v1_WeightBroadcast, _drover_v1_WeightBroadcast__Output>
      WorkerMessage: MessageTypeDefinition<_drover_v1_WorkerMessage, _drover_v1_WorkerMessage__Output>
    }
  }
}

