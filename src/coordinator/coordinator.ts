import { ClusterError, ConfigError, DroverError, ProtocolError } from '../errors.ts';
import type { SampledBatch } from '../data/sampler.ts';
import type { Dataset, DataSplit } from '../data/types.ts';
import type { ClusterSpec } from '../job/cluster-spec.ts';
import type { ReplicaSpec } from '../job/replica-spec.ts';
import type { EvaluationMetrics, StepContext, StepEngine, StepOutcome } from '../job/step-engine.ts';
import type { WeightEntry, WeightSet } from '../model/weights.ts';
import { weightManifest, writeWeights } from '../model/weights.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Trainer } from '../train/trainer.ts';
import type { JoinReply } from '../wire/generated/drover/v1/JoinReply.ts';
import type { JoinRequest__Output } from '../wire/generated/drover/v1/JoinRequest.ts';
import { envelope, MAX_CHUNK_BYTES } from '../wire/protocol.ts';
import { TENSOR_ENCODING } from '../wire/tensor-encoding.ts';
import { EvaluationAccumulator } from './evaluation.ts';
import { GradientGuard } from './gradient-guard.ts';
import { GradientIntake } from './gradient-intake.ts';
import { Round, type SplitName } from './round.ts';
import type { SessionHandlers, SessionHost, SessionLimits, WorkerLink } from './server.ts';
import { PeerReduction } from './peer-reduction.ts';
import { StarReduction } from './star-reduction.ts';
import type { ReductionOutcome, StepReduction } from './step-reduction.ts';
import { stepTiming } from './step-stats.ts';
import { TaskDispatch, type RoundState } from './task-dispatch.ts';
import { sampleSource, type SampleSource } from './task-messages.ts';
import { WeightPublisher } from './weight-publisher.ts';
import { WorkerSessions } from './worker-sessions.ts';

export interface CoordinatorOptions {
  jobId: string;
  cluster: ClusterSpec;
  /** Shared secret workers must present; undefined runs open. */
  token: string | undefined;
  dataset: Dataset;
  /** The coordinator's model and optimizer: the only copy of optimizer state. */
  trainer: Trainer;
  replicaSpec: ReplicaSpec;
  /**
   * Steps the job took before (a resumed run, earlier phases): the weights version starts there.
   * The checkpoint's weights and optimizer state are already in `trainer`. Default 0.
   */
  stepsDone?: number;
  log: Logger;
}

/**
 * Synchronous data-parallel SGD over a changing set of workers, as a StepEngine. Each step's
 * global batch is split into shards by measured worker speed (TaskDispatch); results are checked
 * as they arrive (GradientIntake) and combined into the update by the step reduction
 * (StarReduction: summed here, the optimizer applied here, the weights broadcast by the
 * WeightPublisher). A worker that dies, leaves, misses the deadline or sends a bad result loses
 * its shard to the live workers within the same step, so every step covers exactly its batch.
 */
