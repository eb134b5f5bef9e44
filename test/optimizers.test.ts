import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.ts';
import { FUSED_UPDATE, hasFusedUpdate } from '../src/model/update-kernels.ts';
import { createOptimizer, optimizerSpecSchema, type OptimizerSpec } from '../src/train/optimizers.ts';
import { learningRateAt } from '../src/train/schedule.ts';

test.before(async () => {
  await initBackend('wasm');
});

/** Plain float64 reference of each update rule, as Keras documents it. */
function reference(spec: OptimizerSpec, w0: number[], grads: number[][], lr: number): number[] {
  const w = [...w0];
  const s1 = w.map(() => 0);
  const s2 = w.map(() => 0);
  grads.forEach((g, step) => {
    const t = step + 1;
    for (let i = 0; i < w.length; i++) {
      switch (spec.name) {
        case 'sgd':
        case 'momentum':
          if (spec.momentum === 0) {
            w[i]! -= lr * g[i]!;
          } else {
            s1[i] = spec.momentum * s1[i]! - lr * g[i]!;
            w[i]! += spec.nesterov ? spec.momentum * s1[i]! - lr * g[i]! : s1[i]!;
          }
          break;
        case 'adam': {
          s1[i] = spec.beta1 * s1[i]! + (1 - spec.beta1) * g[i]!;
          s2[i] = spec.beta2 * s2[i]! + (1 - spec.beta2) * g[i]! ** 2;
          const lrT = (lr * Math.sqrt(1 - spec.beta2 ** t)) / (1 - spec.beta1 ** t);
          w[i]! -= (lrT * s1[i]!) / (Math.sqrt(s2[i]!) + spec.epsilon);
          break;
        }
        case 'rmsprop': {
          s1[i] = spec.rho * s1[i]! + (1 - spec.rho) * g[i]! ** 2;
          const scaled = (lr * g[i]!) / (Math.sqrt(s1[i]!) + spec.epsilon);
          if (spec.momentum > 0) {
            s2[i] = spec.momentum * s2[i]! + scaled;
            w[i]! -= s2[i]!;
          } else {
            w[i]! -= scaled;
          }
          break;
        }
      }
    }
  });
  return w;
}

function expectedSlots(spec: OptimizerSpec): number {
  if (spec.name === 'adam') return 2;
  if (spec.name === 'rmsprop') return spec.momentum > 0 ? 2 : 1;
  return spec.momentum > 0 ? 1 : 0;
}

const specs = [
  { name: 'sgd' },
  { name: 'sgd', momentum: 0.9, nesterov: true },
  { name: 'momentum' },
  { name: 'adam' },
  { name: 'rmsprop' },
  { name: 'rmsprop', momentum: 0.5 },
].map((s) => optimizerSpecSchema.parse(s));

const variants = [
  { backend: 'wasm', fused: true },
  { backend: 'wasm', fused: false },
  { backend: 'cpu', fused: true },
] as const;

for (const spec of specs) for (const { backend, fused } of variants) {
  test.serial(`${spec.name} ${JSON.stringify(spec)} on ${backend}, ${fused ? 'fused' : 'separate ops'}, matches the float64 reference over 5 steps`, async (t) => {
    tf.setBackend(backend);
    t.teardown(() => tf.setBackend('wasm'));
    t.is(hasFusedUpdate(), true, 'wasm and cpu have the fused kernel');
    const w0 = [0.5, -1.25, 2, 0.01, -0.3, 1.5];
    const grads = Array.from({ length: 5 }, (_, s) => w0.map((_, i) => Math.sin(3 * s + i) * (i + 1) * 0.7));
    const lr = 0.05;
    const variable = tf.variable(tf.tensor1d(w0));
    const optimizer = createOptimizer(spec, { fused });
    const before = tf.memory().numTensors;
    const kernels = new Set<string>();
    for (const g of grads) {
      const gt = tf.tensor1d(g);
      const info = await tf.profile(() => optimizer.apply([variable], [gt], lr));
      info.kernelNames.forEach((name) => kernels.add(name));
      gt.dispose();
    }
    t.is(kernels.has(FUSED_UPDATE), fused, `kernels run: ${[...kernels].join(', ')}`);
    // Only the optimizer's state slots (one tensor per slot and variable) may remain.
    t.is(tf.memory().numTensors - before, expectedSlots(spec));
    const got = Array.from(variable.dataSync());
    const want = reference(spec, w0, grads, lr);
    got.forEach((g, i) => t.true(Math.abs(g - want[i]!) <= 1e-5 * Math.max(1, Math.abs(want[i]!)), `w[${i}] ${g} vs ${want[i]}`));
    t.is(optimizer.iterations, 5);
    optimizer.dispose();
    variable.dispose();
  });
}

