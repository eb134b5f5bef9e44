import { PeerTimeoutError, ProtocolError, TrainingError } from '../errors.ts';
import { bf16BitsOf, roundToBf16 } from '../wire/bf16.ts';
import { firstNonFinite } from '../wire/finite-check.ts';
import type { Batch } from '../data/types.ts';
import type { TaskAssignment__Output } from '../wire/generated/drover/v1/TaskAssignment.ts';
import type { WorkerMessage } from '../wire/generated/drover/v1/WorkerMessage.ts';
import { MAX_CHUNK_BYTES } from '../wire/protocol.ts';
import { tensorTransfer } from '../wire/transfer.ts';
import { PeerCollective } from '../peer/collective.ts';
import { startPeerServer, type PeerServer } from '../peer/peer-server.ts';
import type { Encoding } from '../peer/protocol.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { PeerConfig__Output } from '../wire/generated/drover/v1/PeerConfig.ts';
import type { PeerStep__Output } from '../wire/generated/drover/v1/PeerStep.ts';
import type { StepCommit__Output } from '../wire/generated/drover/v1/StepCommit.ts';
import type { PeerReplica, ReplicaGradients } from './compute-replica.ts';

export interface PeerParticipantOptions {
  jobId: string;
  token: string | undefined;
  config: PeerConfig__Output;
  replica: PeerReplica;
  log: Logger;
}

/** Where a worker's time went on a task (as the wire's Timings). */
export interface Timings {
  dataWaitMs: number;
  computeMs: number;
  transferMs: number;
  decodeMs: number;
}

/** A step reduced among the group, held until the coordinator commits or aborts it. */
interface HeldStep {
  step: number;
  generation: number;
  globalBatch: number;
  summed: Float32Array;
  /** Why every replica refuses this step's update (the sum is not finite), or undefined. */
  refused: string | undefined;
}

/**
 * A worker's part in the peer reduction (cluster.reduction: peer), for one session: serves the
 * Peer service, reduces each step's scaled gradient (plus batch-norm statistics) with the step's
 * group, and holds the sum until the coordinator says commit (apply it with this worker's own
 * optimizer) or abort (drop it). Applying only on commit, once every rank reported the step
 * reduced, means a peer that dies mid-gather never leaves the survivors with different weights.
 */
export class PeerParticipant {
  private collective: PeerCollective | undefined;
  private held: HeldStep | undefined;
  private reducing: { step: number; generation: number; controller: AbortController } | undefined;
  /** Steps aborted, with the latest generation aborted: a task of them still computing or queued is not reduced. */
  private readonly aborted = new Map<number, number>();
  private closing: Promise<void> | undefined;
  private readonly gradientSizes: number[];
  private readonly bufferSizes: number[];
  /**
   * The last vector reduced, free to fill again: once a reduction resolved, every peer holds the
   * ranges it sent from it (each owner's sum needed them whole). Saves allocating, and the kernel
   * zeroing, a vector of the whole model every step.
   */
  private spareFlat: Float32Array | undefined;

  private constructor(
    private readonly options: PeerParticipantOptions,
    private readonly server: PeerServer,
  ) {
    const { replica } = options;
    const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
    this.gradientSizes = replica.manifest.filter((w) => w.trainable).map((w) => size(w.shape));
    this.bufferSizes = replica.reportsBuffers ? replica.manifest.filter((w) => !w.trainable).map((w) => size(w.shape)) : [];
  }

  /** Starts the Peer server on the configured port and builds the replica's optimizer. */
  static async start(options: PeerParticipantOptions): Promise<PeerParticipant> {
    options.replica.enableOptimizer(options.config.optimizerJson);
    const server = await startPeerServer({
      host: '0.0.0.0',
      port: options.config.port,
      jobId: options.jobId,
      token: options.token,
      log: options.log,
      parkMs: Math.max(60_000, options.config.parkMs),
    });
    return new PeerParticipant(options, server);
  }

  /** The port to tell the coordinator. */
  get port(): number {
    return this.server.port;
  }

