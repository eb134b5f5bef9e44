import type * as tf from '@tensorflow/tfjs';
import { ClusterError, DeadlineError, DroverError, NonFiniteUpdateError, ProtocolError, WeightsError } from '../errors.ts';
import { SkipLog } from '../data/skips.ts';
import { Sampler, type SampledBatch } from '../data/sampler.ts';
import type { Dataset, DataSplit } from '../data/types.ts';
import type { WeightEntry, WeightSet } from '../model/weights.ts';
import { readWeights, weightManifest, writeWeights, writeWeightsAt } from '../model/weights.ts';
import { readFloat32 } from '../model/tensor-read.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { EpochRecord } from '../job/training-loop.ts';
import { learningRateAt, type ScheduleSpec } from '../train/schedule.ts';
import type { Trainer } from '../train/trainer.ts';
import type { CoordinatorMessage } from '../wire/generated/drover/v1/CoordinatorMessage.ts';
import type { EvaluationResult__Output } from '../wire/generated/drover/v1/EvaluationResult.ts';
import type { GradientResult__Output } from '../wire/generated/drover/v1/GradientResult.ts';
import type { SkippedSample__Output } from '../wire/generated/drover/v1/SkippedSample.ts';
import type { JoinReply } from '../wire/generated/drover/v1/JoinReply.ts';
import type { JoinRequest__Output } from '../wire/generated/drover/v1/JoinRequest.ts';
import type { Shard } from '../wire/generated/drover/v1/Shard.ts';
import type { TaskFailure__Output } from '../wire/generated/drover/v1/TaskFailure.ts';
import type { Timings__Output } from '../wire/generated/drover/v1/Timings.ts';
import { envelope, MAX_CHUNK_BYTES } from '../wire/protocol.ts';
import type { ReplicaSpec } from '../job/replica-spec.ts';
import { guardWrite } from '../io/write-guard.ts';
import { bytesTransfer, tensorTransfer, type OutgoingTransfer, type ReceivedTransfer } from '../wire/transfer.ts';
import type { Checkpoint, EpochProgress } from '../job/checkpoint.ts';
import { checkpointPath, saveCheckpoint } from '../job/checkpoint.ts';
import type { ClusterSpec } from '../job/cluster-spec.ts';
import { EarlyStopping, type EarlyStoppingSpec } from '../job/early-stopping.ts';
import { EvaluationAccumulator, type ShardedEvaluation } from './evaluation.ts';
import { Membership } from './membership.ts';
import { GradientGuard } from './gradient-guard.ts';
import { GradientReducer } from './reducer.ts';
import { Round, type SplitName, type Task } from './round.ts';
import { shardSource, type ShardSource } from './sample-source.ts';
import { planShards } from './scheduler.ts';
import type { SessionHandlers, SessionHost, SessionLimits, WorkerLink } from './server.ts';

export interface CoordinatorOptions {
  jobId: string;
  jobName: string;
  cluster: ClusterSpec;
  /** Shared secret workers must present; undefined runs open. */
  token: string | undefined;
  dataset: Dataset;
  /** The coordinator's model and optimizer: the only copy of optimizer state. */
  trainer: Trainer;
  replicaSpec: ReplicaSpec;
  epochs: number;
  batchSize: number;
  seed: number;
  schedule: ScheduleSpec;
  learningRate: number;
  logEvery: number;
  earlyStopping?: EarlyStoppingSpec;
  /** When this run is one phase of a job (transfer fine-tuning): the job's epochs, for progress. Default: epochs. */
  jobEpochs?: number;
  /** Steps and epochs of the phases before this one: the learning-rate schedule counts from there. */
  phaseStart?: { step: number; epoch: number };
  /** Folder for checkpoints. */
  outputDir: string;
  /** Continue from this checkpoint. */
  resume?: Checkpoint;
  log: Logger;
  /** Finish the current step, checkpoint, and stop (Ctrl-C). */
  signal?: AbortSignal;
}

export interface CoordinatorResult {
  status: 'completed' | 'early_stopped' | 'stopped';
  history: EpochRecord[];
  steps: number;
  bestEpoch?: number;
}

/** One worker's part of a step, for the step event and the bench. */
interface TaskReport {
  worker: string;
  n: number;
  computeMs: number;
  dataWaitMs: number;
  /** When its result was complete on the coordinator (performance.now()). */
  receivedAt: number;
}

/** A gradient result whose bytes are all in, waiting to be summed with the others that arrived with it. */
interface ArrivedGradient {
  workerId: string;
  state: RoundState | undefined;
  result: GradientResult__Output;
  gradients: ReceivedTransfer | undefined;
  buffers: ReceivedTransfer | undefined;
  receivedAt: number;
}

/** What a finished training round hands to the optimizer step. */
interface RoundState {
  round: Round;
  /** Where its samples come from. */
  source: SampleSource;
  reducer?: GradientReducer;
  evaluation?: EvaluationAccumulator;
  /** Labels of evaluation tasks, by task id. */
  labels: Map<string, Uint32Array>;
  reports: TaskReport[];
  /** Sampler position after this batch (saved by checkpoints once the step is applied). */
  positionAfter?: { epoch: number; offset: number };
  resolve: () => void;
  reject: (error: Error) => void;
  done: Promise<void>;
}

/** Samples of a split: shipped as encoded bytes (stream) or named by id (shared mounts). */
type SampleSource = { kind: 'stream'; shards: ShardSource } | { kind: 'shared'; split: DataSplit };

/** Task failures in a row (no task done between) after which a worker is evicted. */
const MAX_FAILURES_IN_A_ROW = 3;

/** Messages about tasks a worker does not hold after which it is evicted (a late one at a stop is normal). */
const MAX_PROTOCOL_VIOLATIONS = 3;

/** Withdrawn task ids remembered (oldest forgotten first). */
const MAX_WITHDRAWN_REMEMBERED = 1024;

/** Longest skip reason and detail a worker may report (longer ones are cut). */
const MAX_SKIP_REASON = 64;
const MAX_SKIP_DETAIL = 300;

/** Evaluation tasks a worker holds at once: one computing, one decoding. */
const EVAL_TASKS_IN_FLIGHT = 2;

/** A worker that joined but opened no session within this long is dropped. */
const STALE_JOIN_MS = 60_000;

/**
 * Synchronous data-parallel SGD over a changing set of workers. Each step's global batch is
 * split into shards by measured worker speed; gradients come back, are checked and averaged
 * weighted by n, and the optimizer (held only here) updates the weights, which go to every
 * worker. A worker that dies, leaves, misses the deadline or sends a bad gradient loses its
 * shard to the live workers within the same step, so every step covers exactly its batch.
 */
