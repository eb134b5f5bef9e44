import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { readWeights, writeWeights } from '../src/model/weights.ts';
import { Trainer } from '../src/train/trainer.ts';
import { GradientModel } from '../src/train/gradient-model.ts';
import { ModelOptimizer } from '../src/train/model-optimizer.ts';
import { optimizerSpecSchema } from '../src/train/optimizers.ts';
import { WeightsError } from '../src/errors.ts';
import type { LayerSpecInput } from '../src/model/layer-spec.ts';
import { learnableBatch } from './helpers/batches.ts';

test.before(async () => {
  await initBackend('wasm');
});

const adam = optimizerSpecSchema.parse({ name: 'adam', learningRate: 0.01 });
// Batch norm included: its moving statistics are non-trainable weights that must travel too.
const mlp: LayerSpecInput[] = [{ type: 'flatten' }, { type: 'dense', units: 16 }, { type: 'batchNorm' }, { type: 'dense', units: 8 }];

function makeTrainer(seed = 3): Trainer {
  return new Trainer(buildScratchModel({ layers: mlp, inputShape: [4, 4, 1], classes: 3, seed, l2: 1e-3 }), { optimizer: adam });
}

function dispose(trainer: Trainer): void {
  trainer.model.dispose();
  trainer.optimizer.dispose();
}

test('computeGradients + applyGradients gives the same update as trainStep', async (t) => {
  const a = makeTrainer();
  const b = makeTrainer();
  t.teardown(() => [a, b].forEach(dispose));
  for (let step = 0; step < 5; step++) {
    const batch = learnableBatch(16, [4, 4, 1], 3, step);
    const local = await a.trainStep(batch, 0.01);
    const remote = await b.computeGradients(batch);
    await b.applyGradients(remote.grads, 0.01);
    t.true(Math.abs(local.loss - remote.loss) < 1e-5);
    t.is(local.correct, remote.correct);
  }
  const wa = await readWeights(a.model);
  const wb = await readWeights(b.model);
  wa.values.forEach((values, i) => {
    const other = wb.values[i]!;
    values.forEach((v, j) => t.true(Math.abs(v - other[j]!) <= 1e-5 * Math.max(1, Math.abs(v)), `${wa.manifest[i]!.name}[${j}]`));
  });
});

test.serial('the halves apart (a worker\'s GradientModel, a coordinator\'s ModelOptimizer) make the same update as trainStep, and gradients alone leave no tensor behind', async (t) => {
  const local = makeTrainer();
  const model = () => buildScratchModel({ layers: mlp, inputShape: [4, 4, 1], classes: 3, seed: 3, l2: 1e-3 });
  const worker = new GradientModel(model());
  const coordinator = new ModelOptimizer(model(), adam);
  t.teardown(() => {
    dispose(local);
    worker.model.dispose();
    coordinator.model.dispose();
    coordinator.optimizer.dispose();
  });
  t.deepEqual(worker.gradientManifest, coordinator.gradientManifest);
  for (let step = 0; step < 3; step++) {
    const batch = learnableBatch(16, [4, 4, 1], 3, step);
    await local.trainStep(batch, 0.01);
    // The worker computes on the coordinator's weights (batch-norm statistics included), as a broadcast gives it.
    writeWeights(worker.model, await readWeights(coordinator.model));
    const tensorsBefore = tf.memory().numTensors;
    await worker.evaluate(batch);
    const { grads } = await worker.computeGradients(batch);
    t.is(tf.memory().numTensors, tensorsBefore, 'the worker half keeps no tensor');
    await coordinator.applyGradients(grads, 0.01);
  }
  const expected = await readWeights(local.model);
  const trainable = new Set(coordinator.gradientManifest.map((w) => w.name));
  const got = await readWeights(coordinator.model);
  got.values.forEach((values, i) => {
    if (!trainable.has(got.manifest[i]!.name)) return;
    const other = expected.values[i]!;
    values.forEach((v, j) => t.true(Math.abs(v - other[j]!) <= 1e-5 * Math.max(1, Math.abs(v)), `${got.manifest[i]!.name}[${j}]`));
  });
});

