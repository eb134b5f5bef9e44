import { DroverError, NonFiniteUpdateError, PeerTimeoutError, ProtocolError, WeightsError } from '../errors.ts';
import type { SampledBatch } from '../data/sampler.ts';
import type { StepContext } from '../job/step-engine.ts';
import { readWeights, type WeightSet } from '../model/weights.ts';
import type { OptimizerSlot } from '../train/optimizers.ts';
import type { PeerFault__Output } from '../wire/generated/drover/v1/PeerFault.ts';
import type { PeerReduced__Output } from '../wire/generated/drover/v1/PeerReduced.ts';
import { envelope } from '../wire/protocol.ts';
import type { Contribution } from './reducer.ts';
import { ReplicaCustody, type CustodyHost } from './replica-custody.ts';
import { hostOf, mostNamed, planPeerShards } from './peer-group.ts';
import type { ReducingStep, ReductionOutcome, StepReduction } from './step-reduction.ts';
import type { PeerAttempt, RoundState, TaskDispatch } from './task-dispatch.ts';

/** What the peer reduction needs from the coordinator around it. */
export interface PeerHost extends CustodyHost {
  readonly dispatch: TaskDispatch;
  /** Resolves once a worker is live (the join timeout fails the job otherwise). */
  waitForWorker(): Promise<void>;
  fatal(): Error | undefined;
  /** Opens the training round of one attempt at `step` on weights `weightsVersion` (its tasks are sent by the caller). */
  openRound(batch: SampledBatch, step: number, weightsVersion: number, reduction: ReducingStep, peer: PeerAttempt): RoundState;
}

/** An attempt at a step failed (a peer was lost or named): it is planned again. */
class AttemptFailed extends Error {}

/** Fault reports of one attempt gathered this long before the coordinator decides whom to evict. */
const FAULT_WINDOW_MS = 250;
/** Attempts at one step that evicted nobody (only "refused" reports) before the named are evicted anyway. */
const MAX_ATTEMPTS_WITHOUT_EVICTION = 3;

interface Attempt {
  state: RoundState;
  group: readonly string[];
  /** One report per sender (the first): a worker cannot flood the list. */
  faults: Map<string, PeerFault__Output & { from: string }>;
  timer: NodeJS.Timeout | undefined;
  /** When the fault reports are judged (performance.now()). */
  judgeAt: number;
  failed: boolean;
}

/**
 * The peer reduction (cluster.reduction: peer): workers reduce-scatter and all-gather their
 * scaled gradients among themselves (src/peer/) and each applies the same optimizer step, so the
 * coordinator moves no gradient and no weight per step. It is the control plane:
 *
 * - a step is one attempt per membership: the batch is planned over the workers that hold the
 *   current state (one shard per rank, rank = task order = summation order), with a generation
 *   that changes whenever the group does; the next step's shards go out with this one's
 *   (prefetch) while the group stays the same;
 * - two-phase: workers report "reduced" (metrics only) and apply the update only when every rank
 *   has and the coordinator sends StepCommit; a peer lost or named by its peers' PeerFault
 *   (deadline or unreachable; scatter-phase reports first) is evicted, the survivors get
 *   StepAbort, and the whole batch is planned again over them: all or none apply, no sample
 *   is lost or counted twice;
 * - state (ReplicaCustody): a worker that joins gets the weights and optimizer state as a full
 *   broadcast, pulled from a worker that holds them, as `weights()` and `optimizerState()`
 *   (checkpoints, export) are.
 *
 * A worker whose own contribution is not finite fails its task (only it is dealt with); a reduced
 * sum that is not finite is the same on every rank, so every replica refuses it alike at the
 * commit and the ranks say so in their reports (the step is reported refused). The optimizer may
 * still refuse an update on every replica alike at the commit (a weight would turn non-finite):
 * the coordinator does not hear of that one and reports the step applied.
 */
export class PeerReduction implements StepReduction {
  private generation = 0;
  private lastGroup = '';
  private readonly addresses = new Map<string, string>();
  /** Who holds which version of the weights and optimizer state; pulls and pushes them. */
  readonly custody: ReplicaCustody;
  private current: Attempt | undefined;
  /** The attempt whose every rank reported, until it is committed. */
  private finished: Attempt | undefined;
  private attemptsWithoutEviction = 0;
  /** The next step's attempt, planned over the current group and sent ahead (prefetch). */
  private prefetched: { batch: SampledBatch; liveKey: string; attempt: Attempt } | undefined;

  constructor(private readonly host: PeerHost) {
    this.custody = new ReplicaCustody(host);
  }

