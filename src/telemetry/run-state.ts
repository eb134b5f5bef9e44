import { countLine, emptyTally, eventTimeMs } from './events.ts';
import type { DroverEvent, EvaluationEvent, LineTally, ParsedLine, StepEvent } from './events.ts';

/**
 * What a run's events say, reduced to the rows the charts draw and a summary of where the
 * run stands. The dashboard server feeds it line by line and ships the rows each batch
 * added (so the page only inserts them); the report feeds it a whole log. One reduction,
 * so the page and the report cannot disagree.
 */

/**
 * Every row carries a `key`. An update's `upsert` rows replace the rows with the same key
 * (all rows of an epoch, all rows of a step bucket), so a row can be refined in place.
 */

/** Train and validation metrics of one epoch (one row per split present); key = epoch. */
export interface EpochRow {
  key: number;
  epoch: number;
  split: 'train' | 'validation';
  loss: number;
  accuracy: number;
}

/**
 * Steps `first`..`step` (one bucket; one step until the run grows past `maxPoints` steps,
 * then buckets double so a chart never draws more than `maxPoints` points); key = bucket.
 */
export interface StepRow {
  key: number;
  /** Last step of the bucket (the x position). */
  step: number;
  first: number;
  /** Steps averaged in this row. */
  steps: number;
  epoch: number;
  loss: number;
  accuracy: number;
  lr: number;
  imgPerSec: number;
}

/** Mean throughput of one worker (or 'local' in a single-process run) over a bucket. */
export interface ThroughputRow {
  key: number;
  step: number;
  worker: string;
  imgPerSec: number;
}

export const STEP_PHASES = ['data wait', 'compute', 'transfer', 'reduce'] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

/** Mean milliseconds of one phase of a step over a bucket. */
export interface StepTimeRow {
  key: number;
  step: number;
  phase: StepPhase;
  ms: number;
  /** Position in the stack (data wait at the bottom). */
  order: number;
}

/** One interval during which a worker was a member; `end` of an active one is the latest event's time. */
export interface MembershipRow {
  key: number;
  worker: string;
  /** Epoch milliseconds. */
  start: number;
  end: number;
  state: 'active' | 'left' | 'failed';
  reason?: string;
}

export interface ConfusionRow {
  key: number;
  actual: string;
  predicted: string;
  count: number;
  /** count / samples of the actual class (recall on the diagonal). */
  rate: number;
  /** The split evaluated, its epoch (a validation) and its sample count: the chart's title names them. */
  split: 'validation' | 'test';
  epoch?: number;
  samples: number;
}

export interface ChartRows {
  epochs: EpochRow[];
  steps: StepRow[];
  throughput: ThroughputRow[];
  stepTime: StepTimeRow[];
  membership: MembershipRow[];
  confusion: ConfusionRow[];
}

export type DatasetName = keyof ChartRows;
export const DATASET_NAMES: DatasetName[] = ['epochs', 'steps', 'throughput', 'stepTime', 'membership', 'confusion'];

/** Where a run stands, for the dashboard's header and the report's titles. */
export interface RunSummary {
  status: 'waiting' | 'running' | 'completed' | 'failed' | 'stopped';
  job?: string;
  mode?: 'single' | 'distributed';
  backend?: string;
  backendDescription?: string;
  model?: string;
  params?: number;
  dataset?: string;
  classes?: number;
  trainSize?: number;
  valSize?: number;
  epochs?: number;
  batchSize?: number;
  optimizer?: string;
  stepsPerEpoch?: number;
  /** Epoch now running (or last finished). */
  epoch?: number;
  /** Latest global step. */
  step?: number;
  /** Latest step's values. */
  loss?: number;
  accuracy?: number;
  lr?: number;
  imgPerSec?: number;
  /** Latest finished epoch's values. */
  epochLoss?: number;
  epochAccuracy?: number;
  valLoss?: number;
  valAccuracy?: number;
  bestValAccuracy?: number;
  bestValEpoch?: number;
  /** Epoch ms of the first and latest event. */
  startedAt?: number;
  updatedAt?: number;
  workersActive: number;
  workersSeen: number;
  workerFailures: number;
  dataSkips: number;
  checkpoints: number;
  lastCheckpoint?: string;
  earlyStop?: { epoch: number; monitor: string; best: number; bestEpoch: number; restored: boolean };
  evaluation?: { split: 'validation' | 'test'; loss: number; accuracy: number; n: number };
  testAccuracy?: number;
  modelDir?: string;
  error?: string;
  seconds?: number;
  /** Steps per point of the step-level charts. */
  stepsPerPoint: number;
  lines: LineTally;
}

