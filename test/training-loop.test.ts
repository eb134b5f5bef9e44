import test from 'ava';
import type { SampledBatch } from '../src/data/sampler.ts';
import type { DataSplit } from '../src/data/types.ts';
import type { WeightSet } from '../src/model/weights.ts';
import type { StepContext, StepEngine, StepOutcome } from '../src/job/step-engine.ts';
import { runTrainingLoop, type TrainingLoopOptions, type TrainingProgress } from '../src/job/training-loop.ts';
import { eventSink } from './helpers/event-sink.ts';

// The one training loop over a scripted engine: no model, no tensors, only what the loop decides.

const split = (length: number): DataSplit => ({
  length,
  label: (i) => i % 2,
  loadBatch: async () => {
    throw new Error('the loop never loads samples itself');
  },
});

/** An engine whose steps and validations return what the script says, and that records its calls. */
class ScriptedEngine implements StepEngine {
  readonly steps: { ctx: StepContext; batch: SampledBatch; next?: SampledBatch }[] = [];
  readonly restored: WeightSet[] = [];
  discarded = 0;
  private version = 0;

  constructor(
    private readonly outcome: (ctx: StepContext) => StepOutcome = () => applied(0.5),
    private readonly valLoss: (epoch: number) => number = () => 1,
  ) {}

  async ready(signal?: AbortSignal): Promise<boolean> {
    return !signal?.aborted;
  }

  async step(batch: SampledBatch, ctx: StepContext, next?: SampledBatch): Promise<StepOutcome> {
    this.steps.push({ ctx, batch, next });
    const outcome = this.outcome(ctx);
    if (outcome.kind === 'applied') this.version = ctx.step;
    return outcome;
  }

  async evaluate(_split: 'validation' | 'test', data: DataSplit, epoch: number) {
    return { loss: this.valLoss(epoch), accuracy: 0.5, n: data.length, confusion: [[1, 0], [0, 1]] };
  }

  async weights(): Promise<WeightSet> {
    return { manifest: [], values: [Float32Array.of(this.version)] };
  }

  async setWeights(weights: WeightSet): Promise<void> {
    this.restored.push(weights);
  }

  async optimizerState() {
    return { iterations: this.version, slots: [] };
  }

  discardPrefetched(): void {
    this.discarded++;
  }
}

function applied(loss: number, n = 4): StepOutcome {
  return { kind: 'applied', loss, correct: n / 2, n, timing: { dataWaitMs: 1, computeMs: 2, transferMs: 0, reduceMs: 0, stepMs: 3 } };
}

function options(engine: StepEngine, overrides: Partial<TrainingLoopOptions> = {}): TrainingLoopOptions & { events: Record<string, unknown>[] } {
  const { log, events } = eventSink();
  return {
    engine,
    dataset: { train: split(10), validation: split(4), classNames: ['a', 'b'] },
    epochs: 2,
    batchSize: 4,
    seed: 1,
    schedule: { type: 'constant', warmupEpochs: 0 } as TrainingLoopOptions['schedule'],
    learningRate: 0.1,
    logEvery: 2,
    log,
    events,
    ...overrides,
  };
}

test('epochs of sampler batches: each step gets the next batch to prefetch (not across epochs), and the events of a run', async (t) => {
  const engine = new ScriptedEngine();
  const run = options(engine);
  const result = await runTrainingLoop(run);
  t.is(result.status, 'completed');
  t.is(result.steps, 6);
  t.deepEqual(engine.steps.map((s) => [s.ctx.epoch, s.ctx.step, s.batch.epoch, s.batch.step, s.next?.step]), [
    [1, 1, 0, 0, 1],
    [1, 2, 0, 1, 2],
    [1, 3, 0, 2, undefined],
    [2, 4, 1, 0, 1],
    [2, 5, 1, 1, 2],
    [2, 6, 1, 2, undefined],
  ]);
  t.true(engine.steps.every((s) => s.ctx.lr === 0.1));
  const names = run.events.map((e) => e.event).filter(Boolean);
  t.deepEqual(names, ['epoch_start', 'step', 'step', 'evaluation', 'epoch', 'epoch_start', 'step', 'step', 'evaluation', 'epoch']);
  const step = run.events.find((e) => e.event === 'step')!;
  t.like(step, { epoch: 1, step: 2, stepInEpoch: 2, loss: 0.5, accuracy: 0.5, lr: 0.1, n: 4, dataWaitMs: 1, computeMs: 2, transferMs: 0, reduceMs: 0, stepMs: 3 });
  t.false('workers' in step, 'an engine without workers logs none');
  t.like(run.events.find((e) => e.event === 'evaluation'), { split: 'validation', epoch: 1, n: 4 });
  t.like(run.events.find((e) => e.event === 'epoch'), { epoch: 1, epochs: 2, loss: 0.5, valLoss: 1 });
});

