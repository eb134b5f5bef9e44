import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { initBackend } from '../src/model/backend.ts';
import { ADDON_PATH } from '../src/model/native/addon.ts';
import { registerNativeKernels } from '../src/model/native/index.ts';
import type { NativeKernelsInfo } from '../src/model/native/index.ts';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { nativeKernelCalls } from '../src/model/native/kernels.ts';
import { FUSED_UPDATE, fusedUpdate, slotCount, type UpdateAttrs, type UpdateRule } from '../src/model/update-kernels.ts';
import { INPUTS, TOLERANCE, convCases, depthwiseGradInputs, depthwiseGrads, depthwiseGradsReference, relativeError, seededTensorValues, tensor4, valuesOn } from './helpers/kernel-reference.ts';

// Every oneDNN kernel runs on wasm (native) and on tfjs-backend-cpu on the same seeded inputs;
// rel = max|native - cpu| / max(1e-6, max|cpu|) <= 1e-4. Each test also checks that the native
// path ran (not its fallback) as many times as it has cases. Without the addon (not built, or
// DROVER_NATIVE=off) the comparisons are skipped and the tests check that drover says why.
function callsOf(kernel: string): number {
  return nativeKernelCalls().get(kernel) ?? 0;
}

let native: NativeKernelsInfo;

test.before(async () => {
  await initBackend('wasm');
  native = registerNativeKernels({ threads: 2 });
});

test.serial('native kernels are on when the addon is built, else drover says why', (t) => {
  if (process.env['DROVER_NATIVE'] === 'off') {
    t.false(native.enabled);
    if (!native.enabled) t.regex(native.reason, /DROVER_NATIVE=off/);
  } else if (!fs.existsSync(ADDON_PATH)) {
    t.false(native.enabled);
    if (!native.enabled) t.regex(native.reason, /not built/);
  } else {
    t.true(native.enabled, native.enabled ? '' : native.reason);
    if (!native.enabled) return;
    t.regex(native.detail, /^oneDNN \d+\.\d+/);
    for (const kernel of [tf.Conv2D, tf.FusedConv2D, tf.Conv2DBackpropInput, tf.Conv2DBackpropFilter, tf.DepthwiseConv2dNative, tf.MaxPoolGrad, tf._FusedMatMul]) {
      t.true(native.kernels.includes(kernel), kernel);
    }
    // A second call changes nothing but the thread count.
    const kernelFunc = tf.getKernel(tf.Conv2D, 'wasm')?.kernelFunc;
    t.deepEqual(registerNativeKernels({ threads: 1 }).enabled, true);
    t.is(tf.getKernel(tf.Conv2D, 'wasm')?.kernelFunc, kernelFunc);
    registerNativeKernels({ threads: 2 });
  }
});

test.serial('Conv2D, FusedConv2D and both conv backprops match cpu over strides, dilations, paddings and shapes', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const cases = convCases(false, { dilated: true });
  t.true(cases.length >= 30);
  const before = [tf.Conv2D, tf.FusedConv2D, tf.Conv2DBackpropInput, tf.Conv2DBackpropFilter].map(callsOf);
  const activations = ['relu', 'relu6', 'leakyrelu', 'sigmoid', 'elu', 'linear'] as const;
  let backpropCases = 0;
  for (const [index, c] of cases.entries()) {
    const x = seededTensorValues(c.xShape, 10 + index);
    const filter = seededTensorValues(c.filterShape, 200 + index);
    const dy = seededTensorValues(c.info.outShape, 400 + index);
    const bias = seededTensorValues([c.filterShape[3]], 600 + index);
    const activation = activations[index % activations.length]!;
    const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
    // tfjs's conv backprop kernels take no dilations.
    const withGrads = c.dilations === 1;
    const run = (): tf.Tensor[] => [
      tf.conv2d(tensor4(x), tensor4(filter), c.strides, c.pad, 'NHWC', c.dilations),
      tf.fused.conv2d({ x: tensor4(x), filter: tensor4(filter), strides: c.strides, pad: c.pad, dilations: c.dilations, bias: tf.tensor1d(bias.values), activation, leakyreluAlpha: 0.3 }),
      ...(withGrads
        ? [
            tf.engine().runKernel(tf.Conv2DBackpropInput, { dy: tensor4(dy), filter: tensor4(filter) }, { ...attrs, inputShape: c.xShape }) as tf.Tensor,
            tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: tensor4(x), dy: tensor4(dy) }, { ...attrs, filterShape: c.filterShape }) as tf.Tensor,
          ]
        : []),
    ];
    if (withGrads) backpropCases++;
    const reference = await valuesOn('cpu', run);
    const actual = await valuesOn('wasm', run);
    for (const [i, name] of ['conv2d', `fused conv2d (${activation})`, 'input grad', 'filter grad'].slice(0, reference.length).entries()) {
      const rel = relativeError(actual[i]!, reference[i]!);
      t.true(rel <= TOLERANCE, `${name}, ${c.label}: rel ${rel}`);
    }
  }
  const after = [tf.Conv2D, tf.FusedConv2D, tf.Conv2DBackpropInput, tf.Conv2DBackpropFilter].map(callsOf);
  t.deepEqual(
    after.map((n, i) => n - before[i]!),
    [cases.length, cases.length, backpropCases, backpropCases],
  );
});

