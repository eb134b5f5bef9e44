import { STEP_PHASES, type StepRow, type StepTimeRow, type ThroughputRow } from './chart-rows.ts';
import type { StepEvent } from './events.ts';

/** Throughput of a single-process run, which names no workers. */
export const LOCAL_WORKER = 'local';

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

/** The rows of the three step-level charts. */
export interface StepSeriesRows {
  steps: StepRow[];
  throughput: ThroughputRow[];
  stepTime: StepTimeRow[];
}

/**
 * The step-level series (loss, throughput per worker, step time per phase), averaged into
 * buckets of 1, 2, 4, ... steps so a run of a million steps still draws `maxPoints` points per
 * series. Remembers which buckets changed since they were last taken.
 */
export class StepSeries {
  private buckets: StepBucket[] = [];
  private stride = 1;
  private changed = new Set<StepBucket>();

  constructor(private readonly maxPoints: number) {}

  /** Steps per bucket. */
  get stepsPerPoint(): number {
    return this.stride;
  }

  /**
   * Adds a step to its bucket. True when that made the series coarser: every row was rewritten
   * (the changed buckets are forgotten; the caller sends the series whole).
   */
  add(e: StepEvent): boolean {
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
    this.changed.add(bucket);
    if (this.buckets.length <= this.maxPoints) return false;
    this.coarsen();
    return true;
  }

  /** A resumed job re-runs what came after its checkpoint: drops the buckets after `step` (the series is rewritten). */
  dropAfter(step: number): void {
    this.buckets = this.buckets.filter((b) => b.first <= step);
    this.changed.clear();
  }

  /** Every row of each step-level chart. */
  rows(): StepSeriesRows {
    return rowsOf(this.buckets);
  }

  /** Every row of one step-level chart. */
  rowsOf(name: keyof StepSeriesRows): StepSeriesRows[keyof StepSeriesRows] {
    switch (name) {
      case 'steps':
        return this.buckets.map(stepRow);
      case 'throughput':
        return this.buckets.flatMap(throughputRows);
      case 'stepTime':
        return this.buckets.flatMap(stepTimeRows);
    }
  }

  /** The rows of the buckets changed since the last call, or undefined if none changed. */
  takeChanged(): StepSeriesRows | undefined {
    if (this.changed.size === 0) return undefined;
    const rows = rowsOf([...this.changed]);
    this.changed.clear();
    return rows;
  }

  /** Rows each step-level chart holds, without building them. */
  sizes(): Record<keyof StepSeriesRows, number> {
    let throughput = 0;
    for (const b of this.buckets) throughput += b.workers.size;
    return { steps: this.buckets.length, throughput, stepTime: this.buckets.length * STEP_PHASES.length };
  }

  /** Doubles the steps per bucket, merging neighbours. */
  private coarsen(): void {
    this.stride *= 2;
    const merged: StepBucket[] = [];
    for (const b of this.buckets) {
      const key = Math.floor((b.first - 1) / this.stride);
      const into = merged.at(-1);
      if (into && into.key === key) mergeBucket(into, b);
      else merged.push({ ...b, key, phases: [...b.phases], workers: new Map([...b.workers].map(([w, s]) => [w, { ...s }])) });
    }
    this.buckets = merged;
    this.changed.clear();
  }
}

function rowsOf(buckets: StepBucket[]): StepSeriesRows {
  return { steps: buckets.map(stepRow), throughput: buckets.flatMap(throughputRows), stepTime: buckets.flatMap(stepTimeRows) };
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
