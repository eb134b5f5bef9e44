import { ClusterError, DeadlineError, ProtocolError, type DroverError } from '../errors.ts';
import type { ClusterSpec } from '../job/cluster-spec.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { TaskFailure__Output } from '../wire/generated/drover/v1/TaskFailure.ts';
import type { Timings__Output } from '../wire/generated/drover/v1/Timings.ts';
import type { EvaluationAccumulator } from './evaluation.ts';
import type { Membership } from './membership.ts';
import type { Round, Task } from './round.ts';
import { planShards } from './scheduler.ts';
import type { WorkerLink } from './server.ts';
import type { TaskReport } from './step-stats.ts';
import type { ReducingStep } from './step-reduction.ts';
import { sharedPayload, streamPayload, taskMessages, type SampleSource, type TaskPayload } from './task-messages.ts';
import { MAX_FAILURES_IN_A_ROW, MAX_PROTOCOL_VIOLATIONS, WorkerHealth } from './worker-health.ts';

/** A round in flight, with what its results go into. */
export interface RoundState {
  round: Round;
  /** Where its samples come from. */
  source: SampleSource;
  /** A training round's step reduction. */
  reduction?: ReducingStep;
  evaluation?: EvaluationAccumulator;
  /** Labels of evaluation tasks, by task id. */
  labels: Map<string, Uint32Array>;
  /** Each worker's part, for the step's timing. */
  reports: TaskReport[];
  /** Peer reduction: the group that reduces this attempt at the step (see PeerReduction). */
  peer?: PeerAttempt;
  resolve: () => void;
  reject: (error: Error) => void;
  done: Promise<void>;
}

/**
 * One attempt at a step with the peer reduction: one task per rank of the group. Its tasks are
 * never replanned one by one: a worker lost from it fails the whole attempt (`lost`), and the
 * step is planned again over the survivors with a new generation.
 */
export interface PeerAttempt {
  generation: number;
  /** Worker ids in rank order. */
  group: readonly string[];
  /** Their peer addresses, in rank order. */
  addresses: readonly string[];
  globalBatch: number;
  deadlineMs: number;
  lost(workerId: string, why: string): void;
}

/** What task dispatch needs from the coordinator around it. */
export interface DispatchHost {
  readonly jobId: string;
  readonly cluster: ClusterSpec;
  readonly membership: Membership;
  readonly log: Logger;
  /** The session of a worker in session. */
  link(workerId: string): WorkerLink | undefined;
  /** The last step applied (for logs). */
  step(): number;
  /** The error that failed the job, if it has. */
  fatal(): Error | undefined;
  fail(error: Error): void;
  /** Takes a worker out of the job (its tasks come back through `releaseWorker`). */
  evict(workerId: string, reason: string, error: DroverError): void;
  /** Samples wait and no worker is live. */
  noLiveWorker(): void;
  nextTransferId(): number;
}

/** Withdrawn task ids remembered (oldest forgotten first). */
const MAX_WITHDRAWN_REMEMBERED = 1024;

/** Evaluation tasks a worker holds at once: one computing, one decoding. */
const EVAL_TASKS_IN_FLIGHT = 2;

/**
 * Rounds and their tasks: plans samples over the live workers by speed, sends the tasks, takes
 * them back from workers that fail, leave or miss the step deadline and plans them again within
 * the same round, and evicts workers that keep failing tasks or send messages about tasks they
 * do not hold.
 */
export class TaskDispatch {
  private readonly rounds = new Map<Round, RoundState>();
  private readonly taskRounds = new Map<string, RoundState>();
  private readonly attempts = new Map<string, number>();
  /** Tasks withdrawn from their workers when an unfinished round closed (a stop): late results for them are expected. */
  private readonly withdrawn = new Map<string, string>();
  private readonly health = new WorkerHealth();

  constructor(private readonly host: DispatchHost) {}

