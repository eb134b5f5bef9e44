import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from '../telemetry/logger.ts';
import { DroverError, ProtocolError, ProtocolMismatchError } from '../errors.ts';
import { checkToken } from '../wire/auth.ts';
import type { ServerTlsFiles } from '../wire/credentials.ts';
import { bindServer, shutdownServer } from '../wire/server-lifecycle.ts';
import type { CoordinatorHandlers } from '../wire/generated/drover/v1/Coordinator.ts';
import type { CoordinatorMessage } from '../wire/generated/drover/v1/CoordinatorMessage.ts';
import type { Envelope__Output } from '../wire/generated/drover/v1/Envelope.ts';
import type { EvaluationResult__Output } from '../wire/generated/drover/v1/EvaluationResult.ts';
import type { GradientResult__Output } from '../wire/generated/drover/v1/GradientResult.ts';
import type { JoinReply } from '../wire/generated/drover/v1/JoinReply.ts';
import type { JoinRequest__Output } from '../wire/generated/drover/v1/JoinRequest.ts';
import type { TaskFailure__Output } from '../wire/generated/drover/v1/TaskFailure.ts';
import type { PeerFault__Output } from '../wire/generated/drover/v1/PeerFault.ts';
import type { PeerReduced__Output } from '../wire/generated/drover/v1/PeerReduced.ts';
import type { StateReply__Output } from '../wire/generated/drover/v1/StateReply.ts';
import type { WorkerMessage__Output } from '../wire/generated/drover/v1/WorkerMessage.ts';
import { coordinatorService, envelope, MAX_MESSAGE_BYTES, PROTOCOL_VERSION } from '../wire/protocol.ts';
import { tuneServerWindow } from '../wire/flow-control.ts';
import { toStatus } from '../wire/status.ts';
import { StreamWriter } from '../wire/stream-writer.ts';
import { BufferPool } from '../wire/buffer-pool.ts';
import type { WireEncoding } from '../wire/tensor-encoding.ts';
import { TransferAssembler, type ReceivedTransfer } from '../wire/transfer.ts';

/** The coordinator's side of one worker's session: where it sends, and how it ends it. */
export interface WorkerLink {
  readonly workerId: string;
  readonly peer: string;
  /** Queues messages (in order, with backpressure). */
  send(messages: Iterable<CoordinatorMessage>): void;
  /** Resolves when everything queued so far was handed to the transport. */
  flushed(): Promise<void>;
  /** Ends the session: with an error status (eviction) or OK. */
  close(error?: DroverError): void;
  readonly closed: boolean;
}

/** Sizes the coordinator accepts on a session. */
export interface SessionLimits {
  /** Exact byte size of a gradient transfer (one float32 per trainable parameter). */
  gradientBytes: number;
  /** Exact byte size of the non-trainable weights (0 when the model has none). */
  bufferBytes: number;
  /** How gradients must travel (cluster.wire); batch-norm statistics always travel as fp32. */
  gradientEncoding: WireEncoding;
  /** Peer reduction: largest optimizer state a StateReply may carry (absent: none accepted). */
  optimizerBytes?: number;
}

/** What the coordinator does with a session's messages. */
export interface SessionHandlers {
  /**
   * A gradient result whose tensors arrive (and are checked) later: await the transfers.
   * `gradients` is undefined only for a result that used no sample (all skipped).
   */
  gradient(result: GradientResult__Output, gradients: Promise<ReceivedTransfer> | undefined, buffers: Promise<ReceivedTransfer> | undefined): void;
  evaluation(result: EvaluationResult__Output): void;
  failure(failure: TaskFailure__Output): void;
  /** Peer reduction: a worker holds its step reduced. */
  reduced?(result: PeerReduced__Output): void;
  /** Peer reduction: a worker's reduction failed, naming the ranks that failed it. */
  peerFault?(fault: PeerFault__Output): void;
  /** Peer reduction: the weights and optimizer state a StateRequest asked for. */
  state?(reply: StateReply__Output, weights: Promise<ReceivedTransfer>, slots: Promise<ReceivedTransfer>): void;
  /** The session ended: the worker hung up, died, broke the protocol, or was evicted. Called once. */
  closed(error: DroverError | undefined): void;
}