  /**
   * Reduces one task's result with its group: each contribution is scaled by n / global batch,
   * so the rank-order sum is the global-batch mean. A worker whose shard had no usable sample
   * contributes zeros (every rank must take part). `encoding` is the job's cluster.wire (bf16
   * rounds every contribution and sum alike on every rank). Rejects with a PeerTimeoutError naming the
   * ranks that failed the step, or with the abort's reason when the coordinator abandoned it.
   */
  async reduce(step: number, peer: PeerStep__Output, result: ReplicaGradients | undefined, encoding: Encoding = 'fp32'): Promise<void> {
    this.held = undefined;
    if (peer.generation <= (this.aborted.get(step) ?? -1)) {
      throw new ProtocolError(`step ${step} (generation ${peer.generation}) aborted by the coordinator`);
    }
    this.join({ generation: peer.generation, rank: peer.rank, peers: peer.peers });
    // Never a vector a reduction that failed may still be sending from (see spareFlat).
    const length = sum(this.gradientSizes) + sum(this.bufferSizes);
    const flat = this.spareFlat?.length === length ? this.spareFlat : new Float32Array(length);
    this.spareFlat = undefined;
    let offset = 0;
    if (result && result.n > 0) {
      const scale = result.n / peer.globalBatch;
      for (const g of result.grads) offset = scaleInto(flat, offset, g, scale);
      if (this.bufferSizes.length > 0) for (const b of result.buffers) offset = scaleInto(flat, offset, b, scale);
    }
    flat.fill(0, offset);
    // A non-finite contribution (bf16 rounds |x| > ~3.39e38 to Inf) would poison every rank's sum:
    // it is this task's failure, so the coordinator deals with this rank alone (as the star does).
    const bad = encoding === 'bf16' ? firstNonFiniteAsBf16(flat) : firstNonFinite(flat);
    if (bad >= 0) {
      const sent = encoding === 'bf16' ? roundToBf16(flat[bad]!) : flat[bad];
      throw new TrainingError(`step ${step}: this worker's gradient contribution holds ${sent} at value ${bad}${encoding === 'bf16' && Number.isFinite(flat[bad]!) ? ` (${flat[bad]} overflows bf16)` : ''}`);
    }
    const controller = new AbortController();
    this.reducing = { step, generation: peer.generation, controller };
    try {
      const summed = await this.collective!.reduceScatterAllGather(step, flat, { deadlineMs: peer.deadlineMs, encoding, signal: controller.signal });
      this.spareFlat = flat;
      // Every rank holds the same sum: all refuse a non-finite one alike at the commit.
      const at = firstNonFinite(summed);
      const refused = at >= 0 ? `the reduced gradient holds ${summed[at]} at value ${at}` : undefined;
      this.held = { step, generation: peer.generation, globalBatch: peer.globalBatch, summed, refused };
    } finally {
      this.reducing = undefined;
    }
  }

  /**
   * Reduces a training task's result and says how it went, as the body of a message to the
   * coordinator: `reduced` (metrics; the sum is held for the commit), `peerFault` (who failed the
   * step), or nothing when the coordinator abandoned the step meanwhile.
   */
  async reduceTask(assignment: TaskAssignment__Output, batch: Batch, result: ReplicaGradients | undefined, timings: Timings, encoding: Encoding): Promise<Pick<WorkerMessage, 'reduced' | 'peerFault'> | undefined> {
    const peer = assignment.peer!;
    const base = { taskId: assignment.taskId, step: assignment.step, generation: peer.generation };
    try {
      await this.reduce(assignment.step, peer, result, encoding);
    } catch (error) {
      if (this.isAbort(error)) return undefined;
      if (!(error instanceof PeerTimeoutError)) throw error;
      const { ranks, phase, reason } = error.failure;
      this.options.log.warn({ step: assignment.step, generation: peer.generation, ranks, phase, reason }, error.message);
      return { peerFault: { ...base, ranks: [...ranks], phase, reason, message: error.message } };
    }
    const skipReasons = (batch.skipReasons ?? []).map((s) => ({ sampleId: s.id, reason: s.reason, detail: s.detail ?? '' }));
    const refused = this.held?.refused ?? '';
    return { reduced: { ...base, loss: result?.loss ?? 0, correct: result?.correct ?? 0, n: result?.n ?? 0, timings, skipped: batch.skipped ?? [], skipReasons, refused } };
  }

  /** The bodies of a StateReply and its chunks: every weight and the optimizer's slots, as of `version`. */
  async stateReply(requestId: number, version: number, nextTransferId: () => number): Promise<Omit<WorkerMessage, 'envelope'>[]> {
    const { replica } = this.options;
    const state = await replica.readState();
    const weights = tensorTransfer(nextTransferId(), replica.manifest.map((w, i) => ({ name: w.name, shape: w.shape, data: state.weights[i]! })), MAX_CHUNK_BYTES);
    const slots = tensorTransfer(nextTransferId(), state.optimizer.slots.map((slot) => ({ name: slot.name, shape: [slot.values.length], data: slot.values })), MAX_CHUNK_BYTES);
    return [
      { state: { requestId, version, weights: weights.header, optimizerIterations: state.optimizer.iterations, optimizerSlots: slots.header } },
      ...[...weights.chunks, ...slots.chunks].map((chunk) => ({ chunk })),
    ];
  }

