import { confusionRows, type ChartRows, type ConfusionRow, type DatasetName, type EpochRow } from './chart-rows.ts';
import { countLine, eventTimeMs } from './events.ts';
import type { DroverEvent, EvaluationEvent, ParsedLine } from './events.ts';
import { Membership } from './membership.ts';
import { emptySummary, type RunSummary } from './run-summary.ts';
import { LOCAL_WORKER, StepSeries } from './step-series.ts';

/**
 * What a run's events say, reduced to the rows the charts draw (chart-rows.ts) and a summary
 * of where the run stands (run-summary.ts). The dashboard server feeds it line by line and
 * ships the rows each batch added (so the page only inserts them); the report feeds it a whole
 * log. One reduction, so the page and the report cannot disagree.
 */

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

const STEP_DATASETS = ['steps', 'throughput', 'stepTime'] as const;

/**
 * Reduces a run's events to chart rows and a summary, and tells what changed since the last
 * delta. Step-level series are averaged into buckets (StepSeries) so a run of a million steps
 * still draws `maxPoints` points per series.
 */
export class RunState {
  summary: RunSummary = emptySummary();
  /** The last evaluation event, as logged (the report's confusion matrix). */
  lastEvaluation: EvaluationEvent | undefined;
  private readonly maxPoints: number;
  private epochRows = new Map<number, EpochRow[]>();
  private steps: StepSeries;
  private membership = new Membership();
  private confusion: ConfusionRow[] = [];
  private dirtyEpochs = new Set<number>();
  private replaced = new Set<DatasetName>();
  private resetPending = false;

  constructor(options: RunStateOptions = {}) {
    this.maxPoints = Math.max(2, options.maxPoints ?? 1000);
    this.steps = new StepSeries(this.maxPoints);
  }

  /** All rows now (the report's data). */
  get rows(): ChartRows {
    return { epochs: this.allEpochRows(), ...this.steps.rows(), membership: this.membership.rows, confusion: this.confusion };
  }

  private rowsOf(name: DatasetName): ChartRows[DatasetName] {
    switch (name) {
      case 'epochs':
        return this.allEpochRows();
      case 'steps':
      case 'throughput':
      case 'stepTime':
        return this.steps.rowsOf(name);
      case 'membership':
        return this.membership.rows;
      case 'confusion':
        return this.confusion;
    }
  }

  /** Rows each dataset holds, without building them. */
  private sizes(): Record<DatasetName, number> {
    let epochs = 0;
    for (const rows of this.epochRows.values()) epochs += rows.length;
    return { epochs, ...this.steps.sizes(), membership: this.membership.rows.length, confusion: this.confusion.length };
  }

  /** Forgets everything (the log was truncated or replaced). */
  reset(): void {
    this.summary = emptySummary();
    this.lastEvaluation = undefined;
    this.epochRows.clear();
    this.steps = new StepSeries(this.maxPoints);
    this.membership = new Membership();
    this.confusion = [];
    this.dirtyEpochs.clear();
    this.replaced.clear();
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
    // Active intervals last until the latest event; rewriting the small dataset is cheap.
    if (this.membership.extendActive(this.summary.updatedAt)) this.replaced.add('membership');
  }

  /** What changed since the last call. */
  takeDelta(): RunDelta {
    const replace: Partial<ChartRows> = {};
    const upsert: Partial<ChartRows> = {};
    for (const name of this.replaced) (replace as Record<string, unknown>)[name] = this.rowsOf(name);
    if (!this.replaced.has('epochs') && this.dirtyEpochs.size > 0) {
      upsert.epochs = [...this.dirtyEpochs].flatMap((epoch) => this.epochRows.get(epoch) ?? []);
    }
    const changedSteps = this.steps.takeChanged();
    if (changedSteps) {
      for (const name of STEP_DATASETS) if (!this.replaced.has(name)) (upsert as Record<string, unknown>)[name] = changedSteps[name];
    }
    const delta: RunDelta = { reset: this.resetPending, replace, upsert, sizes: this.sizes(), summary: this.summary };
    this.dirtyEpochs.clear();
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
        if (this.steps.add(e)) {
          // Coarser buckets: the step-level datasets are rewritten.
          s.stepsPerPoint = this.steps.stepsPerPoint;
          for (const name of STEP_DATASETS) this.replaced.add(name);
        }
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
      case 'worker_fail':
        if (e.event === 'worker_fail') s.workerFailures++;
        this.membership.leave(e.worker, at, e.event === 'worker_fail' ? 'failed' : 'left', e.reason);
        this.replaced.add('membership');
        break;
      case 'job_end':
        s.status = e.status;
        s.seconds = e.seconds;
        s.testAccuracy = e.testAccuracy;
        s.modelDir = e.modelDir;
        s.error = e.error;
        this.membership.end(at);
        this.replaced.add('membership');
        break;
    }
    s.workersActive = this.membership.activeCount;
    s.workersSeen = this.membership.seenCount;
  }

  private join(worker: string, at: number): void {
    if (this.membership.join(worker, at)) this.replaced.add('membership');
  }

  /** A resumed job re-runs what came after its checkpoint: drop those rows. */
  private dropAfter(step: number, epoch: number): void {
    this.steps.dropAfter(step);
    for (const e of [...this.epochRows.keys()]) if (e > epoch) this.epochRows.delete(e);
    for (const name of [...STEP_DATASETS, 'epochs'] as const) this.replaced.add(name);
  }
}