test.serial('depthwise convolution and its backprops match cpu over strides, dilations, paddings and multipliers', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const cases = convCases(true, { dilated: true });
  t.true(cases.some((c) => c.dilations > 1 && c.filterShape[3] > 1));
  const kernels = [tf.DepthwiseConv2dNative, tf.DepthwiseConv2dNativeBackpropInput, tf.DepthwiseConv2dNativeBackpropFilter];
  const before = kernels.map(callsOf);
  for (const [index, c] of cases.entries()) {
    const inputs = depthwiseGradInputs(c, index);
    const forward = (): tf.Tensor => tf.depthwiseConv2d(tensor4(inputs.x), tensor4(inputs.filter), c.strides, c.pad, 'NHWC', c.dilations);
    const reference = await valuesOn('cpu', () => [forward(), ...depthwiseGradsReference(c, inputs)]);
    const actual = await valuesOn('wasm', () => [forward(), ...depthwiseGrads(c, inputs)]);
    for (const [i, name] of ['depthwise', 'input grad', 'filter grad'].entries()) {
      const rel = relativeError(actual[i]!, reference[i]!);
      t.true(rel <= TOLERANCE, `${name}, ${c.label}: rel ${rel}`);
    }
  }
  t.deepEqual(
    kernels.map((k, i) => callsOf(k) - before[i]!),
    kernels.map(() => cases.length),
  );
});

test.serial('MaxPoolGrad and AvgPoolGrad match cpu over windows, strides and paddings', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const before = [tf.MaxPoolGrad, tf.AvgPoolGrad].map(callsOf);
  let count = 0;
  for (const [index, xShape] of INPUTS.entries()) {
    for (const [k, s] of [
      [2, 2],
      [3, 2],
      [3, 1],
      [2, 3],
    ] as const) {
      for (const pad of ['valid', 'same'] as const) {
        const x = seededTensorValues(xShape, 700 + index * 10 + k + s);
        const info = tf.backend_util.computePool2DInfo(xShape, k, s, 1, pad);
        const dy = seededTensorValues(info.outShape, 800 + index * 10 + k + s);
        const run = (): tf.Tensor[] => {
          const input = tensor4(x);
          const output = tf.maxPool(input, k, s, pad);
          return [
            tf.engine().runKernel(tf.MaxPoolGrad, { dy: tensor4(dy), input, output }, { filterSize: k, strides: s, pad }) as tf.Tensor,
            tf.engine().runKernel(tf.AvgPoolGrad, { dy: tensor4(dy), input }, { filterSize: k, strides: s, pad }) as tf.Tensor,
          ];
        };
        const reference = await valuesOn('cpu', run);
        const actual = await valuesOn('wasm', run);
        for (const [i, name] of ['max pool grad', 'avg pool grad'].entries()) {
          const rel = relativeError(actual[i]!, reference[i]!);
          t.true(rel <= TOLERANCE, `${name}, x ${xShape.join('x')} k${k} s${s} ${pad}: rel ${rel}`);
        }
        count++;
      }
    }
  }
  t.deepEqual(
    [tf.MaxPoolGrad, tf.AvgPoolGrad].map((k, i) => callsOf(k) - before[i]!),
    [count, count],
  );
});