test.serial('many training steps leave tf.memory().numTensors flat and the loss falls', async (t) => {
  const trainer = makeTrainer();
  t.teardown(() => dispose(trainer));
  const batch = learnableBatch(32, [4, 4, 1], 3, 42);
  const first = await trainer.trainStep(batch, 0.01);
  const tensorsAfterFirst = tf.memory().numTensors;
  let last = first;
  for (let i = 0; i < 150; i++) last = await trainer.trainStep(batch, 0.01);
  for (let i = 0; i < 20; i++) await trainer.evaluate(batch);
  for (let i = 0; i < 20; i++) await trainer.applyGradients((await trainer.computeGradients(batch)).grads, 0.01);
  t.is(tf.memory().numTensors, tensorsAfterFirst);
  t.true(last.loss < first.loss * 0.5, `loss ${first.loss} -> ${last.loss}`);
  t.is((await trainer.evaluate(batch)).correct, 32);
});

test('weights round-trip as flat arrays with a manifest, batch-norm statistics included', async (t) => {
  const source = makeTrainer(1);
  const target = makeTrainer(2);
  t.teardown(() => [source, target].forEach(dispose));
  const batch = learnableBatch(16, [4, 4, 1], 3, 7);
  for (let i = 0; i < 3; i++) await source.trainStep(batch, 0.01);
  const set = await readWeights(source.model);
  const names = set.manifest.map((w) => w.name);
  t.true(names.includes('batch_norm_1/moving_mean'));
  t.false(set.manifest.find((w) => w.name === 'batch_norm_1/moving_mean')!.trainable);
  t.true(set.manifest.find((w) => w.name === 'dense_1/kernel')!.trainable);
  t.deepEqual(set.manifest.find((w) => w.name === 'dense_1/kernel')!.shape, [16, 16]);
  writeWeights(target.model, set);
  const a = await source.evaluate(batch);
  const b = await target.evaluate(batch);
  t.deepEqual(Array.from(b.predicted), Array.from(a.predicted));
  t.true(Math.abs(a.loss - b.loss) < 1e-6);
});

test('a NaN or mis-sized gradient is refused before any weight changes', async (t) => {
  const trainer = makeTrainer();
  t.teardown(() => dispose(trainer));
  // A training-mode forward pass moves batch-norm statistics: snapshot after it.
  const grads = (await trainer.computeGradients(learnableBatch(8, [4, 4, 1], 3, 1))).grads;
  const before = (await readWeights(trainer.model)).values.map((v) => Array.from(v));
  const poisoned = grads.map((g) => g.slice());
  poisoned[poisoned.length - 1]![0] = Number.NaN;
  await t.throwsAsync(trainer.applyGradients(poisoned, 0.01), { instanceOf: WeightsError, message: /classifier\/bias.*NaN/ });
  const short = grads.map((g) => g.slice());
  short[0] = short[0]!.subarray(1);
  await t.throwsAsync(trainer.applyGradients(short, 0.01), { instanceOf: WeightsError, message: /expected 256/ });
  await t.throwsAsync(trainer.applyGradients(grads.slice(1), 0.01), { instanceOf: WeightsError });
  const after = (await readWeights(trainer.model)).values.map((v) => Array.from(v));
  t.deepEqual(after, before);
  t.is(trainer.optimizer.iterations, 0);
});

test('writeWeights refuses a weight set from another model', async (t) => {
  const trainer = makeTrainer();
  const other = new Trainer(buildScratchModel({ layers: [{ type: 'flatten' }], inputShape: [4, 4, 1], classes: 3 }), { optimizer: adam });
  t.teardown(() => [trainer, other].forEach(dispose));
  const foreign = await readWeights(other.model);
  t.throws(() => writeWeights(trainer.model, foreign), { instanceOf: WeightsError });
});

