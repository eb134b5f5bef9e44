import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../src/model/backend.ts';
import { registerWasmKernels } from '../src/model/wasm-kernels/index.ts';
import { gradientKernelConfigs } from '../src/model/wasm-kernels/gradient-kernels.ts';
import { TESTED_TFJS_WASM_VERSION } from '../src/model/wasm-kernels/threads.ts';
import { conv2dFilterGrad } from '../src/model/wasm-kernels/conv2d-filter-grad.ts';
import type { FilterGradMethod } from '../src/model/wasm-kernels/conv2d-filter-grad.ts';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EXPLICIT, TOLERANCE, convCases, depthwiseGradInputs, depthwiseGrads, depthwiseGradsReference, gatherDilatedTaps, relativeError, seededTensorValues, SMALL_NET, smallNetGradients, tensor4, threadedKernelRuns, valuesOn } from './helpers/kernel-reference.ts';
import type { Shape4 } from './helpers/kernel-reference.ts';

// Each kernel runs on wasm and on tfjs-backend-cpu (reference implementations) on the same seeded
// inputs; they must agree to rel <= 1e-4, with
//   rel = max|wasm - cpu| / max(1e-6, max|cpu|).
// These tests are about the composed pure-wasm kernels: keep the optional oneDNN ones (which
// would replace them when built) out of this process. test/native-kernels.test.ts covers those.
process.env['DROVER_NATIVE'] = 'off';

test.before(async () => {
  await initBackend('wasm');
});

test.serial('the wasm backend runs the drover kernels, registered once', (t) => {
  for (const config of gradientKernelConfigs) {
    t.is(tf.getKernel(config.kernelName, 'wasm')?.kernelFunc, config.kernelFunc, config.kernelName);
  }
  const matMul = tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc;
  registerWasmKernels();
  for (const config of gradientKernelConfigs) t.is(tf.getKernel(config.kernelName, 'wasm')?.kernelFunc, config.kernelFunc);
  t.is(tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc, matMul);
});

test.serial('Conv2DBackpropInput and Conv2DBackpropFilter on wasm match cpu over strides, paddings and shapes', async (t) => {
  const cases = convCases(false, { dilated: false });
  t.true(cases.length >= 30);
  for (const [index, c] of cases.entries()) {
    const x = seededTensorValues(c.xShape, 10 + index);
    const filter = seededTensorValues(c.filterShape, 200 + index);
    const dy = seededTensorValues(c.info.outShape, 400 + index);
    const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
    const run = (): tf.Tensor[] => [
      tf.engine().runKernel(tf.Conv2DBackpropInput, { dy: tensor4(dy), filter: tensor4(filter) }, { ...attrs, inputShape: c.xShape }) as tf.Tensor,
      tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: tensor4(x), dy: tensor4(dy) }, { ...attrs, filterShape: c.filterShape }) as tf.Tensor,
    ];
    const [refInput, refFilter] = await valuesOn('cpu', run);
    const [input, filterGrad] = await valuesOn('wasm', run);
    t.true(relativeError(input!, refInput!) <= TOLERANCE, `input grad, ${c.label}: rel ${relativeError(input!, refInput!)}`);
    t.true(relativeError(filterGrad!, refFilter!) <= TOLERANCE, `filter grad, ${c.label}: rel ${relativeError(filterGrad!, refFilter!)}`);
  }
});