/** What changed since the previous delta. */
export interface RunDelta {
  /** The page must drop everything it has (new job, truncated log) before applying the rest. */
  reset: boolean;
  /** Datasets rewritten as a whole. */
  replace: Partial<ChartRows>;
  /** Rows that replace the rows with the same `key` (or are new). */
  upsert: Partial<ChartRows>;
  /** Rows each dataset holds after this delta. */
  sizes: Record<DatasetName, number>;
  summary: RunSummary;
}

export interface RunStateOptions {
  /** Most points per series of the step-level charts. Default 1000. */
  maxPoints?: number;
}

/** Running sums of the steps in one bucket. */
interface StepBucket {
  key: number;
  first: number;
  last: number;
  epoch: number;
  count: number;
  loss: number;
  accuracy: number;
  lr: number;
  imgPerSec: number;
  phases: number[];
  workers: Map<string, { sum: number; count: number }>;
}

const LOCAL_WORKER = 'local';

/**
 * Reduces a run's events to chart rows and a summary, and tells what changed since the last
 * delta. Step-level series are averaged into buckets of 1, 2, 4, ... steps so a run of a
 * million steps still draws `maxPoints` points per series.
 */
export class RunState {
  summary: RunSummary = RunState.emptySummary();
  /** The last evaluation event, as logged (the report's confusion matrix). */
  lastEvaluation: EvaluationEvent | undefined;
  private readonly maxPoints: number;
  private epochRows = new Map<number, EpochRow[]>();
  private buckets: StepBucket[] = [];
  private stride = 1;
  private membershipRows: MembershipRow[] = [];
  private confusion: ConfusionRow[] = [];
  private dirtyEpochs = new Set<number>();
  private dirtyBuckets = new Set<StepBucket>();
  private replaced = new Set<DatasetName>();
  private resetPending = false;
  private active = new Map<string, MembershipRow>();
  private seenWorkers = new Set<string>();

  constructor(options: RunStateOptions = {}) {
    this.maxPoints = Math.max(2, options.maxPoints ?? 1000);
  }

  private static emptySummary(): RunSummary {
    return {
      status: 'waiting',
      workersActive: 0,
      workersSeen: 0,
      workerFailures: 0,
      dataSkips: 0,
      checkpoints: 0,
      stepsPerPoint: 1,
      lines: emptyTally(),
    };
  }

  /** All rows now (the report's data). */
  get rows(): ChartRows {
    return Object.fromEntries(DATASET_NAMES.map((name) => [name, this.rowsOf(name)])) as unknown as ChartRows;
  }

  private rowsOf(name: DatasetName): ChartRows[DatasetName] {
    switch (name) {
      case 'epochs':
        return this.allEpochRows();
      case 'steps':
        return this.buckets.map(stepRow);
      case 'throughput':
        return this.buckets.flatMap(throughputRows);
      case 'stepTime':
        return this.buckets.flatMap(stepTimeRows);
      case 'membership':
        return this.membershipRows;
      case 'confusion':
        return this.confusion;
    }
  }

  /** Rows each dataset holds, without building them. */
  private sizes(): Record<DatasetName, number> {
    let epochs = 0;
    for (const rows of this.epochRows.values()) epochs += rows.length;
    let throughput = 0;
    for (const b of this.buckets) throughput += b.workers.size;
    return {
      epochs,
      steps: this.buckets.length,
      throughput,
      stepTime: this.buckets.length * STEP_PHASES.length,
      membership: this.membershipRows.length,
      confusion: this.confusion.length,
    };
  }

  /** Forgets everything (the log was truncated or replaced). */
  reset(): void {
    this.summary = RunState.emptySummary();
    this.lastEvaluation = undefined;
    this.epochRows.clear();
    this.buckets = [];
    this.stride = 1;
    this.membershipRows = [];
    this.confusion = [];
    this.dirtyEpochs.clear();
    this.dirtyBuckets.clear();
    this.replaced.clear();
    this.active.clear();
    this.seenWorkers.clear();
    this.resetPending = true;
  }

