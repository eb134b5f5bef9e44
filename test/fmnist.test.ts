import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { eventSink } from './helpers/event-sink.ts';
import { initBackend } from '../src/model/backend.ts';
import { FASHION_MNIST_DIR, openIdxDataset } from '../src/data/idx.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { PRESETS } from '../src/model/presets.ts';
import { Trainer } from '../src/train/trainer.ts';
import { optimizerSpecSchema } from '../src/train/optimizers.ts';
import { InProcessEngine } from '../src/job/in-process-engine.ts';
import { evaluateSplit } from '../src/job/split-evaluation.ts';
import { runTrainingLoop } from '../src/job/training-loop.ts';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../bin/drover.js', import.meta.url));

test.before(async () => {
  await initBackend('wasm');
});


test('the reference CNN learns real Fashion-MNIST on wasm: one epoch of 12000 images beats 70 % test accuracy (chance: 10 %)', async (t) => {
  const dataset = await openIdxDataset({ dir: FASHION_MNIST_DIR, limitTrain: 13000, validationSize: 1000, limitTest: 2000 });
  const model = buildScratchModel({ layers: PRESETS['fmnist-cnn'].layers, inputShape: dataset.inputShape, classes: 10, seed: 42 });
  // Seeded dropout: the same run every time, so the threshold below is not a coin toss.
  const trainer = new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 1e-3 }), dropoutSeed: 42 });
  t.teardown(() => {
    model.dispose();
    trainer.optimizer.dispose();
  });
  const { log, events } = eventSink();
  const tensorsBefore = tf.memory().numTensors;
  const result = await runTrainingLoop({
    engine: new InProcessEngine(trainer, dataset.train, 10),
    dataset,
    epochs: 1,
    batchSize: 64,
    seed: 42,
    schedule: { type: 'constant', warmupEpochs: 0 },
    learningRate: 1e-3,
    logEvery: 10,
    log,
  });
  // Optimizer slots (Adam: m and v per trainable weight) are the only tensors that may appear.
  t.is(tf.memory().numTensors - tensorsBefore, 2 * trainer.gradientManifest.length);
  t.is(result.steps, Math.ceil(12000 / 64));
  const epoch = events.find((e) => e.event === 'epoch')!;
  t.truthy(epoch);
  t.true((epoch.valAccuracy as number) > 0.7, `val accuracy ${String(epoch.valAccuracy)}`);
  const steps = events.filter((e) => e.event === 'step');
  t.true((steps.at(-1)!.loss as number) < (steps[0]!.loss as number));
  const test = await evaluateSplit(trainer, dataset.test!, 10);
  t.is(test.n, 2000);
  t.true(test.accuracy > 0.7, `test accuracy ${test.accuracy}`);
  t.log(`test accuracy ${test.accuracy}`);
  t.is(test.confusion.flat().reduce((a, b) => a + b, 0), 2000);
});

test('the same job on wasm+oneDNN and on pure wasm (DROVER_NATIVE=off) reaches the same accuracy', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-backends-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const job = path.join(dir, 'job.json');
  await writeFile(job, JSON.stringify({
    name: 'backend-parity',
    seed: 7,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: 9000, validationSize: 1000, limitTest: 5000 },
    model: { preset: 'fmnist-cnn' },
    train: { epochs: 1, batchSize: 64, logEvery: 50 },
    output: { dir: path.join(dir, 'out') },
  }));
  const trainOn = async (env: Record<string, string>): Promise<{ backend: string; accuracy: number }> => {
    const { stdout } = await run(process.execPath, [cli, 'train', '--config', job], { env: { ...process.env, CI: 'true', ...env }, timeout: 300_000 });
    const events = stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>);
    const backend = events.find((e) => e.event === 'backend')!.description as string;
    const end = events.find((e) => e.event === 'job_end')!;
    return { backend, accuracy: end.testAccuracy as number };
  };
  const pure = await trainOn({ DROVER_NATIVE: 'off' });
  const native = await trainOn({});
  t.log(`test accuracy: ${pure.backend} ${pure.accuracy}, ${native.backend} ${native.accuracy}`);
  t.notRegex(pure.backend, /onednn/);
  t.true(pure.accuracy > 0.7, `pure wasm accuracy ${pure.accuracy}`);
  // Same seed, same data order: only float rounding differs (and grows over the steps), so the
  // accuracies agree within noise: 5000 test images give a standard error of ~0.6 points.
  t.true(Math.abs(pure.accuracy - native.accuracy) <= 0.03, `${pure.accuracy} vs ${native.accuracy}`);
});