  private get deadlineMs(): number {
    return this.host.cluster.peerDeadlineMs ?? Math.max(1, Math.floor(this.host.cluster.stepDeadlineMs / 2));
  }

  // ---- sessions ----

  /** Refuses a session that serves no peer port (an older worker). */
  static checkPeerPort(workerId: string, peerPort: number): void {
    if (!(peerPort > 0 && peerPort < 65536)) throw new ProtocolError(`worker ${workerId} serves no peer port: this job reduces gradients among workers (cluster.reduction: peer); run the same drover version everywhere`);
  }

  /** A worker's session opened: its peer address is the host it connects from and the port it serves. */
  sessionOpened(workerId: string, connectedFrom: string, peerPort: number): void {
    this.addresses.set(workerId, `${hostOf(connectedFrom)}:${peerPort}`);
    this.custody.forget(workerId);
  }

  /** A worker left the job (its attempt's loss comes through task dispatch). */
  workerRemoved(workerId: string): void {
    this.addresses.delete(workerId);
    this.custody.forget(workerId);
  }

  // ---- StepReduction ----

  open(): ReducingStep {
    return new PeerResults((update, samples) => this.commit(update, samples));
  }

  async weights(): Promise<WeightSet> {
    await this.custody.refresh();
    return readWeights(this.host.trainer.model);
  }

  async optimizerState(): Promise<{ iterations: number; slots: OptimizerSlot[] }> {
    await this.custody.refresh();
    return this.host.trainer.optimizer.getState();
  }


  // ---- steps ----