export class Coordinator implements SessionHost, StepEngine {
  readonly jobId: string;
  readonly token: string | undefined;
  private readonly log: Logger;
  private readonly workers: WorkerSessions;
  private readonly dispatch: TaskDispatch;
  private readonly intake: GradientIntake;
  private readonly publisher: WeightPublisher;
  private readonly reduction: StepReduction;
  /** The peer reduction, when the job uses it (cluster.reduction: peer with more than one worker allowed). */
  private readonly peer: PeerReduction | undefined;
  private readonly train: SampleSource;
  private readonly limits: SessionLimits;
  private transferIds = 0;
  /** Optimizer steps applied (resumed ones included). */
  private stepsApplied: number;
  /** Weights version: bumped by every step (applied or not) and by setWeights. */
  private version: number;
  /** The round of the step after the last one taken, planned ahead (prefetch). */
  private prefetched: { batch: SampledBatch; state: RoundState } | undefined;
  private fatal: Error | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(private readonly options: CoordinatorOptions) {
    const { trainer, cluster, log } = options;
    this.jobId = options.jobId;
    this.token = options.token;
    this.log = log;
    this.stepsApplied = options.stepsDone ?? 0;
    this.version = this.stepsApplied;
    this.workers = new WorkerSessions(cluster.maxWorkers, {
      jobId: this.jobId,
      log,
      step: () => this.stepsApplied,
      fatal: () => this.fatal,
      fail: (error) => this.fail(error),
      removed: (id) => {
        this.peer?.workerRemoved(id);
        this.dispatch.releaseWorker(id);
      },
    });
    this.train = sampleSource(options.dataset.train, 'train', cluster.dataTransport);
    const weights = weightManifest(trainer.model);
    const bytes = (entries: WeightEntry[]): number => entries.reduce((sum, w) => sum + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
    this.limits = { gradientBytes: bytes(trainer.gradientManifest), bufferBytes: bytes(weights.filter((w) => !w.trainable)), gradientEncoding: cluster.wire };
    const nextTransferId = (): number => ++this.transferIds;
    this.publisher = new WeightPublisher(this.jobId, trainer.model, weights, () => this.workers.sessions(), nextTransferId);
    const guard = cluster.gradientGuard ? new GradientGuard(cluster.gradientGuard) : undefined;
    // 'peer' with at most one worker is the star: nobody to reduce with.
    this.peer = cluster.reduction === 'peer' && cluster.maxWorkers > 1 ? this.peerReduction() : undefined;
    if (this.peer) refuseUnsupportedWithPeer(cluster);
    this.reduction = this.peer ?? new StarReduction(trainer, weights, this.publisher, guard, log);
    if (this.peer) this.limits.optimizerBytes = 4 * this.limits.gradientBytes + 1024;
    this.dispatch = new TaskDispatch({
      jobId: this.jobId,
      cluster,
      membership: this.workers.membership,
      log,
      link: (id) => this.workers.link(id),
      step: () => this.stepsApplied,
      fatal: () => this.fatal,
      fail: (error) => this.fail(error),
      evict: (id, reason, error) => this.workers.remove(id, 'fail', reason, error),
      noLiveWorker: () => this.workers.armNoWorkerTimer(cluster.joinTimeoutMs),
      nextTransferId,
    });
    this.intake = new GradientIntake({
      dispatch: this.dispatch,
      datasetName: options.dataset.name,
      log,
      inSession: (id) => this.workers.link(id) !== undefined,
      published: () => this.publisher.published,
      refuse: (id, error) => this.refuse(id, error),
    });
  }

  // ---- SessionHost: called by the transport ----

  join(request: JoinRequest__Output, peer: string): JoinReply {
    if (this.fatal) throw new ClusterError(`job ${this.jobId} has failed: ${this.fatal.message}`);
    const caps = request.capabilities;
    const record = this.workers.membership.admit(
      { backend: caps?.backend ?? '', device: caps?.device ?? '', threads: caps?.threads ?? 0, hostname: caps?.hostname ?? '', pid: caps?.pid ?? 0 },
      request.name,
      peer,
    );
    this.log.debug({ worker: record.id, address: peer }, `worker ${record.id} joined from ${peer}; waiting for its session`);
    return {
      envelope: envelope(this.jobId),
      workerId: record.id,
      replicaSpecJson: JSON.stringify(this.options.replicaSpec),
      maxChunkBytes: MAX_CHUNK_BYTES,
      sessionKey: record.sessionKey,
      gradientEncoding: TENSOR_ENCODING[this.options.cluster.wire],
      peer: this.peer ? { port: this.options.cluster.peerPort, optimizerJson: JSON.stringify(this.options.trainer.optimizer.spec), parkMs: 2 * this.options.cluster.stepDeadlineMs } : null,
    };
  }

  leave(workerId: string, sessionKey: string, reason: string): void {
    const { membership } = this.workers;
    if (!membership.has(workerId)) return;
    membership.authenticate(workerId, sessionKey);
    this.workers.remove(workerId, 'leave', reason);
  }

  openSession(workerId: string, sessionKey: string, link: WorkerLink, ready?: { peerPort: number }): { handlers: SessionHandlers; limits: SessionLimits } {
    const { peer } = this;
    // Checked first: a worker that cannot take part never becomes live.
    if (peer) PeerReduction.checkPeerPort(workerId, ready?.peerPort ?? 0);
    this.workers.open(workerId, sessionKey, link);
    if (peer) {
      peer.sessionOpened(workerId, link.peer, ready!.peerPort);
      // Its weights and optimizer state, pulled from a worker that holds them (between steps).
      void peer.custody.syncJoiners().catch((error: unknown) => this.log.warn({ worker: workerId }, `could not send ${workerId} the model's state: ${(error as Error).message}`));
    } else {
      // The current weights first, all of them: everything after is computed on them or later
      // versions, and partial broadcasts build on them.
      const weights = this.publisher.currentFullBroadcast();
      if (weights) link.send(weights);
    }
    this.dispatch.assignWaiting();
    this.workers.wake();
    const handlers: SessionHandlers = {
      gradient: (result, gradients, buffers) => void this.intake.gradient(workerId, result, gradients, buffers),
      evaluation: (result) => this.intake.evaluation(workerId, result),
      failure: (failure) => this.dispatch.taskFailed(workerId, failure),
      ...(peer ? {
        reduced: (result) => peer.reduced(workerId, result),
        peerFault: (fault) => peer.fault(workerId, fault),
        state: (reply, weights, slots) => void peer.custody.state(workerId, reply, weights, slots),
      } satisfies Partial<SessionHandlers> : {}),
      closed: (error) => this.workers.closed(workerId, link, error),
    };
    return { handlers, limits: this.limits };
  }

  // ---- StepEngine ----

  /** Sends the starting weights, starts the deadline watchdog, and waits for cluster.minWorkers workers. */
  async ready(signal?: AbortSignal): Promise<boolean> {
    const { cluster } = this.options;
    // With the peer reduction, workers get the weights with the optimizer state as they join.
    if (this.publisher.published === undefined && !this.peer) await this.publisher.publish(this.version, 'all');
    if (!this.watchdog) {
      this.watchdog = setInterval(() => this.checkDeadlines(), Math.min(1000, Math.max(50, Math.floor(cluster.stepDeadlineMs / 5))));
      this.watchdog.unref();
    }
    await this.workers.waitFor(cluster.minWorkers, cluster.joinTimeoutMs, signal);
    return !signal?.aborted;
  }

  async step(batch: SampledBatch, context: StepContext, next?: SampledBatch): Promise<StepOutcome> {
    const version = this.version + 1;
    let current: RoundState;
    let outcome: ReductionOutcome;
    let reduceStart: number;
    if (this.peer) {
      ({ state: current, outcome, reduceStart } = await this.peer.step(batch, context, version, next));
    } else {
      current = this.claimPrefetched(batch) ?? this.planTraining(batch, context.step);
      current.round.startedAt = performance.now();
      // Prefetch: the next shard goes out now, so workers decode it while this step computes.
      if (next) this.prefetched = { batch: next, state: this.planTraining(next, context.step + 1) };
      await this.dispatch.finish(current);
      reduceStart = performance.now();
      outcome = await current.reduction!.apply({ step: context.step, lr: context.lr, version });
    }
    this.stepsApplied = context.step;
    this.version = version;
    const stepEnd = performance.now();
    this.dispatch.closeRound(current);
    const { step, epoch } = context;
    switch (outcome.kind) {
      case 'empty':
        // Every sample of the batch was undecodable (each logged as a skip): no gradient, no update
        // (the training loop says so).
        return { kind: 'empty' };
      case 'refused': {
        const { error } = outcome;
        const workers = [...new Set(current.reports.map((r) => r.worker))];
        logEvent(this.log, 'update_refused', { step, epoch, target: error.target, code: error.code, workers, reason: error.message },
          `step ${step}: update refused: ${error.message} (gradients from ${workers.join(', ')})`);
        return { kind: 'refused' };
      }
      case 'applied':
        return { kind: 'applied', loss: outcome.loss, correct: outcome.correct, n: outcome.n, timing: stepTiming(current.reports, current.round.startedAt ?? reduceStart, reduceStart, stepEnd) };
    }
  }

  /** Sharded evaluation of a split on the current weights. */
  async evaluate(split: SplitName, data: DataSplit, epoch: number): Promise<EvaluationMetrics> {
    // Every worker computes on the current weights: one that joined since the last step gets them first.
    await this.peer?.custody.syncJoiners();
    const round = new Round({ kind: 'evaluate', step: this.stepsApplied, weightsVersion: this.version, split, epoch, augment: false, expected: data.length });
    const state = this.dispatch.openRound(round, sampleSource(data, split, this.options.cluster.dataTransport));
    state.evaluation = new EvaluationAccumulator(this.options.dataset.classNames.length);
    state.round.startedAt = performance.now();
    const ids = Uint32Array.from({ length: data.length }, (_, i) => i);
    this.dispatch.assign(state, ids);
    try {
      await this.dispatch.finish(state);
      return state.evaluation.result();
    } finally {
      this.dispatch.closeRound(state);
    }
  }

  weights(): Promise<WeightSet> {
    return this.reduction.weights();
  }

  /** Writes `weights` into the coordinator's model and sends all of them to every worker as a new version. */
  async setWeights(weights: WeightSet): Promise<void> {
    await this.peer?.custody.refresh();
    writeWeights(this.options.trainer.model, weights);
    this.version++;
    if (this.peer) await this.peer.custody.rewritten();
    else await this.publisher.publish(this.version, 'all');
  }

  optimizerState(): ReturnType<StepEngine['optimizerState']> {
    return this.reduction.optimizerState();
  }

  /** Live workers: a per-worker batch's global batch is drawn for this many. */
  replicas(): number {
    return this.workers.live().length;
  }

  discardPrefetched(): void {
    this.peer?.discardPrefetched();
    if (this.prefetched) this.dispatch.closeRound(this.prefetched.state);
    this.prefetched = undefined;
  }

  /** Training is over (export, test evaluation and dismissal follow): no more step deadlines. */
  endTraining(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.workers.clearNoWorkerTimer();
  }

  // ---- the job ----

  /** Tells every worker the job is over and ends their sessions. */
  dismissWorkers(reason: string, completed: boolean, rejoin = false): Promise<void> {
    return this.workers.dismiss(reason, completed, rejoin);
  }

  /** Optimizer steps applied so far. */
  get stepsDone(): number {
    return this.stepsApplied;
  }

  /** Workers now taking tasks. */
  liveWorkers(): string[] {
    return this.workers.live();
  }

  /** Fails the job: every wait rejects with this error. */
  fail(error: Error): void {
    if (this.fatal) return;
    this.fatal = error;
    this.dispatch.rejectAll(error);
    this.workers.wake();
  }

  // ---- rounds and workers ----

  /** The prefetched round when it is `batch`'s; a prefetch for another batch is dropped. */
  private claimPrefetched(batch: SampledBatch): RoundState | undefined {
    const prefetched = this.prefetched;
    this.prefetched = undefined;
    if (prefetched?.batch === batch) return prefetched.state;
    if (prefetched) this.dispatch.closeRound(prefetched.state);
    return undefined;
  }

  /** Opens the training round of `step` on `batch` and sends its shards. */
  private planTraining(batch: SampledBatch, step: number): RoundState {
    // The weights it needs: those after the steps before it (one ahead when prefetched).
    const weightsVersion = this.version + (step - this.stepsApplied - 1);
    const round = new Round({ kind: 'train', step, weightsVersion, split: 'train', epoch: batch.epoch, augment: true, expected: batch.indices.length });
    const state = this.dispatch.openRound(round, this.train, this.reduction.open(round.expected));
    this.dispatch.assign(state, batch.indices);
    return state;
  }

  private peerReduction(): PeerReduction {
    const { cluster, trainer, log } = this.options;
    // Built before task dispatch (the reduction is part of the coordinator's parts): read it late.
    const coordinator = this;
    return new PeerReduction({
      jobId: this.jobId,
      cluster,
      log,
      trainer,
      membership: this.workers.membership,
      get dispatch() {
        return coordinator.dispatch;
      },
      link: (id) => this.workers.link(id),
      evict: (id, reason, error) => this.workers.remove(id, 'fail', reason, error),
      waitForWorker: () => {
        this.workers.armNoWorkerTimer(cluster.joinTimeoutMs);
        return this.workers.waitFor(1, cluster.joinTimeoutMs, undefined);
      },
      version: () => this.version,
      fatal: () => this.fatal,
      nextTransferId: () => ++this.transferIds,
      openRound: (batch, step, weightsVersion, reduction, peer) => {
        const round = new Round({ kind: 'train', step, weightsVersion, split: 'train', epoch: batch.epoch, augment: true, expected: batch.indices.length });
        const state = this.dispatch.openRound(round, this.train, reduction);
        state.peer = peer;
        return state;
      },
    });
  }

  /** A worker broke the contract (bad gradient, foreign task): refuse it, evict it, reassign its shards. */
  private refuse(workerId: string, error: unknown): void {
    const droverError = error instanceof DroverError ? error : new ProtocolError(String(error), { cause: error });
    this.workers.remove(workerId, 'fail', droverError.message, droverError);
  }

  /** The watchdog: fails a job left without healthy workers, drops stale joins, evicts workers past the step deadline. */
  private checkDeadlines(): void {
    const now = performance.now();
    if (this.dispatch.failIfUnhealthy(now)) return;
    this.workers.dropStaleJoins(now);
    this.dispatch.evictOverdue(now);
  }
}

/**
 * What the peer reduction does not do yet, refused rather than silently dropped: TLS between
 * workers (each would need a server certificate) and the gradient guard (its clipping and norm
 * checks see the star's gradients, which the coordinator no longer receives).
 */
function refuseUnsupportedWithPeer(cluster: ClusterSpec): void {
  if (cluster.tls) throw new ConfigError('cluster.reduction: peer does not support cluster.tls yet (workers would exchange gradients in plaintext): use the star, or a network you trust without TLS', 'cluster.reduction');
  if (cluster.gradientGuard) throw new ConfigError('cluster.reduction: peer does not support cluster.gradientGuard yet: use the star', 'cluster.reduction');
}
