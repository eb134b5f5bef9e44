import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel, countParams } from '../src/model/build.ts';
import { PRESETS, PRESET_NAMES } from '../src/model/presets.ts';
import { ModelError } from '../src/errors.ts';
import { regularizationLosses } from '../src/train/gradient-model.ts';
import { modelVariables, trainableVariables } from '../src/model/variables.ts';

test.before(async () => {
  await initBackend('wasm');
});

// Parameter counts of the classic recipes with 10 classes, computed by hand from the layer shapes.
const expectedParams: Record<string, number> = {
  // conv 3*3*1*32+32, conv 3*3*32*64+64, dense 1600*128+128, dense 128*10+10
  'fmnist-cnn': 320 + 18_496 + 204_928 + 1_290,
  // 3 VGG blocks (2 convs + 2 BN each), dense 2048*128 + BN, dense 128*10
  'cifar-vgg': 896 + 128 + 9_248 + 128 + 18_496 + 256 + 36_928 + 256 + 73_856 + 512 + 147_584 + 512 + 262_272 + 512 + 1_290,
  // 4 convs, dense 6272*512, dense 512*10
  'small-convnet': 896 + 18_496 + 73_856 + 147_584 + 3_211_776 + 5_130,
};

for (const name of PRESET_NAMES) {
  test(`preset ${name} builds for its input and outputs class probabilities`, (t) => {
    const preset = PRESETS[name];
    const model = buildScratchModel({ layers: preset.layers, inputShape: preset.inputShape, classes: 10 });
    t.teardown(() => model.dispose());
    t.is(countParams(model), expectedParams[name]);
    t.deepEqual(model.outputs[0]!.shape, [null, 10]);
    const probs = tf.tidy(() => (model.predict(tf.zeros([2, ...preset.inputShape])) as tf.Tensor).sum(1).dataSync());
    probs.forEach((p) => t.true(Math.abs(p - 1) < 1e-5));
  });
}

test('the same seed builds the same initial weights; another seed does not', (t) => {
  const layers = PRESETS['fmnist-cnn'].layers;
  const a = buildScratchModel({ layers, inputShape: [28, 28, 1], classes: 10, seed: 5 });
  const b = buildScratchModel({ layers, inputShape: [28, 28, 1], classes: 10, seed: 5 });
  const c = buildScratchModel({ layers, inputShape: [28, 28, 1], classes: 10, seed: 6 });
  t.teardown(() => [a, b, c].forEach((m) => m.dispose()));
  const first = (m: tf.LayersModel): number[] => Array.from(m.getWeights()[0]!.dataSync()).slice(0, 20);
  t.deepEqual(first(a), first(b));
  t.notDeepEqual(first(a), first(c));
});

test('a layer list gets L2 penalties on its kernels and the classifier appended', (t) => {
  const model = buildScratchModel({
    layers: [{ type: 'conv2d', filters: 4, kernelSize: 3 }, { type: 'avgPool' }, { type: 'globalAvgPool' }, { type: 'dense', units: 8 }],
    inputShape: [8, 8, 3],
    classes: 5,
    l2: 0.01,
  });
  t.teardown(() => model.dispose());
  t.deepEqual(model.layers.map((l) => l.name), ['input', 'conv2d_1', 'avg_pool_1', 'global_avg_pool_1', 'dense_1', 'classifier']);
  // One penalty per kernel: conv, dense, classifier.
  const penalties = tf.tidy(() => regularizationLosses(model).map((l) => l.dataSync()[0]!));
  t.is(penalties.length, 3);
  penalties.forEach((p) => t.true(p > 0));
});

test('a layer that cannot follow the previous one is refused naming its index', (t) => {
  const error = t.throws(
    () => buildScratchModel({ layers: [{ type: 'flatten' }, { type: 'conv2d', filters: 4, kernelSize: 3 }], inputShape: [8, 8, 1], classes: 3 }),
    { instanceOf: ModelError },
  );
  t.regex(error!.message, /model\.layers\[1\] \(conv2d\)/);
  t.throws(() => buildScratchModel({ layers: [{ type: 'flatten' }], inputShape: [8, 8, 1], classes: 1 }), { instanceOf: ModelError, message: /at least 2 classes/ });
});

test('the variable adapter reads each weight as the tf.Variable it lives in, not a copy', (t) => {
  const model = buildScratchModel({ layers: [{ type: 'flatten' }, { type: 'dense', units: 4 }, { type: 'batchNorm' }], inputShape: [2, 2, 1], classes: 3 });
  t.teardown(() => model.dispose());
  const all = modelVariables(model);
  t.deepEqual(all.map((w) => w.name), model.weights.map((w) => w.name));
  t.deepEqual(trainableVariables(model).map((w) => w.name), model.trainableWeights.map((w) => w.name));
  for (const weight of all) {
    const variable = weight.read();
    t.true(variable instanceof tf.Variable, weight.name);
    t.is(variable, weight.read(), 'the same object on every read');
  }
  // Assigning to it changes the weight itself: what the optimizer relies on.
  const kernel = all.find((w) => w.trainable)!;
  tf.tidy(() => kernel.read().assign(tf.onesLike(kernel.read())));
  t.true(Array.from(model.weights.find((w) => w.name === kernel.name)!.read().dataSync()).every((v) => v === 1));
});