/** The coordinator behind the transport. Methods throw domain errors; the server maps them to statuses. */
export interface SessionHost {
  readonly jobId: string;
  readonly token: string | undefined;
  join(request: JoinRequest__Output, peer: string): JoinReply;
  /** Ends a member's membership; throws AuthError unless `sessionKey` is the one its Join got. */
  leave(workerId: string, sessionKey: string, reason: string): void;
  /** Binds a session to a member; throws UnknownWorkerError for an id it does not know, AuthError for a wrong key. */
  openSession(workerId: string, sessionKey: string, link: WorkerLink, ready?: { peerPort: number }): { handlers: SessionHandlers; limits: SessionLimits };
}

export interface CoordinatorServerOptions {
  host: string;
  port: number;
  tls?: ServerTlsFiles;
  /** Server keepalive: a worker whose connection stops answering pings is dropped after time + timeout. */
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
  log: Logger;
}

/**
 * The service name of the coordinator's readiness in grpc.health.v1 (the empty name, the whole
 * server, too): SERVING while workers may join; NOT_SERVING while it drains, exports and tests.
 */
export const HEALTH_SERVICE = 'drover.v1.Coordinator';

/**
 * The service name of the coordinator's liveness: SERVING from the moment it listens until it
 * shuts down, through draining, export and test evaluation (which may take a long time), so a
 * liveness probe restarts only a process that stopped answering.
 */
export const LIVENESS_SERVICE = 'drover.v1.Liveness';

export interface CoordinatorServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /**
   * What grpc.health.v1 answers (to anyone, no token: kubelet's gRPC probes carry none):
   * SERVING once the job is loaded and workers may join, NOT_SERVING before and while draining.
   * Readiness only (HEALTH_SERVICE and ""): LIVENESS_SERVICE stays SERVING until close().
   */
  setServing(serving: boolean): void;
  /** Stops accepting, ends every session, and shuts down (forcefully after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

/**
 * Receive buffers kept for reuse across sessions: every worker's gradients of a step are in flight
 * at once, and the pool keeps them for the next step rather than allocating them again.
 */
const RECEIVE_POOL_BYTES = 1024 * 1024 * 1024;

/**
 * The gRPC transport of the coordinator, kept thin: token and envelope checks on every call,
 * session binding, chunk reassembly with limits, and errors mapped to statuses in one place
 * (src/wire/status.ts). Everything else is the SessionHost's.
 */
