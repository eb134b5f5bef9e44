import * as tf from '@tensorflow/tfjs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { evaluateModel } from '../src/commands/evaluate.ts';
import { predictImages } from '../src/commands/predict.ts';
import { generateShapes } from '../src/data/shapes.ts';
import { saveModel } from '../src/model/export.ts';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../src/model/backend.ts';
import { hasGpuDevice } from '../src/model/gpu-devices.ts';
import { registerWebGpuBackend } from '../src/model/webgpu.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { PRESETS } from '../src/model/presets.ts';
import { readWeights, writeWeights } from '../src/model/weights.ts';
import { readFloat32 } from '../src/model/tensor-read.ts';
import { createOptimizer, optimizerSpecSchema } from '../src/train/optimizers.ts';
import { Trainer } from '../src/train/trainer.ts';
import { learnableBatch } from './helpers/batches.ts';
import { optimizerRefusesOverflow, trainerReadsOnlyWhenVerified, trainerRefusesOverflow } from './helpers/refused-update.ts';
import {
  TOLERANCE,
  convCases,
  depthwiseGradInputs,
  depthwiseGrads,
  depthwiseGradsReference,
  relativeError,
  seededTensorValues,
  SMALL_NET,
  smallNetGradients,
  tensor4,
  valuesOn,
} from './helpers/kernel-reference.ts';
import { webGpuTests } from './helpers/webgpu.ts';

// The webgpu backend (tfjs-backend-webgpu on Dawn) on whatever adapter this machine offers: on
// CI a software one (Mesa lavapipe through Vulkan, or Mesa through Dawn's OpenGL backend), which
// runs the same shaders as a GPU. Kernels are compared with tfjs-backend-cpu on the same seeded
// inputs (rel <= 1e-4, as for wasm), and a training job with wasm. Software adapters are slow:
// the sizes stay small.

const { setup, gpuTest } = await webGpuTests('webgpu tests');

gpuTest('Conv2DBackpropInput and Conv2DBackpropFilter on webgpu match cpu over strides, paddings and shapes', async (t) => {
  // Every other case of the wasm grid: the software adapter compiles a shader per shape.
  const cases = convCases(false, { dilated: false }).filter((_, i) => i % 2 === 0);
  for (const [i, c] of cases.entries()) {
    const x = seededTensorValues(c.xShape, 10 + i);
    const filter = seededTensorValues(c.filterShape, 210 + i);
    const dy = seededTensorValues(c.info.outShape, 410 + i);
    const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
    const run = (): tf.Tensor[] => [
      tf.engine().runKernel(tf.Conv2DBackpropInput, { dy: tensor4(dy), filter: tensor4(filter) }, { ...attrs, inputShape: c.xShape }) as tf.Tensor,
      tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: tensor4(x), dy: tensor4(dy) }, { ...attrs, filterShape: c.filterShape }) as tf.Tensor,
      tf.conv2d(tensor4(x), tensor4(filter), c.strides, c.pad as 'same'),
    ];
    const reference = await valuesOn('cpu', run);
    const actual = await valuesOn('webgpu', run);
    for (const [k, name] of ['input grad', 'filter grad', 'forward'].entries()) {
      const rel = relativeError(actual[k]!, reference[k]!);
      t.true(rel <= TOLERANCE, `${c.label} ${name}: rel ${rel}`);
    }
  }
});

gpuTest('depthwise backprop kernels on webgpu match cpu over strides, dilations, paddings and multipliers', async (t) => {
  // Dilated cases included: tfjs-backend-webgpu ignores dilations there, drover's wrappers fix it.
  const cases = convCases(true, { dilated: true }).filter((c, i) => i % 2 === 0 || c.dilations > 1);
  for (const [i, c] of cases.entries()) {
    const inputs = depthwiseGradInputs(c, i);
    const [refInput, refFilter] = await valuesOn('cpu', () => depthwiseGradsReference(c, inputs));
    const [input, filterGrad] = await valuesOn('webgpu', () => depthwiseGrads(c, inputs));
    t.true(relativeError(input!, refInput!) <= TOLERANCE, `${c.label} input grad: rel ${relativeError(input!, refInput!)}`);
    t.true(relativeError(filterGrad!, refFilter!) <= TOLERANCE, `${c.label} filter grad: rel ${relativeError(filterGrad!, refFilter!)}`);
  }
});