export class Coordinator implements SessionHost {
  readonly jobId: string;
  readonly token: string | undefined;
  private readonly membership: Membership;
  private readonly links = new Map<string, WorkerLink>();
  private readonly rounds = new Map<Round, RoundState>();
  private readonly taskRounds = new Map<string, RoundState>();
  private readonly attempts = new Map<string, number>();
  private readonly train: SampleSource;
  private readonly gradientManifest: WeightEntry[];
  private readonly bufferManifest: WeightEntry[];
  private readonly limits: SessionLimits;
  private readonly log: Logger;
  private transferIds = 0;
  /** Gradient sum arrays of applied steps, reused by the next reducers. */
  private readonly spareSums: Float32Array[][] = [];
  /** Gradient results complete on the wire and not yet summed (see takeArrived). */
  private arrived: ArrivedGradient[] = [];
  /** Every weight of the model, in broadcast order. */
  private readonly weightManifest: WeightEntry[];
  /** Weights version: bumped by every optimizer step (and by restoring best weights). */
  private version = 0;
  private step = 0;
  /** Version of the last broadcast (undefined before the first); workers in session hold it. */
  private published: number | undefined;
  /** The last full broadcast, for workers that join: rebuilt when partial ones have moved past it. */
  private fullBroadcast: { version: number; messages: CoordinatorMessage[] } | undefined;
  /** Host copy of every weight as of `published`, read back after each step. */
  private readonly hostWeights: Float32Array[] = [];
  private fatal: Error | undefined;
  /** Workers sent Stop, and why: their sessions' end is a leave, not a loss. */
  private readonly dismissed = new Map<string, string>();
  /** Task failures in a row, per worker. */
  private readonly failuresInARow = new Map<string, number>();
  /** Messages about tasks a worker did not hold, per worker. */
  private readonly violations = new Map<string, number>();
  /** Tasks withdrawn from their workers when an unfinished round closed (a stop): late results for them are expected. */
  private readonly withdrawn = new Map<string, string>();
  /**
   * Since when no healthy worker is left (the last one was evicted for failing its tasks or
   * breaking the protocol) and no task was done: the job fails once this is older than the
   * step deadline.
   */
  private unhealthySince: { at: number; reason: string } | undefined;
  private readonly guard: GradientGuard | undefined;
  /** Samples workers could not decode, logged with their paths. */
  private readonly remoteSkips: SkipLog;
  /** Epochs completed (history of this run, earlier phases included). */
  private history: EpochRecord[] = [];
  private readyWaiters: (() => void)[] = [];
  private noWorkerTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(private readonly options: CoordinatorOptions) {
    this.jobId = options.jobId;
    this.token = options.token;
    this.log = options.log;
    this.membership = new Membership(options.cluster.maxWorkers);
    this.train = this.sampleSource(options.dataset.train, 'train');
    this.gradientManifest = options.trainer.gradientManifest;
    this.weightManifest = weightManifest(options.trainer.model);
    this.bufferManifest = this.weightManifest.filter((w) => !w.trainable);
    const bytes = (entries: WeightEntry[]): number => entries.reduce((sum, w) => sum + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
    this.limits = { gradientBytes: bytes(this.gradientManifest), bufferBytes: bytes(this.bufferManifest) };
    this.guard = options.cluster.gradientGuard ? new GradientGuard(options.cluster.gradientGuard) : undefined;
    this.remoteSkips = new SkipLog(this.log);
  }

  // ---- SessionHost: called by the transport ----

  join(request: JoinRequest__Output, peer: string): JoinReply {
    if (this.fatal) throw new ClusterError(`job ${this.jobId} has failed: ${this.fatal.message}`);
    const caps = request.capabilities;
    const record = this.membership.admit(
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
    };
  }

  leave(workerId: string, sessionKey: string, reason: string): void {
    if (!this.membership.has(workerId)) return;
    this.membership.authenticate(workerId, sessionKey);
    this.removeWorker(workerId, 'leave', reason);
  }

  openSession(workerId: string, sessionKey: string, link: WorkerLink): { handlers: SessionHandlers; limits: SessionLimits } {
    const record = this.membership.authenticate(workerId, sessionKey);
    if (record.state === 'ready') throw new ProtocolError(`worker ${workerId} already has a session`);
    this.membership.markReady(workerId);
    this.links.set(workerId, link);
    logEvent(this.log, 'worker_join', { worker: workerId, address: record.address, backend: record.capabilities.backend, step: this.step },
      `worker ${workerId} joined (${record.capabilities.device || record.capabilities.backend}, ${record.capabilities.threads} compute thread${record.capabilities.threads === 1 ? '' : 's'}, ${record.capabilities.hostname}:${record.capabilities.pid}); ${this.membership.live().length} live`);
    // The current weights first, all of them: everything after is computed on them or later
    // versions, and partial broadcasts build on them.
    if (this.published !== undefined) link.send(this.currentFullBroadcast());
    this.clearNoWorkerTimer();
    for (const state of this.rounds.values()) this.assignWaiting(state);
    this.readyWaiters.splice(0).forEach((wake) => wake());
    const handlers: SessionHandlers = {
      gradient: (result, gradients, buffers) => void this.onGradient(workerId, result, gradients, buffers),
      evaluation: (result) => this.onEvaluation(workerId, result),
      failure: (failure) => this.onTaskFailure(workerId, failure),
      closed: (error) => {
        if (this.links.get(workerId) !== link) return;
        // Only a Leave RPC (or the end of a session the coordinator stopped) is a leave: a stream
        // that ends otherwise, even cleanly, lost a worker that never said goodbye (kill -9 can
        // close the stream before the connection error arrives).
        if (this.dismissed.has(workerId)) this.removeWorker(workerId, 'leave', `stopped by the coordinator: ${this.dismissed.get(workerId)}`);
        else this.removeWorker(workerId, 'fail', error ? error.message : 'session closed by the worker without leaving (process ended or connection lost)', error);
      },
    };
    return { handlers, limits: this.limits };
  }

  // ---- the training loop ----

  /** Trains until the last epoch, an early stop, an abort, or a fatal error. */
  async run(): Promise<CoordinatorResult> {
    const { options } = this;
    const { dataset, trainer, cluster, signal } = options;
    const resume = options.resume;
    const sampler = new Sampler({ length: dataset.train.length, batchSize: options.batchSize, seed: options.seed, position: resume?.state.sampler });
    const stepsPerEpoch = sampler.stepsPerEpoch;
    const phaseStart = options.phaseStart ?? { step: 0, epoch: 0 };
    const jobEpochs = options.jobEpochs ?? options.epochs;
    const scheduleContext = { baseRate: options.learningRate, stepsPerEpoch, totalSteps: stepsPerEpoch * (options.epochs - phaseStart.epoch) };
    const history: EpochRecord[] = resume ? [...resume.state.history] : [];
    this.history = history;
    const stopper = options.earlyStopping ? new EarlyStopping(options.earlyStopping, resume?.state.earlyStopping, resume?.bestWeights) : undefined;
    let progress: EpochProgress = resume?.state.epochProgress ?? { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
    this.step = resume?.state.step ?? 0;
    this.version = this.step;
    await this.publishWeights('all');

    this.watchdog = setInterval(() => this.checkDeadlines(), Math.min(1000, Math.max(50, Math.floor(cluster.stepDeadlineMs / 5))));
    this.watchdog.unref();
    try {
      await this.waitForWorkers(cluster.minWorkers, cluster.joinTimeoutMs, signal);
      // Stopped before enough workers came (a pod deleted while its workers are pending): a
      // stop like any other, so the CLI exits 128 + signal and a Job does not count a failure.
      if (signal?.aborted) return { status: 'stopped', history, steps: this.step };
      let pending: RoundState | undefined;
      const plan = (batch: SampledBatch, step: number, position: { epoch: number; offset: number }): RoundState => {
        const round = new Round({ kind: 'train', step, weightsVersion: this.version + (step - this.step - 1), split: 'train', epoch: batch.epoch, augment: true, expected: batch.indices.length });
        const state = this.openRound(round, this.train);
        state.positionAfter = position;
        this.assign(state, batch.indices);
        return state;
      };
      for (let epoch = sampler.position.epoch + 1; epoch <= options.epochs; epoch++) {
        const firstInEpoch = Math.floor(sampler.position.offset / options.batchSize) + 1;
        if (firstInEpoch === 1) progress = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
        logEvent(this.log, 'epoch_start', { epoch, epochs: jobEpochs, steps: stepsPerEpoch }, `epoch ${epoch}/${jobEpochs}`);
        const epochStarted = performance.now() - progress.seconds * 1000;
        let lr = options.learningRate;
        const window = new StepWindow();
        for (let inEpoch = firstInEpoch; inEpoch <= stepsPerEpoch; inEpoch++) {
          const step = this.step + 1;
          const current = pending ?? plan(sampler.next(), step, sampler.position);
          pending = undefined;
          current.round.startedAt = performance.now();
          // Prefetch: the next shard goes out now, so workers decode it while this step computes.
          if (inEpoch < stepsPerEpoch) pending = plan(sampler.next(), step + 1, sampler.position);
          await this.finish(current);
          const reduceStart = performance.now();
          lr = learningRateAt(options.schedule, step - 1 - phaseStart.step, scheduleContext);
          if (current.reducer!.samples === 0) {
            // Every sample of the batch was undecodable (each logged as a skip): no gradient, no update.
            this.log.warn({ step }, `step ${step}: no sample of the batch could be decoded; the update is skipped`);
            this.step = step;
            // Same weights, next version: the prefetched shards were planned for it.
            this.version++;
            await this.publishWeights({ buffers: false });
            this.closeRound(current);
            continue;
          }
          const reduced = current.reducer!.result();
          const clip = this.guard?.clip(reduced.grads);
          if (clip?.clipped) this.log.debug({ step, norm: clip.norm, clipNorm: this.guard!.spec.clipNorm }, `step ${step}: gradient norm ${clip.norm.toPrecision(3)} clipped to ${this.guard!.spec.clipNorm}`);
          try {
            await trainer.applyGradients(reduced.grads, lr);
          } catch (error) {
            if (!(error instanceof NonFiniteUpdateError)) throw error;
            // Weights and optimizer state are as before the step: it is skipped, training goes on.
            const workers = [...new Set(current.reports.map((r) => r.worker))];
            logEvent(this.log, 'update_refused', { step, epoch, target: error.target, code: error.code, workers, reason: error.message },
              `step ${step}: update refused: ${error.message} (gradients from ${workers.join(', ')})`);
            if (this.spareSums.length < 2) this.spareSums.push(reduced.grads);
            this.step = step;
            this.version++;
            await this.publishWeights({ buffers: false });
            this.closeRound(current);
            continue;
          }
          // The optimizer has copied them: the arrays can take the sums of a later step.
          if (this.spareSums.length < 2) this.spareSums.push(reduced.grads);
          if (reduced.buffers) this.writeBuffers(reduced.buffers);
          this.step = step;
          this.version++;
          await this.publishWeights({ buffers: reduced.buffers !== undefined });
          const stepEnd = performance.now();
          this.closeRound(current);
          progress.lossSum += reduced.loss * reduced.n;
          progress.correct += reduced.correct;
          progress.seen += reduced.n;
          window.add(current, reduced, current.round.startedAt, reduceStart, stepEnd);
          if (inEpoch % options.logEvery === 0 || inEpoch === stepsPerEpoch) {
            logEvent(this.log, 'step', { epoch, step, stepInEpoch: inEpoch, lr, ...window.flush(reduced) });
          }
          const everyK = cluster.checkpointEvery > 0 && step % cluster.checkpointEvery === 0 && inEpoch < stepsPerEpoch;
          if (everyK || signal?.aborted) {
            progress.seconds = (performance.now() - epochStarted) / 1000;
            await this.checkpoint(current.positionAfter!, epoch - 1, history, progress, stopper);
          }
          if (signal?.aborted) {
            this.log.warn({ step }, 'stop requested: stopped after this step (checkpoint written)');
            if (pending) this.closeRound(pending);
            return { status: 'stopped', history, steps: this.step };
          }
        }
        const seen = progress.seen;
        const seconds = (performance.now() - epochStarted) / 1000;
        const record: EpochRecord = { epoch, loss: progress.lossSum / seen, accuracy: progress.correct / seen, lr, seconds, imgPerSec: seen / seconds };
        if (dataset.validation) {
          const val = await this.evaluateSplit('validation', dataset.validation, epoch);
          record.valLoss = val.loss;
          record.valAccuracy = val.accuracy;
          record.seconds = (performance.now() - epochStarted) / 1000;
          logEvent(this.log, 'evaluation', { split: 'validation', loss: val.loss, accuracy: val.accuracy, n: val.n, classNames: dataset.classNames, confusion: val.confusion, epoch });
        }
        history.push(record);
        logEvent(this.log, 'epoch', { epochs: jobEpochs, ...record }, epochSummary(record, jobEpochs));
        const stop = (await stopper?.update(epoch, record, () => readWeights(trainer.model))) ?? false;
        progress = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
        await this.checkpoint(sampler.position, epoch, history, progress, stopper);
        if (stop) {
          const restored = options.earlyStopping!.restoreBest && stopper!.bestWeights !== undefined;
          if (restored) {
            writeWeights(trainer.model, stopper!.bestWeights!);
            this.version++;
            await this.publishWeights('all');
          }
          logEvent(this.log, 'early_stop', { epoch, monitor: stopper!.spec.monitor, best: stopper!.best!, bestEpoch: stopper!.bestEpoch!, restored },
            `early stop at epoch ${epoch}: ${stopper!.spec.monitor} best ${stopper!.best!.toFixed(4)} at epoch ${stopper!.bestEpoch}`);
          return { status: 'early_stopped', history, steps: this.step, bestEpoch: stopper!.bestEpoch };
        }
        if (signal?.aborted) return { status: 'stopped', history, steps: this.step };
      }
      return { status: 'completed', history, steps: this.step, bestEpoch: stopper?.bestEpoch };
    } finally {
      clearInterval(this.watchdog);
      this.clearNoWorkerTimer();
    }
  }

  /** Sharded evaluation of a split on the current weights. */
  async evaluateSplit(split: SplitName, data: DataSplit, epoch: number): Promise<ShardedEvaluation> {
    const state = this.openRound(new Round({ kind: 'evaluate', step: this.step, weightsVersion: this.version, split, epoch, augment: false, expected: data.length }), this.sampleSource(data, split));
    state.evaluation = new EvaluationAccumulator(this.options.dataset.classNames.length);
    state.round.startedAt = performance.now();
    const ids = Uint32Array.from({ length: data.length }, (_, i) => i);
    this.assign(state, ids);
    try {
      await this.finish(state);
      return state.evaluation.result();
    } finally {
      this.closeRound(state);
    }
  }

  /** Tells every worker the job is over and ends their sessions. */
  async dismissWorkers(reason: string, completed: boolean, rejoin = false): Promise<void> {
    const links = [...this.links.values()];
    for (const link of links) this.dismissed.set(link.workerId, reason);
    for (const link of links) link.send([{ envelope: envelope(this.jobId), stop: { reason, jobCompleted: completed, rejoin } }]);
    await Promise.race([Promise.all(links.map((l) => l.flushed())), delay(2000)]);
    for (const link of links) link.close();
    this.links.clear();
  }

  /** Optimizer steps applied so far. */
  get stepsDone(): number {
    return this.step;
  }

  /** Epochs completed so far (earlier phases included). */
  get epochsDone(): number {
    return this.history.length;
  }

  /** Workers now taking tasks. */
  liveWorkers(): string[] {
    return this.membership.live().map((w) => w.id);
  }

  /** Fails the job: every wait rejects with this error. */
  fail(error: Error): void {
    if (this.fatal) return;
    this.fatal = error;
    for (const state of this.rounds.values()) state.reject(error);
    this.readyWaiters.splice(0).forEach((wake) => wake());
  }

  // ---- rounds, tasks, workers ----

  private sampleSource(split: DataSplit, name: SplitName): SampleSource {
    return this.options.cluster.dataTransport === 'stream' ? { kind: 'stream', shards: shardSource(split, `${name} split`) } : { kind: 'shared', split };
  }

  private openRound(round: Round, source: SampleSource): RoundState {
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => {});
    const state: RoundState = { round, source, labels: new Map(), reports: [], resolve, reject, done };
    if (round.kind === 'train') state.reducer = new GradientReducer(this.gradientManifest, this.bufferManifest, this.spareSums.pop(), round.expected);
    this.rounds.set(round, state);
    return state;
  }

  private closeRound(state: RoundState): void {
    this.rounds.delete(state.round);
    state.reducer?.dispose();
    for (const task of state.round.outstanding()) {
      if (task.workerId !== undefined) this.withdrawn.set(task.id, task.workerId);
      if (this.withdrawn.size > MAX_WITHDRAWN_REMEMBERED) this.withdrawn.delete(this.withdrawn.keys().next().value!);
      this.taskRounds.delete(task.id);
      this.attempts.delete(task.id);
    }
  }

  private async finish(state: RoundState): Promise<void> {
    if (this.fatal) throw this.fatal;
    if (state.round.done) return;
    await state.done;
  }

  /**
   * Plans `ids` and sends the tasks. A training batch is split over the live workers by speed
   * (one shard each); an evaluation is cut into tasks of evalTaskSize that workers take a few at
   * a time as they finish (memory stays bounded and faster workers take more). With no live
   * worker the samples wait for one.
   */
  private assign(state: RoundState, ids: Uint32Array, attempt = 1, exclude?: string): void {
    const all = this.membership.live();
    // A task that failed goes to another worker when there is one.
    const others = exclude === undefined ? all : all.filter((w) => w.id !== exclude);
    const live = others.length > 0 ? others : all;
    if (state.round.kind === 'evaluate') {
      const size = this.options.cluster.evalTaskSize;
      for (let start = 0; start < ids.length; start += size) this.track(state.round.addTask(ids.subarray(start, start + size), undefined), state, attempt);
      if (live.length === 0) this.armNoWorkerTimer();
      this.feed(state);
      return;
    }
    if (live.length === 0) {
      const task = state.round.addTask(ids, undefined);
      this.track(task, state, attempt);
      this.armNoWorkerTimer();
      return;
    }
    for (const plan of planShards(ids, live, this.options.cluster.balance)) {
      const task = state.round.addTask(plan.ids, plan.workerId);
      this.track(task, state, attempt);
      this.dispatch(task, state);
    }
  }

  /** Tops every live worker up to EVAL_TASKS_IN_FLIGHT waiting evaluation tasks. */
  private feed(state: RoundState): void {
    for (const worker of this.membership.live()) {
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
    state.reducer?.expect(task.rank);
  }

  /** Gives parked tasks of a round to the workers now live. */
  private assignWaiting(state: RoundState): void {
    if (this.membership.live().length === 0) return;
    if (state.round.kind === 'evaluate') {
      this.feed(state);
      return;
    }
    for (const task of state.round.takeUnassigned()) this.replan(state, task, this.attempts.get(task.id) ?? 1);
  }

  /** Plans a withdrawn task's samples again (on another worker than `exclude` when there is one). */
  private replan(state: RoundState, task: Task, attempt: number, exclude?: string): void {
    this.taskRounds.delete(task.id);
    this.attempts.delete(task.id);
    state.reducer?.withdraw(task.rank);
    this.assign(state, task.ids, attempt, exclude);
  }

  private dispatch(task: Task, state: RoundState): void {
    this.sendTask(task, state).catch((error: unknown) => {
      this.fail(new ClusterError(`cannot send the samples of task ${task.id}: ${(error as Error).message}`, { cause: error }));
    });
  }

  /** Encodes a task's samples (stream transport) and sends the assignment; its bytes follow as chunks. */
  private async sendTask(task: Task, state: RoundState): Promise<void> {
    const jobEnvelope = envelope(this.jobId);
    const { source } = state;
    let labels: number[];
    let payload: OutgoingTransfer | undefined;
    let shardFields: Pick<Shard, 'sampleBytes' | 'encoding' | 'height' | 'width' | 'channels'> = { sampleBytes: [], encoding: 'SAMPLE_ENCODING_UNSPECIFIED' };
    if (source.kind === 'stream') {
      const encoded = await source.shards.encode(task.ids);
      // The worker may have died while the samples were read: then the task was planned again.
      if (!state.round.isOpen(task.id)) return;
      if (encoded.skipped.length > 0) {
        // Unreadable at the source (counted and logged by the dataset): covered, never sent.
        task.ids = Uint32Array.from(encoded.ids);
        state.round.skip(encoded.skipped.length);
      }
      labels = encoded.labels;
      payload = bytesTransfer(++this.transferIds, encoded.bytes);
      shardFields = {
        sampleBytes: encoded.sampleBytes,
        encoding: encoded.encoding,
        height: encoded.pixels?.height ?? 0,
        width: encoded.pixels?.width ?? 0,
        channels: encoded.pixels?.channels ?? 0,
      };
    } else {
      labels = Array.from(task.ids, (id) => source.split.label(id));
    }
    if (task.ids.length === 0) {
      this.completeTask(state, task, undefined, null, performance.now());
      return;
    }
    const link = this.links.get(task.workerId!);
    if (!link) return;
    if (state.evaluation) state.labels.set(task.id, Uint32Array.from(labels));
    const messages: CoordinatorMessage[] = [
      {
        envelope: jobEnvelope,
        task: {
          taskId: task.id,
          kind: task.kind === 'train' ? 'TRAIN' : 'EVALUATE',
          step: task.step,
          weightsVersion: task.weightsVersion,
          shard: {
            sampleIds: Array.from(task.ids),
            labels,
            split: task.split,
            payload: payload?.header ?? null,
            augment: task.augment,
            epoch: task.epoch,
            ...shardFields,
          },
        },
      },
    ];
    for (const chunk of payload?.chunks ?? []) messages.push({ envelope: jobEnvelope, chunk });
    link.send(messages);
  }

  /**
   * Sends the weights of `this.version` to every worker in session. After a rewrite of every
   * weight ('all': a run's start, restoring the best weights), all of them; after an optimizer
   * step, only those a step can change (trainable weights, and batch-norm statistics when workers
   * reported them) as a partial broadcast on top of the last version sent. A frozen backbone's
   * weights change only in rewrites, so they go out once per worker, not once per step.
   */
  private async publishWeights(changed: 'all' | { buffers: boolean }): Promise<void> {
    const indices = changed === 'all' || this.published === undefined
      ? this.weightManifest.map((_, i) => i)
      : this.weightManifest.flatMap((w, i) => (w.trainable || changed.buffers ? [i] : []));
    const partial = indices.length < this.weightManifest.length;
    const version = this.version;
    // Read asynchronously (a GPU backend cannot read synchronously) into the host copy that
    // joining workers get; until it is in, they get the last version published, which the
    // partial broadcast below then builds on.
    type LayerVariable = { read(): tf.Variable };
    const variables = this.options.trainer.model.weights as unknown as LayerVariable[];
    const values = await readFloat32(indices.map((i) => variables[i]!.read()));
    indices.forEach((i, k) => {
      this.hostWeights[i] = values[k]!;
    });
    const messages = this.weightMessages(indices, version, partial ? this.published : undefined);
    this.fullBroadcast = partial ? undefined : { version, messages };
    this.published = version;
    for (const link of this.links.values()) link.send(messages);
  }

  /** A full broadcast of the current weights, for a worker that joins (built once per version). */
  private currentFullBroadcast(): CoordinatorMessage[] {
    const version = this.published!;
    if (this.fullBroadcast?.version !== version) {
      this.fullBroadcast = { version, messages: this.weightMessages(this.weightManifest.map((_, i) => i), version, undefined) };
    }
    return this.fullBroadcast.messages;
  }

  /**
   * The host copy of the weights at `indices` as the message sequence of one broadcast of
   * `version` (partial when `base` is set). A publish replaces host arrays rather than changing
   * them (reads hand back copies, or on cpu data a later update replaces), so the snapshot stays
   * valid while queued.
   */
  private weightMessages(indices: readonly number[], version: number, base: number | undefined): CoordinatorMessage[] {
    const tensors = indices.map((i) => ({ name: this.weightManifest[i]!.name, shape: this.weightManifest[i]!.shape, data: this.hostWeights[i]! }));
    const transfer = tensorTransfer(++this.transferIds, tensors);
    const jobEnvelope = envelope(this.jobId);
    const header = { version, weights: transfer.header, partial: base !== undefined, baseVersion: base ?? 0 };
    return [{ envelope: jobEnvelope, weights: header }, ...transfer.chunks.map((chunk) => ({ envelope: jobEnvelope, chunk }))];
  }

  /** Writes averaged batch-norm statistics into the coordinator's model. */
  private writeBuffers(values: Float32Array[]): void {
    const indices = this.weightManifest.flatMap((entry, i) => (entry.trainable ? [] : [i]));
    writeWeightsAt(this.options.trainer.model, indices, values);
  }

  private async onGradient(
    workerId: string,
    result: GradientResult__Output,
    gradientsDone: Promise<ReceivedTransfer> | undefined,
    buffersDone: Promise<ReceivedTransfer> | undefined,
  ): Promise<void> {
    // Checked at the header: bytes for a task the worker does not hold are read and dropped.
    const state = this.heldRound(workerId, result.taskId, 'gradients');
    let gradients: ReceivedTransfer | undefined;
    let buffers: ReceivedTransfer | undefined;
    try {
      [gradients, buffers] = await Promise.all([gradientsDone, buffersDone]);
    } catch {
      return; // the session broke mid-transfer: its close handler reassigns the task
    }
    if (!state) {
      gradients?.release();
      buffers?.release();
      return;
    }
    // Workers' transfers share the connection fairly, so a step's gradients tend to complete
    // together: they are checked in one batch, once the I/O at hand is read.
    this.arrived.push({ workerId, state, result, gradients, buffers, receivedAt: performance.now() });
    if (this.arrived.length === 1) setImmediate(() => this.takeArrived());
  }

  /**
   * Checks the gradients that arrived and offers the good ones to their step's reducer, which
   * sums them in task order (four per pass) whatever order they came in; refuses the bad ones' workers.
   */
  private takeArrived(): void {
    const batch = this.arrived;
    this.arrived = [];
    for (const item of batch) {
      const { workerId, state, result, gradients, buffers } = item;
      let offered = false;
      try {
        // Checked after the transfer: the task may have been reassigned while its bytes arrived.
        if (!state || this.rounds.get(state.round) !== state || !this.links.has(workerId) || !state.round.isOpen(result.taskId)) continue;
        const from = `worker ${workerId}, task ${result.taskId}, step ${result.step}`;
        try {
          const task = state.round.find(result.taskId, workerId);
          if (result.weightsVersion !== task.weightsVersion) {
            throw new WeightsError(`${from}: computed on weights v${result.weightsVersion}, the task needs v${task.weightsVersion}`);
          }
          // A prefetched task answered before its weights went out was not computed on them.
          if (this.published === undefined || task.weightsVersion > this.published) {
            throw new WeightsError(`${from}: a result for weights v${task.weightsVersion}, which were not sent yet`);
          }
          checkSkipped(result.skipped, result.n, task, from);
          if (result.n > 0) {
            if (!gradients) throw new WeightsError(`${from}: ${result.n} samples but no gradients`);
            const shard = { loss: result.loss, correct: result.correct, n: result.n, grads: gradients.tensors, buffers: buffers?.tensors ?? [] };
            state.reducer!.check(shard, from, task.ids.length);
            if (this.guard?.checksContributions) this.guard.checkContribution(shard.grads.map((g) => g.data), from);
            state.reducer!.offer(task.rank, { shard, from, maxN: task.ids.length }, () => {
              gradients.release();
              buffers?.release();
            });
            offered = true;
          }
          this.recordRemoteSkips(workerId, state, result.skipped, result.skipReasons);
          this.completeTask(state, task, workerId, result.timings, item.receivedAt, result.n);
        } catch (error) {
          this.refuse(workerId, error);
        }
      } finally {
        // Not kept by the reducer: the receive buffers can take the next transfers.
        if (!offered) {
          gradients?.release();
          buffers?.release();
        }
      }
    }
  }

  private onEvaluation(workerId: string, result: EvaluationResult__Output): void {
    const state = this.heldRound(workerId, result.taskId, 'an evaluation result');
    if (!state) return;
    const from = `worker ${workerId}, evaluation task ${result.taskId}`;
    try {
      const task = state.round.find(result.taskId, workerId);
      checkSkipped(result.skipped, result.n, task, from);
      const skipped = new Set(result.skipped);
      const all = state.labels.get(task.id)!;
      const labels = skipped.size === 0 ? all : all.filter((_, i) => !skipped.has(task.ids[i]!));
      state.evaluation!.add(result, labels, from);
      this.recordRemoteSkips(workerId, state, result.skipped, result.skipReasons);
      this.completeTask(state, task, workerId, result.timings, performance.now(), result.n);
    } catch (error) {
      this.refuse(workerId, error);
    }
  }

  /**
   * A task the worker could not do goes to another worker (the same one only when it is alone);
   * a worker that fails MAX_FAILURES_IN_A_ROW tasks in a row is evicted and named.
   */
  private onTaskFailure(workerId: string, failure: TaskFailure__Output): void {
    const state = this.heldRound(workerId, failure.taskId, 'a task failure');
    if (!state) return;
    const task = state.round.find(failure.taskId, workerId);
    const attempt = this.attempts.get(task.id) ?? 1;
    const inARow = (this.failuresInARow.get(workerId) ?? 0) + 1;
    this.failuresInARow.set(workerId, inARow);
    const code = failure.code.slice(0, 64);
    const message = failure.message.slice(0, 500);
    this.log.warn({ worker: workerId, task: task.id, code, attempt, inARow }, `worker ${workerId} could not do task ${task.id}: ${message}`);
    state.round.cancel(task);
    if (inARow >= MAX_FAILURES_IN_A_ROW) {
      this.evictUnhealthy(workerId, `failed ${inARow} tasks in a row; last: ${code}: ${message}`, new ClusterError(`worker ${workerId} failed ${inARow} tasks in a row (last: ${code}): evicted`));
    }
    this.replan(state, task, attempt + 1, workerId);
  }

  /**
   * The round of a task `workerId` holds, or undefined after dealing with a message about a task
   * it does not hold: one held by another worker is a forgery (evicted at once); one not
   * outstanding at all is a protocol violation, logged, and evicted after MAX_PROTOCOL_VIOLATIONS.
   */
  private heldRound(workerId: string, taskId: string, what: string): RoundState | undefined {
    if (!this.links.has(workerId)) return undefined;
    const state = this.taskRounds.get(taskId);
    const holder = state && this.rounds.get(state.round) === state ? state.round.holder(taskId) : undefined;
    if (holder === workerId) return state;
    if (holder !== undefined) {
      this.refuse(workerId, new ProtocolError(`worker ${workerId} sent ${what} for task ${taskId}, which belongs to ${holder}`));
      return undefined;
    }
    if (this.withdrawn.get(taskId) === workerId) {
      this.withdrawn.delete(taskId);
      this.log.debug({ worker: workerId, task: taskId }, `worker ${workerId} sent ${what} for task ${taskId}, withdrawn when its round closed: dropped`);
      return undefined;
    }
    const count = (this.violations.get(workerId) ?? 0) + 1;
    this.violations.set(workerId, count);
    const reason = `sent ${what} for task ${String(taskId).slice(0, 80)}, which it does not hold (never assigned, done or withdrawn)`;
    logEvent(this.log, 'protocol_violation', { worker: workerId, task: String(taskId).slice(0, 80), reason, count, step: this.step },
      `worker ${workerId} ${reason} (${count} of at most ${MAX_PROTOCOL_VIOLATIONS})`);
    if (count >= MAX_PROTOCOL_VIOLATIONS) {
      this.evictUnhealthy(workerId, `${count} protocol violations; last: ${reason}`, new ProtocolError(`worker ${workerId}: ${count} messages about tasks it does not hold: evicted`));
    }
    return undefined;
  }

  /** Evicts a misbehaving worker; with no live worker left, the no-healthy-worker clock starts. */
  private evictUnhealthy(workerId: string, reason: string, error: DroverError): void {
    this.removeWorker(workerId, 'fail', reason, error);
    if (this.membership.live().length === 0 && this.unhealthySince === undefined) {
      this.unhealthySince = { at: performance.now(), reason: `worker ${workerId} was evicted: ${reason}` };
    }
  }

  /** Logs the samples a worker could not decode with their paths, as the coordinator's own skips are. */
  private recordRemoteSkips(workerId: string, state: RoundState, skipped: readonly number[], reasons: readonly SkippedSample__Output[]): void {
    if (skipped.length === 0) return;
    const why = new Map(reasons.map((r) => [r.sampleId, r]));
    const split = state.source.kind === 'stream' ? state.source.shards.split : state.source.split;
    const source = `${this.options.dataset.name}/${state.round.split}`;
    for (const id of skipped) {
      const reason = why.get(id);
      this.remoteSkips.record({
        source,
        path: describeSample(split, id) ?? `${source} #${id}`,
        reason: clean(reason?.reason, MAX_SKIP_REASON) || 'undecodable',
        detail: clean(reason?.detail, MAX_SKIP_DETAIL) || undefined,
        id,
        worker: workerId,
      });
    }
  }

  private completeTask(state: RoundState, task: Task, workerId: string | undefined, timings: Timings__Output | null, receivedAt: number, used = task.ids.length): void {
    state.round.complete(task);
    this.taskRounds.delete(task.id);
    this.attempts.delete(task.id);
    if (used === 0) state.reducer?.withdraw(task.rank);
    if (workerId !== undefined) {
      this.membership.recordProgress(workerId, receivedAt);
      this.failuresInARow.delete(workerId);
      this.unhealthySince = undefined;
      if (used > 0) {
        const computeMs = timings?.computeMs ?? 0;
        state.reports.push({ worker: workerId, n: used, computeMs, dataWaitMs: timings?.dataWaitMs ?? 0, receivedAt });
        // Speed as the coordinator sees it (weights out or task assigned, to result in): a
        // worker's own account of its compute time is not trusted for balancing.
        const measuredMs = receivedAt - Math.max(task.assignedAt, state.round.startedAt ?? task.assignedAt);
        if (task.kind === 'train') this.membership.recordThroughput(workerId, used, measuredMs);
      }
    }
    if (state.round.done) state.resolve();
    else if (state.round.kind === 'evaluate') this.feed(state);
  }

  /** A worker broke the contract (bad gradient, foreign task): refuse it, evict it, reassign its shards. */
  private refuse(workerId: string, error: unknown): void {
    const droverError = error instanceof DroverError ? error : new ProtocolError(String(error), { cause: error });
    this.removeWorker(workerId, 'fail', droverError.message, droverError);
  }

  /** Takes a worker out of the job and hands its outstanding shards to the live workers, in the same rounds. */
  private removeWorker(workerId: string, kind: 'leave' | 'fail', reason: string, error?: DroverError): void {
    const record = this.membership.remove(workerId);
    if (!record) return;
    const link = this.links.get(workerId);
    this.links.delete(workerId);
    link?.close(error);
    const fields = { worker: workerId, address: record.address, reason, step: this.step };
    if (kind === 'fail') logEvent(this.log, 'worker_fail', fields, `worker ${workerId} failed at step ${this.step}: ${reason}`);
    else logEvent(this.log, 'worker_leave', fields, `worker ${workerId} left at step ${this.step}: ${reason}`);
    for (const state of this.rounds.values()) {
      const orphans = state.round.release(workerId);
      for (const orphan of orphans) {
        this.replan(state, orphan, this.attempts.get(orphan.id) ?? 1);
        this.log.info(
          { worker: workerId, task: orphan.id, samples: orphan.ids.length, step: orphan.step, to: this.liveWorkers() },
          `reassigned ${orphan.ids.length} samples of ${workerId}'s task ${orphan.id} (step ${orphan.step}) to ${this.liveWorkers().join(', ') || 'the next worker to join'}`,
        );
      }
    }
  }

  /** Evicts workers whose tasks passed the step deadline. */
  private checkDeadlines(): void {
    const now = performance.now();
    const deadline = this.options.cluster.stepDeadlineMs;
    if (this.unhealthySince && now - this.unhealthySince.at > deadline && this.rounds.size > 0) {
      this.fail(new ClusterError(`no healthy worker for ${deadline} ms (cluster.stepDeadlineMs): ${this.unhealthySince.reason}`));
      return;
    }
    for (const worker of this.membership.stale(now - STALE_JOIN_MS)) {
      // Joined but never opened its session: its slot is freed; it may join again.
      this.membership.remove(worker.id);
      this.log.warn({ worker: worker.id, address: worker.address }, `worker ${worker.id} joined but opened no session within ${STALE_JOIN_MS} ms: dropped`);
    }
    for (const state of [...this.rounds.values()]) {
      for (const workerId of state.round.overdueWorkers(now, deadline, (id) => this.membership.progressOf(id))) {
        if (!this.membership.has(workerId)) continue;
        const tasks = state.round.outstanding().filter((t) => t.workerId === workerId);
        const samples = tasks.reduce((sum, t) => sum + t.ids.length, 0);
        const what = state.round.kind === 'train' ? `step ${state.round.step}` : `${state.round.split} evaluation`;
        this.removeWorker(workerId, 'fail', `missed the deadline of ${deadline} ms in ${what} (${tasks.length} task(s), ${samples} samples)`,
          new DeadlineError(`worker ${workerId} missed the step deadline of ${deadline} ms in ${what}: evicted, its samples were reassigned`));
      }
    }
  }

  /** Returns once `count` workers are live or the signal aborted (the caller checks which). */
  private async waitForWorkers(count: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const started = performance.now();
    while (this.membership.live().length < count) {
      if (this.fatal) throw this.fatal;
      if (signal?.aborted) return;
      const left = timeoutMs - (performance.now() - started);
      if (left <= 0) {
        throw new ClusterError(`only ${this.membership.live().length} of ${count} workers (cluster.minWorkers) joined within ${timeoutMs} ms`);
      }
      this.log.info({ live: this.membership.live().length, needed: count }, `waiting for workers: ${this.membership.live().length} of ${count}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 10_000));
        const onAbort = (): void => done();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.readyWaiters.push(done);
        function done(): void {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
      });
    }
  }

  private armNoWorkerTimer(): void {
    if (this.noWorkerTimer) return;
    const timeout = this.options.cluster.joinTimeoutMs;
    this.log.warn({ step: this.step }, `no live worker: waiting up to ${timeout} ms for one to join`);
    this.noWorkerTimer = setTimeout(() => {
      this.noWorkerTimer = undefined;
      if (this.membership.live().length === 0) this.fail(new ClusterError(`no live worker for ${timeout} ms (cluster.joinTimeoutMs): the job cannot go on`));
    }, timeout);
    this.noWorkerTimer.unref();
  }

  private clearNoWorkerTimer(): void {
    if (this.noWorkerTimer) clearTimeout(this.noWorkerTimer);
    this.noWorkerTimer = undefined;
  }

  private async checkpoint(
    position: { epoch: number; offset: number },
    epoch: number,
    history: EpochRecord[],
    progress: EpochProgress,
    stopper: EarlyStopping | undefined,
  ): Promise<void> {
    const file = checkpointPath(this.options.outputDir);
    const optimizer = await this.options.trainer.optimizer.getState();
    const checkpoint: Checkpoint = {
      state: {
        jobId: this.jobId,
        jobName: this.options.jobName,
        step: this.step,
        epoch,
        sampler: position,
        seed: this.options.seed,
        history,
        epochProgress: { ...progress },
        ...(stopper ? { earlyStopping: stopper.state } : {}),
        savedAt: new Date().toISOString(),
      },
      weights: await readWeights(this.options.trainer.model),
      optimizer: { iterations: optimizer.iterations, slots: optimizer.slots.map((s) => ({ name: s.name, values: new Float32Array(s.values) })) },
      ...(stopper?.bestWeights ? { bestWeights: stopper.bestWeights } : {}),
    };
    // Guarded: a second Ctrl-C (or SIGTERM) waits for the write instead of cutting it in half.
    const { bytes } = await guardWrite(() => {
      this.log.info({ step: this.step, path: file }, `writing checkpoint at step ${this.step}`);
      return saveCheckpoint(file, checkpoint);
    });
    logEvent(this.log, 'checkpoint', { step: this.step, epoch, path: file, bytes }, `checkpoint at step ${this.step} -> ${file}`);
  }
}

/** How a split names sample `id` in logs (its file path where it has one). */
function describeSample(split: DataSplit, id: number): string | undefined {
  const samples = (split as { samples?: { describe?(index: number): string } }).samples;
  try {
    return samples?.describe?.(id);
  } catch {
    return undefined;
  }
}

/** A peer's string, printable and bounded. */
function clean(text: string | undefined, max: number): string {
  return (text ?? '').replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}

/** A result's skipped ids must be ids of its shard, and account for the samples it did not use. */
function checkSkipped(skipped: readonly number[], n: number, task: Task, from: string): void {
  if (n + skipped.length !== task.ids.length) {
    throw new WeightsError(`${from}: ${n} samples used and ${skipped.length} skipped, the shard holds ${task.ids.length}`);
  }
  if (skipped.length === 0) return;
  const ids = new Set(task.ids);
  for (const id of skipped) if (!ids.has(id)) throw new WeightsError(`${from}: skipped sample ${id} is not in its shard`);
}

/** Aggregates the steps between two `step` events (timings are means over them). */
class StepWindow {
  private steps = 0;
  private images = 0;
  private started: number | undefined;
  private dataWait = 0;
  private compute = 0;
  private transfer = 0;
  private reduce = 0;
  private stepTime = 0;
  private workers = new Map<string, { n: number; computeMs: number; dataWaitMs: number }>();

  add(state: RoundState, reduced: { n: number }, startedAt: number, reduceStart: number, stepEnd: number): void {
    this.started ??= startedAt;
    this.steps++;
    this.images += reduced.n;
    // The critical path ends with the last result in: its worker's wait and compute, the rest is transfer.
    const last = state.reports.reduce((a, b) => (b.receivedAt > a.receivedAt ? b : a), state.reports[0]!);
    const slowest = Math.max(...state.reports.map((r) => r.computeMs));
    this.dataWait += last.dataWaitMs;
    this.compute += slowest;
    this.transfer += Math.max(0, last.receivedAt - startedAt - last.dataWaitMs - last.computeMs);
    // From the last byte in: check and add that result, average, optimizer step, weight snapshot.
    this.reduce += stepEnd - Math.min(last.receivedAt, reduceStart);
    this.stepTime += stepEnd - startedAt;
    for (const r of state.reports) {
      const w = this.workers.get(r.worker) ?? { n: 0, computeMs: 0, dataWaitMs: 0 };
      w.n += r.n;
      w.computeMs += r.computeMs;
      w.dataWaitMs += r.dataWaitMs;
      this.workers.set(r.worker, w);
    }
    this.lastEnd = stepEnd;
  }

  private lastEnd = 0;

  flush(last: { loss: number; correct: number; n: number }): {
    loss: number; accuracy: number; n: number; imgPerSec: number; dataWaitMs: number; computeMs: number; transferMs: number; reduceMs: number; stepMs: number;
    workers: { worker: string; n: number; imgPerSec: number; computeMs: number; dataWaitMs: number }[];
  } {
    const k = Math.max(1, this.steps);
    const seconds = Math.max(1e-9, (this.lastEnd - (this.started ?? this.lastEnd)) / 1000);
    const out = {
      loss: last.loss,
      accuracy: last.correct / last.n,
      n: last.n,
      imgPerSec: this.images / seconds,
      dataWaitMs: this.dataWait / k,
      computeMs: this.compute / k,
      transferMs: this.transfer / k,
      reduceMs: this.reduce / k,
      stepMs: this.stepTime / k,
      workers: [...this.workers.entries()].map(([worker, w]) => ({
        worker,
        n: Math.round(w.n / k),
        imgPerSec: w.computeMs > 0 ? (w.n / w.computeMs) * 1000 : 0,
        computeMs: w.computeMs / k,
        dataWaitMs: w.dataWaitMs / k,
      })),
    };
    this.steps = 0;
    this.images = 0;
    this.started = undefined;
    this.dataWait = this.compute = this.transfer = this.reduce = this.stepTime = 0;
    this.workers = new Map();
    return out;
  }
}

function epochSummary(r: EpochRecord, epochs: number): string {
  const val = r.valLoss === undefined ? '' : ` - val_loss: ${r.valLoss.toFixed(4)} - val_accuracy: ${r.valAccuracy!.toFixed(4)}`;
  return `epoch ${r.epoch}/${epochs} - ${r.seconds.toFixed(1)}s - loss: ${r.loss.toFixed(4)} - accuracy: ${r.accuracy.toFixed(4)}${val}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
