import test from 'ava';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError, ClusterError, ProtocolError, WeightsError } from '../src/errors.ts';
import { checkpointPath, loadCheckpoint, saveCheckpoint, type Checkpoint } from '../src/job/checkpoint.ts';
import { EarlyStopping } from '../src/job/early-stopping.ts';
import { EvaluationAccumulator } from '../src/coordinator/evaluation.ts';
import { Membership } from '../src/coordinator/membership.ts';
import { GradientReducer } from '../src/coordinator/reducer.ts';
import { Round } from '../src/coordinator/round.ts';
import { planShards, updateThroughput } from '../src/coordinator/scheduler.ts';
import type { WeightEntry } from '../src/model/weights.ts';
import type { ReceivedTensor } from '../src/wire/transfer.ts';
import { tempDir } from './helpers/cluster.ts';

const ids = (n: number): Uint32Array => Uint32Array.from({ length: n }, (_, i) => i * 3);

test('shards follow measured throughput, always sum to the global batch and cover each sample once', (t) => {
  const batch = ids(100);
  const plans = planShards(batch, [{ id: 'fast', throughput: 3 }, { id: 'slow', throughput: 1 }, { id: 'new', throughput: undefined }], 'throughput');
  // The newcomer counts as the mean of the measured ones (2): 3 : 1 : 2.
  t.deepEqual(plans.map((p) => [p.workerId, p.ids.length]), [['fast', 50], ['slow', 17], ['new', 33]]);
  t.deepEqual([...plans.flatMap((p) => [...p.ids])].sort((a, b) => a - b), [...batch]);
  t.deepEqual(planShards(ids(7), [{ id: 'a', throughput: 5 }, { id: 'b', throughput: 1 }], 'equal').map((p) => p.ids.length), [4, 3]);
  // A worker whose share rounds to nothing gets no task.
  t.deepEqual(planShards(ids(2), [{ id: 'a', throughput: 100 }, { id: 'b', throughput: 1 }], 'throughput').map((p) => p.workerId), ['a']);
  t.throws(() => planShards(ids(3), [], 'equal'), { instanceOf: ClusterError });
  t.is(updateThroughput(undefined, 32, 16), 2);
  t.is(updateThroughput(2, 32, 8), 2 + 0.3 * (4 - 2));
  t.is(updateThroughput(2, 32, 0), 2);
});

test('a round reassigns a failed worker\'s samples so that each is covered exactly once', (t) => {
  const round = new Round({ kind: 'train', step: 4, weightsVersion: 3, split: 'train', epoch: 0, augment: true, expected: 10 });
  const a = round.addTask(ids(10).subarray(0, 6), 'a');
  const b = round.addTask(ids(10).subarray(6), 'b');
  t.throws(() => round.find(a.id, 'b'), { instanceOf: ProtocolError, message: /belongs to a/ });
  round.complete(round.find(b.id, 'b'));
  const orphans = round.release('a');
  t.deepEqual(orphans.map((o) => o.id), [a.id]);
  t.throws(() => round.find(a.id, 'a'), { instanceOf: ProtocolError, message: /not outstanding/ });
  t.false(round.done);
  const again = round.addTask(orphans[0]!.ids, 'b');
  round.complete(round.find(again.id, 'b'));
  t.true(round.done);
  t.throws(() => round.complete(again), { instanceOf: ProtocolError });
});

test('deadlines count from the round\'s start or a later assignment', (t) => {
  const round = new Round({ kind: 'train', step: 1, weightsVersion: 0, split: 'train', epoch: 0, augment: true, expected: 4 });
  round.addTask(ids(2), 'a', 0);
  t.deepEqual(round.overdueWorkers(10_000, 100), [], 'no deadline before the round starts (prefetched)');
  round.startedAt = 1000;
  round.addTask(ids(4).subarray(2), 'b', 1050);
  t.deepEqual(round.overdueWorkers(1120, 100), ['a']);
  t.deepEqual(round.overdueWorkers(1160, 100), ['a', 'b']);
  // A worker that just finished another task is on its way through its queue: its clock restarted.
  t.deepEqual(round.overdueWorkers(1160, 100, (w) => (w === 'a' ? 1100 : 0)), ['b']);
});