gpuTest('tf.grads through a small conv net agree on webgpu and cpu', async (t) => {
  const reference = await valuesOn('cpu', () => smallNetGradients(SMALL_NET));
  const actual = await valuesOn('webgpu', () => smallNetGradients(SMALL_NET));
  for (const [i, name] of ['x', 'conv 1', 'depthwise', 'conv 2'].entries()) {
    t.true(relativeError(actual[i]!, reference[i]!) <= TOLERANCE, `${name}: rel ${relativeError(actual[i]!, reference[i]!)}`);
  }
});

gpuTest('a tf.layers CNN (fused conv, batch norm, pooling, dense) gets the same gradients on webgpu and cpu', async (t) => {
  await tf.setBackend('cpu');
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [12, 12, 1], filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.batchNormalization(),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
      tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthwiseInitializer: tf.initializers.glorotUniform({ seed: 3 }) }),
      tf.layers.averagePooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }),
    ],
  });
  t.teardown(() => model.dispose());
  const x = seededTensorValues([5, 12, 12, 1], 9);
  const labels = [0, 1, 2, 3, 1];
  const gradients = (): tf.Tensor[] => {
    const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), 4);
    const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(onehot, model.apply(tensor4(x), { training: true }) as tf.Tensor) as tf.Scalar);
    return model.trainableWeights.map((w) => grads[w.originalName]!);
  };
  const reference = await valuesOn('cpu', gradients);
  const actual = await valuesOn('webgpu', gradients);
  for (const [i, w] of model.trainableWeights.entries()) {
    t.true(relativeError(actual[i]!, reference[i]!) <= TOLERANCE, `${w.originalName}: rel ${relativeError(actual[i]!, reference[i]!)}`);
  }
});

/** The reference job's model (fmnist-cnn, dropout included) with Adam, on the active backend. */
function referenceTrainer(): Trainer {
  const model = buildScratchModel({ layers: PRESETS['fmnist-cnn'].layers, inputShape: [28, 28, 1], classes: 10, seed: 42 });
  return new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 1e-3 }), dropoutSeed: 42 });
}

/** Losses of `steps` training steps, then the weights and an evaluation, on `backend`. */
async function trainOn(backend: 'webgpu' | 'wasm', steps: number) {
  await initBackend(backend);
  const trainer = referenceTrainer();
  try {
    const losses: number[] = [];
    for (let step = 0; step < steps; step++) losses.push((await trainer.trainStep(learnableBatch(16, [28, 28, 1], 10, step), 1e-3)).loss);
    const evaluation = await trainer.evaluate(learnableBatch(32, [28, 28, 1], 10, 99));
    return { losses, weights: await readWeights(trainer.model), evaluation };
  } finally {
    trainer.model.dispose();
    trainer.optimizer.dispose();
  }
}

gpuTest('the reference job trains the same on webgpu as on wasm: losses within 1e-4 over 4 Adam steps, same weights and predictions', async (t) => {
  const wasm = await trainOn('wasm', 4);
  const gpu = await trainOn('webgpu', 4);
  t.is(tf.getBackend(), 'webgpu');
  gpu.losses.forEach((loss, i) => t.true(Math.abs(loss - wasm.losses[i]!) <= 1e-4, `step ${i + 1}: webgpu ${loss} vs wasm ${wasm.losses[i]}`));
  t.true(wasm.losses.at(-1)! < wasm.losses[0]!, 'the job learns');
  gpu.weights.values.forEach((values, i) => {
    const rel = relativeError(values, wasm.weights.values[i]!);
    t.true(rel <= 5e-3, `${gpu.weights.manifest[i]!.name}: rel ${rel}`);
  });
  t.true(Math.abs(gpu.evaluation.loss - wasm.evaluation.loss) <= 1e-4);
  t.deepEqual(Array.from(gpu.evaluation.predicted), Array.from(wasm.evaluation.predicted));
});

