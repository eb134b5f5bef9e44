import type { StepTiming } from '../job/step-engine.ts';

/** One worker's part of a step, for the step event and the bench. */
export interface TaskReport {
  worker: string;
  n: number;
  computeMs: number;
  dataWaitMs: number;
  /** When its result was complete on the coordinator (performance.now()). */
  receivedAt: number;
}

/**
 * Where one step's time went. `startedAt`: its weights went out (round start); `reduceStart`: its
 * round was done; `stepEnd`: the update applied and the weights sent (all performance.now()).
 * `reports` must hold at least one result.
 */
export function stepTiming(reports: readonly TaskReport[], startedAt: number, reduceStart: number, stepEnd: number): StepTiming {
  // The critical path ends with the last result in: its worker's wait and compute, the rest is transfer.
  const last = reports.reduce((a, b) => (b.receivedAt > a.receivedAt ? b : a), reports[0]!);
  const slowest = Math.max(...reports.map((r) => r.computeMs));
  const workers = new Map<string, { worker: string; n: number; computeMs: number; dataWaitMs: number }>();
  for (const r of reports) {
    const w = workers.get(r.worker) ?? { worker: r.worker, n: 0, computeMs: 0, dataWaitMs: 0 };
    w.n += r.n;
    w.computeMs += r.computeMs;
    w.dataWaitMs += r.dataWaitMs;
    workers.set(r.worker, w);
  }
  return {
    dataWaitMs: last.dataWaitMs,
    computeMs: slowest,
    transferMs: Math.max(0, last.receivedAt - startedAt - last.dataWaitMs - last.computeMs),
    // From the last byte in: check and add that result, average, optimizer step, weight snapshot.
    reduceMs: stepEnd - Math.min(last.receivedAt, reduceStart),
    stepMs: stepEnd - startedAt,
    workers: [...workers.values()],
  };
}

/** What a `step` event reports: the last step's metrics, timings as means over the window. */
export interface StepWindowSummary {
  loss: number;
  accuracy: number;
  n: number;
  imgPerSec: number;
  dataWaitMs: number;
  computeMs: number;
  transferMs: number;
  reduceMs: number;
  stepMs: number;
  workers: { worker: string; n: number; imgPerSec: number; computeMs: number; dataWaitMs: number }[];
}

/** Aggregates the applied steps between two `step` events. */
export class StepWindow {
  private steps = 0;
  private images = 0;
  private started: number | undefined;
  private lastEnd = 0;
  private dataWait = 0;
  private compute = 0;
  private transfer = 0;
  private reduce = 0;
  private stepTime = 0;
  private workers = new Map<string, { n: number; computeMs: number; dataWaitMs: number }>();

  /** Adds a step of `n` samples that ended at `endedAt` (performance.now()). */
  add(timing: StepTiming, n: number, endedAt = performance.now()): void {
    this.started ??= endedAt - timing.stepMs;
    this.steps++;
    this.images += n;
    this.dataWait += timing.dataWaitMs;
    this.compute += timing.computeMs;
    this.transfer += timing.transferMs;
    this.reduce += timing.reduceMs;
    this.stepTime += timing.stepMs;
    for (const r of timing.workers ?? []) {
      const w = this.workers.get(r.worker) ?? { n: 0, computeMs: 0, dataWaitMs: 0 };
      w.n += r.n;
      w.computeMs += r.computeMs;
      w.dataWaitMs += r.dataWaitMs;
      this.workers.set(r.worker, w);
    }
    this.lastEnd = endedAt;
  }

  /** The summary since the last flush, with `last` step's metrics; starts a new window. */
  flush(last: { loss: number; correct: number; n: number }): StepWindowSummary {
    const k = Math.max(1, this.steps);
    const seconds = Math.max(1e-9, (this.lastEnd - (this.started ?? this.lastEnd)) / 1000);
    const out: StepWindowSummary = {
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
