import type { StepTiming } from './step-engine.ts';

/** One worker's share of the steps between two `step` events (means per step). */
export interface WorkerWindow {
  worker: string;
  n: number;
  imgPerSec: number;
  computeMs: number;
  dataWaitMs: number;
}

/** The measured fields of a `step` event. */
export interface WindowFigures {
  loss: number;
  accuracy: number;
  n: number;
  imgPerSec: number;
  dataWaitMs: number;
  computeMs: number;
  transferMs: number;
  reduceMs: number;
  stepMs: number;
  workers?: WorkerWindow[];
}

/**
 * Aggregates the applied steps between two `step` events: throughput over their wall time, and
 * each timing as a mean per step (per worker too, when the engine reports workers).
 */
export class StepWindow {
  private steps = 0;
  private images = 0;
  private started: number | undefined;
  private ended = 0;
  private readonly sums = { dataWaitMs: 0, computeMs: 0, transferMs: 0, reduceMs: 0, stepMs: 0 };
  private workers: Map<string, { n: number; computeMs: number; dataWaitMs: number }> | undefined;

  /** Adds an applied step of `n` samples that ended at `endedAt` (performance.now()). */
  add(timing: StepTiming, n: number, endedAt = performance.now()): void {
    this.started ??= endedAt - timing.stepMs;
    this.ended = endedAt;
    this.steps++;
    this.images += n;
    for (const key of Object.keys(this.sums) as (keyof typeof this.sums)[]) this.sums[key] += timing[key];
    if (timing.workers) {
      this.workers ??= new Map();
      for (const r of timing.workers) {
        const w = this.workers.get(r.worker) ?? { n: 0, computeMs: 0, dataWaitMs: 0 };
        w.n += r.n;
        w.computeMs += r.computeMs;
        w.dataWaitMs += r.dataWaitMs;
        this.workers.set(r.worker, w);
      }
    }
  }

  /** The figures of the window, with the last step's loss and accuracy; starts a new window. */
  flush(last: { loss: number; correct: number; n: number }): WindowFigures {
    const k = Math.max(1, this.steps);
    const seconds = Math.max(1e-9, (this.ended - (this.started ?? this.ended)) / 1000);
    const figures: WindowFigures = {
      loss: last.loss,
      accuracy: last.correct / last.n,
      n: last.n,
      imgPerSec: this.images / seconds,
      dataWaitMs: this.sums.dataWaitMs / k,
      computeMs: this.sums.computeMs / k,
      transferMs: this.sums.transferMs / k,
      reduceMs: this.sums.reduceMs / k,
      stepMs: this.sums.stepMs / k,
      ...(this.workers
        ? {
            workers: [...this.workers.entries()].map(([worker, w]) => ({
              worker,
              n: Math.round(w.n / k),
              imgPerSec: w.computeMs > 0 ? (w.n / w.computeMs) * 1000 : 0,
              computeMs: w.computeMs / k,
              dataWaitMs: w.dataWaitMs / k,
            })),
          }
        : {}),
    };
    this.steps = 0;
    this.images = 0;
    this.started = undefined;
    for (const key of Object.keys(this.sums) as (keyof typeof this.sums)[]) this.sums[key] = 0;
    this.workers = undefined;
    return figures;
  }
}
