import test from 'ava';
import { Sampler, type SampledBatch } from '../src/data/sampler.ts';
import type { DataSplit } from '../src/data/types.ts';
import { parseJob } from '../src/job/job-file.ts';
import type { StepContext, StepEngine, StepOutcome } from '../src/job/step-engine.ts';
import { runTrainingLoop, type TrainingLoopOptions, type TrainingProgress } from '../src/job/training-loop.ts';
import { isAdaptiveOptimizer } from '../src/train/optimizers.ts';
import { batchScale, scalingRuleFor } from '../src/train/schedule.ts';
import { eventSink } from './helpers/event-sink.ts';

// A per-worker batch (cluster.batch): batches of varying size from the sampler, the loop drawing
// each step's global batch for the live replicas, and the learning rate scaled with it.

const allIds = (length: number): number[] => Array.from({ length }, (_, i) => i);
const sorted = (ids: Iterable<number>): number[] => [...ids].sort((a, b) => a - b);

test('batches of varying size cover every sample exactly once per epoch; the last is what is left', (t) => {
  const sampler = new Sampler({ length: 50, batchSize: 8, seed: 3 });
  const sizes = [8, 16, 24, 8, 16, 24, 8];
  const epochs = new Map<number, SampledBatch[]>();
  for (let i = 0; epochs.size < 3 || sampler.position.epoch < 3; i++) {
    const batch = sampler.next(sizes[i % sizes.length]);
    if (batch.epoch >= 3) break;
    (epochs.get(batch.epoch) ?? epochs.set(batch.epoch, []).get(batch.epoch)!).push(batch);
  }
  for (const [epoch, batches] of epochs) {
    t.deepEqual(sorted(batches.flatMap((b) => [...b.indices])), allIds(50), `epoch ${epoch}: each sample once`);
    t.deepEqual(batches.map((b) => b.step), batches.map((_, i) => i), `epoch ${epoch}: steps count batches`);
    const offsets = batches.map((b) => b.offset);
    t.deepEqual(offsets, batches.map((_, i) => batches.slice(0, i).reduce((s, b) => s + b.indices.length, 0)));
  }
  // 50 = 8 + 16 + 24 + 2: the last batch of epoch 0 is the 2 left, not a full 8.
  t.deepEqual(epochs.get(0)!.map((b) => b.indices.length), [8, 16, 24, 2]);
});

test('a sampler resumed from any position of varying batches continues exactly, sample for sample', (t) => {
  const sizes = [8, 16, 24, 8, 40];
  const reference = new Sampler({ length: 57, batchSize: 8, seed: 9 });
  const positions = [reference.position];
  const batches: SampledBatch[] = [];
  for (let i = 0; i < 20; i++) {
    batches.push(reference.next(sizes[i % sizes.length]));
    positions.push(reference.position);
  }
  // A position whose step cannot be derived from offset / batchSize carries it.
  t.true(positions.some((p) => p.step !== undefined));
  for (let from = 0; from < 20; from++) {
    const saved = JSON.parse(JSON.stringify(positions[from]));
    const resumed = new Sampler({ length: 57, batchSize: 8, seed: 9, position: saved });
    for (let i = from; i < 20; i++) {
      const batch = resumed.next(sizes[i % sizes.length]);
      t.deepEqual([batch.epoch, batch.step, batch.offset, [...batch.indices]], [batches[i]!.epoch, batches[i]!.step, batches[i]!.offset, [...batches[i]!.indices]], `resumed at batch ${from}, batch ${i}`);
    }
  }
  // A fixed batch keeps its old two-field position (checkpoints of earlier versions read alike).
  const fixed = new Sampler({ length: 57, batchSize: 8, seed: 9 });
  fixed.next();
  fixed.next();
  t.deepEqual(fixed.position, { epoch: 0, offset: 16 });
});

test('linear scaling with gradual warm-up (Goyal et al. 2017): from the base rate to k times it over the warm-up epochs', (t) => {
  const scaling = { rule: 'linear', referenceBatch: 256, warmupEpochs: 5 } as const;
  t.is(batchScale(256 * 8, 0, scaling), 1, 'the warm-up starts at the rate tuned for the reference batch');
  t.is(batchScale(256 * 8, 2.5, scaling), 4.5, 'halfway: halfway from 1 to 8');
  t.is(batchScale(256 * 8, 5, scaling), 8, 'after the warm-up: k = global / reference');
  t.is(batchScale(256 * 8, 40, scaling), 8);
  t.is(batchScale(256, 1, scaling), 1, 'the reference batch is never scaled');
  t.is(batchScale(128, 10, scaling), 0.5, 'a smaller batch scales down');
  t.is(batchScale(512, 0, { ...scaling, warmupEpochs: 0 }), 2, 'no warm-up: k at once');
});

