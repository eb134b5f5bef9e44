import test from 'ava';
import { stepTiming, StepWindow } from '../src/coordinator/step-stats.ts';

test('a step\'s time splits along its critical path: the last result\'s wait and compute, transfer, then the reduction', (t) => {
  // Weights out at 100; a's result in at 150, b's (the last) at 180; round done at 181; update out at 190.
  const timing = stepTiming(
    [
      { worker: 'a', n: 20, computeMs: 30, dataWaitMs: 5, receivedAt: 150 },
      { worker: 'b', n: 10, computeMs: 40, dataWaitMs: 10, receivedAt: 180 },
      { worker: 'a', n: 2, computeMs: 3, dataWaitMs: 1, receivedAt: 170 },
    ],
    100,
    181,
    190,
  );
  t.is(timing.dataWaitMs, 10);
  t.is(timing.computeMs, 40);
  t.is(timing.transferMs, 180 - 100 - 10 - 40);
  t.is(timing.reduceMs, 190 - 180);
  t.is(timing.stepMs, 90);
  t.deepEqual(timing.workers, [
    { worker: 'a', n: 22, computeMs: 33, dataWaitMs: 6 },
    { worker: 'b', n: 10, computeMs: 40, dataWaitMs: 10 },
  ]);
});

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
