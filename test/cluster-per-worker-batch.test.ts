import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { initBackend } from '../src/model/backend.ts';
import { smallFashionMnist, spawnDrover, spawnWorker, startCoordinator, tempDir, testJob, type LogLine } from './helpers/cluster.ts';

// cluster.batch.perWorker with real worker processes: the global batch follows the live workers.

test.before(async () => {
  await initBackend('wasm');
});

const stepN = (line: LogLine): number => line.n as number;
const workerIds = (line: LogLine): string[] => (line.workers as { worker: string }[]).map((w) => w.worker);

// The rule follows the optimizer: k for SGD, sqrt(k) for Adam (cluster.batch.scaleLearningRate: true).
for (const { optimizer, rule, factor } of [
  { optimizer: 'sgd', rule: 'linear', factor: 2 },
  { optimizer: 'adam', rule: 'sqrt', factor: Math.SQRT2 },
] as const) {
  test.serial(`drover train --workers 2 --processes --per-worker-batch 32 with ${optimizer} trains on a global batch of 2 x 32 at the ${rule}-scaled rate`, async (t) => {
    const dir = await tempDir(t);
    const job = path.join(dir, 'job.json');
    await writeFile(job, JSON.stringify({
      name: 'per-worker',
      seed: 2,
      backend: 'wasm',
      data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: 64 * 6, validationSize: 0, limitTest: 64 },
      model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 16 }] },
      // The rate 0.01 was tuned for batchSize 32: the reference batch.
      train: { epochs: 2, batchSize: 32, logEvery: 1, optimizer: { name: optimizer, learningRate: 0.01 } },
      output: { dir: path.join(dir, 'out') },
    }));
    const run = spawnDrover(t, ['train', '--config', job, '--workers', '2', '--processes', '--per-worker-batch', '32'], { CI: 'true' });
    const end = await run.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 180_000);
    t.is(end.status, 'completed');
    t.is(await run.exited, 0);
    const start = run.sink.events('job_start')[0]!;
    t.is(start.batchSize, 64);
    t.is(start.stepsPerEpoch, 6);
    const told = run.sink.lines.filter((l) => l.scalingRule !== undefined);
    t.deepEqual(told.map((l) => [l.scalingRule, l.optimizer]), [[rule, optimizer]], 'the rule is told once, at the start');
    const steps = run.sink.events('step');
    t.deepEqual(steps.map(stepN), Array.from({ length: 12 }, () => 64), 'every step: 2 workers x 32');
    t.true(steps.every((l) => workerIds(l).length === 2), 'both workers in every step');
    // Global batch 64 = 2 x 32: the factor is the rule's of 2, warmed up over 5 epochs of 384 samples.
    steps.forEach((l, i) => t.true(Math.abs((l.lr as number) - 0.01 * (1 + (factor - 1) * ((i * 64) / (5 * 384)))) < 1e-9, `step ${i + 1}: lr ${l.lr}`));
  });
}

test.serial('a worker joining mid-epoch doubles the global batch from a step boundary on, and the epoch still covers every sample once', async (t) => {
  const dir = await tempDir(t);
  const PER_WORKER = 32;
  const length = PER_WORKER * 120;
  const dataset = await smallFashionMnist(length);
  const job = testJob(dir, {
    train: { epochs: 1000, batchSize: PER_WORKER, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } },
    cluster: { minWorkers: 1, batch: { perWorker: PER_WORKER } },
  });
  const coordinator = await startCoordinator(t, job, { dataset });
  // Steps of at least 50 ms, so the late worker's start lands inside an epoch (120 steps alone).
  const slow = ['--simulate-compute-ms', '50'];
  spawnWorker(t, coordinator.port, { name: 'first', args: slow });
  const { sink } = coordinator;
  await sink.waitFor((l) => l.event === 'step', 'the first step, with one worker');
  spawnWorker(t, coordinator.port, { name: 'late', args: slow });
  const joined = await sink.waitFor((l) => l.event === 'worker_join' && String(l.worker).endsWith('late'), 'the late worker joining', 60_000);
  const doubled = await sink.waitFor((l) => l.event === 'step' && stepN(l) === 2 * PER_WORKER, 'a step of 2 x perWorker', 60_000);
  t.true((doubled.step as number) > (joined.step as number), 'the batch grew at a later step boundary');
  // Run until the epoch of the change and the one after it are complete.
  const changeEpoch = doubled.epoch as number;
  await sink.waitFor((l) => l.event === 'epoch' && (l.epoch as number) === changeEpoch + 1, `epoch ${changeEpoch + 1} complete`, 120_000);
  coordinator.stop();
  await coordinator.result;
  const steps = sink.events('step');
  t.deepEqual(steps.map((l) => l.step), steps.map((_, i) => i + 1), 'no step skipped');
  for (const epoch of [changeEpoch, changeEpoch + 1]) {
    const inEpoch = steps.filter((l) => l.epoch === epoch);
    // Each step event's n is the samples of its batch every one of which was computed; the
    // batches of an epoch are consecutive slices of its permutation (test/per-worker-batch.test.ts).
    t.is(inEpoch.reduce((s, l) => s + stepN(l), 0), length, `epoch ${epoch}: every sample once`);
    t.deepEqual(inEpoch.map((l) => l.stepInEpoch), inEpoch.map((_, i) => i + 1));
  }
  const sizes = steps.filter((l) => l.epoch === changeEpoch).map(stepN);
  const firstDouble = sizes.indexOf(2 * PER_WORKER);
  t.true(sizes.slice(0, firstDouble).every((n) => n === PER_WORKER), 'one worker: perWorker samples a step');
  t.true(sizes.slice(firstDouble, -1).every((n) => n === 2 * PER_WORKER), 'two workers: twice that, to the epoch\'s last batch');
  t.true(steps.filter((l) => l.epoch === changeEpoch + 1).slice(0, -1).every((l) => stepN(l) === 2 * PER_WORKER));
});
