import test, { type ExecutionContext } from 'ava';
import * as tf from '@tensorflow/tfjs';
import type { Batch, Dataset, DataSplit } from '../src/data/types.ts';
import type { SampledBatch } from '../src/data/sampler.ts';
import { InProcessEngine } from '../src/job/in-process-engine.ts';
import type { Job, JobInput } from '../src/job/job-file.ts';
import { jobModelSpec } from '../src/job/job-model-spec.ts';
import type { PhaseSetup } from '../src/job/job-runner.ts';
import { evaluateSplit } from '../src/job/split-evaluation.ts';
import { SharedGradients } from '../src/launch/replica-threads/shared-gradients.ts';
import { ThreadReplicas } from '../src/launch/replica-threads/thread-replicas.ts';
import type { ThreadsEngine } from '../src/launch/replica-threads/threads-engine.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildReplicaModel } from '../src/model/replica-model.ts';
import { readWeights } from '../src/model/weights.ts';
import { Trainer } from '../src/train/trainer.ts';
import { eventSink } from './helpers/event-sink.ts';
import { smallFashionMnist, tempDir, testJob } from './helpers/cluster.ts';

// `drover train --workers N`: N replica threads of one process, gradients averaged in shared memory.

test.before(async () => {
  await initBackend('wasm');
});

type ModelInput = NonNullable<JobInput['model']>;
const NO_DROPOUT: ModelInput = { layers: [{ type: 'flatten' as const }, { type: 'dense' as const, units: 32, activation: 'relu' as const }] };
const WITH_DROPOUT: ModelInput = { layers: [{ type: 'flatten' as const }, { type: 'dense' as const, units: 32, activation: 'relu' as const }, { type: 'dropout' as const, rate: 0.3 }] };

interface Harness {
  job: Job;
  dataset: Dataset;
  trainer: Trainer;
  setup: PhaseSetup;
  sink: ReturnType<typeof eventSink>;
}

/** A job's model and trainer built here (as runJob does), ready for a phase on some engine. */
async function harness(t: ExecutionContext, model: ModelInput, optimizer = { name: 'sgd' as const, learningRate: 0.1 }): Promise<Harness> {
  const dir = await tempDir(t);
  const job = testJob(dir, { model, train: { epochs: 1, batchSize: 32, logEvery: 1, optimizer } });
  const dataset = await smallFashionMnist(256, 0, 256);
  const built = await buildReplicaModel(jobModelSpec(job, dataset, null));
  t.teardown(() => built.dispose());
  const trainer = new Trainer(built, { optimizer: job.train.optimizer });
  t.teardown(() => trainer.optimizer.dispose());
  const setup: PhaseSetup = { index: 0, phase: { epochs: 1, learningRate: optimizer.learningRate, trainableFrom: null }, phaseStart: { step: 0, epoch: 0 }, trainer, resume: undefined };
  return { job, dataset, trainer, setup, sink: eventSink() };
}

async function threadEngine(t: ExecutionContext, h: Harness, replicas: number): Promise<ThreadsEngine> {
  const threads = ThreadReplicas.start({ replicas, job: h.job, dataset: h.dataset, log: h.sink.log, backend: 'wasm' });
  t.teardown(() => threads.close());
  return threads.open(h.setup);
}

function batches(count: number, size: number): SampledBatch[] {
  return Array.from({ length: count }, (_, b) => ({ indices: Array.from({ length: size }, (_, i) => (b * size + i * 7) % 256), epoch: 0 }) as unknown as SampledBatch);
}

async function steps(engine: { step: InProcessEngine['step'] }, list: SampledBatch[], lr: number): Promise<void> {
  for (const [i, batch] of list.entries()) {
    const outcome = await engine.step(batch, { step: i + 1, epoch: 1, lr });
    if (outcome.kind !== 'applied') throw new Error(`step ${i + 1}: ${outcome.kind}`);
  }
}

function maxDifference(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let worst = 0;
  a.forEach((values, i) => values.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i]![j]!)))));
  return worst;
}

