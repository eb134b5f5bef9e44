// Original file: proto/drover.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CoordinatorMessage as _drover_v1_CoordinatorMessage, CoordinatorMessage__Output as _drover_v1_CoordinatorMessage__Output } from '../../drover/v1/CoordinatorMessage.ts';
import type { JoinReply as _drover_v1_JoinReply, JoinReply__Output as _drover_v1_JoinReply__Output } from '../../drover/v1/JoinReply.ts';
import type { JoinRequest as _drover_v1_JoinRequest, JoinRequest__Output as _drover_v1_JoinRequest__Output } from '../../drover/v1/JoinRequest.ts';
import type { LeaveReply as _drover_v1_LeaveReply, LeaveReply__Output as _drover_v1_LeaveReply__Output } from '../../drover/v1/LeaveReply.ts';
import type { LeaveRequest as _drover_v1_LeaveRequest, LeaveRequest__Output as _drover_v1_LeaveRequest__Output } from '../../drover/v1/LeaveRequest.ts';
import type { WorkerMessage as _drover_v1_WorkerMessage, WorkerMessage__Output as _drover_v1_WorkerMessage__Output } from '../../drover/v1/WorkerMessage.ts';

export interface CoordinatorClient extends grpc.Client {
  /**
   * Asks to join a job. Refused with UNAUTHENTICATED (bad token), FAILED_PRECONDITION (other
   * job or protocol version) or UNAVAILABLE (job full or failed).
   */
  Join(argument: _drover_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  Join(argument: _drover_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  Join(argument: _drover_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  Join(argument: _drover_v1_JoinRequest, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  /**
   * Asks to join a job. Refused with UNAUTHENTICATED (bad token), FAILED_PRECONDITION (other
   * job or protocol version) or UNAVAILABLE (job full or failed).
   */
  join(argument: _drover_v1_JoinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  join(argument: _drover_v1_JoinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  join(argument: _drover_v1_JoinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  join(argument: _drover_v1_JoinRequest, callback: grpc.requestCallback<_drover_v1_JoinReply__Output>): grpc.ClientUnaryCall;
  
  /**
   * Leaves the job; the worker's outstanding tasks are reassigned.
   */
  Leave(argument: _drover_v1_LeaveRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  Leave(argument: _drover_v1_LeaveRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  Leave(argument: _drover_v1_LeaveRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  Leave(argument: _drover_v1_LeaveRequest, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  /**
   * Leaves the job; the worker's outstanding tasks are reassigned.
   */
  leave(argument: _drover_v1_LeaveRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  leave(argument: _drover_v1_LeaveRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  leave(argument: _drover_v1_LeaveRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  leave(argument: _drover_v1_LeaveRequest, callback: grpc.requestCallback<_drover_v1_LeaveReply__Output>): grpc.ClientUnaryCall;
  
  /**
   * The worker's long-lived stream. Its first message must be `ready`.
   */
  Session(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_drover_v1_WorkerMessage, _drover_v1_CoordinatorMessage__Output>;
  Session(options?: grpc.CallOptions): grpc.ClientDuplexStream<_drover_v1_WorkerMessage, _drover_v1_CoordinatorMessage__Output>;
  /**
   * The worker's long-lived stream. Its first message must be `ready`.
   */
  session(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_drover_v1_WorkerMessage, _drover_v1_CoordinatorMessage__Output>;
  session(options?: grpc.CallOptions): grpc.ClientDuplexStream<_drover_v1_WorkerMessage, _drover_v1_CoordinatorMessage__Output>;
  
}

export interface CoordinatorHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Asks to join a job. Refused with UNAUTHENTICATED (bad token), FAILED_PRECONDITION (other
   * job or protocol version) or UNAVAILABLE (job full or failed).
   */
  Join: grpc.handleUnaryCall<_drover_v1_JoinRequest__Output, _drover_v1_JoinReply>;
  
  /**
   * Leaves the job; the worker's outstanding tasks are reassigned.
   */
  Leave: grpc.handleUnaryCall<_drover_v1_LeaveRequest__Output, _drover_v1_LeaveReply>;
  
  /**
   * The worker's long-lived stream. Its first message must be `ready`.
   */
  Session: grpc.handleBidiStreamingCall<_drover_v1_WorkerMessage__Output, _drover_v1_CoordinatorMessage>;
  
}

export interface CoordinatorDefinition extends grpc.ServiceDefinition {
  Join: MethodDefinition<_drover_v1_JoinRequest, _drover_v1_JoinReply, _drover_v1_JoinRequest__Output, _drover_v1_JoinReply__Output>
  Leave: MethodDefinition<_drover_v1_LeaveRequest, _drover_v1_LeaveReply, _drover_v1_LeaveRequest__Output, _drover_v1_LeaveReply__Output>
  Session: MethodDefinition<_drover_v1_WorkerMessage, _drover_v1_CoordinatorMessage, _drover_v1_WorkerMessage__Output, _drover_v1_CoordinatorMessage__Output>
}