  /** Applies one parsed line; `receivedAt` stands in for events without a `time`. */
  apply(parsed: ParsedLine, receivedAt: number = Date.now()): void {
    countLine(this.summary.lines, parsed);
    if (parsed.kind !== 'event') return;
    const event = parsed.event;
    const at = eventTimeMs(event) ?? receivedAt;
    this.summary.startedAt ??= at;
    this.summary.updatedAt = Math.max(this.summary.updatedAt ?? at, at);
    this.onEvent(event, at);
    if (this.active.size > 0) this.extendActive(this.summary.updatedAt);
  }

  /** What changed since the last call. */
  takeDelta(): RunDelta {
    const replace: Partial<ChartRows> = {};
    const upsert: Partial<ChartRows> = {};
    for (const name of this.replaced) (replace as Record<string, unknown>)[name] = this.rowsOf(name);
    if (!this.replaced.has('epochs') && this.dirtyEpochs.size > 0) {
      upsert.epochs = [...this.dirtyEpochs].flatMap((epoch) => this.epochRows.get(epoch) ?? []);
    }
    if (this.dirtyBuckets.size > 0) {
      const buckets = [...this.dirtyBuckets];
      if (!this.replaced.has('steps')) upsert.steps = buckets.map(stepRow);
      if (!this.replaced.has('throughput')) upsert.throughput = buckets.flatMap(throughputRows);
      if (!this.replaced.has('stepTime')) upsert.stepTime = buckets.flatMap(stepTimeRows);
    }
    const delta: RunDelta = { reset: this.resetPending, replace, upsert, sizes: this.sizes(), summary: this.summary };
    this.dirtyEpochs.clear();
    this.dirtyBuckets.clear();
    this.replaced.clear();
    this.resetPending = false;
    return delta;
  }

  private allEpochRows(): EpochRow[] {
    return [...this.epochRows.keys()].sort((a, b) => a - b).flatMap((epoch) => this.epochRows.get(epoch)!);
  }

