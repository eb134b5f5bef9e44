import test from 'ava';
import path from 'node:path';
import { initBackend } from '../src/model/backend.ts';
import { loadModel } from '../src/model/export.ts';
import { readWeights } from '../src/model/weights.ts';
import { smallFashionMnist, spawnWorker, startCoordinator, tempDir, testJob, type LogLine } from './helpers/cluster.ts';

// The peer reduction (cluster.reduction: peer) with real worker processes, one test at a time.
test.before(async () => {
  await initBackend('wasm');
});

const BATCH = 64;
const stepN = (line: LogLine): number => line.n as number;
const workerIds = (line: LogLine): string[] => (line.workers as { worker: string }[]).map((w) => w.worker);

/** Runs a seeded job on `names` worker processes; the exported weights and the coordinator's events. */
async function train(t: Parameters<typeof tempDir>[0], names: string[], cluster: Record<string, unknown>, train: Record<string, unknown> = {}, samples = BATCH * 4) {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(samples);
  const job = testJob(dir, {
    seed: 11,
    train: { epochs: 2, batchSize: BATCH, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 }, ...train },
    cluster: { minWorkers: names.length, balance: 'equal', ...cluster },
  });
  const coordinator = await startCoordinator(t, job, { dataset });
  const workers = names.map((name) => spawnWorker(t, coordinator.port, { name }));
  t.teardown(() => {
    for (const worker of workers) if (!t.passed) t.log(worker.sink.lines.slice(-6).map((l) => JSON.stringify(l).slice(0, 400)).join('\n'));
  });
  const result = await coordinator.result;
  const saved = await loadModel(path.join(dir, 'model'));
  const weights = readWeights(saved.model);
  saved.model.dispose();
  return { result, weights: await weights, sink: coordinator.sink, workers };
}

test.serial('peer reduction: 2 workers x 32 make the same updates as the star with 1 worker x 64', async (t) => {
  const star = await train(t, ['solo'], {});
  const peer = await train(t, ['a', 'b'], { reduction: 'peer' });
  t.is(peer.result.status, 'completed');
  const steps = peer.sink.events('step');
  t.is(steps.length, 8);
  t.true(steps.every((l) => stepN(l) === BATCH && workerIds(l).length === 2), 'every step: two shards, the whole batch');
  star.weights.values.forEach((values, i) => {
    const other = peer.weights.values[i]!;
    let worst = 0;
    for (let j = 0; j < values.length; j++) worst = Math.max(worst, Math.abs(values[j]! - other[j]!));
    t.true(worst <= 1e-5, `${star.weights.manifest[i]!.name}: largest difference ${worst}`);
  });
  // Training went through the workers' own optimizers: the weights moved.
  t.true(peer.sink.events('step').every((l) => Number.isFinite(l.loss as number)));
});
