/**
 * Benchmarks drover's wasm gradient kernels. Prints figures; asserts nothing.
 *
 *   node --import tsx bench/kernels.ts [train|kernels|all] [--steps 20] [--padding same|valid] [--threads 1]
 *
 * train:   img/s of a training step (batch 64, Adam) of the reference CNN
 *          (conv3x3 32 relu, maxpool2, conv3x3 64 relu, maxpool2, flatten, dense 128 relu,
 *          dropout 0.25, dense 10 softmax; 28x28x1), with the stock tfjs-backend-wasm
 *          Conv2DBackpropInput and with drover's, plus the tf.profile top kernels of a step.
 * kernels: time per call of each gradient kernel on the reference CNN's and MobileNet-like
 *          shapes, beside the forward convolution.
 * --threads n starts the threaded wasm binary with n XNNPACK threads (src/model/wasm-kernels/threads.ts);
 * compare thread counts across runs made back to back.
 * The machine may be shared: figures are rough; compare within one run.
 */
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import path from 'node:path';
import { initBackend } from '../src/model/backend.ts';
import { conv2dBackpropInputConfig } from '../src/model/wasm-kernels/gradient-kernels.ts';
import { registerWasmKernels } from '../src/model/wasm-kernels/index.ts';
import { startWasmWithThreads } from '../src/model/wasm-kernels/threads.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    steps: { type: 'string', default: '20' },
    padding: { type: 'string', default: 'same' },
    threads: { type: 'string' },
  },
});
const what = positionals[0] ?? 'all';
const steps = Number(values.steps);
const padding = values.padding === 'valid' ? 'valid' : 'same';

// The stock kernel, saved before drover's replaces it.
const wasm = await import('@tensorflow/tfjs-backend-wasm');
const stockInput = tf.getKernel(tf.Conv2DBackpropInput, 'wasm');
let threads = 1;
if (values.threads === undefined) {
  await initBackend('wasm');
} else {
  // What initBackend('wasm') does, with threads.
  wasm.setWasmPaths(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
  registerWasmKernels();
  threads = await startWasmWithThreads({ threads: Number(values.threads) }, async () => {
    await tf.setBackend('wasm');
    await tf.ready();
  });
}
console.log(`tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}, ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? 'simd' : 'no simd'}, ${threads} XNNPACK thread(s)`);

function useInputKernel(config: tf.KernelConfig): void {
  tf.unregisterKernel(tf.Conv2DBackpropInput, 'wasm');
  tf.registerKernel(config);
  // The stock kernel binds its wasm function in setupFunc, which only runs at backend start.
  config.setupFunc?.(tf.backend());
}

function referenceCnn(): tf.Sequential {
  const seed = (n: number) => tf.initializers.glorotUniform({ seed: n });
  return tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, padding, activation: 'relu', kernelInitializer: seed(1) }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 64, kernelSize: 3, padding, activation: 'relu', kernelInitializer: seed(2) }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 128, activation: 'relu', kernelInitializer: seed(3) }),
      tf.layers.dropout({ rate: 0.25 }),
      tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: seed(4) }),
    ],
  });
}

async function trainBench(label: string): Promise<void> {
  const batch = 64;
  const model = referenceCnn();
  const optimizer = tf.train.adam(1e-3);
  const x = tf.randomUniform([batch, 28, 28, 1], 0, 1, 'float32', 7);
  const y = tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32', 8) as tf.Tensor1D, 10);
  const step = (): void => {
    tf.tidy(() => {
      optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
    });
  };
  for (let i = 0; i < 3; i++) step();
  const tensorsBefore = tf.memory().numTensors;
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    step();
    // Variables are updated in place on wasm; reading one waits for the step (it is synchronous anyway).
    model.trainableWeights[0]!.read().dataSync();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  const leaked = tf.memory().numTensors - tensorsBefore;
  console.log(`\n[train] ${label}: median step ${median.toFixed(1)} ms = ${((batch * 1000) / median).toFixed(0)} img/s (best ${times[0]!.toFixed(1)} ms; ${steps} steps; tensors leaked ${leaked})`);
  const profile = await tf.profile(() => step());
  const byKernel = new Map<string, number>();
  let total = 0;
  for (const k of profile.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + ms);
    total += ms;
  }
  const top = [...byKernel].sort((a, b) => b[1] - a[1]).slice(0, 10);
  console.log(`  profiled step, kernel time ${total.toFixed(1)} ms: ${top.map(([name, ms]) => `${name} ${ms.toFixed(1)}`).join(', ')}`);
  tf.dispose([x, y]);
  optimizer.dispose();
  model.dispose();
}

