import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as tf from '@tensorflow/tfjs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { readWeights } from '../src/model/weights.ts';
import { loadModel, saveModel } from '../src/model/export.ts';
import { buildTransferModel, parseTransferSpec, unfreezeFrom } from '../src/model/transfer.ts';
import type { TransferSpecInput } from '../src/model/transfer.ts';
import { nsfwjsBackbone } from '../src/model/backbones/nsfwjs.ts';
import { Trainer } from '../src/train/trainer.ts';
import { optimizerSpecSchema } from '../src/train/optimizers.ts';
import { Rng } from '../src/data/rng.ts';
import type { Batch, InputShape } from '../src/data/types.ts';
import { ConfigError, ModelError } from '../src/errors.ts';

// Tensor counts are process-wide: these tests run one at a time.
test.before(async () => {
  await initBackend('wasm');
});

/** MobileNetV2 is fully convolutional up to out_relu: 96x96 gives 3x3x1280 features. */
const SIZE = 96;
const SHAPE: InputShape = [SIZE, SIZE, 3];
const MOBILENET = 'nsfwjs:mobilenet_v2';
const adam = (learningRate: number) => optimizerSpecSchema.parse({ name: 'adam', learningRate });

/**
 * Three classes of images in [0, 1] (the backbone's 'rescale' preprocessing): reddish
 * horizontal stripes, greenish vertical stripes, bluish checkerboards; random phase,
 * period, brightness and noise per image.
 */
function syntheticImages(perClass: number, shape: InputShape, seed: number): Batch {
  const [h, w, c] = shape;
  const n = perClass * 3;
  const rng = new Rng(seed);
  const x = new Float32Array(n * h * w * c);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = i % 3;
    y[i] = label;
    const period = 6 + rng.int(6);
    const phase = rng.int(period);
    const brightness = rng.uniform(0.7, 1);
    for (let row = 0; row < h; row++) {
      for (let col = 0; col < w; col++) {
        const on =
          label === 0 ? (row + phase) % period < period / 2 : label === 1 ? (col + phase) % period < period / 2 : (Math.floor((row + phase) / period) + Math.floor(col / period)) % 2 === 0;
        for (let ch = 0; ch < c; ch++) {
          const base = on ? (ch === label ? brightness : 0.25 * brightness) : 0.1;
          x[((i * h + row) * w + col) * c + ch] = Math.min(1, Math.max(0, base + rng.uniform(-0.08, 0.08)));
        }
      }
    }
  }
  return { x, y, n, shape };
}

function slice(batch: Batch, start: number, end: number): Batch {
  const size = batch.shape[0] * batch.shape[1] * batch.shape[2];
  return { x: batch.x.subarray(start * size, end * size), y: batch.y.subarray(start, end), n: end - start, shape: batch.shape };
}

/** Weights by name, copied, for before/after comparisons. */
async function snapshot(model: tf.LayersModel): Promise<Map<string, Float32Array>> {
  const set = await readWeights(model);
  return new Map(set.manifest.map((entry, i) => [entry.name, set.values[i]!]));
}

function changed(before: Map<string, Float32Array>, after: Map<string, Float32Array>, name: string): boolean {
  const a = before.get(name);
  const b = after.get(name);
  if (!a || !b) throw new Error(`no weight ${name}`);
  return a.some((v, i) => v !== b[i]);
}

async function build(t: ExecutionContext, spec: TransferSpecInput, shape: InputShape = SHAPE) {
  const built = await buildTransferModel(spec, { inputShape: shape, seed: 3 });
  t.teardown(() => built.model.dispose());
  return built;
}

function trainer(t: ExecutionContext, model: tf.LayersModel, learningRate: number): Trainer {
  const result = new Trainer(model, { optimizer: adam(learningRate) });
  t.teardown(() => result.optimizer.dispose());
  return result;
}