  /** Applies the held step (StepCommit). */
  async commit(commit: StepCommit__Output): Promise<void> {
    const held = this.held;
    this.held = undefined;
    const { replica } = this.options;
    if (!held || held.step !== commit.step || held.generation !== commit.generation) {
      throw new ProtocolError(`commit of step ${commit.step} (generation ${commit.generation}), but this worker holds ${held ? `step ${held.step} (generation ${held.generation})` : 'no reduced step'}`);
    }
    if (commit.samples === 0) {
      replica.skipTo(commit.version);
      return;
    }
    // Undecodable samples make the batch smaller than planned: the sums are rescaled to its mean.
    const rescale = commit.samples === held.globalBatch ? 1 : held.globalBatch / commit.samples;
    const grads = split(held.summed, this.gradientSizes, 0, rescale);
    const buffers = this.bufferSizes.length > 0 ? split(held.summed, this.bufferSizes, sum(this.gradientSizes), rescale) : [];
    // The rescale can overflow too; it is the same on every rank, so the refusal is too. Without
    // one, the parts are views of the sum, already found finite.
    const overflow = rescale !== 1 && [...grads, ...buffers].some((part) => firstNonFinite(part) >= 0);
    const refused = held.refused ?? (overflow ? 'the rescaled reduced gradient is not finite' : undefined);
    if (refused) {
      replica.skipTo(commit.version);
      this.options.log.warn({ step: commit.step }, `step ${commit.step}: update refused on every replica (${refused}); weights unchanged`);
      return;
    }
    const applied = await replica.applyReduced(grads, buffers, commit.learningRate, commit.version);
    // A replica that copies what it is given keeps no view of the sum: the collective may refill it.
    if (replica.copiesWeights) this.collective?.recycle(held.summed);
    if (!applied) this.options.log.warn({ step: commit.step }, `step ${commit.step}: the optimizer refused the update (a weight would turn non-finite); weights unchanged`);
  }

  /** Drops the step's held sum, and stops its reduction if it is still running (StepAbort). */
  abort(step: number, generation: number): void {
    this.aborted.set(step, Math.max(generation, this.aborted.get(step) ?? -1));
    // A step or two back is all a late task can be of.
    for (const old of this.aborted.keys()) if (old < step - 2) this.aborted.delete(old);
    if (this.held && this.held.step === step && this.held.generation <= generation) this.held = undefined;
    const reducing = this.reducing;
    if (reducing && reducing.step === step && reducing.generation <= generation) {
      reducing.controller.abort(new ProtocolError(`step ${step} (generation ${reducing.generation}) aborted by the coordinator`));
    }
  }

  /** Whether `error` is this participant's own abort (nothing to report). */
  isAbort(error: unknown): boolean {
    return error instanceof ProtocolError && / aborted by the coordinator$/.test(error.message);
  }

  /** Stops the reduction under way, closes the links and the server (once; later calls wait for the first). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.reducing?.controller.abort(new ProtocolError('session ended'));
      this.collective?.close();
      await this.server.close(500);
    })();
    return this.closing;
  }

  /** Takes the step's group: a new collective, or the current one rebuilt for a new generation. */
  private join(group: { generation: number; rank: number; peers: string[] }): void {
    const { collective } = this;
    if (collective && collective.generation === group.generation) {
      if (collective.rank !== group.rank || collective.size !== group.peers.length) throw new ProtocolError(`generation ${group.generation} changed its ranks`);
      return;
    }
    if (collective && group.generation > collective.generation) {
      collective.rebuild(group);
      return;
    }
    collective?.close();
    this.collective = new PeerCollective({ jobId: this.options.jobId, token: this.options.token, inbox: this.server.inbox, group });
  }
}

/**
 * Index of the first value that is not finite once rounded to bfloat16 (NaN, infinite, or
 * beyond bf16's range), or -1. Reads the values in place: no rounded copy of the whole model.
 */
function firstNonFiniteAsBf16(values: Float32Array): number {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let j = 0; j < bits.length; j++) if ((bf16BitsOf(bits[j]!) & 0x7f80) === 0x7f80) return j;
  return -1;
}

/** Writes `values * scale` into `flat` from `offset`; returns the offset after them. */
function scaleInto(flat: Float32Array, offset: number, values: Float32Array, scale: number): number {
  const n = values.length;
  for (let j = 0; j < n; j++) flat[offset + j] = values[j]! * scale;
  return offset + n;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/**
 * Cuts `flat` from `start` into arrays of `sizes`, multiplied by `scale`: views of `flat` when
 * the scale is 1 (the held sum is the step's own, never written again), else scaled copies.
 */
function split(flat: Float32Array, sizes: readonly number[], start: number, scale: number): Float32Array[] {
  let offset = start;
  return sizes.map((n) => {
    const part = scale === 1 ? flat.subarray(offset, offset + n) : flat.slice(offset, offset + n);
    offset += n;
    if (scale !== 1) for (let j = 0; j < n; j++) part[j] = part[j]! * scale;
    return part;
  });
}