gpuTest('training, evaluation and weight reads on webgpu leave tf.memory().numTensors flat', async (t) => {
  await initBackend('webgpu');
  const model = buildScratchModel({ layers: [{ type: 'conv2d', filters: 4, kernelSize: 3, activation: 'relu' }, { type: 'batchNorm' }, { type: 'maxPool', poolSize: 2 }, { type: 'flatten' }], inputShape: [8, 8, 1], classes: 3, seed: 5 });
  const trainer = new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 0.01 }) });
  t.teardown(() => {
    trainer.model.dispose();
    trainer.optimizer.dispose();
  });
  const batch = learnableBatch(8, [8, 8, 1], 3, 1);
  const round = async (): Promise<void> => {
    await trainer.trainStep(batch, 0.01);
    await trainer.evaluate(batch);
    await trainer.applyGradients((await trainer.computeGradients(batch)).grads, 0.01);
    writeWeights(trainer.model, await readWeights(trainer.model));
    await trainer.optimizer.getState();
    await readFloat32(trainer.model.weights.map((w) => w.read()));
  };
  await round();
  const tensors = tf.memory().numTensors;
  for (let i = 0; i < 5; i++) await round();
  t.is(tf.memory().numTensors, tensors);
});

gpuTest('a verified optimizer step on webgpu that would overflow a slot or a weight rejects with NonFiniteUpdateError and writes nothing', async (t) => {
  await initBackend('webgpu');
  await optimizerRefusesOverflow(t);
});

gpuTest('Trainer.applyGradients on webgpu refuses a step that would overflow Adam, writes nothing and leaks nothing; ordinary steps read nothing back', async (t) => {
  await initBackend('webgpu');
  const model = buildScratchModel({ layers: [{ type: 'flatten' }, { type: 'dense', units: 8 }], inputShape: [4, 4, 1], classes: 3, seed: 4 });
  const trainer = new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 0.01 }) });
  t.teardown(() => {
    trainer.model.dispose();
    trainer.optimizer.dispose();
  });
  const { grads } = await trainer.computeGradients(learnableBatch(8, [4, 4, 1], 3, 1));
  await trainerRefusesOverflow(t, trainer, grads);
  await trainerReadsOnlyWhenVerified(t, trainer, grads);
});

gpuTest('optimizer updates on webgpu stay on the GPU: no read back to the CPU, same values as on cpu', async (t) => {
  const specs = [
    { name: 'adam', learningRate: 0.01 },
    { name: 'momentum', learningRate: 0.1, nesterov: true },
    { name: 'rmsprop', learningRate: 0.01, momentum: 0.5 },
    { name: 'sgd', learningRate: 0.1 },
  ] as const;
  for (const input of specs) {
    const spec = optimizerSpecSchema.parse(input);
    const run = (): tf.Tensor[] => {
      const w = tf.variable(tensor4(seededTensorValues([3, 3, 4, 8], 1)));
      const optimizer = createOptimizer(spec);
      for (let step = 0; step < 3; step++) {
        tf.tidy(() => optimizer.apply([w], [tensor4(seededTensorValues([3, 3, 4, 8], 10 + step))], spec.learningRate));
      }
      optimizer.dispose();
      const out = tf.clone(w);
      w.dispose();
      return [out];
    };
    const [reference] = await valuesOn('cpu', run);
    await tf.setBackend('webgpu');
    const backend = tf.backend() as unknown as { read: (...a: unknown[]) => unknown; readSync: (...a: unknown[]) => unknown };
    const { read, readSync } = backend;
    let reads = 0;
    backend.read = (...a) => (reads++, read.apply(backend, a));
    backend.readSync = (...a) => (reads++, readSync.apply(backend, a));
    let updated: tf.Tensor;
    let controlReads: number;
    try {
      updated = tf.tidy(() => run()[0]!);
      const updateReads = reads;
      // Control: the spy does see a read.
      const probe = tf.scalar(1);
      await probe.data();
      probe.dispose();
      controlReads = reads - updateReads;
      reads = updateReads;
    } finally {
      backend.read = read;
      backend.readSync = readSync;
    }
    t.true(controlReads > 0, 'the spy counts reads');
    t.is(reads, 0, `${spec.name}: the update read nothing back`);
    const [actual] = await readFloat32([updated]);
    updated.dispose();
    t.true(relativeError(actual!, reference!) <= TOLERANCE, `${spec.name}: rel ${relativeError(actual!, reference!)}`);
  }
});

