import test from 'ava';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { runWithLocalWorkers } from '../src/launch/local-workers.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { loadModel } from '../src/model/export.ts';
import type { LayerSpecInput } from '../src/model/layer-spec.ts';
import { readWeights, type WeightSet } from '../src/model/weights.ts';
import { compareUpdates, EventSink, sinkLogger, tempDir, testJob } from './helpers/cluster.ts';

test.before(async () => {
  await initBackend('wasm');
});

// No dropout: with equal shards, a run's update is a function of its batches and of the wire alone.
const layers: LayerSpecInput[] = [{ type: 'flatten' }, { type: 'dense', units: 64, activation: 'relu' }];
const data = { kind: 'idx' as const, dir: FASHION_MNIST_DIR, limitTrain: 64 * 8 + 128, validationSize: 128, limitTest: 128 };
const SEED = 5;

/** One epoch of 8 steps with two local worker processes, gradients sent as `wire`; the saved weights. */
async function train(t: Parameters<typeof tempDir>[0], wire: 'fp32' | 'bf16'): Promise<{ weights: WeightSet; accuracy: number; lastLoss: number }> {
  const dir = await tempDir(t);
  const sink = new EventSink();
  const result = await runWithLocalWorkers({
    job: testJob(dir, {
      seed: SEED,
      data,
      model: { layers },
      train: { epochs: 1, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.1 } },
      cluster: { minWorkers: 2, balance: 'equal', wire },
    }),
    workers: 2,
    log: sinkLogger(sink),
  });
  t.is(result.status, 'completed', wire);
  t.is(result.steps, 8, wire);
  const steps = sink.events('step');
  t.true(steps.every((s) => (s.workers as unknown[]).length === 2), `${wire}: every step computed by both workers`);
  const saved = await loadModel(result.modelDir!);
  const weights = await readWeights(saved.model);
  saved.model.dispose();
  return { weights, accuracy: result.test!.accuracy, lastLoss: steps.at(-1)!.loss as number };
}

test.serial('cluster.wire bf16: worker processes send bf16 gradients and training ends within bf16 precision of fp32', async (t) => {
  const fp32 = await train(t, 'fp32');
  const bf16 = await train(t, 'bf16');
  // The starting weights both runs had (the job's model, seeded).
  const initial = buildScratchModel({ layers, inputShape: [28, 28, 1], classes: 10, l2: 0, seed: SEED });
  const start = await readWeights(initial);
  initial.dispose();
  let worst = 0;
  for (const weight of compareUpdates(start, bf16.weights, fp32.weights)) {
    t.true(weight.moved, `${weight.name} trained`);
    worst = Math.max(worst, weight.error);
  }
  t.log(`largest relative difference of a weight's 8-step update, bf16 vs fp32: ${worst.toExponential(2)}; final loss ${bf16.lastLoss.toFixed(4)} vs ${fp32.lastLoss.toFixed(4)}; test accuracy ${bf16.accuracy} vs ${fp32.accuracy}`);
  // Not identical: the gradients really went as bf16 (equal shards make an fp32 run repeat exactly).
  t.true(worst > 0, 'bf16 rounded the gradients');
  // bf16 moves each gradient value by at most 2^-8 (0.4 %); through 8 steps of a ReLU network the
  // first layer's update differs by about 0.6 % here. 2 % leaves room for other backends' rounding
  // and still catches values decoded wrong or out of place.
  t.true(worst < 2e-2, `relative difference ${worst}`);
  t.true(Math.abs(bf16.lastLoss - fp32.lastLoss) <= 1e-2 * fp32.lastLoss, `final loss ${bf16.lastLoss} vs ${fp32.lastLoss}`);
});