test('square-root scaling with gradual warm-up (Malladi et al. 2022): from the base rate to sqrt(k) times it over the warm-up epochs', (t) => {
  const scaling = { rule: 'sqrt', referenceBatch: 64, warmupEpochs: 5 } as const;
  t.is(batchScale(64 * 4, 0, scaling), 1, 'the warm-up starts at the rate tuned for the reference batch');
  t.is(batchScale(64 * 4, 2.5, scaling), 1.5, 'halfway: halfway from 1 to sqrt(4) = 2');
  t.is(batchScale(64 * 4, 5, scaling), 2, 'after the warm-up: sqrt(global / reference)');
  t.is(batchScale(64 * 16, 40, scaling), 4);
  t.is(batchScale(64 * 2, 7, scaling), Math.SQRT2);
  t.is(batchScale(64, 1, scaling), 1, 'the reference batch is never scaled');
  t.is(batchScale(16, 10, scaling), 0.5, 'a smaller batch scales down: sqrt(1/4)');
  t.is(batchScale(64 * 9, 0, { ...scaling, warmupEpochs: 0 }), 3, 'no warm-up: sqrt(k) at once');
});

test('scaleLearningRate true picks the rule by optimizer: square root for the adaptive ones, linear for SGD; a named rule or false overrides', (t) => {
  const expected = { sgd: 'linear', momentum: 'linear', adam: 'sqrt', rmsprop: 'sqrt' } as const;
  for (const name of Object.keys(expected) as (keyof typeof expected)[]) {
    t.is(scalingRuleFor(true, isAdaptiveOptimizer(name)), expected[name], name);
    t.is(scalingRuleFor('linear', isAdaptiveOptimizer(name)), 'linear', `${name}, linear asked`);
    t.is(scalingRuleFor('sqrt', isAdaptiveOptimizer(name)), 'sqrt', `${name}, sqrt asked`);
    t.is(scalingRuleFor(false, isAdaptiveOptimizer(name)), undefined, `${name}, no scaling`);
  }
});

test('cluster.batch: perWorker required, warm-up 5 epochs and scaling on by default, unknown fields refused', (t) => {
  const job = parseJob({ cluster: { batch: { perWorker: 64 } } });
  t.deepEqual(job.cluster!.batch, { perWorker: 64, warmupEpochs: 5, scaleLearningRate: true });
  t.is(parseJob({}).cluster, undefined, 'absent: the fixed global batch of train.batchSize');
  t.throws(() => parseJob({ cluster: { batch: {} } }), { message: /cluster\.batch\.perWorker/ });
  t.throws(() => parseJob({ cluster: { batch: { perWorker: 8, perworker: 8 } } }), { message: /unknown field/ });
  t.throws(() => parseJob({ cluster: { batch: { perWorker: 0 } } }), { message: /cluster\.batch\.perWorker/ });
  // The rule by name, or true / false as job files before the rules were named wrote it.
  for (const scaleLearningRate of [true, false, 'linear', 'sqrt'] as const) t.is(parseJob({ cluster: { batch: { perWorker: 8, scaleLearningRate } } }).cluster!.batch!.scaleLearningRate, scaleLearningRate);
  t.throws(() => parseJob({ cluster: { batch: { perWorker: 8, scaleLearningRate: 'cubic' } } }), { message: /cluster\.batch\.scaleLearningRate/ });
});

// ---- the loop over an engine whose replicas change ----

const split = (length: number): DataSplit => ({
  length,
  label: (i) => i % 2,
  loadBatch: async () => {
    throw new Error('the loop never loads samples itself');
  },
});

/** An engine whose live replicas the test sets as steps go by; it records each step's batch. */
class ChangingCluster implements StepEngine {
  readonly steps: { ctx: StepContext; batch: SampledBatch }[] = [];
  live: number;

