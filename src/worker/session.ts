import type { ServiceError } from '@grpc/grpc-js';
import { DroverError, ProtocolError, ProtocolMismatchError, WeightsError } from '../errors.ts';
import type { Batch } from '../data/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { CoordinatorMessage__Output } from '../wire/generated/drover/v1/CoordinatorMessage.ts';
import type { TaskAssignment__Output } from '../wire/generated/drover/v1/TaskAssignment.ts';
import type { WorkerMessage } from '../wire/generated/drover/v1/WorkerMessage.ts';
import { envelope, MAX_CHUNK_BYTES, PROTOCOL_VERSION } from '../wire/protocol.ts';
import { fromServiceError } from '../wire/status.ts';
import { StreamWriter } from '../wire/stream-writer.ts';
import { BufferPool } from '../wire/buffer-pool.ts';
import type { WireEncoding } from '../wire/tensor-encoding.ts';
import { tensorTransfer, TransferAssembler } from '../wire/transfer.ts';
import type { SessionCall } from './client.ts';
import { isPeerReplica, type ComputeReplica, type ReplicaGradients } from './compute-replica.ts';
import type { PeerParticipant, Timings } from './peer-participant.ts';
import type { ShardDecoder } from './shard-decoder.ts';

/** How a session ended. */
export type SessionEnd =
  /** The coordinator sent Stop (job over, or this worker dismissed). */
  | { kind: 'stopped'; reason: string; jobCompleted: boolean; rejoin: boolean }
  /** The stream broke or was ended with an error status (eviction, coordinator gone). */
  | { kind: 'broken'; error: DroverError };

export interface SessionOptions {
  call: SessionCall;
  jobId: string;
  workerId: string;
  /** The secret of the JoinReply that gave `workerId`. */
  sessionKey: string;
  replica: ComputeReplica;
  decoder: ShardDecoder;
  log: Logger;
  /** Largest shard payload accepted. */
  maxShardBytes?: number;
  /** How gradients travel (the JoinReply's, i.e. the job's cluster.wire); default fp32. */
  gradientEncoding?: WireEncoding;
  /** The job reduces gradients among workers: this worker's part in it. */
  peer?: PeerParticipant;
}

/** A task in the worker's queue. */
interface QueuedTask {
  assignment: TaskAssignment__Output;
  /** The shard's bytes (stream transport), resolving when their last chunk arrives. */
  payload: Promise<Uint8Array | undefined>;
  /** The decoded batch, once decoding started (prefetch). */
  batch: Promise<Batch> | undefined;
  decodeMs: number;
}

/** Shards decoded ahead of the one computing: enough to hide decoding, few enough to bound memory. */
const PREFETCH_DEPTH = 2;

/**
 * One session of a worker: takes weights and tasks from the stream, decodes each shard as soon
 * as it arrives (so step k+1's shard is ready while step k computes), computes a task once its
 * weights version is in, and streams the result back in chunks.
 */
export class WorkerSession {
  private readonly queue: QueuedTask[] = [];
  private readonly writer: StreamWriter<WorkerMessage>;
  private readonly assembler: TransferAssembler;
  private readonly envelope;
  private busy = false;
  private ended = false;
  /** Weights version received in this session (a replica may hold an older session's weights). */
  private version: number | undefined;
  private transferIds = 0;
  private weightsReceiveMs = 0;
  /** Peer reduction: commits and state requests run one after another, in stream order. */
  private peerWork: Promise<void> = Promise.resolve();
  private finish!: (end: SessionEnd) => void;
  /** Resolves once when the session is over. */
  readonly done: Promise<SessionEnd>;
  /** Tasks computed in this session. */
  tasksDone = 0;

