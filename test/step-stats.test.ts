import test from 'ava';
import { stepTiming } from '../src/coordinator/step-stats.ts';

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
