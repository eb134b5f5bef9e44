import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { loadModel } from '../src/model/export.ts';
import { PRESETS } from '../src/model/presets.ts';
import { readWeights } from '../src/model/weights.ts';
import type { LayerSpecInput } from '../src/model/layer-spec.ts';
import { Trainer } from '../src/train/trainer.ts';
import { runWorker } from '../src/worker/run-worker.ts';
import { EventSink, compareUpdates, sinkLogger, smallFashionMnist, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

test.before(async () => {
  await initBackend('wasm');
});

// The reference CNN without its dropout: with no randomness in the step, the update is a function of the batch.
const cnn: LayerSpecInput[] = PRESETS['fmnist-cnn'].layers.filter((layer) => layer.type !== 'dropout');

test.serial('2 workers with shards of 32 make the same update as 1 worker with batch 64', async (t) => {
  const tensorsBefore = tf.memory().numTensors;
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(64);
  const learningRate = 0.1;
  const job = testJob(dir, {
    seed: 11,
    model: { layers: cnn },
    train: { epochs: 1, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate } },
    cluster: { minWorkers: 2, balance: 'equal' },
  });
  const coordinator = await startCoordinator(t, job, { dataset });
  const workers = ['a', 'b'].map((name) => {
    const sink = new EventSink();
    return runWorker({ coordinator: `127.0.0.1:${coordinator.port}`, backend: 'wasm', name, log: sinkLogger(sink) });
  });
  const result = await coordinator.result;
  t.deepEqual((await Promise.all(workers)).map((w) => w.status), ['completed', 'completed']);
  t.is(result.steps, 1);

  // The step really was computed as two shards of 32.
  const [step] = coordinator.sink.events('step');
  t.deepEqual((step!.workers as { n: number }[]).map((w) => w.n), [32, 32]);
  t.is(step!.n, 64);

  // Reference: one process, the whole batch of 64, from the same initial weights.
  const reference = new Trainer(buildScratchModel({ layers: cnn, inputShape: dataset.inputShape, classes: 10, l2: 0, seed: 11 }), { optimizer: job.train.optimizer });
  const initial = await readWeights(reference.model);
  const batch = await dataset.train.loadBatch(Array.from({ length: 64 }, (_, i) => i));
  const single = await reference.computeGradients(batch);
  await reference.applyGradients(single.grads, learningRate);
  const expected = await readWeights(reference.model);

  const saved = await loadModel(path.join(dir, 'model'));
  const distributed = await readWeights(saved.model);
  t.deepEqual(distributed.manifest.map((w) => w.name), expected.manifest.map((w) => w.name));
  let worst = 0;
  for (const weight of compareUpdates(initial, distributed, expected)) {
    worst = Math.max(worst, weight.error);
    t.true(weight.error <= 1e-5, `${weight.name}: relative error of the update ${weight.error}`);
  }
  t.log(`largest relative error of a weight's update: ${worst.toExponential(2)}`);
  t.true(Math.abs((step!.loss as number) - single.loss) <= 1e-5 * single.loss, `loss ${step!.loss} vs ${single.loss}`);
  t.is(Math.round((step!.accuracy as number) * 64), single.correct);

  saved.model.dispose();
  reference.model.dispose();
  reference.optimizer.dispose();
  t.is(tf.memory().numTensors, tensorsBefore, 'no tensor leaked by the coordinator, the workers or the test');
});

test.serial('early stopping ends a distributed run and restores the best weights, which the checkpoint keeps', async (t) => {
  const tensorsBefore = tf.memory().numTensors;
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(256, 128);
  const job = testJob(dir, {
    train: {
      epochs: 6,
      batchSize: 64,
      logEvery: 4,
      optimizer: { name: 'adam', learningRate: 0.01 },
      // No later epoch can beat the first by 100: stop after `patience` = 1 more epoch.
      earlyStopping: { monitor: 'val_loss', patience: 1, minDelta: 100, restoreBest: true },
    },
    cluster: { minWorkers: 1 },
  });
  const coordinator = await startCoordinator(t, job, { dataset });
  const worker = runWorker({ coordinator: `127.0.0.1:${coordinator.port}`, backend: 'wasm', log: sinkLogger(new EventSink()) });
  const result = await coordinator.result;
  await worker;
  t.is(result.status, 'early_stopped');
  t.is(result.bestEpoch, 1);
  t.is(result.history.length, 2);
  const [stop] = coordinator.sink.events('early_stop');
  t.like(stop, { epoch: 2, bestEpoch: 1, restored: true, monitor: 'val_loss' });
  t.is(coordinator.sink.events('evaluation', (l) => l.split === 'validation').length, 2, 'a sharded validation pass per epoch');
  const { loadCheckpoint, checkpointPath } = await import('../src/job/checkpoint.ts');
  const checkpoint = await loadCheckpoint(checkpointPath(dir));
  t.is(checkpoint.state.earlyStopping!.bestEpoch, 1);
  const saved = await loadModel(path.join(dir, 'model'));
  const exported = await readWeights(saved.model);
  exported.values.forEach((values, i) => t.deepEqual(values, checkpoint.bestWeights!.values[i], exported.manifest[i]!.name));
  t.notDeepEqual(exported.values[0], checkpoint.weights.values[0], 'the epoch-2 weights were replaced by the best');
  saved.model.dispose();
  t.is(tf.memory().numTensors, tensorsBefore, 'the coordinator and the worker released every tensor');
});