test.serial('BatchMatMul and _FusedMatMul match cpu, transposed, batched and fused', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const cases: { a: number[]; b: number[]; transposeA: boolean; transposeB: boolean }[] = [];
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      cases.push({ a: transposeA ? [37, 5] : [5, 37], b: transposeB ? [11, 37] : [37, 11], transposeA, transposeB });
      cases.push({ a: transposeA ? [3, 6, 4] : [3, 4, 6], b: transposeB ? [3, 2, 6] : [3, 6, 2], transposeA, transposeB });
    }
  }
  cases.push({ a: [1, 64, 30], b: [1, 30, 9], transposeA: false, transposeB: false });
  cases.push({ a: [2, 3, 1, 7], b: [2, 3, 7, 1], transposeA: false, transposeB: false });
  const before = [tf.BatchMatMul, tf._FusedMatMul].map(callsOf);
  const activations = ['relu', 'relu6', 'leakyrelu', 'sigmoid', 'elu', 'linear'] as const;
  for (const [index, c] of cases.entries()) {
    const a = seededTensorValues(c.a, 900 + index);
    const b = seededTensorValues(c.b, 950 + index);
    const n = c.b[c.b.length - (c.transposeB ? 2 : 1)]!;
    const bias = seededTensorValues([n], 990 + index);
    const activation = activations[index % activations.length]!;
    const run = (): tf.Tensor[] => [
      tf.matMul(tf.tensor(a.values, a.shape), tf.tensor(b.values, b.shape), c.transposeA, c.transposeB),
      tf.fused.matMul({ a: tf.tensor(a.values, a.shape), b: tf.tensor(b.values, b.shape), transposeA: c.transposeA, transposeB: c.transposeB, bias: tf.tensor1d(bias.values), activation, leakyreluAlpha: 0.3 }),
    ];
    const reference = await valuesOn('cpu', run);
    const actual = await valuesOn('wasm', run);
    const label = `a ${c.a.join('x')}${c.transposeA ? 'T' : ''} b ${c.b.join('x')}${c.transposeB ? 'T' : ''}`;
    t.true(relativeError(actual[0]!, reference[0]!) <= TOLERANCE, `matmul ${label}: rel ${relativeError(actual[0]!, reference[0]!)}`);
    t.true(relativeError(actual[1]!, reference[1]!) <= TOLERANCE, `fused ${activation} ${label}: rel ${relativeError(actual[1]!, reference[1]!)}`);
  }
  t.deepEqual(
    [tf.BatchMatMul, tf._FusedMatMul].map((k, i) => callsOf(k) - before[i]!),
    [cases.length, cases.length],
  );
});

test.serial('Sum and Mean over leading or trailing axes match cpu; other axes fall back', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const cases: { shape: number[]; axis: number[]; keepDims: boolean; native: boolean }[] = [
    { shape: [64, 13, 13, 32], axis: [0, 1, 2], keepDims: false, native: true },
    { shape: [7, 5], axis: [0], keepDims: true, native: true },
    { shape: [3, 4, 5], axis: [2], keepDims: false, native: true },
    { shape: [3, 4, 5], axis: [1, 2], keepDims: true, native: true },
    { shape: [1, 9], axis: [0, 1], keepDims: false, native: true },
    { shape: [3, 4, 5], axis: [1], keepDims: false, native: false },
  ];
  const before = [tf.Sum, tf.Mean].map(callsOf);
  for (const [index, c] of cases.entries()) {
    const x = seededTensorValues(c.shape, 1200 + index);
    const shapes: number[][] = [];
    const run = (): tf.Tensor[] => {
      const ys = [tf.sum(tf.tensor(x.values, x.shape), c.axis, c.keepDims), tf.mean(tf.tensor(x.values, x.shape), c.axis, c.keepDims)];
      shapes.push(...ys.map((y) => y.shape));
      return ys;
    };
    const reference = await valuesOn('cpu', run);
    const actual = await valuesOn('wasm', run);
    t.deepEqual(shapes.slice(2), shapes.slice(0, 2));
    for (const [i, name] of ['sum', 'mean'].entries()) {
      const rel = relativeError(actual[i]!, reference[i]!);
      t.true(rel <= TOLERANCE, `${name} ${c.shape.join('x')} over ${c.axis.join(',')}: rel ${rel}`);
    }
  }
  const natives = cases.filter((c) => c.native).length;
  t.deepEqual(
    [tf.Sum, tf.Mean].map((k, i) => callsOf(k) - before[i]!),
    [natives, natives],
  );
});

