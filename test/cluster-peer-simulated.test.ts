import test from 'ava';
import { initBackend } from '../src/model/backend.ts';
import type { ReplicaSpec } from '../src/job/replica-spec.ts';
import { isPeerReplica } from '../src/worker/compute-replica.ts';
import { SimulatedReplica } from '../src/worker/simulated-replica.ts';
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

test('a simulated replica is a peer replica whose state has the sizes of its weights and of the optimizer state it was sent', async (t) => {
  const weights = [
    { name: 'w', shape: [3, 2], trainable: true },
    { name: 'stat', shape: [4], trainable: false },
  ];
  const replica = new SimulatedReplica({ weights } as unknown as ReplicaSpec, { msPerTask: 0 });
  t.true(isPeerReplica(replica));
  t.false(replica.reportsBuffers);
  replica.setOptimizerState({ iterations: 5, slots: [{ name: 'm/0', values: new Float32Array(6) }, { name: 'v/0', values: new Float32Array(6) }] });
  t.true(await replica.applyReduced([new Float32Array(6)], [], 0.1, 7));
  t.is(replica.version, 7);
  const state = await replica.readState();
  t.deepEqual(state.weights.map((w) => w.length), [6, 4]);
  t.is(state.optimizer.iterations, 6);
  t.deepEqual(state.optimizer.slots.map((s) => [s.name, s.values.length]), [['m/0', 6], ['v/0', 6]]);
  replica.skipTo(8);
  t.is(replica.version, 8);
});