test('optimizer state round-trips: a restored optimizer continues exactly like the original', async (t) => {
  const spec = optimizerSpecSchema.parse({ name: 'adam', learningRate: 0.01 });
  const a = tf.variable(tf.tensor1d([1, 2, 3]));
  const b = tf.variable(tf.tensor1d([1, 2, 3]));
  const first = createOptimizer(spec);
  const g = tf.tensor1d([0.3, -0.2, 0.1]);
  first.apply([a], [g], 0.01);
  first.apply([a], [g], 0.01);
  const second = createOptimizer(spec);
  second.bind([b]);
  second.setState((await first.getState()));
  b.assign(a);
  first.apply([a], [g], 0.01);
  second.apply([b], [g], 0.01);
  t.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
  t.is(second.iterations, 3);
  [a, b, g].forEach((x) => x.dispose());
  first.dispose();
  second.dispose();
});

test('optimizers leave no tensors behind once their slots exist', (t) => {
  const v = tf.variable(tf.randomNormal([8, 4]));
  const optimizer = createOptimizer(optimizerSpecSchema.parse({ name: 'rmsprop', momentum: 0.9 }));
  const g = tf.randomNormal([8, 4]);
  optimizer.apply([v], [g], 0.01);
  const after1 = tf.memory().numTensors;
  for (let i = 0; i < 20; i++) optimizer.apply([v], [g], 0.01);
  t.is(tf.memory().numTensors, after1);
  optimizer.dispose();
  t.is(tf.memory().numTensors, after1 - 2);
  v.dispose();
  g.dispose();
});

test('learning-rate schedules: constant, step, cosine and linear warmup', (t) => {
  const ctx = { baseRate: 0.1, stepsPerEpoch: 10, totalSteps: 100 };
  t.is(learningRateAt({ type: 'constant', warmupEpochs: 0 }, 55, ctx), 0.1);
  t.is(learningRateAt({ type: 'step', everyEpochs: 3, gamma: 0.5, warmupEpochs: 0 }, 29, ctx), 0.1);
  t.is(learningRateAt({ type: 'step', everyEpochs: 3, gamma: 0.5, warmupEpochs: 0 }, 30, ctx), 0.05);
  t.is(learningRateAt({ type: 'step', everyEpochs: 3, gamma: 0.5, warmupEpochs: 0 }, 60, ctx), 0.025);
  const cosine = { type: 'cosine', minFactor: 0.1, warmupEpochs: 0 } as const;
  t.is(learningRateAt(cosine, 0, ctx), 0.1);
  t.true(Math.abs(learningRateAt(cosine, 50, ctx) - 0.055) < 1e-12);
  t.true(Math.abs(learningRateAt(cosine, 100, ctx) - 0.01) < 1e-12);
  const warm = { type: 'cosine', minFactor: 0, warmupEpochs: 1 } as const;
  t.true(Math.abs(learningRateAt(warm, 0, ctx) - 0.01) < 1e-12);
  t.true(Math.abs(learningRateAt(warm, 9, ctx) - 0.1) < 1e-12);
  t.true(learningRateAt(warm, 10, ctx) <= 0.1);
  t.true(learningRateAt(warm, 99, ctx) < 0.001);
});