test.serial('every filter-gradient method matches cpu, dilated filters included', async (t) => {
  const cases = [...convCases(false, { dilated: false }).filter((_, i) => i % 3 === 0)];
  // Few input channels, many output ones: where filterGradMethod picks stacked-taps.
  for (const [strides, pad] of [
    [1, 'valid'],
    [2, 'same'],
  ] as const) {
    const xShape: Shape4 = [3, 10, 9, 1];
    const filterShape: Shape4 = [3, 3, 1, 12];
    const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, 1, pad, undefined, false, 'channelsLast');
    cases.push({ label: `first layer s${strides} ${pad}`, xShape, filterShape, strides, dilations: 1, pad, info });
  }
  // Dilated regular convolutions (stride 1): the reference is cpu's gradient for the spread filter.
  for (const [k, d, pad] of [
    [3, 2, 'same'],
    [3, 2, 'valid'],
    [2, 3, EXPLICIT],
  ] as const) {
    const xShape: Shape4 = [2, 11, 9, 3];
    const filterShape: Shape4 = [k, k, 3, 4];
    const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, 1, d, pad, undefined, false, 'channelsLast');
    cases.push({ label: `dilated k${k} d${d} ${JSON.stringify(pad)}`, xShape, filterShape, strides: 1, dilations: d, pad, info });
  }
  for (const [index, c] of cases.entries()) {
    const x = seededTensorValues(c.xShape, 30 + index);
    const dy = seededTensorValues(c.info.outShape, 60 + index);
    const spreadShape: Shape4 = [c.info.effectiveFilterHeight, c.info.effectiveFilterWidth, c.filterShape[2], c.filterShape[3]];
    const [reference] = await valuesOn('cpu', () => {
      const spread = tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: tensor4(x), dy: tensor4(dy) }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: spreadShape }) as tf.Tensor4D;
      return gatherDilatedTaps(spread, c.dilations);
    });
    for (const method of ['convolution', 'per-tap', 'stacked-taps'] as FilterGradMethod[]) {
      const [grad] = await valuesOn('wasm', () => conv2dFilterGrad(tensor4(x), tensor4(dy), c.info, method));
      t.true(relativeError(grad!, reference!) <= TOLERANCE, `${method}, ${c.label}: rel ${relativeError(grad!, reference!)}`);
    }
  }
});

test.serial('NCHW inputs take the same path as NHWC ones', async (t) => {
  const xShape: Shape4 = [2, 3, 9, 7];
  const filterShape: Shape4 = [3, 3, 3, 4];
  const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, 2, 1, 'same', undefined, false, 'channelsFirst');
  const x = seededTensorValues(xShape, 5);
  const filter = seededTensorValues(filterShape, 6);
  const dy = seededTensorValues(info.outShape, 7);
  const attrs = { strides: 2, pad: 'same', dataFormat: 'NCHW' };
  const run = (): tf.Tensor[] => [
    tf.engine().runKernel(tf.Conv2DBackpropInput, { dy: tensor4(dy), filter: tensor4(filter) }, { ...attrs, inputShape: xShape }) as tf.Tensor,
    tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: tensor4(x), dy: tensor4(dy) }, { ...attrs, filterShape }) as tf.Tensor,
  ];
  const reference = await valuesOn('cpu', run);
  const actual = await valuesOn('wasm', run);
  t.true(relativeError(actual[0]!, reference[0]!) <= TOLERANCE);
  t.true(relativeError(actual[1]!, reference[1]!) <= TOLERANCE);
});

test.serial('depthwise backprop kernels on wasm match cpu over strides, dilations, paddings and multipliers', async (t) => {
  const cases = convCases(true, { dilated: true });
  t.true(cases.length >= 40);
  t.true(cases.some((c) => c.dilations > 1 && c.filterShape[3] > 1));
  for (const [index, c] of cases.entries()) {
    const inputs = depthwiseGradInputs(c, index);
    const [refInput, refFilter] = await valuesOn('cpu', () => depthwiseGradsReference(c, inputs));
    const [input, filterGrad] = await valuesOn('wasm', () => depthwiseGrads(c, inputs));
    t.true(relativeError(input!, refInput!) <= TOLERANCE, `input grad, ${c.label}: rel ${relativeError(input!, refInput!)}`);
    t.true(relativeError(filterGrad!, refFilter!) <= TOLERANCE, `filter grad, ${c.label}: rel ${relativeError(filterGrad!, refFilter!)}`);
  }
});

