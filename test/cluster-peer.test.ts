import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { initBackend } from '../src/model/backend.ts';
import { loadModel } from '../src/model/export.ts';
import { readWeights } from '../src/model/weights.ts';
import { runWorker } from '../src/worker/run-worker.ts';
import { GradientModel } from '../src/train/gradient-model.ts';
import { runWithLocalWorkers } from '../src/launch/local-workers.ts';
import { EventSink, sinkLogger, smallFashionMnist, spawnDrover, spawnWorker, startCoordinator, tempDir, testJob, type LogLine } from './helpers/cluster.ts';

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

test.serial('peer reduction: the same seed and worker count give bit-identical weights twice', async (t) => {
  const first = await train(t, ['a', 'b', 'c'], { reduction: 'peer' }, { optimizer: { name: 'adam', learningRate: 0.01 } }, 96 * 4);
  const second = await train(t, ['a', 'b', 'c'], { reduction: 'peer' }, { optimizer: { name: 'adam', learningRate: 0.01 } }, 96 * 4);
  t.is(first.result.status, 'completed');
  t.true(first.sink.events('step').every((l) => workerIds(l).length === 3), 'every step had 3 ranks');
  first.weights.manifest.forEach((entry, i) => {
    const a = first.weights.values[i]!;
    const b = second.weights.values[i]!;
    const differing = a.findIndex((v, j) => !Object.is(v, b[j]));
    t.is(differing, -1, `${entry.name}: value ${differing} differs (${a[differing]} vs ${b[differing]})`);
  });
});

/** A peer job on 3 worker processes, long enough to lose one mid-run; the coordinator and the workers. */
async function threeWorkers(t: Parameters<typeof tempDir>[0], cluster: Record<string, unknown> = {}) {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(BATCH * 20);
  const job = testJob(dir, { seed: 5, train: { epochs: 2, batchSize: BATCH, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } }, cluster: { minWorkers: 3, reduction: 'peer', ...cluster } });
  const coordinator = await startCoordinator(t, job, { dataset });
  const workers = ['victim', 'b', 'c'].map((name) => spawnWorker(t, coordinator.port, { name }));
  const { sink } = coordinator;
  await sink.waitFor((l) => l.event === 'step' && workerIds(l).length === 3, 'a step reduced by all three');
  const victimId = sink.events('worker_join').find((l) => String(l.worker).endsWith('victim'))!.worker as string;
  return { coordinator, victim: workers[0]!, victimId, sink };
}

/** The job completed, every step covered its whole batch, none was skipped or repeated: every sample once per epoch. */
function checkEverySampleOnce(t: Parameters<typeof tempDir>[0], sink: { events(name: string): LogLine[] }): void {
  const steps = sink.events('step');
  t.deepEqual(steps.map((l) => l.step), steps.map((_, i) => i + 1), 'no step skipped or repeated');
  t.is(steps.length, 40);
  t.true(steps.every((l) => stepN(l) === BATCH), 'every step covered its whole batch');
}

test.serial('peer reduction: a worker killed with kill -9 mid-run is evicted, the step is redone by the others, and the job completes', async (t) => {
  const { coordinator, victim, victimId, sink } = await threeWorkers(t);
  victim.kill('SIGKILL');
  const failed = await sink.waitFor((l) => l.event === 'worker_fail' && l.worker === victimId, 'worker_fail of the killed worker');
  const result = await coordinator.result;
  t.log(`evicted: ${String(failed.reason)}; abandoned attempts: ${sink.lines.filter((l) => /peer reduction abandoned/.test(String(l.msg))).map((l) => l.msg).join(' | ') || 'none (it died between steps)'}`);
  t.is(result.status, 'completed');
  checkEverySampleOnce(t, sink);
  const after = sink.events('step').filter((l) => !workerIds(l).includes(victimId));
  t.true(after.length > 0 && after.every((l) => workerIds(l).length === 2), 'the steps after it were reduced by the two survivors');
});

