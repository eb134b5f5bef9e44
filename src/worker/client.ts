import type * as grpc from '@grpc/grpc-js';
import { tokenMetadata } from '../wire/auth.ts';
import { channelCredentials, type ClientTlsFiles } from '../wire/credentials.ts';
import { FLOW_CONTROL_WINDOW } from '../wire/flow-control.ts';
import type { CoordinatorClient } from '../wire/generated/drover/v1/Coordinator.ts';
import type { CoordinatorMessage__Output } from '../wire/generated/drover/v1/CoordinatorMessage.ts';
import type { JoinReply__Output } from '../wire/generated/drover/v1/JoinReply.ts';
import type { JoinRequest } from '../wire/generated/drover/v1/JoinRequest.ts';
import type { WorkerMessage } from '../wire/generated/drover/v1/WorkerMessage.ts';
import { createCoordinatorClient, envelope, MAX_MESSAGE_BYTES } from '../wire/protocol.ts';
import { fromServiceError } from '../wire/status.ts';

export interface CoordinatorConnectionOptions {
  /** host:port of the coordinator. */
  address: string;
  token?: string;
  /** TLS: trust this CA file (or the system roots with `{}`); plaintext when undefined. */
  tls?: ClientTlsFiles;
  /** Deadline of unary calls. */
  callTimeoutMs?: number;
}

export type SessionCall = grpc.ClientDuplexStream<WorkerMessage, CoordinatorMessage__Output>;

/**
 * A worker's channel to the coordinator. Unary calls carry deadlines; the session stream has
 * none (it lives as long as the job) and relies on keepalive pings to notice a dead peer.
 */
export class CoordinatorConnection {
  private readonly client: CoordinatorClient;
  private readonly callTimeoutMs: number;

  constructor(private readonly options: CoordinatorConnectionOptions) {
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
    this.client = createCoordinatorClient(options.address, channelCredentials(options.tls), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 15_000,
      'grpc.keepalive_timeout_ms': 20_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
      'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
    });
  }

  /** Joins the job (any job when `jobId` is ''); rejects with the domain error the coordinator sent. */
  join(request: Omit<JoinRequest, 'envelope'>, jobId: string): Promise<JoinReply__Output> {
    return new Promise((resolve, reject) => {
      this.client.join({ ...request, envelope: envelope(jobId) }, tokenMetadata(this.options.token), { deadline: this.deadline() }, (error, reply) => {
        if (error || !reply) reject(fromServiceError(error ?? {}, `join ${this.options.address}`));
        else resolve(reply);
      });
    });
  }

  /** Leaves politely so the coordinator reassigns at once rather than at the deadline. */
  leave(jobId: string, workerId: string, sessionKey: string, reason: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.leave({ envelope: envelope(jobId), workerId, sessionKey, reason }, tokenMetadata(this.options.token), { deadline: this.deadline() }, (error) => {
        if (error) reject(fromServiceError(error, `leave ${this.options.address}`));
        else resolve();
      });
    });
  }

  /** Opens the session stream. */
  session(): SessionCall {
    return this.client.session(tokenMetadata(this.options.token));
  }

  close(): void {
    this.client.close();
  }

  private deadline(): Date {
    return new Date(Date.now() + this.callTimeoutMs);
  }
}