function timeIt(compute: () => tf.Tensor, reps = 5): number {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const out = tf.tidy(compute);
    out.dataSync();
    times.push(performance.now() - t0);
    out.dispose();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

type Shape4 = [number, number, number, number];

function kernelBench(): void {
  console.log('\n[kernels] median ms per call (fwd = the forward convolution, for scale)');
  const convs: [string, Shape4, Shape4, number][] = [
    ['cnn conv1', [64, 28, 28, 1], [3, 3, 1, 32], 1],
    ['cnn conv2', [64, 14, 14, 32], [3, 3, 32, 64], 1],
    ['3x3 s2 stem', [16, 224, 224, 3], [3, 3, 3, 32], 2],
    ['1x1 expand', [16, 56, 56, 24], [1, 1, 24, 144], 1],
    ['1x1 project', [16, 14, 14, 576], [1, 1, 576, 96], 1],
    ['1x1 head', [16, 7, 7, 320], [1, 1, 320, 1280], 1],
    ['3x3 s1', [16, 28, 28, 64], [3, 3, 64, 64], 1],
    ['3x3 s2', [16, 28, 28, 64], [3, 3, 64, 128], 2],
  ];
  for (const [name, xShape, fShape, s] of convs) {
    const info = tf.backend_util.computeConv2DInfo(xShape, fShape, s, 1, 'same', undefined, false, 'channelsLast');
    const x = tf.randomUniform(xShape, -1, 1, 'float32', 1);
    const f = tf.randomUniform(fShape, -1, 1, 'float32', 2);
    const dy = tf.randomUniform(info.outShape, -1, 1, 'float32', 3);
    const attrs = { strides: s, pad: 'same', dataFormat: 'NHWC' };
    const fwd = timeIt(() => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, s, 'same'));
    const dx = timeIt(() => tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter: f }, { ...attrs, inputShape: xShape }) as tf.Tensor);
    useInputKernel(stockInput!);
    const dxStock = timeIt(() => tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter: f }, { ...attrs, inputShape: xShape }) as tf.Tensor, 3);
    useInputKernel(conv2dBackpropInputConfig);
    const dw = timeIt(() => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, { ...attrs, filterShape: fShape }) as tf.Tensor);
    console.log(`  conv ${name.padEnd(12)} x ${xShape.join('x')} f ${fShape.join('x')} s${s}: fwd ${fwd.toFixed(1)} | dx ${dx.toFixed(1)} (stock ${dxStock.toFixed(1)}) | dW ${dw.toFixed(1)}`);
    tf.dispose([x, f, dy]);
  }
  const depthwise: [string, Shape4, number, number, number][] = [
    ['112 s1', [16, 112, 112, 32], 1, 1, 1],
    ['112 s2', [16, 112, 112, 96], 2, 1, 1],
    ['56 s1', [16, 56, 56, 144], 1, 1, 1],
    ['14 s1', [16, 14, 14, 576], 1, 1, 1],
    ['14 s2', [16, 14, 14, 576], 2, 1, 1],
    ['7 s1', [16, 7, 7, 960], 1, 1, 1],
    ['28 m2', [16, 28, 28, 32], 1, 1, 2],
    ['28 d2', [16, 28, 28, 32], 1, 2, 1],
  ];
  for (const [name, xShape, s, d, m] of depthwise) {
    const fShape: Shape4 = [3, 3, xShape[3], m];
    const info = tf.backend_util.computeConv2DInfo(xShape, fShape, s, d, 'same', undefined, true, 'channelsLast');
    const x = tf.randomUniform(xShape, -1, 1, 'float32', 1);
    const f = tf.randomUniform(fShape, -1, 1, 'float32', 2);
    const dy = tf.randomUniform(info.outShape, -1, 1, 'float32', 3);
    const attrs = { strides: s, dilations: d, pad: 'same' };
    const fwd = timeIt(() => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, s, 'same', 'NHWC', d));
    const dx = timeIt(() => tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: f }, { ...attrs, inputShape: xShape }) as tf.Tensor);
    const dw = timeIt(() => tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { ...attrs, filterShape: fShape }) as tf.Tensor);
    console.log(`  depthwise ${name.padEnd(7)} x ${xShape.join('x')} m${m} s${s} d${d}: fwd ${fwd.toFixed(1)} | dx ${dx.toFixed(1)} | dW ${dw.toFixed(1)}`);
    tf.dispose([x, f, dy]);
  }
}

if (what === 'train' || what === 'all') {
  useInputKernel(stockInput!);
  await trainBench(`stock Conv2DBackpropInput, padding ${padding}`);
  useInputKernel(conv2dBackpropInputConfig);
  await trainBench(`drover Conv2DBackpropInput, padding ${padding}`);
}
if (what === 'kernels' || what === 'all') kernelBench();