  /**
   * One step: attempts until one group reduces the whole batch and every rank reported it;
   * then commits it. Resolves with the round that did (for timing) and the outcome. `next`, the
   * following step's batch, is planned over the same group and sent now, so workers decode its
   * shards while this step computes (dropped if the group changes first).
   */
  async step(batch: SampledBatch, context: StepContext, version: number, next?: SampledBatch): Promise<{ state: RoundState; outcome: ReductionOutcome; reduceStart: number }> {
    const { log } = this.host;
    for (;;) {
      const fatal = this.host.fatal();
      if (fatal) throw fatal;
      await this.custody.syncJoiners();
      const current = this.host.version();
      const live = this.host.membership.live().filter((w) => this.custody.holds(w.id, current) && this.addresses.has(w.id));
      if (live.length === 0) {
        this.discardPrefetched();
        if (this.host.membership.live().length === 0) await this.host.waitForWorker();
        else await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      const liveKey = live.map((w) => w.id).join(',');
      const running = this.claimPrefetched(batch, liveKey) ?? this.launch(batch, context.step, version - 1, planPeerShards(batch.indices, live, this.host.cluster.balance));
      this.current = running;
      running.state.round.startedAt = performance.now();
      if (next && !this.prefetched) {
        const plans = planPeerShards(next.indices, live, this.host.cluster.balance);
        if (plans.map((p) => p.workerId).join(',') === running.group.join(',')) {
          this.prefetched = { batch: next, liveKey, attempt: this.launch(next, context.step + 1, version, plans) };
        }
      }
      const { state } = running;
      try {
        await this.host.dispatch.finish(state);
      } catch (error) {
        this.host.dispatch.closeRound(state);
        if (!(error instanceof AttemptFailed)) throw error;
        this.abort(running);
        this.discardPrefetched();
        log.warn({ step: context.step, generation: state.peer!.generation, reason: error.message }, `step ${context.step}: peer reduction abandoned (${error.message}); planning the batch again over the workers left`);
        continue;
      } finally {
        clearTimeout(running.timer);
        this.current = undefined;
      }
      this.attemptsWithoutEviction = 0;
      const reduceStart = performance.now();
      this.finished = running;
      try {
        const outcome = await state.reduction!.apply({ step: context.step, lr: context.lr, version });
        return { state, outcome, reduceStart };
      } finally {
        this.finished = undefined;
      }
    }
  }

  /** Drops the prefetched attempt (the group changed, the job stops): its workers drop its tasks. */
  discardPrefetched(): void {
    const prefetched = this.prefetched;
    this.prefetched = undefined;
    if (!prefetched) return;
    this.host.log.debug({ step: prefetched.attempt.state.round.step, generation: prefetched.attempt.state.peer!.generation }, `step ${prefetched.attempt.state.round.step}: prefetched shards dropped (the group changed or the job stops)`);
    this.host.dispatch.closeRound(prefetched.attempt.state);
    this.abort(prefetched.attempt);
  }

  /** The prefetched attempt when it is `batch`'s and its group is still the live one; otherwise it is dropped. */
  private claimPrefetched(batch: SampledBatch, liveKey: string): Attempt | undefined {
    const prefetched = this.prefetched;
    if (!prefetched) return undefined;
    const { attempt } = prefetched;
    if (prefetched.batch === batch && prefetched.liveKey === liveKey && !attempt.failed && attempt.state.peer!.generation === this.generation) {
      this.prefetched = undefined;
      return attempt;
    }
    this.discardPrefetched();
    return undefined;
  }

  /** Opens an attempt at `step` with these shards (one per rank) and sends its tasks. */
  private launch(batch: SampledBatch, step: number, weightsVersion: number, plans: readonly { workerId: string; ids: Uint32Array }[]): Attempt {
    const group = plans.map((p) => p.workerId);
    if (group.join(',') !== this.lastGroup) {
      this.generation++;
      this.lastGroup = group.join(',');
    }
    const running: Attempt = { state: undefined!, group, faults: new Map(), timer: undefined, judgeAt: 0, failed: false };
    const peer: PeerAttempt = {
      generation: this.generation,
      group,
      addresses: group.map((id) => this.addresses.get(id)!),
      globalBatch: batch.indices.length,
      deadlineMs: this.deadlineMs,
      lost: (_id, why) => this.failAttempt(running, why),
    };
    running.state = this.host.openRound(batch, step, weightsVersion, this.open(), peer);
    this.host.dispatch.assignPeer(running.state, plans);
    return running;
  }

  /** A worker holds its task's step reduced. */
  reduced(workerId: string, message: PeerReduced__Output): void {
    const { dispatch } = this.host;
    const state = dispatch.heldRound(workerId, message.taskId, 'a reduced step');
    if (!state) return;
    const from = `worker ${workerId}, task ${message.taskId}, step ${message.step}`;
    try {
      const task = state.round.find(message.taskId, workerId);
      if (message.generation !== state.peer?.generation) throw new ProtocolError(`${from}: reduced in generation ${message.generation}, the task is of ${state.peer?.generation}`);
      if (message.n + message.skipped.length !== task.ids.length) throw new WeightsError(`${from}: ${message.n} samples used and ${message.skipped.length} skipped, the shard holds ${task.ids.length}`);
      if (message.refused && state.reduction instanceof PeerResults) state.reduction.refuse(`${from}: ${message.refused.slice(0, 200)}`);
      if (message.n > 0) {
        const shard = { loss: message.loss, correct: message.correct, n: message.n, grads: [], buffers: [] };
        state.reduction!.offer(task.rank, { shard, from, maxN: task.ids.length }, () => {});
      }
      dispatch.completeTask(state, task, workerId, message.timings, performance.now(), message.n);
    } catch (error) {
      const droverError = error instanceof DroverError ? error : new ProtocolError(String(error));
      this.host.evict(workerId, droverError.message, droverError);
    }
  }

  /** A worker's reduction failed, naming the ranks that failed it: gathered briefly, then judged. */
  fault(workerId: string, fault: PeerFault__Output): void {
    // The running attempt, or the prefetched one (workers reduce it as soon as they can).
    const running = [this.current, this.prefetched?.attempt].find((a) => a?.state.peer?.generation === fault.generation && a.state.round.step === fault.step);
    if (!running || running.failed || !running.group.includes(workerId)) {
      this.host.log.debug({ worker: workerId, step: fault.step, generation: fault.generation }, `peer fault from ${workerId} about an attempt no longer running: dropped`);
      return;
    }
    if (running.faults.has(workerId)) return;
    const ranks = [...new Set(fault.ranks.filter((r) => Number.isInteger(r) && r >= 0 && r < running.group.length))];
    running.faults.set(workerId, { ...fault, ranks, from: workerId });
    // A worker whose own links fail fast names most of the group at once; the peers that name it
    // report only at their deadline: wait for them, or the lone report would be judged alone.
    const wait = ranks.length > running.group.length / 2 ? this.deadlineMs + FAULT_WINDOW_MS : FAULT_WINDOW_MS;
    const judgeAt = performance.now() + wait;
    if (running.timer && judgeAt <= running.judgeAt) return;
    clearTimeout(running.timer);
    running.judgeAt = judgeAt;
    running.timer = setTimeout(() => this.judge(running), wait);
  }

  /** Evicts the ranks an attempt's fault reports name (deadline and unreachable first, scatter phase first) and fails the attempt. */
  private judge(running: Attempt): void {
    if (running.failed) return;
    const step = running.state.round.step;
    const faults = [...running.faults.values()];
    const evictable = faults.filter((f) => f.reason === 'deadline' || f.reason === 'unreachable');
    const chosen = evictable.some((f) => f.phase === 'scatter') ? evictable.filter((f) => f.phase === 'scatter') : evictable;
    let culprits = mostNamed(chosen, running.group);
    // Nobody to blame (only "refused" reports, or everyone named alike): the step is tried again,
    // and after a few such attempts the named are evicted anyway.
    if (culprits.size === 0 && ++this.attemptsWithoutEviction >= MAX_ATTEMPTS_WITHOUT_EVICTION) culprits = mostNamed(faults, running.group, { evenIfAllTie: true });
    const summary = faults.map((f) => `${f.from}: ranks ${f.ranks.join(',')} ${f.reason} in ${f.phase}`).join('; ');
    this.failAttempt(running, `peers reported: ${summary}`);
    for (const [workerId, fault] of culprits) {
      const reason = `named by its peers in step ${step} (${fault.reason} in the ${fault.phase} phase, peer deadline ${this.deadlineMs} ms)`;
      const phase = fault.phase === 'gather' ? 'gather' : 'scatter';
      const kind = fault.reason === 'unreachable' ? 'unreachable' : fault.reason === 'refused' ? 'refused' : 'deadline';
      this.host.evict(workerId, reason, new PeerTimeoutError(`worker ${workerId} ${reason}: evicted, the step is planned again over the others`, { ranks: [running.group.indexOf(workerId)], phase, step, reason: kind }));
    }
  }

  private failAttempt(running: Attempt | undefined, why: string): void {
    if (!running || running.failed) return;
    running.failed = true;
    running.state.reject(new AttemptFailed(why));
  }

  /** Tells the attempt's workers to drop it; the next attempt gets a new generation. */
  private abort(running: Attempt): void {
    clearTimeout(running.timer);
    const { generation } = running.state.peer!;
    const { step } = running.state.round;
    for (const id of running.group) this.host.link(id)?.send([{ envelope: envelope(this.host.jobId), abort: { step, generation } }]);
    this.lastGroup = '';
  }

  /** Every rank reported: each applies the update (or, with no usable sample, only moves to `version`). */
  private commit(update: { step: number; lr: number; version: number }, samples: number): void {
    const running = this.finished;
    if (!running) throw new ProtocolError(`step ${update.step}: no attempt to commit`);
    const generation = running.state.peer!.generation;
    for (const id of running.group) {
      this.host.link(id)?.send([{ envelope: envelope(this.host.jobId), commit: { step: update.step, generation, learningRate: update.lr, samples, version: update.version } }]);
    }
    this.custody.committed(running.group, update.version, samples);
  }
}

/**
 * One attempt's results with the peer reduction: metrics only (the gradient stays with the
 * workers). `apply` commits the step and sums the metrics in rank order.
 */
class PeerResults implements ReducingStep {
  private readonly metrics = new Map<number, { loss: number; correct: number; n: number }>();
  /** Why the workers refuse this step's update (its reduced sum is not finite), once one says so. */
  private refused: string | undefined;

