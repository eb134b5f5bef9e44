import test from 'ava';
import { WeightsError } from '../src/errors.ts';
import type { ReplicaSpec } from '../src/job/replica-spec.ts';
import type { ReceivedTensor } from '../src/wire/transfer.ts';
import { SimulatedReplica } from '../src/worker/simulated-replica.ts';
import { placeWeightUpdate } from '../src/worker/weight-update.ts';

// A transfer-like model: a frozen backbone weight between trainable head weights.
const weights = [
  { name: 'stem/kernel', shape: [3, 3], trainable: false },
  { name: 'head/kernel', shape: [4, 2], trainable: true },
  { name: 'bn/moving_mean', shape: [2], trainable: false },
  { name: 'head/bias', shape: [2], trainable: true },
];

function replica(): SimulatedReplica {
  return new SimulatedReplica({ weights } as unknown as ReplicaSpec, { msPerTask: 0 });
}

function tensor(name: string, shape = weights.find((w) => w.name === name)!.shape): ReceivedTensor {
  return { name, shape, dtype: 'float32', data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}

const full = (): ReceivedTensor[] => weights.map((w) => tensor(w.name));
const step = (): ReceivedTensor[] => [tensor('head/kernel'), tensor('head/bias')];

test('a partial broadcast applies on top of the full one the replica holds, version after version', (t) => {
  const r = replica();
  r.setWeights({ version: 3, tensors: full() });
  r.setWeights({ version: 4, tensors: step(), base: 3 });
  t.is(r.version, 4);
  // Batch-norm statistics may ride along; they land at their own place in the model.
  t.deepEqual(placeWeightUpdate(r.manifest, 4, { version: 5, tensors: [tensor('head/kernel'), tensor('bn/moving_mean'), tensor('head/bias')], base: 4 }), [1, 2, 3]);
  r.setWeights({ version: 5, tensors: step(), base: 4 });
  t.is(r.version, 5);
});

test('a partial broadcast before any full one is refused', (t) => {
  const r = replica();
  const error = t.throws(() => r.setWeights({ version: 1, tensors: step(), base: 0 }), { instanceOf: WeightsError });
  t.regex(error.message, /before any full one/);
  t.is(r.version, undefined);
});

test('a partial broadcast on another version than the one held is refused', (t) => {
  const r = replica();
  r.setWeights({ version: 2, tensors: full() });
  t.throws(() => r.setWeights({ version: 4, tensors: step(), base: 3 }), { instanceOf: WeightsError, message: /on top of v3\): this replica holds v2/ });
  t.is(r.version, 2);
});

test('a partial broadcast with unknown names, wrong shapes or dtypes, repeats, or without every trainable weight is refused', (t) => {
  const r = replica();
  r.setWeights({ version: 0, tensors: full() });
  const refuse = (tensors: ReceivedTensor[], message: RegExp): void => {
    t.throws(() => r.setWeights({ version: 1, tensors, base: 0 }), { instanceOf: WeightsError, message });
    t.is(r.version, 0, 'nothing applied');
  };
  refuse([tensor('head/kernel'), tensor('head/bias'), tensor('tail/kernel', [2])], /tail\/kernel: this replica has no weight of that name/);
  refuse([tensor('head/kernel', [2, 4]), tensor('head/bias')], /head\/kernel \[2,4\] float32, this replica expects head\/kernel \[4,2\]/);
  refuse([tensor('head/kernel'), { ...tensor('head/bias'), dtype: 'int32' }], /head\/bias \[2\] int32/);
  refuse([tensor('head/bias'), tensor('head/kernel')], /out of model order or repeated/);
  refuse([tensor('head/kernel'), tensor('head/kernel'), tensor('head/bias')], /out of model order or repeated/);
  refuse([tensor('head/kernel')], /lacks trainable weight\(s\) head\/bias/);
});

test('a full broadcast must hold every weight of the manifest, in order', (t) => {
  const r = replica();
  t.throws(() => r.setWeights({ version: 0, tensors: step() }), { instanceOf: WeightsError, message: /holds 2 tensors, this replica has 4 weights/ });
  t.throws(() => r.setWeights({ version: 0, tensors: full().reverse() }), { instanceOf: WeightsError, message: /weight broadcast\[0\] is head\/bias/ });
  t.is(r.version, undefined);
});