  openRound(round: Round, source: SampleSource, reduction?: ReducingStep): RoundState {
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => {});
    const state: RoundState = { round, source, reduction, labels: new Map(), reports: [], resolve, reject, done };
    this.rounds.set(round, state);
    return state;
  }

  closeRound(state: RoundState): void {
    this.rounds.delete(state.round);
    state.reduction?.dispose();
    for (const task of state.round.outstanding()) {
      if (task.workerId !== undefined) this.withdrawn.set(task.id, task.workerId);
      if (this.withdrawn.size > MAX_WITHDRAWN_REMEMBERED) this.withdrawn.delete(this.withdrawn.keys().next().value!);
      this.taskRounds.delete(task.id);
      this.attempts.delete(task.id);
    }
  }

  /** Whether a round is still in flight (not closed). */
  isOpen(state: RoundState): boolean {
    return this.rounds.get(state.round) === state;
  }

  async finish(state: RoundState): Promise<void> {
    const fatal = this.host.fatal();
    if (fatal) throw fatal;
    if (state.round.done) return;
    await state.done;
  }

  /** Every wait on a round rejects with `error` (the job failed). */
  rejectAll(error: Error): void {
    for (const state of this.rounds.values()) state.reject(error);
  }

  /**
   * Plans `ids` and sends the tasks. A training batch is split over the live workers by speed
   * (one shard each); an evaluation is cut into tasks of evalTaskSize that workers take a few at
   * a time as they finish (memory stays bounded and faster workers take more). With no live
   * worker the samples wait for one.
   */
  assign(state: RoundState, ids: Uint32Array, attempt = 1, exclude?: string): void {
    const all = this.host.membership.live();
    // A task that failed goes to another worker when there is one.
    const others = exclude === undefined ? all : all.filter((w) => w.id !== exclude);
    const live = others.length > 0 ? others : all;
    if (state.round.kind === 'evaluate') {
      const size = this.host.cluster.evalTaskSize;
      for (let start = 0; start < ids.length; start += size) this.track(state.round.addTask(ids.subarray(start, start + size), undefined), state, attempt);
      if (live.length === 0) this.host.noLiveWorker();
      this.feed(state);
      return;
    }
    if (live.length === 0) {
      const task = state.round.addTask(ids, undefined);
      this.track(task, state, attempt);
      this.host.noLiveWorker();
      return;
    }
    for (const plan of planShards(ids, live, this.host.cluster.balance)) {
      const task = state.round.addTask(plan.ids, plan.workerId);
      this.track(task, state, attempt);
      this.dispatch(task, state);
    }
  }

  /** Sends a peer attempt's tasks: one shard per rank of its group, as planned. */
  assignPeer(state: RoundState, plans: readonly { workerId: string; ids: Uint32Array }[]): void {
    for (const plan of plans) {
      const task = state.round.addTask(plan.ids, plan.workerId);
      this.track(task, state, 1);
      this.dispatch(task, state);
    }
  }

  /** Gives parked tasks of every round to the workers now live (one joined). */
  assignWaiting(): void {
    if (this.host.membership.live().length === 0) return;
    for (const state of this.rounds.values()) {
      if (state.round.kind === 'evaluate') {
        this.feed(state);
        continue;
      }
      for (const task of state.round.takeUnassigned()) this.replan(state, task, this.attempts.get(task.id) ?? 1);
    }
  }

  /** Hands the outstanding tasks of a worker that left the job to the live workers, in the same rounds. */
  releaseWorker(workerId: string): void {
    for (const state of this.rounds.values()) {
      const orphans = state.round.release(workerId);
      if (state.peer && orphans.length > 0) {
        state.peer.lost(workerId, `${workerId} left the job`);
        continue;
      }
      for (const orphan of orphans) {
        this.replan(state, orphan, this.attempts.get(orphan.id) ?? 1);
        const live = this.host.membership.live().map((w) => w.id);
        this.host.log.info(
          { worker: workerId, task: orphan.id, samples: orphan.ids.length, step: orphan.step, to: live },
          `reassigned ${orphan.ids.length} samples of ${workerId}'s task ${orphan.id} (step ${orphan.step}) to ${live.join(', ') || 'the next worker to join'}`,
        );
      }
    }
  }

  /** Marks a task's result in: its worker's progress and speed, and the round's completion. */
  completeTask(state: RoundState, task: Task, workerId: string | undefined, timings: Timings__Output | null, receivedAt: number, used = task.ids.length): void {
    state.round.complete(task);
    this.taskRounds.delete(task.id);
    this.attempts.delete(task.id);
    if (used === 0) state.reduction?.withdraw(task.rank);
    if (workerId !== undefined) {
      this.host.membership.recordProgress(workerId, receivedAt);
      this.health.taskDone(workerId);
      if (used > 0) {
        state.reports.push({ worker: workerId, n: used, computeMs: timings?.computeMs ?? 0, dataWaitMs: timings?.dataWaitMs ?? 0, receivedAt });
        // Speed as the coordinator sees it (weights out or task assigned, to result in): a
        // worker's own account of its compute time is not trusted for balancing.
        let measuredMs = receivedAt - Math.max(task.assignedAt, state.round.startedAt ?? task.assignedAt);
        // With the peer reduction every rank's result arrives when the slowest is done: what the
        // coordinator sees is the group's time, so the worker's own compute time (never more than
        // that) is what tells stragglers apart. Peers are trusted with the weights anyway.
        if (state.peer && timings) measuredMs = Math.min(measuredMs, Math.max(1, timings.computeMs + timings.dataWaitMs));
        if (task.kind === 'train') this.host.membership.recordThroughput(workerId, used, measuredMs);
      }
    }
    if (state.round.done) state.resolve();
    else if (state.round.kind === 'evaluate') this.feed(state);
  }

  /**
   * A task the worker could not do goes to another worker (the same one only when it is alone);
   * a worker that fails MAX_FAILURES_IN_A_ROW tasks in a row is evicted and named.
   */
  taskFailed(workerId: string, failure: TaskFailure__Output): void {
    const state = this.heldRound(workerId, failure.taskId, 'a task failure');
    if (!state) return;
    const task = state.round.find(failure.taskId, workerId);
    const attempt = this.attempts.get(task.id) ?? 1;
    const inARow = this.health.taskFailed(workerId);
    const code = failure.code.slice(0, 64);
    const message = failure.message.slice(0, 500);
    this.host.log.warn({ worker: workerId, task: task.id, code, attempt, inARow }, `worker ${workerId} could not do task ${task.id}: ${message}`);
    state.round.cancel(task);
    if (inARow >= MAX_FAILURES_IN_A_ROW) {
      this.evictUnhealthy(workerId, `failed ${inARow} tasks in a row; last: ${code}: ${message}`, new ClusterError(`worker ${workerId} failed ${inARow} tasks in a row (last: ${code}): evicted`));
    }
    // Its peers wait for its part: the whole step is planned again.
    if (state.peer) state.peer.lost(workerId, `${workerId} could not do task ${task.id}: ${code}`);
    else this.replan(state, task, attempt + 1, workerId);
  }

  /**
   * The round of a task `workerId` holds, or undefined after dealing with a message about a task
   * it does not hold: one held by another worker is a forgery (evicted at once); one not
   * outstanding at all is a protocol violation, logged, and evicted after MAX_PROTOCOL_VIOLATIONS.
   */
  heldRound(workerId: string, taskId: string, what: string): RoundState | undefined {
    if (!this.host.link(workerId)) return undefined;
    const state = this.taskRounds.get(taskId);
    const holder = state && this.isOpen(state) ? state.round.holder(taskId) : undefined;
    if (holder === workerId) return state;
    if (holder !== undefined) {
      const error = new ProtocolError(`worker ${workerId} sent ${what} for task ${taskId}, which belongs to ${holder}`);
      this.host.evict(workerId, error.message, error);
      return undefined;
    }
    if (this.withdrawn.get(taskId) === workerId) {
      this.withdrawn.delete(taskId);
      this.host.log.debug({ worker: workerId, task: taskId }, `worker ${workerId} sent ${what} for task ${taskId}, withdrawn when its round closed: dropped`);
      return undefined;
    }
    const count = this.health.violation(workerId);
    const reason = `sent ${what} for task ${String(taskId).slice(0, 80)}, which it does not hold (never assigned, done or withdrawn)`;
    logEvent(this.host.log, 'protocol_violation', { worker: workerId, task: String(taskId).slice(0, 80), reason, count, step: this.host.step() },
      `worker ${workerId} ${reason} (${count} of at most ${MAX_PROTOCOL_VIOLATIONS})`);
    if (count >= MAX_PROTOCOL_VIOLATIONS) {
      this.evictUnhealthy(workerId, `${count} protocol violations; last: ${reason}`, new ProtocolError(`worker ${workerId}: ${count} messages about tasks it does not hold: evicted`));
    }
    return undefined;
  }

  /** Fails the job when no healthy worker was left for a step deadline while rounds wait; returns whether it did. */
  failIfUnhealthy(now: number): boolean {
    const deadline = this.host.cluster.stepDeadlineMs;
    const reason = this.health.unhealthyFor(deadline, now);
    if (reason === undefined || this.rounds.size === 0) return false;
    this.host.fail(new ClusterError(`no healthy worker for ${deadline} ms (cluster.stepDeadlineMs): ${reason}`));
    return true;
  }

  /** Evicts workers whose tasks passed the step deadline. */
  evictOverdue(now: number): void {
    const deadline = this.host.cluster.stepDeadlineMs;
    const { membership } = this.host;
    for (const state of [...this.rounds.values()]) {
      for (const workerId of state.round.overdueWorkers(now, deadline, (id) => membership.progressOf(id))) {
        if (!membership.has(workerId)) continue;
        const tasks = state.round.outstanding().filter((t) => t.workerId === workerId);
        const samples = tasks.reduce((sum, t) => sum + t.ids.length, 0);
        const what = state.round.kind === 'train' ? `step ${state.round.step}` : `${state.round.split} evaluation`;
        this.host.evict(workerId, `missed the deadline of ${deadline} ms in ${what} (${tasks.length} task(s), ${samples} samples)`,
          new DeadlineError(`worker ${workerId} missed the step deadline of ${deadline} ms in ${what}: evicted, its samples were reassigned`));
      }
    }
  }

  /** Evicts a misbehaving worker; with no live worker left, the no-healthy-worker clock starts. */
  private evictUnhealthy(workerId: string, reason: string, error: DroverError): void {
    this.host.evict(workerId, reason, error);
    this.health.evicted(workerId, reason, this.host.membership.live().length);
  }

  /** Tops every live worker up to EVAL_TASKS_IN_FLIGHT waiting evaluation tasks. */
  private feed(state: RoundState): void {
    for (const worker of this.host.membership.live()) {
      while (state.round.heldBy(worker.id) < EVAL_TASKS_IN_FLIGHT) {
        const task = state.round.handOut(worker.id);
        if (!task) return;
        this.dispatch(task, state);
      }
    }
  }

  private track(task: Task, state: RoundState, attempt: number): void {
    this.taskRounds.set(task.id, state);
    this.attempts.set(task.id, attempt);
    state.reduction?.expect(task.rank);
  }

  /** Plans a withdrawn task's samples again (on another worker than `exclude` when there is one). */
  private replan(state: RoundState, task: Task, attempt: number, exclude?: string): void {
    this.taskRounds.delete(task.id);
    this.attempts.delete(task.id);
    state.reduction?.withdraw(task.rank);
    this.assign(state, task.ids, attempt, exclude);
  }

  private dispatch(task: Task, state: RoundState): void {
    this.sendTask(task, state).catch((error: unknown) => {
      this.host.fail(new ClusterError(`cannot send the samples of task ${task.id}: ${(error as Error).message}`, { cause: error }));
    });
  }

  /** Encodes a task's samples (stream transport) and sends the assignment; its bytes follow as chunks. */
  private async sendTask(task: Task, state: RoundState): Promise<void> {
    const { source } = state;
    let payload: TaskPayload;
    if (source.kind === 'stream') {
      const encoded = await source.shards.encode(task.ids);
      // The worker may have died while the samples were read: then the task was planned again.
      if (!state.round.isOpen(task.id)) return;
      if (encoded.skipped.length > 0) {
        // Unreadable at the source (counted and logged by the dataset): covered, never sent.
        task.ids = Uint32Array.from(encoded.ids);
        state.round.skip(encoded.skipped.length);
      }
      payload = streamPayload(encoded, this.host.nextTransferId());
    } else {
      payload = sharedPayload(source.split, task.ids);
    }
    if (task.ids.length === 0) {
      this.completeTask(state, task, undefined, null, performance.now());
      return;
    }
    const link = this.host.link(task.workerId!);
    if (!link) return;
    if (state.evaluation) state.labels.set(task.id, Uint32Array.from(payload.labels));
    const messages = taskMessages(this.host.jobId, task, payload);
    const { peer } = state;
    if (peer) {
      const rank = peer.group.indexOf(task.workerId!);
      messages[0]!.task!.peer = { generation: peer.generation, rank, peers: [...peer.addresses], globalBatch: peer.globalBatch, deadlineMs: peer.deadlineMs };
    }
    link.send(messages);
  }
}