  constructor(private readonly commit: (update: { step: number; lr: number; version: number }, samples: number) => void) {}

  expect(): void {}

  withdraw(rank: number): void {
    this.metrics.delete(rank);
  }

  offer(rank: number, contribution: Contribution, release: () => void): void {
    release();
    const { loss, correct, n } = contribution.shard;
    const maxN = contribution.maxN ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isInteger(n) || n <= 0 || n > maxN) throw new WeightsError(`${contribution.from}: n is ${n}, the shard holds ${maxN}`);
    if (!Number.isFinite(loss)) throw new WeightsError(`${contribution.from}: loss is ${loss}`);
    if (!Number.isInteger(correct) || correct < 0 || correct > n) throw new WeightsError(`${contribution.from}: correct count ${correct} is outside 0..${n}`);
    this.metrics.set(rank, { loss, correct, n });
  }

  /** A rank reports the reduced sum not finite: every replica refuses the update at the commit. */
  refuse(why: string): void {
    this.refused ??= why;
  }

  get samples(): number {
    let n = 0;
    for (const m of this.metrics.values()) n += m.n;
    return n;
  }

  async apply(update: { step: number; lr: number; version: number }): Promise<ReductionOutcome> {
    const n = this.samples;
    this.commit(update, n);
    if (n === 0) return { kind: 'empty' };
    if (this.refused) return { kind: 'refused', error: new NonFiniteUpdateError(`the reduced gradient is not finite (${this.refused})`, 'reduced gradient') };
    let lossSum = 0;
    let correct = 0;
    for (const rank of [...this.metrics.keys()].sort((a, b) => a - b)) {
      const m = this.metrics.get(rank)!;
      lossSum += m.loss * m.n;
      correct += m.correct;
    }
    return { kind: 'applied', loss: lossSum / n, correct, n };
  }

  dispose(): void {}
}
