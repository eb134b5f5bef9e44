import test from 'ava';
import { parseLogLine } from '../src/telemetry/events.ts';
import { RunState } from '../src/telemetry/run-state.ts';
import { syntheticRunEvents } from './helpers/run-log.ts';

function feed(state: RunState, lines: Record<string, unknown>[]): void {
  for (const line of lines) state.apply(parseLogLine(JSON.stringify(line)));
}

test('a finished run reduces to its curves, throughput, step times, membership and confusion matrix', (t) => {
  const state = new RunState();
  feed(state, syntheticRunEvents({ epochs: 3, stepsPerEpoch: 10, workers: ['a', 'b', 'c'] }));
  const { rows, summary } = state;
  t.is(rows.epochs.length, 6, 'train and validation rows per epoch');
  t.deepEqual(
    rows.epochs.map((r) => `${r.epoch}:${r.split}`),
    ['1:train', '1:validation', '2:train', '2:validation', '3:train', '3:validation'],
  );
  t.is(rows.steps.length, 30);
  t.deepEqual(rows.steps.map((r) => r.step), Array.from({ length: 30 }, (_, i) => i + 1));
  t.is(rows.stepTime.length, 30 * 4);
  // Worker b fails a third into epoch 2 and rejoins two thirds in: fewer rows for it.
  const perWorker = (w: string): number => rows.throughput.filter((r) => r.worker === w).length;
  t.is(perWorker('a'), 30);
  t.true(perWorker('b') < 30 && perWorker('b') > 20);
  t.deepEqual(
    rows.membership.map((r) => `${r.worker}:${r.state}`),
    ['a:active', 'b:failed', 'c:active', 'b:active'],
  );
  t.is(rows.confusion.length, 100);
  const diagonal = rows.confusion.filter((r) => r.actual === r.predicted);
  t.true(diagonal.every((r) => r.rate > 0.7));
  t.is(summary.status, 'completed');
  t.is(summary.step, 30);
  t.is(summary.epoch, 3);
  t.is(summary.workerFailures, 1);
  t.is(summary.workersSeen, 3);
  t.is(summary.workersActive, 0);
  t.is(summary.dataSkips, 1);
  t.is(summary.lines.events, syntheticRunEvents({ epochs: 3, stepsPerEpoch: 10, workers: ['a', 'b', 'c'] }).length);
  t.truthy(summary.bestValAccuracy);
});

test('deltas carry only what changed: new rows as upserts, small datasets replaced whole', (t) => {
  const state = new RunState();
  const events = syntheticRunEvents({ epochs: 2, stepsPerEpoch: 5, workers: ['a', 'b'] });
  const firstEpochEnd = events.findIndex((e) => e.event === 'epoch');
  feed(state, events.slice(0, firstEpochEnd + 1));
  const first = state.takeDelta();
  t.false(first.reset);
  t.is(first.upsert.steps?.length, 5);
  t.is(first.upsert.epochs?.length, 2);
  t.truthy(first.replace.membership);
  t.deepEqual(first.sizes, { epochs: 2, steps: 5, throughput: 10, stepTime: 20, membership: 2, confusion: 0 });

  const empty = state.takeDelta();
  t.deepEqual(empty.upsert, {});
  t.deepEqual(empty.replace, {});

  const step6 = events.findIndex((e) => e.event === 'step' && e.step === 6);
  feed(state, events.slice(firstEpochEnd + 1, step6 + 1));
  const next = state.takeDelta();
  t.deepEqual(Object.keys(next.upsert).sort(), ['stepTime', 'steps', 'throughput']);
  t.is(next.upsert.steps?.length, 1);
  t.is(next.upsert.steps?.[0]?.step, 6);
});

test('a long run is averaged into buckets so a chart never gets more than maxPoints points', (t) => {
  const state = new RunState({ maxPoints: 100 });
  const events = syntheticRunEvents({ epochs: 5, stepsPerEpoch: 90, workers: ['a'] });
  const steps = events.filter((e) => e.event === 'step');
  feed(state, events);
  const { rows, summary } = state;
  t.true(rows.steps.length <= 100 && rows.steps.length > 50, `${rows.steps.length} points`);
  t.is(summary.stepsPerPoint, 8);
  t.is(rows.steps.reduce((n, r) => n + r.steps, 0), 450, 'every step counted once');
  t.is(rows.steps.at(-1)!.step, 450);
  // The mean of the first bucket is the mean of its steps.
  const firstBucket = steps.slice(0, rows.steps[0]!.steps).map((e) => e.loss as number);
  t.true(Math.abs(rows.steps[0]!.loss - firstBucket.reduce((a, b) => a + b, 0) / firstBucket.length) < 1e-9);
  t.is(rows.stepTime.length, rows.steps.length * 4);
});

test('while a bucket fills, its row is upserted under the same key', (t) => {
  const state = new RunState({ maxPoints: 4 });
  const events = syntheticRunEvents({ epochs: 1, stepsPerEpoch: 12, workers: ['a'] }).filter((e) => e.event !== 'epoch');
  const steps = events.filter((e) => e.event === 'step');
  feed(state, events.slice(0, events.indexOf(steps[8]!) + 1));
  state.takeDelta();
  feed(state, [steps[9]!]);
  const delta = state.takeDelta();
  // Buckets of 4 steps now: step 10 refines the bucket of steps 9..12.
  t.is(state.summary.stepsPerPoint, 4);
  t.deepEqual(delta.upsert.steps?.map((r) => [r.key, r.first, r.step, r.steps]), [[2, 9, 10, 2]]);
});

test('a second job in the same log resets the page; a resumed job keeps what came before its checkpoint', (t) => {
  const state = new RunState();
  const run = syntheticRunEvents({ epochs: 3, stepsPerEpoch: 4, workers: ['a'], finished: false });
  feed(state, run);
  state.takeDelta();
  const jobStart = run.find((e) => e.event === 'job_start')!;
  feed(state, [{ ...jobStart, resumedFrom: { epoch: 2, step: 8 } }]);
  const resumed = state.takeDelta();
  t.false(resumed.reset);
  t.is(resumed.replace.steps?.length, 8);
  t.deepEqual([...new Set(resumed.replace.epochs?.map((r) => r.epoch))], [1, 2]);

  feed(state, [{ ...jobStart, job: 'another-job' }]);
  const other = state.takeDelta();
  t.true(other.reset);
  t.is(other.sizes.steps, 0);
  t.is(state.summary.job, 'another-job');
  t.is(state.summary.lines.events, run.length + 2, 'the line tally covers the whole file');
});

test('a single-process run shows one local member and its throughput', (t) => {
  const state = new RunState();
  feed(state, syntheticRunEvents({ epochs: 1, stepsPerEpoch: 3, workers: ['only'] }));
  t.deepEqual(state.rows.membership.map((r) => r.worker), ['local']);
  t.deepEqual([...new Set(state.rows.throughput.map((r) => r.worker))], ['local']);
  t.is(state.summary.mode, 'single');
});