test.serial('BatchMatMul and _FusedMatMul on wasm match cpu, transposed, batched and fused', async (t) => {
  const cases: { a: number[]; b: number[]; transposeA: boolean; transposeB: boolean }[] = [];
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      cases.push({ a: transposeA ? [37, 5] : [5, 37], b: transposeB ? [11, 37] : [37, 11], transposeA, transposeB });
    }
  }
  cases.push({ a: [1, 64, 30], b: [1, 30, 9], transposeA: false, transposeB: false });
  // Batched products: the stock BatchMatMul; fused ones composed (stock _FusedMatMul adds the bias wrongly).
  cases.push({ a: [3, 4, 6], b: [3, 6, 2], transposeA: false, transposeB: false });
  cases.push({ a: [2, 6, 4], b: [2, 3, 6], transposeA: true, transposeB: true });
  for (const [index, c] of cases.entries()) {
    const a = seededTensorValues(c.a, 700 + index);
    const b = seededTensorValues(c.b, 800 + index);
    const n = c.b[c.b.length - (c.transposeB ? 2 : 1)]!;
    const bias = seededTensorValues([n], 900 + index);
    const run = (): tf.Tensor[] => {
      const ta = tf.tensor(a.values, a.shape);
      const tb = tf.tensor(b.values, b.shape);
      return [
        tf.matMul(ta, tb, c.transposeA, c.transposeB),
        tf.fused.matMul({ a: ta, b: tb, transposeA: c.transposeA, transposeB: c.transposeB, bias: tf.tensor1d(bias.values), activation: 'relu' }),
        tf.fused.matMul({ a: ta, b: tb, transposeA: c.transposeA, transposeB: c.transposeB, activation: 'elu' }),
        tf.fused.matMul({ a: ta, b: tb, transposeA: c.transposeA, transposeB: c.transposeB, bias: tf.tensor1d(bias.values), activation: 'prelu', preluActivationWeights: tf.scalar(0.3) }),
      ];
    };
    const reference = await valuesOn('cpu', run);
    const actual = await valuesOn('wasm', run);
    for (const [i, kind] of ['matMul', 'fused bias+relu', 'fused elu', 'fused bias+prelu'].entries()) {
      const rel = relativeError(actual[i]!, reference[i]!);
      t.true(rel <= TOLERANCE, `${kind}, a ${c.a.join('x')} b ${c.b.join('x')} tA ${c.transposeA} tB ${c.transposeB}: rel ${rel}`);
    }
  }
});

test.serial('MaxPoolGrad on wasm matches cpu: first maximum wins, windows of values <= 0 included', async (t) => {
  const cases: { shape: Shape4; filterSize: number; strides: number; pad: 'same' | 'valid' | number }[] = [
    { shape: [2, 8, 8, 3], filterSize: 2, strides: 2, pad: 'valid' },
    { shape: [1, 7, 9, 8], filterSize: 3, strides: 2, pad: 'same' },
    { shape: [3, 5, 6, 1], filterSize: 3, strides: 1, pad: 'same' },
    { shape: [2, 9, 7, 4], filterSize: 2, strides: 3, pad: 1 },
  ];
  for (const [index, c] of cases.entries()) {
    // Values rounded to a few levels, half of them clamped to 0 (as after a relu): many ties,
    // and windows whose values are all <= 0.
    const x = seededTensorValues(c.shape, 70 + index);
    const levels = x.values.map((v) => Math.max(-0.5, Math.round(v * 3) / 3));
    const outShape = tf.backend_util.computePool2DInfo(c.shape, c.filterSize, c.strides, 1, c.pad).outShape;
    // Distinct weights per window, so that a gradient sent to the wrong element shows.
    const weights = seededTensorValues(outShape, 90 + index);
    const run = (): tf.Tensor => {
      const pooled = (v: tf.Tensor): tf.Tensor => tf.sum(tf.mul(tf.maxPool(v as tf.Tensor4D, c.filterSize, c.strides, c.pad), tensor4(weights)));
      return tf.grad(pooled)(tf.tensor4d(levels, c.shape));
    };
    const [reference] = await valuesOn('cpu', run);
    const [actual] = await valuesOn('wasm', run);
    t.true(relativeError(actual!, reference!) <= TOLERANCE, `${JSON.stringify(c)}: rel ${relativeError(actual!, reference!)}`);
  }
});

test.serial('Sum over leading axes on wasm matches cpu, other reductions and dtypes included', async (t) => {
  const cases: { shape: number[]; axis: number[]; keepDims: boolean; dtype?: 'int32' }[] = [
    { shape: [64, 26, 26, 32], axis: [0, 1, 2], keepDims: false },
    { shape: [3, 17, 11, 5], axis: [0, 1, 2], keepDims: true },
    { shape: [1, 9, 7, 64], axis: [0, 1], keepDims: false },
    { shape: [513, 13], axis: [0], keepDims: false },
    { shape: [2, 4097], axis: [-2], keepDims: true },
    { shape: [7, 9, 3], axis: [1, 0], keepDims: false },
    // Not leading axes, all axes, small, int32: the stock kernel.
    { shape: [8, 40, 40], axis: [1], keepDims: false },
    { shape: [30, 30, 6], axis: [0, 1, 2], keepDims: false },
    { shape: [300, 20], axis: [0], keepDims: false, dtype: 'int32' },
  ];
  for (const [index, c] of cases.entries()) {
    const x = seededTensorValues(c.shape, 1100 + index);
    const values = c.dtype === 'int32' ? x.values.map((v) => Math.round(v * 50)) : x.values;
    const run = (): tf.Tensor => tf.sum(tf.tensor(values, c.shape, c.dtype ?? 'float32'), c.axis, c.keepDims);
    const [reference] = await valuesOn('cpu', run);
    await tf.setBackend('wasm');
    const shape = tf.tidy(() => run().shape);
    const [actual] = await valuesOn('wasm', run);
    t.deepEqual(shape, tf.tidy(() => tf.sum(tf.zeros(c.shape), c.axis, c.keepDims).shape), JSON.stringify(c));
    t.true(relativeError(actual!, reference!) <= TOLERANCE, `${JSON.stringify(c)}: rel ${relativeError(actual!, reference!)}`);
  }
});

