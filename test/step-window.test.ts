import test from 'ava';
import { StepWindow } from '../src/job/step-window.ts';

// The step window the training loop aggregates `step` events with (moved from test/step-stats.test.ts with it).

test('a step window reports means per step and throughput over its wall time', (t) => {
  const window = new StepWindow();
  const step = (stepMs: number, n: number) => ({ dataWaitMs: 1, computeMs: 2 * n, transferMs: 3, reduceMs: 4, stepMs, workers: [{ worker: 'a', n, computeMs: 2 * n, dataWaitMs: 1 }] });
  window.add(step(100, 10), 10, 1100); // started at 1000
  window.add(step(100, 30), 30, 1200);
  const out = window.flush({ loss: 0.5, correct: 15, n: 30 });
  t.is(out.imgPerSec, 40 / 0.2);
  t.is(out.accuracy, 0.5);
  t.is(out.computeMs, 40);
  t.is(out.stepMs, 100);
  t.deepEqual(out.workers, [{ worker: 'a', n: 20, imgPerSec: 500, computeMs: 40, dataWaitMs: 1 }]);
  window.add(step(50, 5), 5, 2050);
  t.is(window.flush({ loss: 0, correct: 5, n: 5 }).imgPerSec, 5 / 0.05, 'a flush starts a new window');
});

test('an engine that reports no workers (in-process) gets no workers field', (t) => {
  const window = new StepWindow();
  window.add({ dataWaitMs: 2, computeMs: 8, transferMs: 0, reduceMs: 0, stepMs: 10 }, 4, 110);
  const out = window.flush({ loss: 1, correct: 1, n: 4 });
  t.false('workers' in out);
  t.like(out, { imgPerSec: 4 / 0.01, dataWaitMs: 2, computeMs: 8, stepMs: 10, accuracy: 0.25 });
});
