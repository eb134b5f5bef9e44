import test from 'ava';
import { initBackend } from '../src/model/backend.ts';
import { smallFashionMnist, spawnWorker, startCoordinator, tempDir, testJob, type LogLine } from './helpers/cluster.ts';

// Simulated workers (bench:cluster's netns mode) take part in the real peer reduction.
test.before(async () => {
  await initBackend('wasm');
});

const BATCH = 32;
const workerIds = (line: LogLine): string[] => (line.workers as { worker: string }[]).map((w) => w.worker);

test.serial('peer reduction: simulated workers reduce their zero gradients among themselves and the job completes', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(BATCH * 3);
  const job = testJob(dir, {
    train: { epochs: 1, batchSize: BATCH, logEvery: 1, optimizer: { name: 'adam', learningRate: 1e-3 } },
    cluster: { minWorkers: 2, balance: 'equal', reduction: 'peer' },
  });
  const coordinator = await startCoordinator(t, job, { dataset });
  const workers = ['s1', 's2'].map((name) => spawnWorker(t, coordinator.port, { name, args: ['--simulate-compute-ms', '1'] }));
  t.teardown(() => {
    for (const worker of workers) if (!t.passed) t.log(worker.sink.lines.slice(-6).map((l) => JSON.stringify(l).slice(0, 400)).join('\n'));
  });
  const result = await coordinator.result;
  t.is(result.status, 'completed');
  const steps = coordinator.sink.events('step');
  t.is(steps.length, 3);
  t.true(steps.every((l) => l.n === BATCH && workerIds(l).length === 2), 'every step: two ranks, the whole batch');
});