test.serial('Tile on wasm matches cpu: broadcasting repeats, other repeats and int32', async (t) => {
  const cases: { shape: number[]; reps: number[]; dtype?: 'int32' }[] = [
    { shape: [1, 1, 1, 13], reps: [5, 3, 3, 1] },
    { shape: [1, 7, 1, 4], reps: [2, 1, 9, 1] },
    { shape: [1], reps: [11] },
    { shape: [1, 6], reps: [3, 1], dtype: 'int32' },
    // Axes longer than 1 repeated: the stock kernel.
    { shape: [2, 3, 1, 5], reps: [2, 2, 3, 1] },
  ];
  for (const [index, c] of cases.entries()) {
    const x = seededTensorValues(c.shape, 1200 + index);
    const values = c.dtype === 'int32' ? x.values.map((v) => Math.round(v * 50)) : x.values;
    const run = (): tf.Tensor => tf.tile(tf.tensor(values, c.shape, c.dtype ?? 'float32'), c.reps);
    const [reference] = await valuesOn('cpu', run);
    const [actual] = await valuesOn('wasm', run);
    t.true(relativeError(actual!, reference!) <= TOLERANCE, `${JSON.stringify(c)}: rel ${relativeError(actual!, reference!)}`);
  }
});

test.serial('Identity and same-dtype Cast on wasm share the buffer: values kept after the source is disposed, freed with the last reference', async (t) => {
  await tf.setBackend('wasm');
  const backend = tf.backend() as BackendWasm;
  const dataBefore = backend.numDataIds();
  const x = tf.tensor2d([1.5, -2, 256, 0], [2, 2]);
  const copy = tf.clone(x);
  const same = tf.cast(x, 'float32');
  const ints = tf.cast(x, 'int32');
  const bools = tf.cast(ints, 'bool');
  x.dispose();
  t.deepEqual([...copy.dataSync()], [1.5, -2, 256, 0]);
  t.deepEqual([...same.dataSync()], [1.5, -2, 256, 0]);
  t.is(ints.dtype, 'int32');
  t.deepEqual([...ints.dataSync()], [1, -2, 256, 0]);
  t.deepEqual([...bools.dataSync()], [1, 1, 1, 0]);
  tf.dispose([copy, same, ints, bools]);
  t.is(backend.numDataIds(), dataBefore);
});

test.serial('tf.grads through a small conv net agree on wasm and cpu', async (t) => {
  const reference = await valuesOn('cpu', () => smallNetGradients(SMALL_NET));
  const actual = await valuesOn('wasm', () => smallNetGradients(SMALL_NET));
  t.is(actual.length, 4);
  for (const [i, name] of ['x', 'conv 1', 'depthwise', 'conv 2'].entries()) {
    t.true(relativeError(actual[i]!, reference[i]!) <= TOLERANCE, `${name}: rel ${relativeError(actual[i]!, reference[i]!)}`);
  }
});

test.serial('a tf.layers CNN (fused conv, pooling, dense) gets the same gradients on wasm and cpu', async (t) => {
  await tf.setBackend('cpu');
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [12, 12, 1], filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
      tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthwiseInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }),
    ],
  });
  t.teardown(() => model.dispose());
  const x = seededTensorValues([5, 12, 12, 1], 9);
  const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 1], 'int32'), 4);
  t.teardown(() => labels.dispose());
  const gradients = (): tf.Tensor[] => {
    const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, model.apply(tensor4(x)) as tf.Tensor) as tf.Scalar);
    return model.trainableWeights.map((w) => grads[w.originalName]!);
  };
  const reference = await valuesOn('cpu', gradients);
  const actual = await valuesOn('wasm', gradients);
  t.is(actual.length, model.trainableWeights.length);
  for (const [i, w] of model.trainableWeights.entries()) {
    t.true(relativeError(actual[i]!, reference[i]!) <= TOLERANCE, `${w.originalName}: rel ${relativeError(actual[i]!, reference[i]!)}`);
  }
});