  constructor(
    live: number,
    /** Replicas after a step (a worker joined or left while it ran). */
    private readonly after: (step: number, live: number) => number = (_, live) => live,
  ) {
    this.live = live;
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async step(batch: SampledBatch, ctx: StepContext): Promise<StepOutcome> {
    this.steps.push({ ctx, batch });
    this.live = this.after(ctx.step, this.live);
    const n = batch.indices.length;
    return { kind: 'applied', loss: 0.5, correct: n / 2, n, timing: { dataWaitMs: 0, computeMs: 1, transferMs: 0, reduceMs: 0, stepMs: 1 } };
  }

  replicas(): number {
    return this.live;
  }

  async evaluate(_split: 'validation' | 'test', data: DataSplit) {
    return { loss: 1, accuracy: 0.5, n: data.length, confusion: [[1, 0], [0, 1]] };
  }

  async weights() {
    return { manifest: [], values: [Float32Array.of(this.steps.length)] };
  }

  async setWeights(): Promise<void> {}

  async optimizerState() {
    return { iterations: this.steps.length, slots: [] };
  }

  discardPrefetched(): void {}
}

function loop(engine: StepEngine, overrides: Partial<TrainingLoopOptions> = {}): TrainingLoopOptions & { events: Record<string, unknown>[] } {
  const { log, events } = eventSink();
  return {
    engine,
    dataset: { train: split(40), classNames: ['a', 'b'] },
    epochs: 3,
    batchSize: 4,
    perWorker: { perWorker: 4 },
    seed: 5,
    schedule: { type: 'constant', warmupEpochs: 0 } as TrainingLoopOptions['schedule'],
    learningRate: 0.1,
    logEvery: 1,
    log,
    events,
    ...overrides,
  };
}

function idsByEpoch(steps: { batch: SampledBatch }[]): Map<number, number[]> {
  const byEpoch = new Map<number, number[]>();
  for (const { batch } of steps) (byEpoch.get(batch.epoch) ?? byEpoch.set(batch.epoch, []).get(batch.epoch)!).push(...batch.indices);
  return byEpoch;
}

test('the global batch is perWorker x the live replicas, changing at a step boundary; every sample once per epoch', async (t) => {
  // One worker; a second joins during step 3, a third during step 9, one leaves during step 14.
  const engine = new ChangingCluster(1, (step, live) => (step === 3 || step === 9 ? live + 1 : step === 14 ? live - 1 : live));
  const run = loop(engine);
  const result = await runTrainingLoop(run);
  t.is(result.status, 'completed');
  const sizes = engine.steps.map((s) => s.batch.indices.length);
  // The batch of a step is drawn when the step before begins (prefetch): a join during step 3 shows from step 5.
  t.deepEqual(sizes.slice(0, 6), [4, 4, 4, 4, 8, 8]);
  for (const [epoch, ids] of idsByEpoch(engine.steps)) t.deepEqual(sorted(ids), allIds(40), `epoch ${epoch}: each sample exactly once`);
  t.is(idsByEpoch(engine.steps).size, 3);
  // Step events: n is the global batch, stepInEpoch counts the epoch's steps, however many there were.
  const stepEvents = run.events.filter((e) => e.event === 'step');
  t.deepEqual(stepEvents.map((e) => e.n), sizes);
  for (const epoch of [1, 2, 3]) {
    const inEpoch = stepEvents.filter((e) => e.epoch === epoch);
    t.deepEqual(inEpoch.map((e) => e.stepInEpoch), inEpoch.map((_, i) => i + 1));
    t.is(inEpoch.reduce((s, e) => s + (e.n as number), 0), 40);
  }
  const epochStarts = run.events.filter((e) => e.event === 'epoch_start');
  t.is(epochStarts[0]!.steps, 10, 'estimated at the global batch of the epoch start (40 / 4)');
  t.is(run.events.filter((e) => e.event === 'epoch').length, 3);
});

test('learning rate: the schedule over samples seen, times the linear or square-root scale of the step\'s global batch, warmed up by epoch fraction', async (t) => {
  const engine = new ChangingCluster(2);
  const run = loop(engine, { epochs: 3, perWorker: { perWorker: 4, scaling: { rule: 'linear', referenceBatch: 4, warmupEpochs: 1 } } });
  await runTrainingLoop(run);
  const lrs = engine.steps.map((s) => s.ctx.lr);
  // Global batch 8 = 2 x the reference 4: k = 2, ramped from 1 over the first epoch (40 samples, 5 steps).
  const expected = [1, 1.2, 1.4, 1.6, 1.8, 2, 2, 2, 2, 2].map((f) => 0.1 * f);
  lrs.slice(0, 10).forEach((lr, i) => t.true(Math.abs(lr - expected[i]!) < 1e-12, `step ${i + 1}: ${lr} vs ${expected[i]}`));
  t.deepEqual(run.events.filter((e) => e.event === 'step').map((e) => e.lr), lrs, 'the step events show the rate used');
  // The square-root rule on 4 replicas: global batch 16 = 4 x the reference, sqrt(4) = 2, ramped
  // over the first epoch by the samples before each step (0, 16, 32 of 40); the epoch's last
  // batch is the 8 left, sqrt(2).
  const rooted = new ChangingCluster(4);
  await runTrainingLoop(loop(rooted, { epochs: 2, perWorker: { perWorker: 4, scaling: { rule: 'sqrt', referenceBatch: 4, warmupEpochs: 1 } } }));
  const rootedExpected = [1, 1 + 0.4, 1 + (Math.SQRT2 - 1) * 0.8, 2, 2, Math.SQRT2].map((f) => 0.1 * f);
  t.deepEqual(rooted.steps.map((s) => s.batch.indices.length), [16, 16, 8, 16, 16, 8]);
  rooted.steps.forEach((s, i) => t.true(Math.abs(s.ctx.lr - rootedExpected[i]!) < 1e-12, `sqrt, step ${i + 1}: ${s.ctx.lr} vs ${rootedExpected[i]}`));
  // Without scaling: the base rate whatever the batch.
  const plain = new ChangingCluster(3);
  await runTrainingLoop(loop(plain, { epochs: 1 }));
  t.true(plain.steps.every((s) => s.ctx.lr === 0.1));
  // A step schedule runs on epochs of samples: gamma applies after everyEpochs whatever the batch.
  const stepped = new ChangingCluster(1, (step, live) => (step === 2 ? 3 : live));
  await runTrainingLoop(loop(stepped, { epochs: 2, schedule: { type: 'step', everyEpochs: 1, gamma: 0.5, warmupEpochs: 0 } }));
  t.deepEqual([...new Set(stepped.steps.map((s) => `${s.batch.epoch}:${s.ctx.lr}`))], ['0:0.1', '1:0.05']);
  // An epoch that is not a whole number of reference batches (42 samples, reference 4: 11 steps
  // of the schedule, the last short): the decay still lands on the epoch's first step.
  const ragged = new ChangingCluster(1);
  await runTrainingLoop(loop(ragged, { epochs: 2, dataset: { train: split(42), classNames: ['a', 'b'] }, schedule: { type: 'step', everyEpochs: 1, gamma: 0.5, warmupEpochs: 0 } }));
  t.deepEqual([...new Set(ragged.steps.map((s) => `${s.batch.epoch}:${s.ctx.lr}`))], ['0:0.1', '1:0.05']);
});

test('resumed from any checkpoint of a changing cluster, no sample is repeated or skipped and each rate follows from the position', async (t) => {
  const membership = (step: number, live: number): number => (step === 2 || step === 7 ? live + 1 : step === 11 ? live - 2 : live);
  const reference = new ChangingCluster(1, membership);
  const saved: TrainingProgress[] = [];
  const scaling = { rule: 'linear', referenceBatch: 4, warmupEpochs: 2 } as const;
  await runTrainingLoop({ ...loop(reference, { checkpointEvery: 1, perWorker: { perWorker: 4, scaling } }), checkpoint: async (p) => void saved.push(structuredClone(p)) });
  t.true(saved.length > 10);
  const rate = (batch: SampledBatch): number => 0.1 * batchScale(batch.indices.length, (batch.epoch * 40 + batch.offset) / 40, scaling);
  for (const from of saved) {
    // The cluster at the resume has whatever workers it has: here, the reference's at that step.
    const live = reference.steps.find((s) => s.ctx.step === from.step + 1)?.batch.indices.length ?? 4;
    const resumed = new ChangingCluster(live / 4, (step, n) => membership(step, n));
    await runTrainingLoop(loop(resumed, { resume: from, perWorker: { perWorker: 4, scaling } }));
    const before = reference.steps.filter((s) => s.ctx.step <= from.step);
    const all = [...before, ...resumed.steps];
    t.deepEqual(all.map((s) => s.ctx.step), all.map((_, i) => i + 1), `resumed at step ${from.step}: steps continue`);
    const epochs = idsByEpoch(all);
    t.is(epochs.size, 3);
    for (const [epoch, ids] of epochs) t.deepEqual(sorted(ids), allIds(40), `resumed at step ${from.step}, epoch ${epoch}: each sample once`);
    for (const s of resumed.steps) t.true(Math.abs(s.ctx.lr - rate(s.batch)) < 1e-12);
    for (const s of resumed.steps) t.is(s.batch.step, all.filter((o) => o.batch.epoch === s.batch.epoch && o.ctx.step < s.ctx.step).length, 'step in epoch continues');
  }
});