test.serial('the nsfwjs MobileNetV2 backbone is cut at out_relu and gets a 3-class head', async (t) => {
  const before = tf.memory().numTensors;
  const built = await buildTransferModel({ backbone: MOBILENET, head: { classes: 3, dense: [32], dropout: 0.2 } }, { inputShape: SHAPE });
  t.is(built.cutAt, 'out_relu');
  t.is(built.preprocess, 'rescale');
  t.deepEqual(built.model.inputs[0]!.shape, [null, SIZE, SIZE, 3]);
  t.deepEqual(built.model.getLayer('out_relu').outputShape, [null, 3, 3, 1280]);
  t.deepEqual(built.model.outputs[0]!.shape, [null, 3]);
  t.false(built.backboneLayers.includes('dense_1'), 'the bundled classifier is cut away');
  const head = built.model.layers.filter((layer) => !built.backboneLayers.includes(layer.name)).map((layer) => layer.name);
  t.deepEqual(head, ['head_pool', 'head_dense_1', 'head_dropout_1', 'head_classifier']);
  // Frozen backbone: only the head trains.
  t.deepEqual(
    built.model.trainableWeights.map((w) => w.originalName),
    ['head_dense_1/kernel', 'head_dense_1/bias', 'head_classifier/kernel', 'head_classifier/bias'],
  );
  built.model.dispose();
  t.is(tf.memory().numTensors, before, 'disposing the model frees the backbone and the cut-away layers');
});

test.serial('training the head lowers the loss and leaves the frozen backbone, BN statistics included, unchanged', async (t) => {
  const { model } = await build(t, { backbone: MOBILENET, head: { classes: 3 } });
  const data = syntheticImages(16, SHAPE, 1);
  const step = trainer(t, model, 0.01);
  const backbone = await snapshot(model);
  const initialLoss = (await step.evaluate(data)).loss;
  await step.trainStep(slice(data, 0, 16), 0.01);
  const tensors = tf.memory().numTensors;
  for (let epoch = 0; epoch < 3; epoch++) {
    for (let start = epoch === 0 ? 16 : 0; start < data.n; start += 16) await step.trainStep(slice(data, start, start + 16), 0.01);
  }
  const final = await step.evaluate(data);
  t.log(`loss ${initialLoss.toFixed(3)} -> ${final.loss.toFixed(3)}, ${final.correct}/${data.n} correct`);
  t.is(tf.memory().numTensors, tensors, 'no tensor leaks across steps');
  t.true(final.loss < initialLoss * 0.6, `loss ${initialLoss.toFixed(3)} -> ${final.loss.toFixed(3)}`);
  t.true(final.correct >= 40, `${final.correct}/48 correct`);
  const after = await snapshot(model);
  const backboneNames = [...backbone.keys()].filter((name) => !name.startsWith('head_'));
  t.true(backboneNames.some((name) => name.endsWith('moving_variance')), 'BN moving statistics are among the compared weights');
  t.deepEqual(backboneNames.filter((name) => changed(backbone, after, name)), []);
  t.true(changed(backbone, after, 'head_classifier/kernel'));
});

