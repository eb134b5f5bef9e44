import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { TrainingError } from '../src/errors.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { createOptimizer, optimizerSpecSchema } from '../src/train/optimizers.ts';
import { Trainer } from '../src/train/trainer.ts';
import { learnableBatch } from './helpers/batches.ts';
import { optimizerRefusesOverflow, trainerReadsOnlyWhenVerified, trainerRefusesOverflow } from './helpers/refused-update.ts';

// The verified optimizer step (taken when a step's gradients could overflow float32) reads its
// finiteness flags asynchronously, so it behaves alike on every backend; webgpu runs the same
// cases in webgpu.test.ts. Serial: each test switches the process's backend.

function makeTrainer(): Trainer {
  const model = buildScratchModel({ layers: [{ type: 'flatten' }, { type: 'dense', units: 8 }], inputShape: [4, 4, 1], classes: 3, seed: 4 });
  return new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 0.01 }) });
}

for (const backend of ['cpu', 'wasm'] as const) {
  test.serial(`${backend}: a verified optimizer step that would overflow a slot or a weight writes nothing`, async (t) => {
    await initBackend(backend);
    await optimizerRefusesOverflow(t);
  });

  test.serial(`${backend}: Trainer.applyGradients refuses a step that would overflow Adam's second moment and writes nothing`, async (t) => {
    await initBackend(backend);
    const trainer = makeTrainer();
    t.teardown(() => {
      trainer.model.dispose();
      trainer.optimizer.dispose();
    });
    const { grads } = await trainer.computeGradients(learnableBatch(8, [4, 4, 1], 3, 1));
    await trainerRefusesOverflow(t, trainer, grads);
  });

  test.serial(`${backend}: an ordinary applyGradients step reads nothing back; a verified one reads once`, async (t) => {
    await initBackend(backend);
    const trainer = makeTrainer();
    t.teardown(() => {
      trainer.model.dispose();
      trainer.optimizer.dispose();
    });
    const { grads } = await trainer.computeGradients(learnableBatch(8, [4, 4, 1], 3, 2));
    await trainerReadsOnlyWhenVerified(t, trainer, grads);
    t.is(trainer.optimizer.iterations, 2);
  });
}

test.serial('a step, restore or dispose while a verified step awaits its read is refused, not interleaved', async (t) => {
  await initBackend('wasm');
  const w = tf.tidy(() => tf.variable(tf.tensor1d([1, 2, 3])));
  const g = tf.tensor1d([0.1, 0.2, 0.3]);
  const optimizer = createOptimizer(optimizerSpecSchema.parse({ name: 'adam' }));
  t.teardown(() => {
    optimizer.dispose();
    tf.dispose([w, g]);
  });
  const pending = optimizer.applyVerified([w], [g], 0.001);
  t.throws(() => optimizer.apply([w], [g], 0.001), { instanceOf: TrainingError, message: /verified step/ });
  await t.throwsAsync(optimizer.applyVerified([w], [g], 0.001), { instanceOf: TrainingError });
  t.throws(() => optimizer.setState({ iterations: 0, slots: [] }), { instanceOf: TrainingError });
  t.throws(() => optimizer.dispose(), { instanceOf: TrainingError });
  await pending;
  t.is(optimizer.iterations, 1);
  optimizer.apply([w], [g], 0.001);
  t.is(optimizer.iterations, 2);
  // No variables: nothing to check, the step still counts (as apply's does).
  const empty = createOptimizer(optimizerSpecSchema.parse({ name: 'sgd' }));
  await empty.applyVerified([], [], 0.01);
  t.is(empty.iterations, 1);
  empty.dispose();
});