test.serial('Add of a per-channel bias matches cpu, either order; other adds fall back', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const cases: { a: number[]; b: number[]; native: boolean }[] = [
    { a: [2, 7, 5, 3], b: [3], native: true },
    { a: [3], b: [2, 7, 5, 3], native: true },
    { a: [9, 11], b: [1, 11], native: true },
    { a: [4, 6], b: [4, 6], native: false },
    { a: [4, 6], b: [4, 1], native: false },
  ];
  const before = callsOf(tf.Add);
  for (const [index, c] of cases.entries()) {
    const a = seededTensorValues(c.a, 1300 + index);
    const b = seededTensorValues(c.b, 1350 + index);
    const run = (): tf.Tensor => tf.add(tf.tensor(a.values, a.shape), tf.tensor(b.values, b.shape));
    const [reference] = await valuesOn('cpu', run);
    const [actual] = await valuesOn('wasm', run);
    t.true(relativeError(actual!, reference!) <= TOLERANCE, `add ${c.a.join('x')} + ${c.b.join('x')}: rel ${relativeError(actual!, reference!)}`);
  }
  t.is(callsOf(tf.Add) - before, cases.filter((c) => c.native).length);
});

test.serial('the fused optimizer update matches the cpu loop for every rule, small and threaded sizes', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const rules: UpdateRule[] = ['sgd', 'momentum', 'nesterov', 'adam', 'rmsprop', 'rmsprop-momentum'];
  const before = callsOf(FUSED_UPDATE);
  let cases = 0;
  for (const [index, rule] of rules.entries()) {
    for (const shape of [[7], [600, 700]]) {
      const [w, g, s1, s2] = [0, 1, 2, 3].map((k) => seededTensorValues(shape, 1400 + 10 * index + k));
      // Second moments (adam's s2, rmsprop's s1) are never negative.
      const positive = (x: Float32Array): Float32Array => x.map(Math.abs);
      const attrs: UpdateAttrs = { rule, lr: 0.01, a: 0.9, b: 0.99, epsilon: 1e-7 };
      const first = rule.startsWith('rmsprop') ? positive(s1!.values) : s1!.values;
      const slots = [first, positive(s2!.values)].slice(0, slotCount(rule));
      const run = (): tf.Tensor[] => fusedUpdate(attrs, tf.tensor(w!.values, shape), tf.tensor(g!.values, shape), slots.map((v) => tf.tensor(v, shape)));
      const reference = await valuesOn('cpu', run);
      const actual = await valuesOn('wasm', run);
      t.is(actual.length, 1 + slotCount(rule));
      actual.forEach((values, i) => t.true(relativeError(values, reference[i]!) <= TOLERANCE, `${rule} ${shape.join('x')} output ${i}: rel ${relativeError(values, reference[i]!)}`));
      cases++;
    }
  }
  t.is(callsOf(FUSED_UPDATE) - before, cases);
});

