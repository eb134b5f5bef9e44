import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { eventSink } from './helpers/event-sink.ts';
import { parseJob } from '../src/config/job.ts';
import { runJob } from '../src/train/run-job.ts';
import { generateShapes, SHAPE_CLASSES } from '../src/data/shapes.ts';
import { loadModel } from '../src/model/export.ts';

async function shapesFolder(t: { teardown(fn: () => Promise<void>): void }, perClass: number, size: number): Promise<{ dir: string; data: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-job-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const data = await generateShapes(path.join(dir, 'shapes'), { perClass, size });
  return { dir, data };
}

test.serial('a transfer job trains a head on MobileNetV2, fine-tunes the top block, and exports a loadable model', async (t) => {
  const { dir, data } = await shapesFolder(t, 24, 64);
  const job = parseJob({
    name: 'transfer-smoke',
    backend: 'wasm',
    data: { kind: 'folder', path: data, imageSize: [64, 64], validation: { fraction: 0.25 } },
    model: {
      transfer: {
        backbone: 'nsfwjs:mobilenet_v2',
        head: { pooling: 'avg', dropout: 0 },
        fineTune: { from: 'block_16_expand', learningRate: 1e-4, epochs: 1 },
      },
    },
    train: { epochs: 2, batchSize: 12, optimizer: { name: 'adam', learningRate: 0.005 }, logEvery: 2 },
    output: { dir },
  });
  const { log, events } = eventSink();
  const result = await runJob(job, { log });
  const epochs = events.filter((e) => e.event === 'epoch');
  // Two head epochs, then the fine-tuning epoch continues the count.
  t.deepEqual(epochs.map((e) => e.epoch), [1, 2, 3]);
  t.deepEqual(epochs.map((e) => e.epochs), [3, 3, 3]);
  t.is(epochs[2]!.lr, 1e-4);
  t.true((epochs[1]!.loss as number) < (epochs[0]!.loss as number), 'head training lowers the loss');
  t.is(result.fit.history.length, 3);
  const loaded = await loadModel(result.modelDir!);
  t.deepEqual(loaded.classNames, [...SHAPE_CLASSES].sort());
  t.deepEqual(loaded.model.inputs[0]!.shape, [null, 64, 64, 3]);
  loaded.model.dispose();
});

test.serial('a folder job with augmentation and early stopping exports the restored best model', async (t) => {
  const { dir, data } = await shapesFolder(t, 40, 24);
  const job = parseJob({
    name: 'folder-smoke',
    backend: 'wasm',
    data: { kind: 'folder', path: data, validation: { fraction: 0.25, seed: 3 }, imageSize: [24, 24], augment: { horizontalFlip: true } },
    model: { layers: [{ type: 'conv2d', filters: 8, kernelSize: 3 }, { type: 'maxPool' }, { type: 'flatten' }, { type: 'dense', units: 16 }] },
    // No epoch can beat the first by minDelta 10: training stops after patience 1 and restores epoch 1.
    train: { epochs: 12, batchSize: 16, optimizer: { name: 'adam', learningRate: 0.003 }, earlyStopping: { monitor: 'val_loss', patience: 1, minDelta: 10 } },
    output: { dir },
  });
  const { log, events } = eventSink();
  const result = await runJob(job, { log });
  const stop = events.find((e) => e.event === 'early_stop');
  t.like(stop, { epoch: 2, bestEpoch: 1, restored: true, monitor: 'val_loss' });
  t.is(result.fit.status, 'early_stopped');
  t.is(result.fit.history.length, 2);
  // The test split is absent (no test folder), so the exported model is what early stopping restored.
  const loaded = await loadModel(result.modelDir!);
  // Image folders list classes in sorted order, as Keras does.
  t.deepEqual(loaded.classNames, [...SHAPE_CLASSES].sort());
  loaded.model.dispose();
});