test.serial('2 replica threads x 32 samples take the same steps as one process on 64 (within 1e-5)', async (t) => {
  const threaded = await harness(t, NO_DROPOUT);
  const single = await harness(t, NO_DROPOUT);
  // Both start from the same weights.
  const start = await readWeights(threaded.trainer.model);
  single.trainer.model.setWeights(start.values.map((v, i) => tf.tensor(v, start.manifest[i]!.shape)));
  const engine = await threadEngine(t, threaded, 2);
  const list = batches(5, 64);
  await steps(engine, list, 0.1);
  await steps(new InProcessEngine(single.trainer, single.dataset.train, 10), list, 0.1);
  const expected = (await readWeights(single.trainer.model)).values;
  const difference = maxDifference((await engine.weights()).values, expected);
  t.true(difference < 1e-5, `largest difference ${difference}`);
  t.true(maxDifference(start.values, expected) > 1e-3, 'the steps moved the weights');
});

test.serial('every replica holds the same weights after each step, and a rerun gives them bit for bit', async (t) => {
  const run = async (): Promise<Float32Array[]> => {
    const h = await harness(t, WITH_DROPOUT, { name: 'adam' as never, learningRate: 0.01 });
    const engine = await threadEngine(t, h, 3);
    await steps(engine, batches(4, 48), 0.01);
    const [a, b, c] = await Promise.all([0, 1, 2].map((rank) => engine.replicaWeights(rank)));
    t.is(maxDifference(a!, b!), 0);
    t.is(maxDifference(a!, c!), 0);
    return a!;
  };
  const first = await run();
  const second = await run();
  t.deepEqual(first.map((w) => Buffer.from(w.buffer, w.byteOffset, w.byteLength).toString('base64')), second.map((w) => Buffer.from(w.buffer, w.byteOffset, w.byteLength).toString('base64')));
});

/** The training split with every loaded batch changed by `poison`. */
function poisoned(train: DataSplit, poison: (batch: Batch) => Batch): DataSplit {
  return { length: train.length, label: (i) => train.label(i), loadBatch: async (indices, options) => poison(await train.loadBatch(indices, options)) };
}

test.serial('a replica thread that dies mid-step fails the step on every replica at once: no hang', async (t) => {
  t.timeout(60_000);
  const h = await harness(t, NO_DROPOUT);
  const engine = await threadEngine(t, h, 2);
  await steps(engine, batches(1, 64), 0.1);
  const stepping = engine.step(batches(1, 64)[0]!, { step: 2, epoch: 1, lr: 0.1 });
  // Replica 1 dies; replica 0 computes its part and would wait for it at the barrier for ever.
  engine.killReplica(1);
  const error = await t.throwsAsync(stepping);
  t.is((error as { code?: string }).code, 'DROVER_ERR_REPLICA_THREAD');
  // And the engine stays failed: a later step is refused at once rather than hanging.
  await t.throwsAsync(engine.step(batches(1, 64)[0]!, { step: 3, epoch: 1, lr: 0.1 }), { message: /replica thread 1 exited|abandoned/ });
});

test.serial('a batch whose pixels do not fill its shape is refused before any thread computes', async (t) => {
  const h = await harness(t, NO_DROPOUT);
  const train = poisoned(h.dataset.train, (batch) => ({ ...batch, x: batch.x.slice(0, batch.x.length - 784) }));
  const engine = await threadEngine(t, { ...h, dataset: { ...h.dataset, train } }, 2);
  const error = await t.throwsAsync(engine.step(batches(1, 64)[0]!, { step: 1, epoch: 1, lr: 0.1 }));
  t.is((error as { code?: string }).code, 'DROVER_ERR_DATASET');
});

test.serial('a non-finite gradient is refused on every replica alike: weights unchanged, update_refused logged', async (t) => {
  const h = await harness(t, NO_DROPOUT);
  // NaN pixels in replica 0's rows: relu keeps its loss finite, but its gradient is NaN.
  const train = poisoned(h.dataset.train, (batch) => {
    batch.x.fill(Number.NaN, 0, 784);
    return batch;
  });
  const engine = await threadEngine(t, { ...h, dataset: { ...h.dataset, train } }, 2);
  const before = await engine.weights();
  const outcome = await engine.step(batches(1, 64)[0]!, { step: 1, epoch: 1, lr: 0.1 });
  t.is(outcome.kind, 'refused');
  t.is(maxDifference((await engine.weights()).values, before.values), 0);
  t.is(maxDifference(await engine.replicaWeights(1), before.values), 0);
  const refused = h.sink.events.filter((e) => e.event === 'update_refused');
  t.is(refused.length, 1);
  t.deepEqual(refused[0]!.workers, ['replica-0', 'replica-1']);
});

