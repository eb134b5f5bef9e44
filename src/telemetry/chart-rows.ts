import type { EvaluationEvent } from './events.ts';

/**
 * The rows the run's charts draw (dashboard and report alike), one dataset per chart. Every
 * row carries a `key`. An update's `upsert` rows replace the rows with the same key
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