  private onEvent(e: DroverEvent, at: number): void {
    const s = this.summary;
    switch (e.event) {
      case 'backend':
        s.backend = e.backend;
        s.backendDescription = e.description;
        break;
      case 'job_start': {
        if (e.resumedFrom && s.job === e.job) {
          this.dropAfter(e.resumedFrom.step, e.resumedFrom.epoch);
        } else if (s.job !== undefined) {
          // Another job appended to the same log: the page shows the latest one.
          const { backend, backendDescription, lines } = s;
          this.reset();
          Object.assign(this.summary, { backend, backendDescription, lines, startedAt: at, updatedAt: at });
        }
        Object.assign(this.summary, {
          status: 'running',
          job: e.job,
          mode: e.mode,
          backend: e.backend,
          model: e.model,
          params: e.params,
          dataset: e.dataset,
          classes: e.classNames.length,
          trainSize: e.trainSize,
          valSize: e.valSize,
          epochs: e.epochs,
          batchSize: e.batchSize,
          optimizer: typeof e.optimizer === 'string' ? e.optimizer : JSON.stringify(e.optimizer),
          stepsPerEpoch: e.stepsPerEpoch,
        });
        if (e.mode === 'single') this.join(LOCAL_WORKER, at);
        break;
      }
      case 'epoch_start':
        s.status = 'running';
        s.epoch = e.epoch;
        s.epochs = e.epochs;
        break;
      case 'step':
        s.status = 'running';
        s.epoch = e.epoch;
        s.step = e.step;
        s.loss = e.loss;
        s.accuracy = e.accuracy;
        s.lr = e.lr;
        s.imgPerSec = e.imgPerSec;
        this.addStep(e);
        break;
      case 'epoch': {
        s.epoch = e.epoch;
        s.epochs = e.epochs;
        s.epochLoss = e.loss;
        s.epochAccuracy = e.accuracy;
        s.valLoss = e.valLoss;
        s.valAccuracy = e.valAccuracy;
        s.lr = e.lr;
        if (e.valAccuracy !== undefined && (s.bestValAccuracy === undefined || e.valAccuracy > s.bestValAccuracy)) {
          s.bestValAccuracy = e.valAccuracy;
          s.bestValEpoch = e.epoch;
        }
        // A retried epoch logs again: the latest numbers win (same key).
        const rows: EpochRow[] = [{ key: e.epoch, epoch: e.epoch, split: 'train', loss: e.loss, accuracy: e.accuracy }];
        if (e.valLoss !== undefined && e.valAccuracy !== undefined) {
          rows.push({ key: e.epoch, epoch: e.epoch, split: 'validation', loss: e.valLoss, accuracy: e.valAccuracy });
        }
        this.epochRows.set(e.epoch, rows);
        this.dirtyEpochs.add(e.epoch);
        break;
      }
      case 'evaluation':
        this.lastEvaluation = e;
        s.evaluation = { split: e.split, loss: e.loss, accuracy: e.accuracy, n: e.n };
        this.confusion = confusionRows(e);
        this.replaced.add('confusion');
        break;
      case 'checkpoint':
        s.checkpoints++;
        s.lastCheckpoint = e.path;
        break;
      case 'early_stop':
        s.earlyStop = { epoch: e.epoch, monitor: e.monitor, best: e.best, bestEpoch: e.bestEpoch, restored: e.restored };
        break;
      case 'data_skip':
        s.dataSkips++;
        break;
      case 'worker_join':
        this.join(e.worker, at);
        break;
      case 'worker_leave':
      case 'worker_fail': {
        if (e.event === 'worker_fail') s.workerFailures++;
        const row = this.active.get(e.worker);
        const state = e.event === 'worker_fail' ? 'failed' : 'left';
        if (row) {
          row.end = at;
          row.state = state;
          if (e.reason !== undefined) row.reason = e.reason;
          this.active.delete(e.worker);
        } else {
          // Left without a join in this log (the log started late): a zero-length mark.
          this.seenWorkers.add(e.worker);
          this.membershipRows.push({
            key: this.membershipRows.length,
            worker: e.worker,
            start: at,
            end: at,
            state,
            ...(e.reason !== undefined ? { reason: e.reason } : {}),
          });
        }
        this.replaced.add('membership');
        break;
      }
      case 'job_end':
        s.status = e.status;
        s.seconds = e.seconds;
        s.testAccuracy = e.testAccuracy;
        s.modelDir = e.modelDir;
        s.error = e.error;
        // Members until the end stay 'active' (green): they did not leave, the job ended.
        this.extendActive(at);
        this.active.clear();
        this.replaced.add('membership');
        break;
    }
    s.workersActive = this.active.size;
    s.workersSeen = this.seenWorkers.size;
  }

  private addStep(e: StepEvent): void {
    const key = Math.floor((e.step - 1) / this.stride);
    let bucket = this.buckets.at(-1);
    if (!bucket || bucket.key !== key) {
      // In order is the rule; a step from the past (a retried step) goes to its own bucket.
      const index = this.buckets.findIndex((b) => b.key >= key);
      if (index !== -1 && this.buckets[index]!.key === key) bucket = this.buckets[index]!;
      else {
        bucket = { key, first: e.step, last: e.step, epoch: e.epoch, count: 0, loss: 0, accuracy: 0, lr: e.lr, imgPerSec: 0, phases: [0, 0, 0, 0], workers: new Map() };
        if (index === -1) this.buckets.push(bucket);
        else this.buckets.splice(index, 0, bucket);
      }
    }
    bucket.first = Math.min(bucket.first, e.step);
    if (e.step >= bucket.last) {
      bucket.last = e.step;
      bucket.epoch = e.epoch;
      bucket.lr = e.lr;
    }
    bucket.count++;
    bucket.loss += e.loss;
    bucket.accuracy += e.accuracy;
    bucket.imgPerSec += e.imgPerSec;
    const ms = [e.dataWaitMs, e.computeMs, e.transferMs, e.reduceMs];
    ms.forEach((value, i) => (bucket.phases[i]! += value));
    const workers = e.workers && e.workers.length > 0 ? e.workers : [{ worker: LOCAL_WORKER, imgPerSec: e.imgPerSec }];
    for (const w of workers) {
      const sum = bucket.workers.get(w.worker) ?? { sum: 0, count: 0 };
      sum.sum += w.imgPerSec;
      sum.count++;
      bucket.workers.set(w.worker, sum);
    }
    this.dirtyBuckets.add(bucket);
    if (this.buckets.length > this.maxPoints) this.coarsen();
  }