gpuTest('a saved model predicts and evaluates the same on webgpu as on wasm', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-webgpu-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const shapes = await generateShapes(path.join(dir, 'shapes'), { perClass: 8, size: 16 });
  const classNames = (await readdir(shapes)).sort();
  await initBackend('wasm');
  const model = buildScratchModel({ layers: [{ type: 'conv2d', filters: 4, kernelSize: 3 }, { type: 'maxPool' }, { type: 'flatten' }], inputShape: [16, 16, 3], classes: classNames.length, seed: 7 });
  const modelDir = path.join(dir, 'model');
  await saveModel(model, modelDir, { classNames, preprocess: 'rescale' });
  model.dispose();
  const images = (await Promise.all(classNames.map(async (c) => (await readdir(path.join(shapes, c))).slice(0, 2).map((f) => path.join(shapes, c, f))))).flat();
  const data = { kind: 'folder', path: shapes, imageSize: [16, 16] } as const;
  const onWasm = { predicted: await predictImages({ modelDir, images, backend: 'wasm' }), evaluated: await evaluateModel({ modelDir, data, backend: 'wasm' }) };
  const onGpu = { predicted: await predictImages({ modelDir, images, backend: 'webgpu' }), evaluated: await evaluateModel({ modelDir, data, backend: 'webgpu' }) };
  t.is(tf.getBackend(), 'webgpu');
  t.is(onGpu.predicted.failed, 0);
  t.is(onGpu.predicted.results.length, images.length);
  onGpu.predicted.results.forEach((p, i) => {
    const w = onWasm.predicted.results[i]!;
    if (!p.ok || !w.ok) return t.fail(`${p.image} not predicted`);
    t.deepEqual(p.top.map((c) => c.className), w.top.map((c) => c.className), p.image);
    p.top.forEach((c, k) => t.true(Math.abs(c.probability - w.top[k]!.probability) <= 1e-4, `${p.image} ${c.className}`));
  });
  t.is(onGpu.evaluated.n, onWasm.evaluated.n);
  t.is(onGpu.evaluated.accuracy, onWasm.evaluated.accuracy);
  t.true(Math.abs(onGpu.evaluated.loss - onWasm.evaluated.loss) <= 1e-4);
  t.deepEqual(onGpu.evaluated.confusion, onWasm.evaluated.confusion);
});

gpuTest('auto never takes a software adapter', async (t) => {
  if (!('info' in setup) || !setup.info.adapter?.software) {
    t.log('this machine has a hardware adapter: nothing to check');
    t.pass();
    return;
  }
  const auto = await initBackend('auto');
  t.not(auto.name, 'webgpu');
  // With a GPU device node auto asks Dawn and passes over its software adapter; without one
  // (a CPU-only machine) it does not ask at all.
  if (hasGpuDevice()) t.regex(auto.reason, /webgpu: only a software adapter/);
  await t.throwsAsync(registerWebGpuBackend({ allowSoftware: false }), { message: /^only a software adapter/ });
  await initBackend('webgpu');
});
