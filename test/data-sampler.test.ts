import test from 'ava';
import { ConfigError } from '../src/errors.ts';
import { epochOrder, proportionalSizes, Sampler, splitShards } from '../src/data/sampler.ts';
import { stratifiedHoldout } from '../src/data/holdout.ts';

function take(sampler: Sampler, count: number): number[][] {
  return Array.from({ length: count }, () => [...sampler.next().indices]);
}

test('an epoch visits every sample exactly once, in a seeded order', (t) => {
  const order = epochOrder(1000, 7, 0);
  t.deepEqual([...order].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  t.notDeepEqual([...order], Array.from({ length: 1000 }, (_, i) => i));
  t.deepEqual([...epochOrder(1000, 7, 0)], [...order], 'same seed and epoch, same order');
  t.notDeepEqual([...epochOrder(1000, 7, 1)], [...order], 'each epoch reshuffles');
  t.notDeepEqual([...epochOrder(1000, 8, 0)], [...order], 'another seed, another order');
  t.deepEqual([...epochOrder(5, 7, 3, false)], [0, 1, 2, 3, 4], 'shuffle off walks in order');
});

test('two samplers with the same options produce the same batches', (t) => {
  const a = new Sampler({ length: 103, batchSize: 10, seed: 42 });
  const b = new Sampler({ length: 103, batchSize: 10, seed: 42 });
  t.deepEqual(take(a, 35), take(b, 35));
});

test('batches cover the epoch, the last one smaller, then the next epoch starts', (t) => {
  const s = new Sampler({ length: 25, batchSize: 10, seed: 1 });
  t.is(s.stepsPerEpoch, 3);
  const batches = [s.next(), s.next(), s.next()];
  t.deepEqual(batches.map((b) => b.indices.length), [10, 10, 5]);
  t.deepEqual(batches.map((b) => [b.epoch, b.step]), [[0, 0], [0, 1], [0, 2]]);
  const seen = batches.flatMap((b) => [...b.indices]).sort((x, y) => x - y);
  t.deepEqual(seen, Array.from({ length: 25 }, (_, i) => i));
  const next = s.next();
  t.is(next.epoch, 1);
  t.is(next.step, 0);
});

test('dropLast skips the partial batch and rolls over', (t) => {
  const s = new Sampler({ length: 25, batchSize: 10, seed: 1, dropLast: true });
  t.is(s.stepsPerEpoch, 2);
  t.deepEqual([s.next(), s.next(), s.next()].map((b) => [b.epoch, b.indices.length]), [[0, 10], [0, 10], [1, 10]]);
});

test('a sampler resumed from a saved position continues exactly where the original stood', (t) => {
  const original = new Sampler({ length: 97, batchSize: 8, seed: 5 });
  take(original, 17); // into the second epoch
  const saved = JSON.parse(JSON.stringify(original.position));
  t.deepEqual(saved, { epoch: 1, offset: 32 }); // 13 batches per epoch (12 of 8, 1 of 1)
  const resumed = new Sampler({ length: 97, batchSize: 8, seed: 5, position: saved });
  t.deepEqual(take(resumed, 20), take(original, 20));
});

test('a position from another dataset is refused, naming the field', (t) => {
  const error = t.throws(() => new Sampler({ length: 10, batchSize: 4, seed: 0, position: { epoch: 0, offset: 50 } }), { instanceOf: ConfigError });
  t.is(error.field, 'sampler.position.offset');
  t.throws(() => new Sampler({ length: 10, batchSize: 0, seed: 0 }), { instanceOf: ConfigError, message: /batchSize/ });
  t.throws(() => new Sampler({ length: 10, batchSize: 11, seed: 0, dropLast: true }), { instanceOf: ConfigError });
  t.throws(() => new Sampler({ length: 10, batchSize: 2, seed: -1 }), { instanceOf: ConfigError, message: /seed/ });
});

test('a global batch splits into consecutive shards of the given sizes', (t) => {
  const batch = Uint32Array.from([9, 8, 7, 6, 5, 4, 3]);
  const shards = splitShards(batch, [3, 0, 4]);
  t.deepEqual(shards.map((s) => [...s]), [[9, 8, 7], [], [6, 5, 4, 3]]);
  t.throws(() => splitShards(batch, [3, 3]), { instanceOf: ConfigError, message: /sum to 6/ });
});

test('proportional shard sizes always sum to the batch and follow the weights', (t) => {
  t.deepEqual(proportionalSizes(64, [1, 1]), [32, 32]);
  t.deepEqual(proportionalSizes(10, [1, 1, 1]), [4, 3, 3]);
  t.deepEqual(proportionalSizes(100, [3, 1]), [75, 25]);
  for (const total of [1, 7, 31, 256]) {
    const sizes = proportionalSizes(total, [0.3, 1.7, 2.2, 0]);
    t.is(sizes.reduce((a, b) => a + b, 0), total);
    t.is(sizes[3], 0);
  }
  t.throws(() => proportionalSizes(10, [0, 0]), { instanceOf: ConfigError });
  t.throws(() => proportionalSizes(10, [1, Number.NaN]), { instanceOf: ConfigError, message: /weight 1/ });
});

test('a stratified holdout takes the fraction of every class, seeded', (t) => {
  const labels = Int32Array.from({ length: 100 }, (_, i) => (i < 80 ? 0 : 1));
  const a = stratifiedHoldout(labels, 0.25, 3);
  t.is(a.validation.length, 20 + 5);
  t.is(a.train.length + a.validation.length, 100);
  t.is([...a.validation].filter((i) => labels[i] === 1).length, 5);
  t.deepEqual(new Set([...a.train, ...a.validation]).size, 100);
  t.deepEqual([...stratifiedHoldout(labels, 0.25, 3).validation], [...a.validation]);
  t.notDeepEqual([...stratifiedHoldout(labels, 0.25, 4).validation], [...a.validation]);
});
