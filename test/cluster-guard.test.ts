import test from 'ava';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError, WeightsError } from '../src/errors.ts';
import { checkpointPath, loadCheckpoint, saveCheckpoint, type Checkpoint } from '../src/job/checkpoint.ts';
import { GradientGuard, globalNorm } from '../src/coordinator/gradient-guard.ts';
import { initBackend } from '../src/model/backend.ts';
import { runWorker } from '../src/worker/run-worker.ts';
import { EventSink, sinkLogger, smallFashionMnist, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';
import { joinRogue } from './helpers/rogue.ts';
import { HUGE, optimizerRefusesOverflow } from './helpers/refused-update.ts';

test.before(async () => {
  await initBackend('wasm');
});

const TOKEN = 'correct-horse-battery';

const allFinite = (arrays: readonly Float32Array[]): boolean => arrays.every((a) => a.every((v) => Number.isFinite(v)));

test.serial('a finite but huge gradient is refused before Adam applies it: named, logged, the checkpoint stays finite, training goes on', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(64 * 4);
  const job = testJob(dir, {
    seed: 4,
    train: { epochs: 2, batchSize: 64, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.001 } },
    cluster: { minWorkers: 2, balance: 'equal', token: TOKEN },
  });
  const coordinator = await startCoordinator(t, job, { dataset, token: TOKEN });
  const address = `127.0.0.1:${coordinator.port}`;
  const rogue = await joinRogue(address, TOKEN, 'huge');
  t.teardown(rogue.close);
  void (async () => {
    for await (const task of rogue.tasks()) rogue.answer(task, { value: task.step === 2 ? HUGE : 0 });
  })();
  const honest = runWorker({ coordinator: address, backend: 'wasm', token: TOKEN, name: 'honest', log: sinkLogger(new EventSink()) });
  const result = await coordinator.result;
  await honest;
  t.is(result.status, 'completed');
  t.is(result.steps, 8);
  const refused = coordinator.sink.events('update_refused');
  t.is(refused.length, 1);
  t.is(refused[0]!.step, 2);
  t.is(refused[0]!.code, 'DROVER_ERR_NON_FINITE_UPDATE');
  t.regex(String(refused[0]!.target), /^slot v\/0 /);
  t.true((refused[0]!.workers as string[]).includes(rogue.workerId));
  const checkpoint = await loadCheckpoint(checkpointPath(dir));
  t.true(allFinite(checkpoint.weights.values), 'weights finite');
  t.true(allFinite(checkpoint.optimizer.slots.map((s) => s.values)), 'optimizer slots finite');
  // Every step but the refused one moved the optimizer on.
  t.is(checkpoint.optimizer.iterations, 7);
  t.true(checkpoint.optimizer.slots.some((s) => s.values.some((v) => v !== 0)), 'later steps updated the slots');
});

test.serial('the gradient guard refuses a contribution far above the recent median norm and evicts its worker; its shard is recomputed', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(64 * 8);
  const job = testJob(dir, {
    train: { epochs: 1, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } },
    cluster: { minWorkers: 2, balance: 'equal', token: TOKEN, gradientGuard: { maxNormRatio: 100, warmup: 4 } },
  });
  const coordinator = await startCoordinator(t, job, { dataset, token: TOKEN });
  const address = `127.0.0.1:${coordinator.port}`;
  const rogue = await joinRogue(address, TOKEN, 'spiky');
  t.teardown(rogue.close);
  void (async () => {
    for await (const task of rogue.tasks()) rogue.answer(task, { value: task.step === 4 ? 1e3 : 1e-3 });
  })();
  const honest = runWorker({ coordinator: address, backend: 'wasm', token: TOKEN, name: 'honest', log: sinkLogger(new EventSink()) });
  const result = await coordinator.result;
  await honest;
  t.is(result.status, 'completed');
  const failed = coordinator.sink.events('worker_fail', (l) => l.worker === rogue.workerId);
  t.is(failed.length, 1);
  t.regex(String(failed[0]!.reason), /step 4: gradient norm .* x the recent median .*maxNormRatio 100/);
  const steps = coordinator.sink.events('step');
  t.deepEqual(steps.map((l) => l.step), [1, 2, 3, 4, 5, 6, 7, 8]);
  t.true(steps.every((l) => l.n === 64));
  t.deepEqual(coordinator.sink.events('update_refused'), []);
});