test.serial('the kernels leave no tensor behind over repeated calls', async (t) => {
  await tf.setBackend('wasm');
  const once = (): void => {
    tf.dispose(tf.tidy(() => smallNetGradients(SMALL_NET)));
    const x = tensor4(seededTensorValues([2, 9, 9, 4], 1));
    const dy = tensor4(seededTensorValues([2, 5, 5, 8], 2));
    const filter = tensor4(seededTensorValues([3, 3, 4, 8], 3));
    const depthwiseFilter = tensor4(seededTensorValues([3, 3, 4, 2], 4));
    const pooled = tf.maxPool(x, 3, 2, 'same');
    const poolDy = tf.onesLike(pooled);
    const matrix = tf.reshape(x, [18, 36]);
    const weights = tf.reshape(filter, [36, 8]);
    const bias = tf.ones([8]);
    const tall = tf.tile(x, [40, 1, 1, 1]);
    const row = tf.ones([1, 8]);
    const inputs = [x, dy, filter, depthwiseFilter, pooled, poolDy, matrix, weights, bias, tall, row];
    // No tidy around the kernels: whatever they leave behind would stay and be counted.
    const outputs = [
      tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, { strides: 2, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 4, 8] }),
      tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter }, { strides: 2, pad: 'same', dataFormat: 'NHWC', inputShape: [2, 9, 9, 4] }),
      tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { strides: 2, dilations: 1, pad: 'same', filterShape: [3, 3, 4, 2] }),
      tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: depthwiseFilter }, { strides: 2, dilations: 1, pad: 'same', inputShape: [2, 9, 9, 4] }),
      tf.engine().runKernel(tf.MaxPoolGrad, { dy: poolDy, input: x, output: pooled }, { filterSize: 3, strides: 2, pad: 'same' }),
      tf.matMul(matrix, matrix, true, false),
      tf.fused.matMul({ a: matrix, b: weights, bias, activation: 'relu' }),
      tf.sum(tall, [0, 1, 2]),
      tf.tile(bias, [3]),
      tf.tile(row, [4, 1]),
      tf.clone(x),
      tf.cast(x, 'float32'),
    ] as tf.Tensor[];
    tf.dispose([...outputs, ...inputs]);
  };
  once();
  const before = tf.memory().numTensors;
  const dataBefore = (tf.backend() as BackendWasm).numDataIds();
  for (let i = 0; i < 5; i++) once();
  t.is(tf.memory().numTensors, before);
  t.is((tf.backend() as BackendWasm).numDataIds(), dataBefore);
});

test('the installed tfjs-backend-wasm is the minor whose start threads.ts replays', async (t) => {
  const { version_wasm: version } = await import('@tensorflow/tfjs-backend-wasm');
  t.deepEqual(version.split('.').slice(0, 2), TESTED_TFJS_WASM_VERSION.split('.').slice(0, 2), `installed ${version}`);
});

test.serial('with 2 XNNPACK threads (threaded binary, in a child process) the kernels still match cpu, no global is patched across an await, and the process exits', async (t) => {
  const child = fileURLToPath(new URL('./helpers/kernel-threads-child.ts', import.meta.url));
  // The child must exit on its own: a hang (pool workers keeping it alive) hits the timeout.
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, '2'], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as { threads: number; backend: string; values: number[][]; patchedWhilePending: string[] };
  t.is(report.backend, 'wasm');
  t.is(report.threads, 2);
  t.deepEqual(report.patchedWhilePending, [], 'no global stays patched while the threaded start awaits');
  const reference = await valuesOn('cpu', threadedKernelRuns);
  t.is(report.values.length, reference.length);
  for (const [i, values] of report.values.entries()) {
    t.true(relativeError(Float32Array.from(values), reference[i]!) <= TOLERANCE, `output ${i}: rel ${relativeError(Float32Array.from(values), reference[i]!)}`);
  }
});
