import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { runWithLocalWorkers } from '../src/launch/local-workers.ts';
import { generateShapes, SHAPE_CLASSES } from '../src/data/shapes.ts';
import { Sampler } from '../src/data/sampler.ts';
import { initBackend } from '../src/model/backend.ts';
import { loadModel } from '../src/model/export.ts';
import { buildTransferModel } from '../src/model/transfer.ts';
import { readWeights } from '../src/model/weights.ts';
import { parseEventObject } from '../src/telemetry/events.ts';
import { openJobDataset } from '../src/data/open.ts';
import { Trainer } from '../src/train/trainer.ts';
import { runWorker } from '../src/worker/run-worker.ts';
import { alive, EventSink, compareUpdates, sinkLogger, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

test.before(async () => {
  await initBackend('wasm');
});

const SIZE = 32;
const backbone = 'nsfwjs:mobilenet_v2';

async function shapes(dir: string, perClass: number): Promise<string> {
  return generateShapes(path.join(dir, 'shapes'), { perClass, size: SIZE });
}


function layerValues(model: tf.LayersModel, name: string): Float32Array[] {
  return model.getLayer(name).getWeights().map((w) => w.dataSync() as Float32Array);
}

function changed(before: Float32Array[], after: Float32Array[]): boolean {
  return before.some((values, i) => values.some((v, j) => v !== after[i]![j]));
}

test.serial('drover train --workers 2 runs a transfer job with its fine-tuning phase: epochs numbered on, the unfrozen layers train, the model exports', async (t) => {
  const dir = await tempDir(t);
  const data = await shapes(dir, 8);
  const transfer = { backbone, head: { pooling: 'avg' as const }, fineTune: { from: 'block_16_expand', learningRate: 0.005, epochs: 1 } };
  const job = testJob(dir, {
    name: 'transfer-cluster',
    data: { kind: 'folder', path: data, imageSize: [SIZE, SIZE], validation: { fraction: 0.25 } },
    model: { transfer },
    train: { epochs: 1, batchSize: 12, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.01 } },
  });
  const sink = new EventSink();
  let pids: number[] = [];
  const result = await runWithLocalWorkers({ job, workers: 2, log: sinkLogger(sink), onWorkers: (started) => (pids = started) });
  t.is(result.status, 'completed');
  t.deepEqual(pids.map(alive), [false, false], 'both workers exited');

  // One job, two phases: the fine-tuning epoch continues the count and the step numbers.
  t.is(sink.events('job_start').length, 1);
  t.is(sink.events('job_start')[0]!.epochs, 2);
  t.is(sink.events('job_end').length, 1);
  t.is(sink.events('job_end')[0]!.status, 'completed');
  const epochs = sink.events('epoch');
  t.deepEqual(epochs.map((e) => e.epoch), [1, 2]);
  t.deepEqual(epochs.map((e) => e.epochs), [2, 2]);
  t.deepEqual(epochs.map((e) => e.lr), [0.01, 0.005], 'the fine-tuning phase runs at its own rate');
  t.deepEqual(sink.events('step').map((e) => e.step), [1, 2, 3, 4]);
  t.is(result.steps, 4);
  t.is(result.history.length, 2);
  // Both workers came back for the second phase.
  t.is(sink.events('worker_join').length, 4);
  for (const line of sink.lines.filter((l) => l.event !== undefined)) t.is(parseEventObject(line).kind, 'event', JSON.stringify(line));

  // Against the pretrained backbone and the seeded head: phase 2 trained block 16, nothing below it moved.
  const initial = await buildTransferModel(transfer, { inputShape: [SIZE, SIZE, 3], classes: SHAPE_CLASSES.length, seed: job.seed });
  const saved = await loadModel(result.modelDir!);
  t.deepEqual(saved.classNames, [...SHAPE_CLASSES].sort());
  t.deepEqual(saved.model.inputs[0]!.shape, [null, SIZE, SIZE, 3]);
  const moved = (name: string): boolean => changed(layerValues(initial.model, name), layerValues(saved.model, name));
  t.true(moved('head_classifier'), 'the head trained');
  t.true(moved('block_16_expand'), 'the unfrozen block trained in phase 2');
  t.true(moved('block_16_project'), 'the unfrozen block trained in phase 2');
  t.false(moved('Conv1'), 'the frozen stem did not move');
  t.false(moved('block_15_expand'), 'the block below `from` did not move');
  t.false(moved('block_16_expand_BN'), 'frozen batch norm did not move');
  const probe = tf.zeros([1, SIZE, SIZE, 3]);
  const out = saved.model.predict(probe) as tf.Tensor;
  t.deepEqual(out.shape, [1, SHAPE_CLASSES.length]);
  tf.dispose([probe, out]);
  initial.model.dispose();
  saved.model.dispose();
});