  /** Doubles the steps per bucket, merging neighbours; the step datasets are rewritten. */
  private coarsen(): void {
    this.stride *= 2;
    this.summary.stepsPerPoint = this.stride;
    const merged: StepBucket[] = [];
    for (const b of this.buckets) {
      const key = Math.floor((b.first - 1) / this.stride);
      const into = merged.at(-1);
      if (into && into.key === key) mergeBucket(into, b);
      else merged.push({ ...b, key, phases: [...b.phases], workers: new Map([...b.workers].map(([w, s]) => [w, { ...s }])) });
    }
    this.buckets = merged;
    this.dirtyBuckets.clear();
    for (const name of ['steps', 'throughput', 'stepTime'] as const) this.replaced.add(name);
  }

  private join(worker: string, at: number): void {
    this.seenWorkers.add(worker);
    if (this.active.has(worker)) return;
    const row: MembershipRow = { key: this.membershipRows.length, worker, start: at, end: at, state: 'active' };
    this.active.set(worker, row);
    this.membershipRows.push(row);
    this.replaced.add('membership');
  }

  /** Active intervals last until the latest event; rewriting the small dataset is cheap. */
  private extendActive(until: number): void {
    for (const row of this.active.values()) {
      if (row.end !== until) {
        row.end = until;
        this.replaced.add('membership');
      }
    }
  }

  /** A resumed job re-runs what came after its checkpoint: drop those rows. */
  private dropAfter(step: number, epoch: number): void {
    this.buckets = this.buckets.filter((b) => b.first <= step);
    for (const e of [...this.epochRows.keys()]) if (e > epoch) this.epochRows.delete(e);
    this.dirtyBuckets.clear();
    for (const name of ['steps', 'throughput', 'stepTime', 'epochs'] as const) this.replaced.add(name);
  }
}

function mergeBucket(into: StepBucket, b: StepBucket): void {
  into.first = Math.min(into.first, b.first);
  if (b.last >= into.last) {
    into.last = b.last;
    into.epoch = b.epoch;
    into.lr = b.lr;
  }
  into.count += b.count;
  into.loss += b.loss;
  into.accuracy += b.accuracy;
  into.imgPerSec += b.imgPerSec;
  b.phases.forEach((v, i) => (into.phases[i]! += v));
  for (const [worker, s] of b.workers) {
    const sum = into.workers.get(worker) ?? { sum: 0, count: 0 };
    sum.sum += s.sum;
    sum.count += s.count;
    into.workers.set(worker, sum);
  }
}

function stepRow(b: StepBucket): StepRow {
  return {
    key: b.key,
    step: b.last,
    first: b.first,
    steps: b.count,
    epoch: b.epoch,
    loss: b.loss / b.count,
    accuracy: b.accuracy / b.count,
    lr: b.lr,
    imgPerSec: b.imgPerSec / b.count,
  };
}

function throughputRows(b: StepBucket): ThroughputRow[] {
  return [...b.workers].map(([worker, s]) => ({ key: b.key, step: b.last, worker, imgPerSec: s.sum / s.count }));
}

function stepTimeRows(b: StepBucket): StepTimeRow[] {
  return STEP_PHASES.map((phase, order) => ({ key: b.key, step: b.last, phase, ms: b.phases[order]! / b.count, order }));
}

/** Long-format rows of a confusion matrix, in class order. */
export function confusionRows(e: EvaluationEvent): ConfusionRow[] {
  const rows: ConfusionRow[] = [];
  e.confusion.forEach((counts, i) => {
    const total = counts.reduce((a, b) => a + b, 0);
    counts.forEach((count, j) => {
      rows.push({
        key: i * counts.length + j,
        actual: e.classNames[i]!,
        predicted: e.classNames[j]!,
        count,
        rate: total > 0 ? count / total : 0,
        split: e.split,
        ...(e.epoch !== undefined ? { epoch: e.epoch } : {}),
        samples: e.n,
      });
    });
  });
  return rows;
}
