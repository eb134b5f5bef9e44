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