export async function startCoordinatorServer(host: SessionHost, options: CoordinatorServerOptions): Promise<CoordinatorServer> {
  const { log } = options;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': options.keepaliveTimeMs ?? 10_000,
    'grpc.keepalive_timeout_ms': options.keepaliveTimeoutMs ?? 20_000,
  });
  tuneServerWindow(server);
  const links = new Set<SessionLink>();
  const receiveBuffers = new BufferPool(RECEIVE_POOL_BYTES);

  const refuse = (method: string, peer: string, error: unknown): grpc.StatusObject & { metadata: grpc.Metadata } => {
    const status = toStatus(error);
    const code = error instanceof DroverError ? error.code : 'DROVER_ERR';
    log.warn({ method, peer, code, reason: status.details }, `refused ${method} from ${peer}: ${status.details}`);
    return status;
  };

  const handlers: CoordinatorHandlers = {
    Join(call, callback) {
      try {
        checkToken(call.metadata, host.token);
        checkEnvelope(call.request.envelope, host.jobId, true);
        callback(null, host.join(call.request, call.getPeer()));
      } catch (error) {
        callback(refuse('Join', call.getPeer(), error));
      }
    },
    Leave(call, callback) {
      try {
        checkToken(call.metadata, host.token);
        checkEnvelope(call.request.envelope, host.jobId, false);
        host.leave(call.request.workerId, call.request.sessionKey, call.request.reason || 'left');
        callback(null, { envelope: envelope(host.jobId) });
      } catch (error) {
        callback(refuse('Leave', call.getPeer(), error));
      }
    },
    Session(call) {
      const peer = call.getPeer();
      try {
        checkToken(call.metadata, host.token);
      } catch (error) {
        call.emit('error', refuse('Session', peer, error));
        return;
      }
      const link = new SessionLink(call, peer, host.jobId);
      links.add(link);
      call.once('close', () => links.delete(link));
      runSession(call, link, host, receiveBuffers, (error) => refuse('Session', peer, error));
    },
  };

  server.addService(coordinatorService(), handlers);
  const health = new HealthImplementation({ '': 'NOT_SERVING', [HEALTH_SERVICE]: 'NOT_SERVING', [LIVENESS_SERVICE]: 'SERVING' });
  health.addToServer(server);
  const setServing = (serving: boolean): void => {
    for (const name of ['', HEALTH_SERVICE]) health.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING');
  };
  const port = await bindServer(server, options.host, options.port, options.tls);

  return {
    port,
    setServing,
    async close(graceMs = 2000): Promise<void> {
      setServing(false);
      health.setStatus(LIVENESS_SERVICE, 'NOT_SERVING');
      for (const link of links) link.close();
      await shutdownServer(server, graceMs);
    },
  };
}

type SessionCall = grpc.ServerDuplexStream<WorkerMessage__Output, CoordinatorMessage>;

/** Refuses another job's or another protocol version's messages. */
export function checkEnvelope(received: Envelope__Output | null | undefined, jobId: string, joining: boolean): void {
  if (!received) throw new ProtocolError('message without envelope (job id and protocol version)');
  if (received.protocolVersion !== PROTOCOL_VERSION) {
    throw new ProtocolMismatchError(
      `peer speaks drover protocol ${received.protocolVersion}, this coordinator speaks ${PROTOCOL_VERSION}: run the same drover version everywhere`,
    );
  }
  if (received.jobId !== jobId && !(joining && received.jobId === '')) {
    throw new ProtocolMismatchError(`message for job "${received.jobId}", but this coordinator runs job "${jobId}"`);
  }
}