test.serial('frozen-backbone transfer steps: 2 workers with shards of 16 make the same updates as 1 worker with batch 32, step after step', async (t) => {
  const dir = await tempDir(t);
  // 3 steps: after the first full broadcast, workers get only the head's weights (partial
  // broadcasts); steps 2 and 3 compute on those on top of the backbone they hold.
  const data = await shapes(dir, 24);
  const transfer = { backbone, head: { pooling: 'avg' as const } };
  const learningRate = 0.1;
  const job = testJob(dir, {
    name: 'transfer-exact',
    seed: 5,
    data: { kind: 'folder', path: data, imageSize: [SIZE, SIZE] },
    model: { transfer },
    train: { epochs: 1, batchSize: 32, logEvery: 1, optimizer: { name: 'sgd', learningRate } },
    cluster: { minWorkers: 2, balance: 'equal' },
  });
  const coordinator = await startCoordinator(t, job);
  const workers = ['a', 'b'].map((name) => runWorker({ coordinator: `127.0.0.1:${coordinator.port}`, backend: 'wasm', name, log: sinkLogger(new EventSink()) }));
  const result = await coordinator.result;
  t.deepEqual((await Promise.all(workers)).map((w) => w.status), ['completed', 'completed']);
  t.is(result.steps, 3);
  const steps = coordinator.sink.events('step');
  for (const step of steps) t.deepEqual((step.workers as { n: number }[]).map((w) => w.n), [16, 16]);

  // Reference: one process, the whole batch, from the same initial weights.
  const dataset = await openJobDataset(job.data, sinkLogger(new EventSink()));
  const built = await buildTransferModel(transfer, { inputShape: dataset.inputShape, classes: SHAPE_CLASSES.length, seed: job.seed });
  const reference = new Trainer(built.model, { optimizer: job.train.optimizer });
  const initial = await readWeights(reference.model);
  const sampler = new Sampler({ length: dataset.train.length, batchSize: 32, seed: job.seed });
  const losses: number[] = [];
  for (let k = 0; k < 3; k++) {
    const single = await reference.computeGradients(await dataset.train.loadBatch(sampler.next().indices));
    losses.push(single.loss);
    await reference.applyGradients(single.grads, learningRate);
  }
  const expected = await readWeights(reference.model);
  await dataset.close();

  const saved = await loadModel(path.join(dir, 'model'));
  const distributed = await readWeights(saved.model);
  t.deepEqual(distributed.manifest.map((w) => w.shape), expected.manifest.map((w) => w.shape));
  let worst = 0;
  for (const weight of compareUpdates(initial, distributed, expected)) {
    if (!weight.trainable) {
      t.false(weight.moved, `${weight.name} is frozen and did not move`);
      continue;
    }
    worst = Math.max(worst, weight.error);
    t.true(weight.error <= 1e-5, `${weight.name}: relative error of the update ${weight.error}`);
  }
  t.log(`largest relative error of a trainable weight's update: ${worst.toExponential(2)}`);
  // Each step's loss comes from the workers' forward passes on the weights they held: every
  // weight (the backbone from the full broadcast, the head from the partial ones) was the
  // coordinator's, or the losses of steps 2 and 3 would differ.
  steps.forEach((step, k) => t.true(Math.abs((step.loss as number) - losses[k]!) <= 1e-5 * losses[k]!, `step ${k + 1}: loss ${step.loss} vs ${losses[k]}`));
  saved.model.dispose();
  reference.model.dispose();
  reference.optimizer.dispose();
});

test.serial('a coordinator stopped in the fine-tuning phase resumes in it: its optimizer state, step and epoch numbers carry on', async (t) => {
  const dir = await tempDir(t);
  const data = await shapes(dir, 8);
  const job = testJob(dir, {
    name: 'transfer-resume',
    data: { kind: 'folder', path: data, imageSize: [SIZE, SIZE] },
    model: { transfer: { backbone, head: { pooling: 'avg' }, fineTune: { from: 'block_16_expand', learningRate: 0.005, epochs: 1 } } },
    train: { epochs: 1, batchSize: 8, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.01 } },
  });
  const join = (port: number, name: string) => runWorker({ coordinator: `127.0.0.1:${port}`, backend: 'wasm', name, log: sinkLogger(new EventSink()) });
  const first = await startCoordinator(t, job);
  const firstWorker = join(first.port, 'a');
  // Stop as soon as the fine-tuning phase has applied a step (its first is step 5).
  await first.sink.waitFor((l) => l.event === 'step' && (l.step as number) >= 5, 'a fine-tuning step', 120_000);
  first.stop();
  const stopped = await first.result;
  t.is(stopped.status, 'stopped');
  t.is((await firstWorker).status, 'dismissed');
  const stoppedAt = stopped.steps;
  t.true(stoppedAt >= 5 && stoppedAt < 8, `stopped at step ${stoppedAt}`);

  const second = await startCoordinator(t, job, { resume: true });
  t.is(second.jobId, first.jobId);
  const secondWorker = join(second.port, 'b');
  const result = await second.result;
  t.is((await secondWorker).status, 'completed');
  t.is(result.status, 'completed');
  t.is(result.steps, 8);
  t.deepEqual(result.history.map((e) => e.epoch), [1, 2]);
  t.like(second.sink.events('job_start')[0], { epochs: 2, resumedFrom: { step: stoppedAt } });
  t.deepEqual(second.sink.events('step').map((e) => e.step), Array.from({ length: 8 - stoppedAt }, (_, i) => stoppedAt + 1 + i));
  t.deepEqual(second.sink.events('epoch').map((e) => [e.epoch, e.lr]), [[2, 0.005]]);
});