test('the L2 penalty on kernels is part of the training loss and its gradient', async (t) => {
  const plain = new Trainer(buildScratchModel({ layers: mlp, inputShape: [4, 4, 1], classes: 3, seed: 9, l2: 0 }), { optimizer: adam });
  const l2 = new Trainer(buildScratchModel({ layers: mlp, inputShape: [4, 4, 1], classes: 3, seed: 9, l2: 0.5 }), { optimizer: adam });
  t.teardown(() => [plain, l2].forEach(dispose));
  const batch = learnableBatch(8, [4, 4, 1], 3, 3);
  const a = await plain.computeGradients(batch);
  const b = await l2.computeGradients(batch);
  // 0.5 * sum(w^2) over three kernels of glorot-initialised weights: clearly above zero.
  t.true(b.loss > a.loss + 0.5, `${a.loss} vs ${b.loss}`);
  t.notDeepEqual(Array.from(a.grads[0]!.slice(0, 8)), Array.from(b.grads[0]!.slice(0, 8)));
  // Evaluation reports the data loss alone, as Keras does.
  t.true(Math.abs((await plain.evaluate(batch)).loss - (await l2.evaluate(batch)).loss) < 1e-5);
});

test('with a dropout seed, a run repeats exactly, and each pass draws a fresh mask', async (t) => {
  const withDropout: LayerSpecInput[] = [{ type: 'flatten' }, { type: 'dense', units: 32 }, { type: 'dropout', rate: 0.5 }, { type: 'dense', units: 8 }];
  const make = (dropoutSeed: number): Trainer =>
    new Trainer(buildScratchModel({ layers: withDropout, inputShape: [4, 4, 1], classes: 3, seed: 1 }), { optimizer: adam, dropoutSeed });
  const [a, b, c] = [make(5), make(5), make(6)];
  t.teardown(() => [a, b, c].forEach(dispose));
  const batch = learnableBatch(16, [4, 4, 1], 3, 0);
  const losses = async (trainer: Trainer): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < 4; i++) out.push((await trainer.trainStep(batch, 0.01)).loss);
    return out;
  };
  const [la, lb, lc] = [await losses(a), await losses(b), await losses(c)];
  t.deepEqual(la, lb, 'same seed, same losses');
  t.deepEqual((await readWeights(a.model)).values, (await readWeights(b.model)).values, 'same seed, same weights');
  t.notDeepEqual(la, lc, 'another seed, other masks');
  // Same weights, same batch, two passes: only the mask differs, so the loss does too.
  const first = (await a.computeGradients(batch)).loss;
  const second = (await a.computeGradients(batch)).loss;
  t.not(first, second, 'a fresh mask on every pass, not one fixed mask');
  // The seed is cleared after each pass: a saved model's config does not carry it.
  const dropout = a.model.layers.find((l) => l.getClassName() === 'Dropout')!;
  t.is((dropout.getConfig() as { seed?: number }).seed, undefined);
});

test.serial('applyGradients names the first NaN or infinite gradient value and changes no weight', async (t) => {
  const trainer = makeTrainer();
  t.teardown(() => dispose(trainer));
  const before = await readWeights(trainer.model);
  const sizes = trainer.gradientManifest.map((w) => w.shape.reduce((a, b) => a * b, 1));
  for (const [bad, at, shown] of [[Number.NaN, 3, 'NaN'], [Number.POSITIVE_INFINITY, 0, 'Infinity'], [Number.NEGATIVE_INFINITY, 5, '-Infinity']] as const) {
    const grads = sizes.map((n) => Float32Array.from({ length: n }, (_, j) => (j % 2 ? -1e-3 : 1e-3)));
    grads[0]![at] = bad;
    // A later NaN does not hide the first bad value.
    grads[0]![at + 1] = Number.NaN;
    await t.throwsAsync(trainer.applyGradients(grads, 0.01), { instanceOf: WeightsError, message: new RegExp(`value ${at} is ${shown.replace('+', '\\+')}$`) });
  }
  const after = await readWeights(trainer.model);
  after.values.forEach((values, i) => t.deepEqual(values, before.values[i]));
});