  constructor(private readonly options: SessionOptions) {
    this.envelope = envelope(options.jobId);
    this.writer = new StreamWriter<WorkerMessage>(options.call);
    const weightBytes = options.replica.manifest.reduce((sum, w) => sum + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
    const maxShard = options.maxShardBytes ?? 256 * 1024 * 1024;
    // Two weight buffers: one being read by the replica, one filling with the next broadcast.
    this.assembler = new TransferAssembler(2 * weightBytes + 2 * maxShard, new BufferPool(2 * weightBytes));
    this.done = new Promise((resolve) => {
      this.finish = resolve;
    });
    const { call } = options;
    call.on('data', (message: CoordinatorMessage__Output) => this.onMessage(message));
    call.on('error', (error: ServiceError) => this.end({ kind: 'broken', error: fromServiceError(error, 'session') }));
    call.on('end', () => this.end({ kind: 'broken', error: new ProtocolError('the coordinator ended the session') }));
    this.writer.send([{ envelope: this.envelope, ready: { workerId: options.workerId, sessionKey: options.sessionKey, peerPort: options.peer?.port ?? 0 } }]);
  }

  /** Ends the session from this side (Ctrl-C, leave). */
  close(): void {
    this.end({ kind: 'stopped', reason: 'closed by the worker', jobCompleted: false, rejoin: false });
  }

  private end(end: SessionEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.assembler.abort(new ProtocolError('session ended'));
    this.queue.length = 0;
    this.writer.close();
    void this.options.peer?.close();
    this.options.call.removeAllListeners('data');
    // Keep an error listener: a late error on a finished call must not crash the process.
    this.options.call.on('error', () => {});
    if (end.kind === 'stopped') this.options.call.end();
    else this.options.call.cancel();
    this.finish(end);
  }

  private fail(error: unknown): void {
    const droverError = error instanceof DroverError ? error : new ProtocolError(String(error), { cause: error });
    this.options.log.error({ code: droverError.code, worker: this.options.workerId }, `session failed: ${droverError.message}`);
    this.end({ kind: 'broken', error: droverError });
  }

  private onMessage(message: CoordinatorMessage__Output): void {
    if (this.ended) return;
    try {
      const env = message.envelope;
      if (!env || env.protocolVersion !== PROTOCOL_VERSION || env.jobId !== this.options.jobId) {
        throw new ProtocolMismatchError(`coordinator message for job "${env?.jobId}" protocol ${env?.protocolVersion}; this worker is in job "${this.options.jobId}" protocol ${PROTOCOL_VERSION}`);
      }
      switch (message.body) {
        case 'chunk':
          this.assembler.accept(message.chunk!);
          return;
        case 'weights': {
          const { version, weights, partial, baseVersion } = message.weights!;
          const started = performance.now();
          const expected = this.options.replica.manifest.reduce((sum, w) => sum + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
          const optimizerState = this.expectOptimizerState(message.weights!, expected);
          this.assembler.expect(weights, { maxBytes: expected, what: `weights v${version}` }).then(
            async (received) => {
              let state: Awaited<typeof optimizerState>;
              try {
                // Only peer-reduction broadcasts carry it: the star's apply without waiting.
                state = optimizerState && (await optimizerState);
              } catch (error) {
                if (!this.ended) this.fail(error);
                return;
              }
              if (this.ended) return;
              try {
                // A partial broadcast builds on this session's weights: the replica may hold an older session's.
                if (partial && this.version !== baseVersion) {
                  throw new WeightsError(`partial weight broadcast v${version} builds on v${baseVersion}, this session holds ${this.version === undefined ? 'no full broadcast yet' : `v${this.version}`}`);
                }
                this.options.replica.setWeights({ version, tensors: received.tensors, ...(partial ? { base: baseVersion } : {}) });
                if (state) {
                  const { replica } = this.options;
                  if (!isPeerReplica(replica)) throw new ProtocolError('optimizer state sent to a worker that applies no updates');
                  replica.setOptimizerState(state);
                }
              } catch (error) {
                this.fail(error);
                return;
              }
              if (this.options.replica.copiesWeights) received.release();
              this.version = version;
              this.weightsReceiveMs = performance.now() - started;
              // Tasks for older weights cannot be computed any more: say so, so they go elsewhere now.
              for (let i = this.queue.length - 1; i >= 0; i--) {
                const task = this.queue[i]!.assignment;
                if (task.weightsVersion < version) {
                  this.queue.splice(i, 1);
                  this.reportFailure(task.taskId, new ProtocolError(`task ${task.taskId} needs weights v${task.weightsVersion}, this worker already holds v${version}`));
                }
              }
              this.pump();
            },
            () => {},
          );
          return;
        }
        case 'task':
          this.enqueue(message.task!);
          return;
        case 'commit': {
          const commit = message.commit!;
          const peer = this.peerPart('commit');
          this.serially(async () => {
            await peer.commit(commit);
            this.version = commit.version;
            this.pump();
          });
          return;
        }
        case 'abort': {
          const { step, generation } = message.abort!;
          this.peerPart('abort').abort(step, generation);
          // Its task, if still queued, will not be reduced by this group.
          for (let i = this.queue.length - 1; i >= 0; i--) {
            const task = this.queue[i]!.assignment;
            if (task.step === step && task.peer && task.peer.generation <= generation) this.queue.splice(i, 1);
          }
          return;
        }
        case 'stateRequest': {
          const { requestId } = message.stateRequest!;
          this.serially(() => this.sendState(requestId));
          return;
        }
        case 'stop':
          this.end({ kind: 'stopped', reason: message.stop!.reason, jobCompleted: message.stop!.jobCompleted, rejoin: message.stop!.rejoin === true });
          return;
        default:
          throw new ProtocolError(`coordinator message without a body (${String(message.body)})`);
      }
    } catch (error) {
      this.fail(error);
    }
  }

  /** Queues a task and starts decoding its shard right away (prefetch). */
  private enqueue(assignment: TaskAssignment__Output): void {
    const shard = assignment.shard;
    if (!shard) throw new ProtocolError(`task ${assignment.taskId} has no shard`);
    const hasPayload = shard.payload !== null && shard.sampleBytes.length > 0;
    const payload = hasPayload
      ? this.assembler.expect(shard.payload, { maxBytes: this.options.maxShardBytes ?? 256 * 1024 * 1024, what: `shard of task ${assignment.taskId}` })
      : Promise.resolve(undefined);
    const queued: QueuedTask = { assignment, payload: payload.then((transfer) => transfer?.bytes), batch: undefined, decodeMs: 0 };
    queued.payload.catch(() => {});
    const version = this.version;
    if (version !== undefined && assignment.weightsVersion < version) {
      // Its weights are gone: say so now rather than let the coordinator wait for the deadline.
      this.reportFailure(assignment.taskId, new ProtocolError(`task ${assignment.taskId} needs weights v${assignment.weightsVersion}, this worker already holds v${version}`));
      return;
    }
    this.queue.push(queued);
    this.prefetch();
    this.pump();
  }

  /** Starts decoding the first queued shards, up to PREFETCH_DEPTH ahead. */
  private prefetch(): void {
    let decoding = 0;
    for (const task of this.queue) {
      if (decoding >= PREFETCH_DEPTH) return;
      task.batch ??= this.decode(task);
      decoding++;
    }
  }

  private decode(task: QueuedTask): Promise<Batch> {
    const shard = task.assignment.shard!;
    const batch = task.payload.then(async (payload) => {
      const started = performance.now();
      const decoded = await this.options.decoder.decode({
        split: shard.split,
        ids: shard.sampleIds,
        labels: shard.labels,
        encoding: shard.encoding,
        pixels: { height: shard.height, width: shard.width, channels: shard.channels },
        sampleBytes: shard.sampleBytes,
        payload,
        augment: shard.augment,
        epoch: shard.epoch,
      });
      task.decodeMs = performance.now() - started;
      return decoded;
    });
    batch.catch(() => {});
    return batch;
  }

  /** Computes the first task whose weights are in, one at a time. */
  private pump(): void {
    if (this.busy || this.ended || this.version === undefined) return;
    const version = this.version;
    const index = this.queue.findIndex((t) => t.assignment.weightsVersion === version);
    if (index < 0) return;
    const [task] = this.queue.splice(index, 1);
    task!.batch ??= this.decode(task!);
    this.prefetch();
    this.busy = true;
    void this.run(task!).finally(() => {
      this.busy = false;
      this.pump();
    });
  }

  private async run(task: QueuedTask): Promise<void> {
    const { assignment } = task;
    const waitStart = performance.now();
    let batch: Batch;
    try {
      batch = await task.batch!;
    } catch (error) {
      this.reportFailure(assignment.taskId, error);
      return;
    }
    if (this.ended) return;
    const computeStart = performance.now();
    const dataWaitMs = computeStart - waitStart;
    const transferMs = this.weightsReceiveMs;
    this.weightsReceiveMs = 0;
    try {
      if (assignment.kind === 'EVALUATE') {
        const result = await this.options.replica.evaluate(batch);
        const computeMs = performance.now() - computeStart;
        this.writer.send([
          {
            envelope: this.envelope,
            evaluation: {
              taskId: assignment.taskId,
              step: assignment.step,
              lossSum: result.lossSum,
              correct: result.correct,
              n: result.n,
              predicted: result.predicted,
              timings: { dataWaitMs, computeMs, transferMs, decodeMs: task.decodeMs },
              skipped: batch.skipped ?? [],
              skipReasons: skipReasonsOf(batch),
            },
          },
        ]);
      } else if (assignment.peer) {
        const result = batch.n > 0 ? await this.options.replica.train(batch) : undefined;
        const computeMs = performance.now() - computeStart;
        await this.reducePeer(assignment, batch, result, { dataWaitMs, computeMs, transferMs, decodeMs: task.decodeMs });
      } else if (batch.n === 0) {
        // Every sample was undecodable (each counted as a skip): nothing to compute, the shard is still covered.
        this.writer.send([
          {
            envelope: this.envelope,
            gradient: { taskId: assignment.taskId, step: assignment.step, weightsVersion: assignment.weightsVersion, loss: 0, correct: 0, n: 0, gradients: null, buffers: null, skipped: batch.skipped ?? [], skipReasons: skipReasonsOf(batch) },
          },
        ]);
      } else {
        const result = await this.options.replica.train(batch);
        const computeMs = performance.now() - computeStart;
        const trainable = this.options.replica.manifest.filter((w) => w.trainable);
        const buffersManifest = this.options.replica.manifest.filter((w) => !w.trainable);
        const gradients = tensorTransfer(++this.transferIds, trainable.map((w, i) => ({ name: w.name, shape: w.shape, data: result.grads[i]! })), MAX_CHUNK_BYTES, this.options.gradientEncoding);
        const buffers = result.buffers.length > 0
          ? tensorTransfer(++this.transferIds, buffersManifest.map((w, i) => ({ name: w.name, shape: w.shape, data: result.buffers[i]! })), MAX_CHUNK_BYTES)
          : undefined;
        const messages: WorkerMessage[] = [
          {
            envelope: this.envelope,
            gradient: {
              taskId: assignment.taskId,
              step: assignment.step,
              weightsVersion: assignment.weightsVersion,
              loss: result.loss,
              correct: result.correct,
              n: result.n,
              timings: { dataWaitMs, computeMs, transferMs, decodeMs: task.decodeMs },
              gradients: gradients.header,
              buffers: buffers?.header ?? null,
              skipped: batch.skipped ?? [],
              skipReasons: skipReasonsOf(batch),
            },
          },
        ];
        for (const chunk of gradients.chunks) messages.push({ envelope: this.envelope, chunk });
        for (const chunk of buffers?.chunks ?? []) messages.push({ envelope: this.envelope, chunk });
        this.writer.send(messages);
      }
      this.tasksDone++;
    } catch (error) {
      this.reportFailure(assignment.taskId, error);
    } finally {
      // The batch was copied into tensors: its buffer can serve the next batch.
      batch.release?.();
    }
  }

  private peerPart(what: string): PeerParticipant {
    if (!this.options.peer) throw new ProtocolError(`"${what}" sent to a worker of a job without the peer reduction`);
    return this.options.peer;
  }

  /** Runs peer work after the peer work before it (stream order); a failure ends the session. */
  private serially(work: () => Promise<void>): void {
    this.peerWork = this.peerWork.then(work).catch((error: unknown) => this.fail(error));
  }

  /** The optimizer slots a weight broadcast carries (peer reduction), once they are in. */
  private expectOptimizerState(header: { hasOptimizerState: boolean; optimizerIterations: number; optimizerSlots: Parameters<TransferAssembler['expect']>[0] }, weightBytes: number) {
    if (!header.hasOptimizerState) return undefined;
    const slots = this.assembler.expect(header.optimizerSlots, { maxBytes: 4 * weightBytes + 1024, what: 'optimizer state' });
    const state = slots.then((received) => ({
      iterations: header.optimizerIterations,
      slots: received.tensors.map((t) => ({ name: t.name, values: Float32Array.from(t.data as Float32Array) })),
    }));
    // Awaited only once the weights are in: a session that ends first must not leave it unhandled.
    state.catch(() => {});
    return state;
  }

  /** Reduces a training result with the step's peers; says reduced, or names who failed the step. */
  private async reducePeer(assignment: TaskAssignment__Output, batch: Batch, result: ReplicaGradients | undefined, timings: Timings): Promise<void> {
    const report = await this.peerPart('a peer task').reduceTask(assignment, batch, result, timings, this.options.gradientEncoding ?? 'fp32');
    if (report && !this.ended) this.writer.send([{ envelope: this.envelope, ...report }]);
  }

  /** Answers a StateRequest: every weight and the optimizer's slots, as of the last step applied. */
  private async sendState(requestId: number): Promise<void> {
    const messages = await this.peerPart('a state request').stateReply(requestId, this.version ?? 0, () => ++this.transferIds);
    this.writer.send(messages.map((body) => ({ envelope: this.envelope, ...body })));
  }

  /** Tells the coordinator a task cannot be done here; it goes to another worker. */
  private reportFailure(taskId: string, error: unknown): void {
    const code = error instanceof DroverError ? error.code : 'DROVER_ERR';
    const message = error instanceof Error ? error.message : String(error);
    this.options.log.warn({ task: taskId, code }, `task ${taskId} failed: ${message}`);
    this.writer.send([{ envelope: this.envelope, failure: { taskId, code, message } }]);
  }
}

/** The batch's skip reasons as the wire carries them (the coordinator logs them with the samples' paths). */
function skipReasonsOf(batch: Batch): { sampleId: number; reason: string; detail: string }[] {
  return (batch.skipReasons ?? []).map((s) => ({ sampleId: s.id, reason: s.reason, detail: s.detail ?? '' }));
}