test('global-norm clipping scales the averaged gradient down to clipNorm and leaves smaller ones alone', (t) => {
  const guard = new GradientGuard({ clipNorm: 1, window: 8, warmup: 2 });
  const big = [Float32Array.from([3, 0]), Float32Array.from([4])];
  t.deepEqual(guard.clip(big), { norm: 5, clipped: true });
  t.true(Math.abs(globalNorm(big) - 1) < 1e-6);
  t.deepEqual([...big[0]!].map((v) => +v.toFixed(6)), [0.6, 0]);
  const small = [Float32Array.from([0.3, 0.4])];
  const unclipped = guard.clip(small);
  t.false(unclipped.clipped);
  t.true(Math.abs(unclipped.norm - 0.5) < 1e-6);
  t.deepEqual([...small[0]!], [Math.fround(0.3), Math.fround(0.4)]);
  // The ratio check needs its warm-up, then refuses outliers without recording them.
  const ratio = new GradientGuard({ maxNormRatio: 10, window: 8, warmup: 2 });
  ratio.checkContribution([[1]], 'a');
  ratio.checkContribution([[2]], 'b');
  t.throws(() => ratio.checkContribution([[100]], 'c'), { instanceOf: WeightsError, message: /^c: gradient norm 100 is 66.7 x the recent median 1.50/ });
  t.is(ratio.checkContribution([[14]], 'd'), 14);
});

test('an optimizer step that would overflow a slot or a weight changes nothing: weights, slots and iteration count stay', async (t) => {
  await optimizerRefusesOverflow(t);
});

function tinyCheckpoint(slot: Float32Array): Checkpoint {
  const manifest = [{ name: 'w', shape: [2], dtype: 'float32' as const, trainable: true }];
  return {
    state: { jobId: 'j-1', jobName: 'j', step: 1, epoch: 0, sampler: { epoch: 0, offset: 0 }, seed: 1, history: [], epochProgress: { lossSum: 0, correct: 0, seen: 0, seconds: 0 }, savedAt: 'now' },
    weights: { manifest, values: [Float32Array.from([1, 2])] },
    optimizer: { iterations: 1, slots: [{ name: 'v/0', values: slot }] },
  };
}

test('a checkpoint with a non-finite weight or slot is never written: the previous one stays', async (t) => {
  const dir = await tempDir(t);
  const file = checkpointPath(dir);
  await saveCheckpoint(file, tinyCheckpoint(Float32Array.from([1, 1])));
  await t.throwsAsync(saveCheckpoint(file, tinyCheckpoint(Float32Array.from([1, Infinity]))), { instanceOf: CheckpointError, message: /v\/0 value 1 is Infinity/ });
  t.deepEqual((await loadCheckpoint(file)).optimizer.slots[0]!.values, Float32Array.from([1, 1]));
  t.deepEqual(await readdir(dir), ['checkpoint.drover']);
});

test('half-written checkpoint temporaries left by a crash are deleted when the coordinator starts', async (t) => {
  const dir = await tempDir(t);
  await mkdir(dir, { recursive: true });
  // A pid above Linux's largest (2^22): no process can hold it.
  const stale = path.join(dir, 'checkpoint.drover.tmp-4194400');
  await writeFile(stale, 'half a checkpoint');
  const dataset = await smallFashionMnist(64);
  const coordinator = await startCoordinator(t, testJob(dir, { cluster: { minWorkers: 9 } }), { dataset });
  const line = await coordinator.sink.waitFor((l) => l.path === stale, 'the removal logged');
  t.regex(String(line.msg), /half-written/);
  t.false((await readdir(dir)).includes('checkpoint.drover.tmp-4194400'));
});