test.serial('peer reduction: a SIGSTOPped worker is named by its peers at the deadline, evicted, and the job completes', async (t) => {
  const { coordinator, victim, victimId, sink } = await threeWorkers(t, { stepDeadlineMs: 2000 });
  victim.kill('SIGSTOP');
  const failed = await sink.waitFor((l) => l.event === 'worker_fail' && l.worker === victimId, 'the stopped worker evicted', 30_000);
  t.regex(String(failed.reason), /named by its peers in step \d+ \(deadline|missed the deadline/);
  t.log(`evicted: ${String(failed.reason)}`);
  const result = await coordinator.result;
  t.is(result.status, 'completed');
  checkEverySampleOnce(t, sink);
});

test.serial('peer reduction: a worker that joins mid-run gets the weights and optimizer state from a peer and reduces the following steps', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(BATCH * 20);
  // Momentum: the optimizer has state a joiner must get, or its replica would drift from the others'.
  const job = testJob(dir, { seed: 7, train: { epochs: 4, batchSize: BATCH, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05, momentum: 0.9 } }, cluster: { minWorkers: 1, reduction: 'peer', balance: 'equal' } });
  const coordinator = await startCoordinator(t, job, { dataset });
  spawnWorker(t, coordinator.port, { name: 'first' });
  const { sink } = coordinator;
  await sink.waitFor((l) => l.event === 'step' && (l.step as number) >= 3, 'three steps with one worker');
  // In this process: a new process would take longer to start than the job takes to end.
  const lateSink = new EventSink();
  const late = runWorker({ coordinator: `127.0.0.1:${coordinator.port}`, backend: 'wasm', name: 'late', log: sinkLogger(lateSink) });
  const joined = await sink.waitFor((l) => l.event === 'worker_join' && String(l.worker).endsWith('late'), 'the late worker joining');
  const lateId = joined.worker as string;
  const shared = await sink.waitFor((l) => l.event === 'step' && workerIds(l).includes(lateId), 'a step reduced with the late worker', 120_000);
  t.is(workerIds(shared).length, 2);
  const result = await coordinator.result;
  t.is(result.status, 'completed');
  const steps = sink.events('step');
  t.is(steps.length, 80);
  t.true(steps.every((l) => stepN(l) === BATCH));
  // Both replicas stayed identical: no fault, no abandoned attempt, and the loss kept falling.
  t.false(sink.lines.some((l) => /peer reduction abandoned/.test(String(l.msg))));
  t.is((await late).status, 'completed');
  t.deepEqual(lateSink.lines.filter((l) => (l.level as number) >= 40).map((l) => l.msg), []);
  const mean = (lines: LogLine[]): number => lines.reduce((sum, l) => sum + (l.loss as number), 0) / lines.length;
  t.true(mean(steps.slice(-10)) < mean(steps.slice(0, 3)), 'training went on');
  // The same job on the star with one worker: a joiner without the momentum would have pulled the replicas apart.
  const peerWeights = await exported(dir);
  const starDir = await tempDir(t);
  const star = await startCoordinator(t, testJob(starDir, { seed: 7, train: job.train, cluster: { minWorkers: 1 } }), { dataset });
  spawnWorker(t, star.port, { name: 'solo' });
  t.is((await star.result).status, 'completed');
  const starWeights = await exported(starDir);
  let worst = 0;
  starWeights.values.forEach((values, i) => values.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - peerWeights.values[i]![j]!)))));
  t.log(`largest weight difference from the star: ${worst.toExponential(2)}`);
  t.true(worst < 1e-4, `largest weight difference from the star: ${worst}`);
});

async function exported(dir: string) {
  const saved = await loadModel(path.join(dir, 'model'));
  const weights = await readWeights(saved.model);
  saved.model.dispose();
  return weights;
}