test.serial('backbone batch norm runs in inference mode while training, also after save and load', async (t) => {
  const { model } = await build(t, { backbone: MOBILENET, head: { classes: 3 } });
  const data = syntheticImages(2, SHAPE, 2);
  const outputs = (m: tf.LayersModel) =>
    tf.tidy(() => {
      const x = tf.tensor4d(data.x, [data.n, ...SHAPE]);
      return [(m.apply(x, { training: true }) as tf.Tensor).arraySync(), (m.predict(x) as tf.Tensor).arraySync()];
    });
  const [training, inference] = outputs(model);
  t.deepEqual(training, inference);

  const dir = await mkdtemp(path.join(tmpdir(), 'drover-transfer-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await saveModel(model, dir, { classNames: ['stripes', 'bars', 'checks'], preprocess: 'rescale' });
  const loaded = await loadModel(dir);
  t.teardown(() => loaded.model.dispose());
  t.is(loaded.metadata?.inferenceModeLayers.length, 52, 'MobileNetV2 has 52 batch-norm layers');
  const [loadedTraining, loadedInference] = outputs(loaded.model);
  t.deepEqual(loadedTraining, loadedInference);
  t.deepEqual(loadedInference, inference);
});

test.serial('freeze upTo freezes the backbone up to and including that layer; BN stays frozen', async (t) => {
  const { model, backboneLayers } = await build(t, { backbone: MOBILENET, freeze: { upTo: 'block_15_add' }, head: { classes: 3 } });
  const cut = backboneLayers.indexOf('block_15_add');
  for (const [index, name] of backboneLayers.entries()) {
    const layer = model.getLayer(name);
    const expected = index > cut && layer.getClassName() !== 'BatchNormalization';
    t.is(layer.trainable, expected, name);
  }
  t.true(model.getLayer('block_16_expand').trainable);
  t.false(model.getLayer('block_16_expand_BN').trainable);
  await t.throwsAsync(buildTransferModel({ backbone: MOBILENET, freeze: { upTo: 'block_15_addd' }, head: { classes: 3 } }, { inputShape: SHAPE }), {
    instanceOf: ModelError,
    message: /no layer "block_15_addd"; nearest names: block_15_add/,
  });
});

test.serial('an unknown cut layer is an error that lists the nearest layer names', async (t) => {
  const before = tf.memory().numTensors;
  const error = await t.throwsAsync(buildTransferModel({ backbone: MOBILENET, cutAt: 'block_16_projct', head: { classes: 3 } }), { instanceOf: ModelError });
  t.is(error?.code, 'DROVER_ERR_MODEL');
  t.regex(error?.message ?? '', /no layer "block_16_projct"; nearest names: block_16_project, /);
  t.is(tf.memory().numTensors, before);
});

test.serial('a saved drover model works as a backbone from a path, cut at a layer and resized', async (t) => {
  const cnn = buildScratchModel({
    layers: [{ type: 'conv2d', filters: 4, kernelSize: 3 }, { type: 'batchNorm' }, { type: 'conv2d', filters: 6, kernelSize: 3 }, { type: 'flatten' }, { type: 'dense', units: 8 }],
    inputShape: [16, 16, 3],
    classes: 5,
  });
  t.teardown(() => cnn.dispose());
  const dir = await mkdtemp(path.join(tmpdir(), 'drover-backbone-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await saveModel(cnn, dir, { classNames: ['a', 'b', 'c', 'd', 'e'], preprocess: 'torch' });

  // The flatten/dense layers after the cut would not fit 24x24: they must never be built.
  const { model, preprocess, backboneLayers } = await build(t, { backbone: dir, cutAt: 'conv2d_2', head: { pooling: 'max', classes: 2 } }, [24, 24, 3]);
  t.is(preprocess, 'torch');
  t.deepEqual(backboneLayers, ['input', 'conv2d_1', 'batch_norm_1', 'conv2d_2']);
  t.deepEqual(model.getLayer('conv2d_2').outputShape, [null, 24, 24, 6]);
  for (const name of ['conv2d_1/kernel', 'batch_norm_1/moving_mean', 'conv2d_2/kernel']) {
    t.deepEqual((await snapshot(model)).get(name), (await snapshot(cnn)).get(name), `pretrained ${name} carried over`);
  }
  await t.throwsAsync(buildTransferModel({ backbone: dir, cutAt: 'dense_1', head: { classes: 2 } }), { instanceOf: ModelError, message: /needs \[batch, h, w, c\] features/ });
});

test.serial('transfer specs get defaults, and bad fields are named', (t) => {
  const spec = parseTransferSpec({ backbone: MOBILENET, head: { classes: 4 } });
  t.deepEqual(spec, { backbone: MOBILENET, freeze: 'all', batchNorm: 'frozen', head: { pooling: 'avg', dense: [], dropout: 0, classes: 4 } });
  t.is(t.throws(() => parseTransferSpec({ backbone: MOBILENET, head: { units: 4 } }), { instanceOf: ConfigError })?.field, 'transfer.head.units');
  t.is(t.throws(() => parseTransferSpec({ backbone: MOBILENET, freeze: 'some', head: {} }), { instanceOf: ConfigError })?.field, 'transfer.freeze');
  t.is(t.throws(() => parseTransferSpec({ backbone: MOBILENET, head: { dropout: 1 } }), { instanceOf: ConfigError })?.field, 'transfer.head.dropout');
});

test.serial('a class count that disagrees with the dataset is refused before loading anything', async (t) => {
  const error = await t.throwsAsync(buildTransferModel({ backbone: '/nonexistent', head: { classes: 4 } }, { classes: 3 }), { instanceOf: ConfigError });
  t.is(error?.field, 'transfer.head.classes');
});

test.serial('nsfwjs backbones: unknown variants and a missing package are clear errors', async (t) => {
  await t.throwsAsync(nsfwjsBackbone('nsfwjs:resnet50'), { instanceOf: ModelError, message: /expected one of nsfwjs:mobilenet_v2, nsfwjs:inception_v3/ });
  // A real failed import of a package that is not installed.
  const missing = (specifier: string) => import(`drover-no-such-package/${specifier}`) as Promise<Record<string, unknown>>;
  await t.throwsAsync(nsfwjsBackbone('nsfwjs:mobilenet_v2', missing), { instanceOf: ModelError, message: /needs the nsfwjs package, which is not installed: run `npm install nsfwjs`/ });
});

/** True when the wasm backend has the depthwise-convolution gradients (src/model/wasm-kernels). */
function wasmHasDepthwiseGradients(): boolean {
  return ['DepthwiseConv2dNativeBackpropInput', 'DepthwiseConv2dNativeBackpropFilter'].every((kernel) => tf.getKernel(kernel, 'wasm') !== undefined);
}

// Last: it may switch to the cpu backend, where tfjs has every gradient kernel.
test.serial('fine-tuning from block_16 trains that block while everything below and all BN stay fixed', async (t) => {
  let shape = SHAPE;
  if (!wasmHasDepthwiseGradients()) {
    // Pure JS is slow: a smaller input keeps the test short.
    await initBackend('cpu');
    t.teardown(async () => {
      await tf.setBackend('wasm');
    });
    shape = [32, 32, 3];
  }
  t.log(`backend ${tf.getBackend()}, input ${shape.join('x')}`);
  const { model } = await build(t, { backbone: MOBILENET, head: { classes: 3 } }, shape);
  const data = syntheticImages(4, shape, 3);
  const trainable = unfreezeFrom(model, 'block_16_expand');
  t.deepEqual(trainable, ['block_16_expand', 'block_16_depthwise', 'block_16_project', 'Conv_1', 'head_classifier']);
  const before = await snapshot(model);
  const step = trainer(t, model, 1e-3);
  await step.trainStep(data, 1e-3);
  const tensors = tf.memory().numTensors;
  await step.trainStep(data, 1e-3);
  t.is(tf.memory().numTensors, tensors, 'no tensor leaks across steps');
  const after = await snapshot(model);
  for (const name of ['block_16_expand/kernel', 'block_16_depthwise/depthwise_kernel', 'block_16_project/kernel', 'Conv_1/kernel', 'head_classifier/kernel']) {
    t.true(changed(before, after, name), `${name} trains`);
  }
  const fixed = [...before.keys()].filter((name) => !/^(block_16_(expand|depthwise|project)|Conv_1|head_classifier)\//.test(name));
  t.true(fixed.includes('block_15_project/kernel') && fixed.includes('block_16_expand_BN/gamma') && fixed.includes('Conv_1_bn/moving_mean'));
  t.deepEqual(fixed.filter((name) => changed(before, after, name)), []);
  t.throws(() => unfreezeFrom(model, 'block_16_expnd'), { instanceOf: ModelError, message: /nearest names: block_16_expand/ });
});
