import type { ExecutionContext } from 'ava';
import * as tf from '@tensorflow/tfjs';
import { NonFiniteUpdateError } from '../../src/errors.ts';
import { readFloat32 } from '../../src/model/tensor-read.ts';
import { readWeights } from '../../src/model/weights.ts';
import { createOptimizer, optimizerSpecSchema, type Optimizer } from '../../src/train/optimizers.ts';
import type { Trainer } from '../../src/train/trainer.ts';

// The refused-update cases, run on whichever tfjs backend is active (cpu, wasm, webgpu): every
// read is asynchronous, so the same checks hold where a synchronous read would throw.

/** Finite in float32, but its square (Adam's second moment) and twice it are not. */
export const HUGE = 3e37;

/** Weights and optimizer state, read back, to compare before and after a refused step. */
async function snapshot(vars: readonly tf.Variable[], optimizer: Optimizer): Promise<{ weights: number[][]; state: unknown }> {
  const weights = (await readFloat32(vars)).map((v) => Array.from(v));
  const { iterations, slots } = await optimizer.getState();
  return { weights, state: { iterations, slots: slots.map((s) => ({ name: s.name, values: Array.from(s.values) })) } };
}

/**
 * Optimizer level: a verified step that is finite is written; one that would overflow a slot
 * (Adam's v) or a weight (SGD) rejects with NonFiniteUpdateError naming it, and weights, slots
 * and the iteration count stay as they were. No tensor outlives the case.
 */
export async function optimizerRefusesOverflow(t: ExecutionContext): Promise<void> {
  const before = tf.memory().numTensors;
  const cases = [
    { spec: { name: 'adam', learningRate: 0.001 }, start: [1, 2, 3], huge: [HUGE, 0, 0], target: /^slot v\/0/ },
    // w - lr * g = 3e38 + 3e38 overflows the weight itself (no slot: plain SGD).
    { spec: { name: 'sgd', learningRate: 1 }, start: [3e38, 0, 0], huge: [-3e38, 0, 0], target: /^weight / },
  ] as const;
  // Both ways of computing an update: the fused kernel (wasm, cpu) and the separate tfjs ops
  // (webgpu, or fused: false); where the backend has no fused kernel both take the ops.
  for (const [c, fused] of cases.flatMap((c) => [[c, true], [c, false]] as const)) {
    const spec = optimizerSpecSchema.parse(c.spec);
    const w = tf.tidy(() => tf.variable(tf.tensor1d([...c.start])));
    const optimizer = createOptimizer(spec, { fused });
    const small = tf.tensor1d([0.1, 0.2, 0.3]);
    const huge = tf.tensor1d([...c.huge]);
    try {
      const first = await snapshot([w], optimizer);
      await optimizer.applyVerified([w], [small], spec.learningRate);
      const accepted = await snapshot([w], optimizer);
      t.is(optimizer.iterations, 1, `${spec.name} (fused ${fused}): the finite verified step counts`);
      t.notDeepEqual(accepted.weights, first.weights, `${spec.name} (fused ${fused}): the finite verified step is written`);
      const error = await t.throwsAsync(optimizer.applyVerified([w], [huge], spec.learningRate), { instanceOf: NonFiniteUpdateError });
      t.regex(error!.target, c.target, `${spec.name} (fused ${fused})`);
      t.is(error!.code, 'DROVER_ERR_NON_FINITE_UPDATE');
      t.deepEqual(await snapshot([w], optimizer), accepted, `${spec.name} (fused ${fused}): the refused step wrote nothing`);
      t.is(optimizer.iterations, 1);
      // The optimizer is usable again after a refusal.
      await optimizer.applyVerified([w], [small], spec.learningRate);
      t.is(optimizer.iterations, 2);
    } finally {
      tf.dispose([small, huge]);
      optimizer.dispose();
      w.dispose();
    }
  }
  t.is(tf.memory().numTensors, before, 'no tensor leaked by verified or refused steps');
}

/**
 * Trainer level, as the coordinator calls it: averaged gradients with one huge value make
 * applyGradients reject with NonFiniteUpdateError; no weight, slot or count changes and no tensor
 * is left behind. The trainer must use Adam (its second moment is what overflows).
 */
export async function trainerRefusesOverflow(t: ExecutionContext, trainer: Trainer, grads: readonly Float32Array[]): Promise<void> {
  const vars = trainer.model.trainableWeights.map((w) => w.read() as tf.Variable);
  // One ordinary step first, so that slots exist and hold values the refusal must keep.
  await trainer.applyGradients(grads, 0.01);
  const tensors = tf.memory().numTensors;
  const weightsBefore = (await readWeights(trainer.model)).values.map((v) => Array.from(v));
  const before = await snapshot(vars, trainer.optimizer);
  const poisoned = grads.map((g) => g.slice());
  poisoned[0]![0] = HUGE;
  const error = await t.throwsAsync(trainer.applyGradients(poisoned, 0.01), { instanceOf: NonFiniteUpdateError });
  t.regex(error!.target, /^slot v\/0 /);
  t.deepEqual(await snapshot(vars, trainer.optimizer), before, 'the refused step changed no weight or slot');
  t.deepEqual((await readWeights(trainer.model)).values.map((v) => Array.from(v)), weightsBefore);
  t.is(trainer.optimizer.iterations, 1);
  t.is(tf.memory().numTensors, tensors, 'no tensor leaked by the refused step');
  // Training goes on after a refusal.
  await trainer.applyGradients(grads, 0.01);
  t.is(trainer.optimizer.iterations, 2);
  t.is(tf.memory().numTensors, tensors);
}

/**
 * Trainer level: an ordinary applyGradients step reads nothing back; one whose gradients are
 * large enough to be verified (1e11: above the threshold, finite after the update) reads its
 * flags once. Takes two steps.
 */
export async function trainerReadsOnlyWhenVerified(t: ExecutionContext, trainer: Trainer, grads: readonly Float32Array[]): Promise<void> {
  const ordinary = await countingReads(() => trainer.applyGradients(grads, 0.01));
  t.is(ordinary.reads, 0, 'the common path adds no read per step');
  const large = grads.map((g) => g.slice());
  large[0]![0] = 1e11;
  const verified = await countingReads(() => trainer.applyGradients(large, 0.01));
  t.is(verified.reads, 1, 'the verified path reads its flags once');
}

/**
 * Calls fn with the active backend's reads counted; returns fn's result and the count. One
 * `t.data()` is one read: cpu and wasm serve `read` by calling their own `readSync`, which is
 * not counted again.
 */
export async function countingReads<T>(fn: () => Promise<T>): Promise<{ result: T; reads: number }> {
  const backend = tf.backend() as unknown as { read: (...a: unknown[]) => unknown; readSync: (...a: unknown[]) => unknown };
  const { read, readSync } = backend;
  let reads = 0;
  let inRead = false;
  backend.read = (...a) => {
    reads++;
    inRead = true;
    try {
      return read.apply(backend, a);
    } finally {
      inRead = false;
    }
  };
  backend.readSync = (...a) => {
    if (!inRead) reads++;
    return readSync.apply(backend, a);
  };
  try {
    return { result: await fn(), reads };
  } finally {
    backend.read = read;
    backend.readSync = readSync;
  }
}