test.serial('peer reduction: drover coordinator --resume after a kill -9 of the coordinator restores the weights and optimizer state and continues', async (t) => {
  const dir = await tempDir(t);
  const jobFile = path.join(dir, 'job.json');
  await writeFile(jobFile, JSON.stringify({
    name: 'peer-resume-test',
    seed: 4,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: BATCH * 40, validationSize: 64, limitTest: 64 },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 16 }] },
    train: { epochs: 2, batchSize: BATCH, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.002 } },
    output: { dir: path.join(dir, 'out') },
    cluster: { port: 0, host: '127.0.0.1', minWorkers: 2, checkpointEvery: 4, joinTimeoutMs: 60_000, reduction: 'peer' },
  }));
  const first = spawnDrover(t, ['coordinator', '--config', jobFile]);
  const listening = await first.sink.waitFor((l) => typeof l.port === 'number', 'the first coordinator listening');
  const port = listening.port as number;
  const workers = ['a', 'b'].map((name) => spawnWorker(t, port, { name }));
  await first.sink.waitFor((l) => l.event === 'checkpoint' && l.step === 4, 'the checkpoint at step 4');
  first.kill('SIGKILL');
  await first.exited;
  const saved = Math.max(...first.sink.events('checkpoint').map((l) => l.step as number));

  const second = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', '--port', String(port)]);
  const start = await second.sink.waitFor((l) => l.event === 'job_start', 'the resumed job_start');
  const from = (start.resumedFrom as { step: number }).step;
  t.true(from >= saved && from % 4 === 0 && from < 78, `resumed from step ${from} (last checkpoint seen: ${saved})`);
  const end = await second.sink.waitFor((l) => l.event === 'job_end', 'the resumed job to finish', 120_000);
  t.is(end.status, 'completed');
  t.is(end.steps, 78);
  const steps = second.sink.events('step');
  t.deepEqual(steps.map((l) => l.step), Array.from({ length: 78 - from }, (_, i) => i + from + 1), 'continues after the checkpoint, none repeated or skipped');
  t.true(steps.every((l) => stepN(l) === BATCH && workerIds(l).length === 2), 'both workers rejoined and reduced every step');
  // The resumed job trained on to a model that classifies.
  t.true((second.sink.events('evaluation').at(-1)?.accuracy as number) > 0.5);
  for (const worker of workers) t.is(await worker.exited, 0);
  t.is(await second.exited, 0);
});

test.serial('peer reduction: drover train --workers 2 with cluster.wire bf16 trains with two local worker processes', async (t) => {
  const dir = await tempDir(t);
  const sink = new EventSink();
  const data = { kind: 'idx' as const, dir: FASHION_MNIST_DIR, limitTrain: 64 * 12 + 128, validationSize: 128, limitTest: 128 };
  const result = await runWithLocalWorkers({
    job: testJob(dir, { data, train: { epochs: 1, batchSize: 64, logEvery: 4, optimizer: { name: 'adam', learningRate: 0.003 } }, cluster: { reduction: 'peer', wire: 'bf16' } }),
    workers: 2,
    log: sinkLogger(sink),
  });
  t.is(result.status, 'completed');
  t.is(result.steps, 12);
  t.true(sink.events('step').some((l) => workerIds(l).length === 2), 'both workers reduced steps');
  t.true(result.test!.accuracy > 0.4, `test accuracy ${result.test!.accuracy}`);
});

test.serial('peer reduction: early stopping restores the best weights on every replica; export and checkpoint keep them', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(256, 128, 128);
  const job = testJob(dir, {
    train: {
      epochs: 6,
      batchSize: 64,
      logEvery: 4,
      optimizer: { name: 'adam', learningRate: 0.01 },
      // No later epoch can beat the first by 100: stop after `patience` = 1 more epoch.
      earlyStopping: { monitor: 'val_loss', patience: 1, minDelta: 100, restoreBest: true },
    },
    cluster: { minWorkers: 2, reduction: 'peer' },
  });
  const coordinator = await startCoordinator(t, job, { dataset });
  for (const name of ['a', 'b']) spawnWorker(t, coordinator.port, { name });
  const result = await coordinator.result;
  t.is(result.status, 'early_stopped');
  t.is(result.bestEpoch, 1);
  const { loadCheckpoint, checkpointPath } = await import('../src/job/checkpoint.ts');
  const checkpoint = await loadCheckpoint(checkpointPath(dir));
  const weights = await exported(dir);
  weights.values.forEach((values, i) => t.deepEqual(values, checkpoint.bestWeights!.values[i], weights.manifest[i]!.name));
  // Both replicas evaluated the test split on the restored weights: the same correct count as the exported model here.
  const [test] = coordinator.sink.events('evaluation', (l) => l.split === 'test');
  t.is(test!.n, 128);
  const saved = await loadModel(path.join(dir, 'model'));
  const batch = await dataset.test!.loadBatch(Array.from({ length: 128 }, (_, i) => i));
  const local = await new GradientModel(saved.model).evaluate(batch);
  saved.model.dispose();
  t.is(Math.round((test!.accuracy as number) * 128), local.correct);
});