test.serial('FusedBatchNorm with per-channel statistics matches cpu, with and without offset and scale', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const before = callsOf(tf.FusedBatchNorm);
  let count = 0;
  for (const [index, shape] of [[2, 7, 5, 3], [9, 16], [1, 3, 3, 8]].entries()) {
    const channels = shape.at(-1)!;
    const x = seededTensorValues(shape, 1400 + index);
    const mean = seededTensorValues([channels], 1410 + index);
    const variance = { shape: [channels], values: seededTensorValues([channels], 1420 + index).values.map((v) => v + 1.5) };
    const offset = seededTensorValues([channels], 1430 + index);
    const scale = seededTensorValues([channels], 1440 + index);
    const vector = (v: { values: Float32Array }): tf.Tensor1D => tf.tensor1d(v.values);
    const run = (): tf.Tensor[] => [
      tf.batchNorm(tf.tensor(x.values, x.shape), vector(mean), vector(variance), vector(offset), vector(scale), 1e-3),
      tf.batchNorm(tf.tensor(x.values, x.shape), vector(mean), vector(variance), undefined, undefined, 1e-3),
    ];
    const reference = await valuesOn('cpu', run);
    const actual = await valuesOn('wasm', run);
    for (const [i, name] of ['with offset and scale', 'bare'].entries()) {
      const rel = relativeError(actual[i]!, reference[i]!);
      t.true(rel <= TOLERANCE, `batch norm ${name}, ${shape.join('x')}: rel ${rel}`);
    }
    count += 2;
  }
  t.is(callsOf(tf.FusedBatchNorm) - before, count);
});

test.serial('many training steps with native kernels leave no tensor and no wasm memory behind', async (t) => {
  await tf.setBackend('wasm');
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [12, 12, 1], filters: 8, kernelSize: 3, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation: 'relu' }),
      tf.layers.batchNormalization(),
      tf.layers.flatten(),
      tf.layers.dense({ units: 16, activation: 'relu' }),
      tf.layers.dense({ units: 4 }),
    ],
  });
  const optimizer = tf.train.adam(0.01);
  const xs = tf.tensor4d(seededTensorValues([8, 12, 12, 1], 1).values, [8, 12, 12, 1]);
  const ys = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 0, 1, 2, 3], 'int32'), 4);
  const step = (): number => {
    const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(ys, model.apply(xs, { training: true }) as tf.Tensor), true) as tf.Scalar;
    const value = loss.dataSync()[0]!;
    loss.dispose();
    return value;
  };
  const first = step();
  step();
  const heap = (): number => ((tf.backend() as BackendWasm).wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.length;
  const tensors = tf.memory().numTensors;
  const bytes = tf.memory().numBytes;
  const heapBytes = heap();
  let last = first;
  for (let i = 0; i < 40; i++) last = step();
  t.is(tf.memory().numTensors, tensors);
  t.is(tf.memory().numBytes, bytes);
  // The wasm memory never shrinks: a leak on the heap would show as growth.
  t.is(heap(), heapBytes);
  t.true(Number.isFinite(last) && last < first, `loss ${first} -> ${last}`);
  tf.dispose([xs, ys]);
  model.dispose();
  optimizer.dispose();
});

const execFileAsync = promisify(execFile);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

test('with DROVER_NATIVE=off drover trains on wasm alone and says why', async (t) => {
  const script = [
    "import * as tf from '@tensorflow/tfjs';",
    "import { initBackend } from './src/model/backend.ts';",
    "import { registerNativeKernels } from './src/model/native/index.ts';",
    "await initBackend('wasm');",
    'const info = registerNativeKernels({ threads: 1 });',
    "const y = tf.conv2d(tf.ones([1, 5, 5, 2]), tf.ones([3, 3, 2, 1]), 1, 'valid');",
    'console.log(JSON.stringify({ info, sum: tf.sum(y).dataSync()[0] }));',
  ].join('\n');
  const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: repoRoot,
    env: { ...process.env, DROVER_NATIVE: 'off' },
  });
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { info: NativeKernelsInfo; sum: number };
  t.false(result.info.enabled);
  t.regex((result.info as { reason: string }).reason, /DROVER_NATIVE=off/);
  t.is(result.sum, 9 * 18);
});

test('native kernels compute in place on the threaded binary’s shared wasm heap too', async (t) => {
  if (!native.enabled) return t.pass(`native kernels off: ${native.reason}`);
  const child = fileURLToPath(new URL('./helpers/native-threads-child.ts', import.meta.url));
  const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', child], { cwd: repoRoot });
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { heap: string; errors: number[]; calls: Record<string, number> };
  t.is(result.heap, 'SharedArrayBuffer');
  t.is(result.errors.length, 2);
  for (const error of result.errors) t.true(error <= TOLERANCE, `rel ${error}`);
  t.is(result.calls[tf.Conv2DBackpropInput], 1);
  t.is(result.calls[tf.Conv2DBackpropFilter], 1);
});