test('waiting tasks are handed out one by one, oldest first', (t) => {
  const round = new Round({ kind: 'evaluate', step: 3, weightsVersion: 3, split: 'validation', epoch: 1, augment: false, expected: 6 });
  const first = round.addTask(ids(6).subarray(0, 3), undefined);
  round.addTask(ids(6).subarray(3), undefined);
  t.is(round.handOut('a', 5)!.id, first.id);
  t.is(round.heldBy('a'), 1);
  t.is(round.handOut('b', 6)!.workerId, 'b');
  t.is(round.handOut('c'), undefined);
  t.deepEqual(round.unassigned(), []);
});

const manifest: WeightEntry[] = [
  { name: 'k', shape: [2, 2], dtype: 'float32', trainable: true },
  { name: 'b', shape: [2], dtype: 'float32', trainable: true },
];
const tensors = (k: number[], b: number[], names = ['k', 'b']): ReceivedTensor[] => [
  { name: names[0]!, shape: [2, 2], dtype: 'float32', data: Float32Array.from(k) },
  { name: names[1]!, shape: [2], dtype: 'float32', data: Float32Array.from(b) },
];

test('the reducer averages shard gradients weighted by n: the mean gradient of the whole batch', (t) => {
  const reducer = new GradientReducer(manifest, []);
  reducer.add({ loss: 1, correct: 3, n: 48, grads: tensors([1, 2, 3, 4], [1, 1]), buffers: [] }, 'a');
  reducer.add({ loss: 3, correct: 1, n: 16, grads: tensors([5, 6, 7, 8], [-1, 3]), buffers: [] }, 'b');
  const out = reducer.result();
  t.deepEqual(Array.from(out.grads[0]!), [2, 3, 4, 5]);
  t.deepEqual(Array.from(out.grads[1]!), [0.5, 1.5]);
  t.is(out.loss, 1.5);
  t.is(out.correct, 4);
  t.is(out.n, 64);
  t.is(out.buffers, undefined);
});

test('with the batch size known, sums are the mean as the last shard lands; skipped samples rescale it', (t) => {
  const full = new GradientReducer(manifest, [], undefined, 64);
  full.add({ loss: 1, correct: 3, n: 48, grads: tensors([1, 2, 3, 4], [1, 1]), buffers: [] }, 'a');
  full.add({ loss: 3, correct: 1, n: 16, grads: tensors([5, 6, 7, 8], [-1, 3]), buffers: [] }, 'b');
  const out = full.result();
  t.deepEqual(Array.from(out.grads[0]!), [2, 3, 4, 5]);
  t.deepEqual(Array.from(out.grads[1]!), [0.5, 1.5]);
  t.is(out.loss, 1.5);
  const skipped = new GradientReducer(manifest, [], undefined, 64);
  skipped.add({ loss: 1, correct: 0, n: 30, grads: tensors([1, 2, 3, 4], [1, 1]), buffers: [] }, 'a');
  skipped.add({ loss: 1, correct: 0, n: 10, grads: tensors([5, 6, 7, 8], [-3, 5]), buffers: [] }, 'b');
  const rescaled = skipped.result();
  t.is(rescaled.n, 40);
  t.deepEqual(Array.from(rescaled.grads[1]!), [0, 2]);
  Array.from(rescaled.grads[0]!).forEach((v, i) => t.true(Math.abs(v - [2, 3, 4, 5][i]!) < 1e-6));
});

test('values the transfer checked as they arrived are not scanned again; unchecked ones are', (t) => {
  const reducer = new GradientReducer(manifest, []);
  // Only the assembler marks tensors finite, after checking every value: the mark is trusted.
  const marked = tensors([1, 1, Number.NaN, 1], [1, 1]).map((x) => ({ ...x, finite: true }));
  t.notThrows(() => reducer.check({ loss: 1, correct: 0, n: 1, grads: marked, buffers: [] }, 'a'));
  t.throws(() => reducer.add({ loss: 1, correct: 0, n: 1, grads: tensors([1, 1, Number.NaN, 1], [1, 1]), buffers: [] }, 'b'), { instanceOf: WeightsError, message: /value 2 is NaN/ });
});