test('a batch with no usable sample is a step without an update: counted, not logged as a step, not in the epoch means', async (t) => {
  const engine = new ScriptedEngine((ctx) => (ctx.step === 2 ? { kind: 'empty' } : applied(ctx.step)));
  const run = options(engine, { epochs: 1 });
  const result = await runTrainingLoop(run);
  t.is(result.steps, 3);
  t.deepEqual(run.events.filter((e) => e.event === 'step').map((e) => e.step), [3], 'step 2 (a logEvery boundary) had nothing to log');
  t.is(run.events.find((e) => e.event === 'epoch')!.loss, 2, 'mean of steps 1 and 3');
});

test('checkpoints every K steps, each epoch and on stop; a run resumed from any of them ends as the uninterrupted one', async (t) => {
  const reference = options(new ScriptedEngine((ctx) => applied(ctx.step)), { epochs: 3, checkpointEvery: 2 });
  const saved: TrainingProgress[] = [];
  await runTrainingLoop({ ...reference, checkpoint: async (p) => void saved.push(p) });
  t.deepEqual(saved.map((p) => [p.step, p.epoch]), [[2, 0], [3, 1], [4, 1], [6, 2], [8, 2], [9, 3]]);
  const epochs = (events: Record<string, unknown>[]) => events.filter((e) => e.event === 'epoch').map((e) => [e.epoch, e.loss]);
  for (const from of saved.slice(0, -1)) {
    const resumed = options(new ScriptedEngine((ctx) => applied(ctx.step)), { epochs: 3, checkpointEvery: 2, resume: from });
    const result = await runTrainingLoop(resumed);
    t.is(result.steps, 9);
    t.deepEqual([...from.history.map((h) => [h.epoch, h.loss]), ...epochs(resumed.events)], epochs(reference.events), `resumed at step ${from.step}`);
  }

  const controller = new AbortController();
  const engine = new ScriptedEngine((ctx) => {
    if (ctx.step === 5) controller.abort();
    return applied(ctx.step);
  });
  const stops: TrainingProgress[] = [];
  const stopped = await runTrainingLoop({ ...options(engine, { epochs: 3 }), signal: controller.signal, checkpoint: async (p) => void stops.push(p) });
  t.is(stopped.status, 'stopped');
  t.is(stopped.steps, 5, 'stopped after the step in progress');
  t.is(engine.discarded, 1, 'the prefetched batch is dropped');
  t.like(stops.at(-1), { step: 5, epoch: 1, sampler: { epoch: 1, offset: 8 } });
});

test('stopped after the last step of an epoch, the resumed run validates that epoch before going on', async (t) => {
  const controller = new AbortController();
  const engine = new ScriptedEngine((ctx) => {
    if (ctx.step === 3) controller.abort();
    return applied(1);
  });
  const stops: TrainingProgress[] = [];
  await runTrainingLoop({ ...options(engine), signal: controller.signal, checkpoint: async (p) => void stops.push(p) });
  t.like(stops.at(-1), { step: 3, epoch: 0, sampler: { epoch: 1, offset: 0 } });
  const resumed = options(new ScriptedEngine(), { resume: stops.at(-1)! });
  await runTrainingLoop(resumed);
  t.deepEqual(resumed.events.filter((e) => e.event === 'epoch').map((e) => e.epoch), [1, 2]);
});

test('early stopping restores the best weights through the engine when restoreBest is set', async (t) => {
  for (const restoreBest of [true, false]) {
    const engine = new ScriptedEngine(() => applied(1), (epoch) => epoch);
    const run = options(engine, { epochs: 5, earlyStopping: { monitor: 'val_loss', patience: 2, minDelta: 0, restoreBest } });
    const result = await runTrainingLoop(run);
    t.is(result.status, 'early_stopped');
    t.is(result.bestEpoch, 1);
    t.like(run.events.find((e) => e.event === 'early_stop'), { epoch: 3, bestEpoch: 1, restored: restoreBest });
    t.deepEqual(engine.restored.map((w) => w.values[0]![0]), restoreBest ? [3] : [], 'the weights after epoch 1 (step 3)');
  }
});

test('an engine that is stopped before it is ready takes no step and saves nothing', async (t) => {
  const controller = new AbortController();
  controller.abort();
  const engine = new ScriptedEngine();
  let saves = 0;
  const result = await runTrainingLoop({ ...options(engine), signal: controller.signal, checkpoint: async () => void saves++ });
  t.is(result.status, 'stopped');
  t.is(engine.steps.length, 0);
  t.is(saves, 0);
});
