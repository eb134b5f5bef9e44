import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { eventSink } from './helpers/event-sink.ts';
import { parseJob } from '../src/job/job-file.ts';
import { runJob } from '../src/job/run-job.ts';
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

test.serial('a transfer job stopped in its fine-tuning phase resumes in it and ends with the weights of an uninterrupted run', async (t) => {
  const { dir, data } = await shapesFolder(t, 16, 48);
  const job = (out: string) =>
    parseJob({
      name: 'transfer-resume',
      backend: 'wasm',
      data: { kind: 'folder', path: data, imageSize: [48, 48], validation: { fraction: 0.25 } },
      model: {
        transfer: {
          backbone: 'nsfwjs:mobilenet_v2',
          head: { pooling: 'avg', dropout: 0.2 },
          fineTune: { from: 'block_16_expand', learningRate: 1e-4, epochs: 2 },
        },
      },
      train: { epochs: 1, batchSize: 8, optimizer: { name: 'adam', learningRate: 0.005 }, logEvery: 1 },
      output: { dir: path.join(dir, out) },
    });
  const whole = await runJob(job('whole'), { log: eventSink().log });
  t.is(whole.fit.status, 'completed');

  // Stopped after the second step of the fine-tuning phase (epoch 2), as Ctrl-C would.
  const controller = new AbortController();
  const events: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        const event = JSON.parse(line) as Record<string, unknown>;
        events.push(event);
        if (event.event === 'step' && event.epoch === 2 && event.stepInEpoch === 2) controller.abort();
      }
      done();
    },
  });
  const interrupted = await runJob(job('cut'), { log: pino({ level: 'info' }, stream), signal: controller.signal });
  t.is(interrupted.fit.status, 'stopped');
  t.is(interrupted.modelDir, undefined);
  const stoppedAt = events.find((e) => e.event === 'job_end')!.steps as number;
  const stepsPerEpoch = events.find((e) => e.event === 'job_start')!.stepsPerEpoch as number;
  t.is(stoppedAt, stepsPerEpoch + 2, 'stopped right after the step during which the signal came, in the fine-tuning phase');

  const resumed = eventSink();
  const result = await runJob(job('cut'), { log: resumed.log, resume: true });
  t.is(result.fit.status, 'completed');
  t.deepEqual(resumed.events.find((e) => e.event === 'job_start')!.resumedFrom, { epoch: 1, step: stoppedAt });
  t.is(resumed.events.find((e) => e.event === 'epoch')!.lr, 1e-4, 'the resumed run is in the fine-tuning phase');
  const [a, b] = await Promise.all([readFile(path.join(dir, 'whole', 'model', 'weights.bin')), readFile(path.join(dir, 'cut', 'model', 'weights.bin'))]);
  t.true(a.equals(b), 'same weights, bit for bit');
});