test.serial('a refused step leaves every replica with the statistics it had: batch norm does not drift apart', async (t) => {
  const h = await harness(t, { layers: [{ type: 'flatten' }, { type: 'dense', units: 16 }, { type: 'batchNorm' }, { type: 'activation', activation: 'relu' }] });
  const engine = await threadEngine(t, h, 2);
  await steps(engine, batches(1, 64), 0.1);
  const before = await engine.weights();
  // Huge (finite) pixels in replica 0's rows: its batch variance overflows, so its statistics
  // and the sum are not finite and the step is refused.
  const train = poisoned(h.dataset.train, (batch) => {
    batch.x.fill(1e30, 0, 784);
    return batch;
  });
  // A second set of threads on the poisoned data, starting from the first set's weights.
  const poisonedThreads = ThreadReplicas.start({ replicas: 2, job: h.job, dataset: { ...h.dataset, train }, log: h.sink.log, backend: 'wasm' });
  t.teardown(() => poisonedThreads.close());
  h.trainer.model.setWeights(before.values.map((v, i) => tf.tensor(v, before.manifest[i]!.shape)));
  const second = await poisonedThreads.open(h.setup);
  const outcome = await second.step(batches(1, 64)[0]!, { step: 2, epoch: 1, lr: 0.1 });
  t.is(outcome.kind, 'refused');
  for (const rank of [0, 1]) t.is(maxDifference(await second.replicaWeights(rank), before.values), 0, `replica ${rank}`);
});

test.serial('replica threads leak no tensors over steps and evaluations', async (t) => {
  const h = await harness(t, WITH_DROPOUT);
  const engine = await threadEngine(t, h, 2);
  await steps(engine, batches(2, 64), 0.1);
  await engine.evaluate('test', h.dataset.test!, 1);
  const before = await engine.tensorCounts();
  await steps(engine, batches(6, 64), 0.1);
  await engine.evaluate('test', h.dataset.test!, 1);
  t.deepEqual(await engine.tensorCounts(), before);
});

test.serial('the threads evaluate a split as one process does on the same weights', async (t) => {
  const h = await harness(t, NO_DROPOUT);
  const engine = await threadEngine(t, h, 2);
  await steps(engine, batches(3, 64), 0.1);
  await engine.settle();
  const threaded = await engine.evaluate('test', h.dataset.test!, 1);
  const single = await evaluateSplit(h.trainer, h.dataset.test!, 10, { batchSize: 64 });
  t.is(threaded.n, 256);
  t.is(threaded.accuracy, single.accuracy);
  t.deepEqual(threaded.confusion, single.confusion);
  t.true(Math.abs(threaded.loss - single.loss) < 1e-6);
});

test('shared gradients: ranges cover the vector, sums follow rank order, the first non-finite sum is found', (t) => {
  for (const replicas of [1, 2, 3]) {
    const shared = SharedGradients.allocate(10, replicas);
    const ranges = Array.from({ length: replicas }, (_, r) => shared.range(r));
    t.deepEqual(ranges.map((r) => r.end - r.start).reduce((a, b) => a + b, 0), 10);
    ranges.slice(1).forEach((r, i) => t.is(r.start, ranges[i]!.end));
    // Values whose float32 sum depends on the order: (1e8 + 1) - 1e8 is 0, not 1.
    const parts = [Float32Array.of(1e8, ...new Array(9).fill(1)), Float32Array.of(1, ...new Array(9).fill(2)), Float32Array.of(-1e8, ...new Array(9).fill(3))];
    for (let r = 0; r < replicas; r++) shared.writeScaled(r, [parts[r]!], 1);
    for (let r = 0; r < replicas; r++) t.is(shared.reduceRange(r), -1);
    const expected = new Float32Array(10);
    for (let r = 0; r < replicas; r++) for (let j = 0; j < 10; j++) expected[j] = Math.fround(expected[j]! + parts[r]![j]!);
    t.deepEqual(Array.from(shared.sum), Array.from(expected), `${replicas} replicas`);
    shared.writeScaled(replicas - 1, [Float32Array.of(...new Array(7).fill(0), Number.POSITIVE_INFINITY, Number.NaN, 0)], 1);
    const owner = ranges.findIndex((r) => r.start <= 7 && 7 < r.end);
    t.is(shared.reduceRange(owner), 7);
  }
  t.throws(() => SharedGradients.allocate(4, 2).writeScaled(0, [new Float32Array(3)], 1), { instanceOf: RangeError });
});