test('a bad gradient is refused with the reason and leaves the sums untouched', (t) => {
  const reducer = new GradientReducer(manifest, []);
  reducer.add({ loss: 1, correct: 0, n: 2, grads: tensors([1, 1, 1, 1], [1, 1]), buffers: [] }, 'a');
  const bad = [
    [{ loss: 1, correct: 0, n: 2, grads: tensors([1, Number.NaN, 1, 1], [1, 1]), buffers: [] }, /k: value 1 is NaN/],
    [{ loss: 1, correct: 0, n: 2, grads: tensors([1, 1, 1, Infinity], [1, 1]), buffers: [] }, /Infinity/],
    [{ loss: 1, correct: 0, n: 2, grads: tensors([1, 1, 1, 1], [1, 1], ['k', 'x']), buffers: [] }, /name x/],
    [{ loss: 1, correct: 0, n: 2, grads: [tensors([1, 1, 1, 1], [1, 1])[0]!], buffers: [] }, /got 1 tensors for 2/],
    [{ loss: 1, correct: 0, n: 2, grads: [tensors([1, 1, 1, 1], [1, 1])[0]!, { name: 'b', shape: [3], dtype: 'float32', data: new Float32Array(3) }], buffers: [] }, /shape \[3\]/],
    [{ loss: 1, correct: 0, n: 2, grads: [tensors([1, 1, 1, 1], [1, 1])[0]!, { name: 'b', shape: [2], dtype: 'int32', data: new Int32Array(2) }], buffers: [] }, /dtype int32/],
    [{ loss: Number.NaN, correct: 0, n: 2, grads: tensors([1, 1, 1, 1], [1, 1]), buffers: [] }, /loss is NaN/],
    [{ loss: 1, correct: 5, n: 2, grads: tensors([1, 1, 1, 1], [1, 1]), buffers: [] }, /correct count 5/],
    [{ loss: 1, correct: 0, n: 9, grads: tensors([1, 1, 1, 1], [1, 1]), buffers: [] }, /n is 9/],
  ] as const;
  for (const [shard, message] of bad) {
    t.throws(() => reducer.add(shard as never, 'w9', 4), { instanceOf: WeightsError, message });
  }
  reducer.add({ loss: 1, correct: 0, n: 2, grads: tensors([3, 3, 3, 3], [3, 3]), buffers: [] }, 'b');
  t.deepEqual(Array.from(reducer.result().grads[0]!), [2, 2, 2, 2]);
});

test('batch-norm statistics are averaged weighted by n', (t) => {
  const stats: WeightEntry[] = [{ name: 'bn/moving_mean', shape: [2], dtype: 'float32', trainable: false }];
  const reducer = new GradientReducer(manifest, stats);
  const mean = (values: number[]): ReceivedTensor[] => [{ name: 'bn/moving_mean', shape: [2], dtype: 'float32', data: Float32Array.from(values) }];
  reducer.add({ loss: 1, correct: 0, n: 3, grads: tensors([0, 0, 0, 0], [0, 0]), buffers: mean([1, 0]) }, 'a');
  reducer.add({ loss: 1, correct: 0, n: 1, grads: tensors([0, 0, 0, 0], [0, 0]), buffers: mean([5, 4]) }, 'b');
  t.deepEqual(Array.from(reducer.result().buffers![0]!), [2, 1]);
});

test('evaluation results build the confusion matrix from the coordinator\'s labels', (t) => {
  const acc = new EvaluationAccumulator(3);
  acc.add({ lossSum: 2, correct: 2, n: 3, predicted: [0, 1, 1] }, [0, 1, 2], 'a');
  acc.add({ lossSum: 1, correct: 1, n: 1, predicted: [2] }, [2], 'b');
  t.deepEqual(acc.result(), { loss: 0.75, accuracy: 0.75, n: 4, confusion: [[1, 0, 0], [0, 1, 0], [0, 1, 1]] });
  t.throws(() => acc.add({ lossSum: 1, correct: 1, n: 1, predicted: [0] }, [2], 'c'), { instanceOf: ProtocolError, message: /reports 1 correct/ });
  t.throws(() => acc.add({ lossSum: 1, correct: 0, n: 1, predicted: [7] }, [2], 'c'), { instanceOf: ProtocolError, message: /outside 0..2/ });
});

