import test from 'ava';
import path from 'node:path';
import { initBackend } from '../src/model/backend.ts';
import { loadModel } from '../src/model/export.ts';
import { readWeights, type WeightSet } from '../src/model/weights.ts';
import { smallFashionMnist, spawnWorker, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

test.before(async () => {
  await initBackend('wasm');
});

/** One seeded job on 3 real worker processes; the exported weights. */
async function run(t: Parameters<typeof tempDir>[0]): Promise<WeightSet> {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(96 * 8);
  // Equal shards: with throughput balancing shard sizes follow timing, and so do float sums.
  const job = testJob(dir, {
    seed: 11,
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 32 }] },
    train: { epochs: 2, batchSize: 96, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.01 } },
    cluster: { minWorkers: 3, balance: 'equal' },
  });
  const coordinator = await startCoordinator(t, job, { dataset });
  for (const name of ['a', 'b', 'c']) spawnWorker(t, coordinator.port, { name });
  const result = await coordinator.result;
  t.is(result.status, 'completed');
  t.true(coordinator.sink.events('step').every((l) => (l.workers as unknown[]).length === 3), 'every step had 3 shards');
  const saved = await loadModel(path.join(dir, 'model'));
  const weights = readWeights(saved.model);
  saved.model.dispose();
  return weights;
}

test('two runs of the same seeded job on 3 worker processes end with bit-identical weights', async (t) => {
  const first = await run(t);
  const second = await run(t);
  first.manifest.forEach((entry, i) => {
    const a = first.values[i]!;
    const b = second.values[i]!;
    const differing = a.findIndex((v, j) => !Object.is(v, b[j]));
    t.is(differing, -1, `${entry.name}: value ${differing} differs (${a[differing]} vs ${b[differing]})`);
  });
});