function runSession(call: SessionCall, link: SessionLink, host: SessionHost, receiveBuffers: BufferPool, refuse: (error: unknown) => grpc.StatusObject): void {
  let session: { handlers: SessionHandlers; limits: SessionLimits } | undefined;
  let ended = false;
  // Two transfers (gradients + statistics) of one result in flight, plus one of the next.
  let assembler: TransferAssembler | undefined;

  const end = (error: DroverError | undefined, status?: grpc.StatusObject): void => {
    if (ended) return;
    ended = true;
    assembler?.abort(error ?? new ProtocolError('session ended'));
    if (status) link.fail(status);
    session?.handlers.closed(error);
  };

  call.on('data', (message: WorkerMessage__Output) => {
    if (ended) return;
    try {
      checkEnvelope(message.envelope, host.jobId, false);
      if (!session) {
        if (message.body !== 'ready' || !message.ready) throw new ProtocolError(`first message of a session must be "ready", got "${message.body}"`);
        link.workerId = message.ready.workerId;
        session = host.openSession(message.ready.workerId, message.ready.sessionKey, link, { peerPort: message.ready.peerPort });
        const { gradientBytes, bufferBytes, optimizerBytes } = session.limits;
        const stateBytes = optimizerBytes === undefined ? 0 : gradientBytes + bufferBytes + optimizerBytes;
        assembler = new TransferAssembler(2 * (gradientBytes + bufferBytes) + stateBytes + 1024, receiveBuffers);
        return;
      }
      switch (message.body) {
        case 'chunk':
          assembler!.accept(message.chunk!);
          return;
        case 'gradient': {
          const result = message.gradient!;
          const what = `gradients of task ${result.taskId} from ${link.workerId}`;
          const gradients = result.n === 0 && result.gradients === null
            ? undefined
            : assembler!.expect(result.gradients, { maxBytes: session.limits.gradientBytes, what, finite: true, encoding: session.limits.gradientEncoding });
          const hasBuffers = result.buffers !== null && (result.buffers.totalBytes > 0 || result.buffers.tensors.length > 0);
          const buffers = hasBuffers
            ? assembler!.expect(result.buffers, { maxBytes: session.limits.bufferBytes, what: `batch-norm statistics of task ${result.taskId}`, finite: true })
            : undefined;
          session.handlers.gradient(result, gradients, buffers);
          return;
        }
        case 'evaluation':
          session.handlers.evaluation(message.evaluation!);
          return;
        case 'failure':
          session.handlers.failure(message.failure!);
          return;
        case 'reduced':
          if (!session.handlers.reduced) throw new ProtocolError('"reduced" sent in a job without the peer reduction');
          session.handlers.reduced(message.reduced!);
          return;
        case 'peerFault':
          if (!session.handlers.peerFault) throw new ProtocolError('"peerFault" sent in a job without the peer reduction');
          session.handlers.peerFault(message.peerFault!);
          return;
        case 'state': {
          const { optimizerBytes } = session.limits;
          if (!session.handlers.state || optimizerBytes === undefined) throw new ProtocolError('"state" sent in a job without the peer reduction');
          const reply = message.state!;
          const weights = assembler!.expect(reply.weights, { maxBytes: session.limits.gradientBytes + session.limits.bufferBytes, what: `weights from ${link.workerId}`, finite: true });
          const slots = assembler!.expect(reply.optimizerSlots, { maxBytes: optimizerBytes, what: `optimizer state from ${link.workerId}`, finite: true });
          session.handlers.state(reply, weights, slots);
          return;
        }
        case 'ready':
          throw new ProtocolError('"ready" sent twice on one session');
        default:
          throw new ProtocolError(`message without a body (${String(message.body)})`);
      }
    } catch (error) {
      const droverError = error instanceof DroverError ? error : new ProtocolError(String(error), { cause: error });
      end(droverError, refuse(droverError));
    }
  });
  call.on('end', () => {
    // The worker half-closed: it is done with this session.
    end(undefined);
    link.close();
  });
  call.on('cancelled', () => end(new ProtocolError('session cancelled by the worker or its connection dropped')));
  call.on('error', (error: Error & { details?: string }) =>
    end(error instanceof DroverError ? error : new ProtocolError(`session failed: ${error.message ?? error.details ?? 'unknown error'}`, { cause: error })),
  );
  call.on('close', () => end(new ProtocolError('session closed')));
}

/** WorkerLink over a server duplex stream. */
class SessionLink implements WorkerLink {
  workerId = '(not ready)';
  private readonly writer: StreamWriter<CoordinatorMessage>;
  private done = false;

  constructor(
    private readonly call: SessionCall,
    readonly peer: string,
    private readonly jobId: string,
  ) {
    this.writer = new StreamWriter<CoordinatorMessage>(call);
    call.once('close', () => {
      this.done = true;
    });
  }

  get closed(): boolean {
    return this.done || this.writer.isClosed;
  }

  send(messages: Iterable<CoordinatorMessage>): void {
    if (!this.closed) this.writer.send(messages);
  }

  flushed(): Promise<void> {
    return this.writer.flushed();
  }

  close(error?: DroverError): void {
    if (this.done) return;
    if (error) {
      this.fail(toStatus(error));
      return;
    }
    this.done = true;
    this.writer.close();
    try {
      this.call.end();
    } catch {
      // already ended
    }
  }

  /** Ends the call with an error status, dropping what is queued. */
  fail(status: grpc.StatusObject | ReturnType<typeof toStatus>): void {
    if (this.done) return;
    this.done = true;
    this.writer.close();
    this.call.emit('error', status);
  }
}