test('membership gives unique ids, refuses a full job and names unknown workers', (t) => {
  const members = new Membership(2);
  const caps = { backend: 'wasm', device: 'cpu', threads: 2, hostname: 'h', pid: 1 };
  const a = members.admit(caps, 'gpu 0', 'peer');
  const b = members.admit(caps, '', 'peer');
  t.is(a.id, 'w1-gpu0');
  t.is(b.id, 'w2');
  t.throws(() => members.admit(caps, '', 'peer'), { instanceOf: ClusterError, message: /job is full/ });
  t.deepEqual(members.live(), []);
  members.markReady(b.id);
  t.deepEqual(members.live().map((w) => w.id), ['w2']);
  members.remove(b.id);
  t.throws(() => members.get(b.id), { message: /not a member/ });
});

function sampleCheckpoint(step: number): Checkpoint {
  return {
    state: { jobId: 'j-1', jobName: 'j', step, epoch: 1, sampler: { epoch: 1, offset: 64 }, seed: 5, history: [], epochProgress: { lossSum: 1, correct: 2, seen: 3, seconds: 4 }, earlyStopping: { best: 0.5, bestEpoch: 1, wait: 0 }, savedAt: 'now' },
    weights: { manifest, values: [Float32Array.from([1, 2, 3, step]), Float32Array.from([5, 6])] },
    optimizer: { iterations: step, slots: [{ name: 'm/0', values: Float32Array.from([0.5, 0.25, 0, -1]) }] },
    bestWeights: { manifest, values: [Float32Array.from([9, 9, 9, 9]), Float32Array.from([8, 8])] },
  };
}

test('a checkpoint round-trips weights, optimizer state, sampler position and history', async (t) => {
  const dir = await tempDir(t);
  const file = checkpointPath(dir);
  const written = await saveCheckpoint(file, sampleCheckpoint(7));
  const back = await loadCheckpoint(file);
  t.deepEqual(back, sampleCheckpoint(7));
  t.true(written.bytes > 0);
  // Overwriting leaves only the checkpoint: the temporary file was renamed over it.
  await saveCheckpoint(file, sampleCheckpoint(8));
  t.deepEqual(await readdir(dir), ['checkpoint.drover']);
  t.is((await loadCheckpoint(file)).state.step, 8);
});

test('a truncated or foreign checkpoint is refused with a CheckpointError', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'checkpoint.drover');
  await saveCheckpoint(file, sampleCheckpoint(1));
  const { readFile } = await import('node:fs/promises');
  const bytes = await readFile(file);
  await writeFile(file, bytes.subarray(0, bytes.length - 8));
  await t.throwsAsync(loadCheckpoint(file), { instanceOf: CheckpointError, message: /truncated/ });
  await writeFile(file, 'not a checkpoint at all');
  await t.throwsAsync(loadCheckpoint(file), { instanceOf: CheckpointError, message: /not a drover checkpoint/ });
  await t.throwsAsync(loadCheckpoint(path.join(dir, 'missing')), { instanceOf: CheckpointError });
});

test('early stopping waits `patience` epochs, keeps the best weights, and survives a checkpoint', async (t) => {
  const spec = { monitor: 'val_loss' as const, patience: 2, minDelta: 0.01, restoreBest: true };
  const stopper = new EarlyStopping(spec);
  const snapshot = (v: number) => async () => ({ manifest, values: [Float32Array.from([v, v, v, v]), Float32Array.from([v, v])] });
  t.false(await stopper.update(1, { valLoss: 1 }, snapshot(1)));
  t.false(await stopper.update(2, { valLoss: 0.5 }, snapshot(2)));
  t.false(await stopper.update(3, { valLoss: 0.495 }, snapshot(3)), 'not better by minDelta: waits');
  const resumed = new EarlyStopping(spec, stopper.state, stopper.bestWeights);
  t.true(await resumed.update(4, { valLoss: 0.6 }, snapshot(4)));
  t.is(resumed.bestEpoch, 2);
  t.is(resumed.bestWeights!.values[0]![0], 2);
});

test('contributions added together equal the same contributions added one by one; a bad one in the batch is refused alone', (t) => {
  const shards = Array.from({ length: 7 }, (_, k) => ({ loss: k, correct: 0, n: k + 1, grads: tensors([k, -k, 2 * k, 1], [k / 2, 3]), buffers: [] }));
  const oneByOne = new GradientReducer(manifest, [], undefined, 28);
  for (const shard of shards) oneByOne.add(shard, 'w');
  const together = new GradientReducer(manifest, [], undefined, 28);
  const bad = { loss: 1, correct: 0, n: 1, grads: tensors([1, Number.NaN, 1, 1], [1, 1]), buffers: [] };
  const errors = together.addMany([...shards.slice(0, 3), bad, ...shards.slice(3)].map((shard) => ({ shard, from: 'w' })));
  t.deepEqual(errors.map((e) => e instanceof WeightsError), [false, false, false, true, false, false, false, false]);
  const [a, b] = [oneByOne.result(), together.result()];
  t.is(b.n, 28);
  a.grads.forEach((sum, i) => Array.from(sum).forEach((v, j) => t.true(Math.abs(v - b.grads[i]![j]!) <= 1e-6 * Math.max(1, Math.abs(v)))));
});

test('contributions offered in any order are summed in rank order: the sums are bit-identical', (t) => {
  // Values whose float32 sums depend on the order they are added in.
  const shards = Array.from({ length: 7 }, (_, k) => ({ loss: 0.1 * k, correct: 0, n: 3 + k, grads: tensors([1e7 * (k % 2 ? 1 : -1), 0.1 * k, 1 / (k + 3), 3.3], [k / 7, 1e-3 * k]), buffers: [] }));
  const sumInOrder = (order: number[], withdrawn: number[] = []): Float32Array[] => {
    const reducer = new GradientReducer(manifest, [], undefined, 42);
    for (let rank = 1; rank <= 8; rank++) reducer.expect(rank);
    const released: number[] = [];
    for (const rank of withdrawn) reducer.withdraw(rank);
    for (const k of order) reducer.offer(k + 1, { shard: shards[k]!, from: `w${k}` }, () => released.push(k));
    t.is(reducer.waiting, 0);
    t.deepEqual(released.sort(), [...order].sort(), 'each contribution released once summed');
    return reducer.result().grads;
  };
  const forward = sumInOrder([0, 1, 2, 3, 4, 5, 6], [8]);
  for (const order of [[6, 5, 4, 3, 2, 1, 0], [3, 0, 6, 1, 5, 2, 4], [2, 1, 0, 4, 3, 6, 5]]) {
    const other = sumInOrder(order, [8]);
    forward.forEach((sum, i) => t.deepEqual(other[i], sum, `order ${order}`));
  }
  // A contribution that never comes keeps the ones after it waiting; withdrawing it lets them in.
  const reducer = new GradientReducer(manifest, [], undefined, 42);
  [1, 2, 3].forEach((rank) => reducer.expect(rank));
  reducer.offer(2, { shard: shards[1]!, from: 'b' });
  reducer.offer(3, { shard: shards[2]!, from: 'c' });
  t.is(reducer.samples, 0);
  reducer.withdraw(1);
  t.is(reducer.samples, shards[1]!.n + shards[2]!.n);
  t.throws(() => reducer.offer(1, { shard: shards[0]!, from: 'a' }), { instanceOf: WeightsError, message: /no contribution of rank 1/ });
});

test('one measurement moves a throughput estimate by a bounded factor, however extreme it is', (t) => {
  t.is(updateThroughput(2, 32, 1e-6), 2 + 0.3 * (4 - 2), 'a claimed near-zero time counts as twice the estimate');
  t.is(updateThroughput(2, 1, 1e6), 2 + 0.3 * (1 - 2), 'a huge time counts as half the estimate');
  // A newcomer starts from the others' mean, as it was planned, and moves from there by a bounded step.
  const members = new Membership(3);
  const caps = { backend: 'wasm', device: 'cpu', threads: 1, hostname: 'h', pid: 1 };
  const [a, b] = [members.admit(caps, 'a', 'p'), members.admit(caps, 'b', 'p')];
  members.markReady(a.id);
  members.markReady(b.id);
  members.recordThroughput(a.id, 32, 16);
  t.is(a.throughput, 2, 'the first worker measured sets the scale');
  members.recordThroughput(b.id, 64, 1e-6);
  t.is(b.throughput, 2 + 0.3 * (4 - 2));
  let estimate: number | undefined = 1;
  for (let step = 0; step < 5; step++) {
    const next: number = updateThroughput(estimate, 64, 1e-9)!;
    t.true(next / estimate! <= 1.3 + 1e-12);
    estimate = next;
  }
});
