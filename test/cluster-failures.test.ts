import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { initBackend } from '../src/model/backend.ts';
import { smallFashionMnist, spawnDrover, spawnWorker, startCoordinator, tempDir, testJob, type LogLine } from './helpers/cluster.ts';

// Real worker processes, killed for real: one at a time, so the 2 shared cores stay predictable.
test.before(async () => {
  await initBackend('wasm');
});

const BATCH = 64;
const stepN = (line: LogLine): number => line.n as number;
const workerIds = (line: LogLine): string[] => (line.workers as { worker: string }[]).map((w) => w.worker);

test.serial('a worker killed with kill -9 mid-job has its shard reassigned within the same step: no sample dropped', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(BATCH * 40);
  const job = testJob(dir, { train: { epochs: 3, batchSize: BATCH, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } }, cluster: { minWorkers: 2 } });
  const coordinator = await startCoordinator(t, job, { dataset });
  const victim = spawnWorker(t, coordinator.port, { name: 'victim' });
  spawnWorker(t, coordinator.port, { name: 'survivor' });
  const { sink } = coordinator;
  // Both hold shards from the first step on (the current one and the prefetched next one).
  await sink.waitFor((l) => l.event === 'step' && workerIds(l).length === 2, 'a step computed by both workers');
  const victimId = sink.events('worker_join').find((l) => String(l.worker).endsWith('victim'))!.worker as string;
  victim.kill('SIGKILL');
  const failed = await sink.waitFor((l) => l.event === 'worker_fail', 'worker_fail of the killed worker');
  t.is(failed.worker, victimId);
  const reassigned = await sink.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('reassigned') && l.worker === victimId, 'its shard reassigned');
  const step = reassigned.step as number;
  // That very step completes, computed by the survivor alone, with every sample of its batch.
  const done = await sink.waitFor((l) => l.event === 'step' && l.step === step, `step ${step}`);
  t.is(stepN(done), BATCH);
  t.false(workerIds(done).includes(victimId));
  await sink.waitFor((l) => l.event === 'step' && (l.step as number) >= step + 2, 'two more steps');
  coordinator.stop();
  const result = await coordinator.result;
  t.is(result.status, 'stopped');
  const steps = sink.events('step');
  t.deepEqual(steps.map((l) => l.step), steps.map((_, i) => i + 1), 'no step skipped');
  t.true(steps.every((l) => stepN(l) === BATCH), 'every step covered its whole batch');
  t.is(await victim.exited, null);
});

test.serial('a stalled worker that misses the step deadline is evicted, named, and its shard reassigned', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(BATCH * 40);
  const job = testJob(dir, { train: { epochs: 3, batchSize: BATCH, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } }, cluster: { minWorkers: 2, stepDeadlineMs: 2000 } });
  const coordinator = await startCoordinator(t, job, { dataset });
  const stalled = spawnWorker(t, coordinator.port, { name: 'stalled' });
  spawnWorker(t, coordinator.port, { name: 'healthy' });
  const { sink } = coordinator;
  await sink.waitFor((l) => l.event === 'step' && workerIds(l).length === 2, 'a step computed by both workers');
  const stalledId = sink.events('worker_join').find((l) => String(l.worker).endsWith('stalled'))!.worker as string;
  // SIGSTOP: the process is alive and its connection open, but it computes nothing.
  stalled.kill('SIGSTOP');
  const failed = await sink.waitFor((l) => l.event === 'worker_fail' && l.worker === stalledId, 'the stalled worker evicted', 30_000);
  t.regex(String(failed.reason), /missed the deadline of 2000 ms in step \d+/);
  const reassigned = await sink.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('reassigned') && l.worker === stalledId, 'its shard reassigned');
  const done = await sink.waitFor((l) => l.event === 'step' && l.step === reassigned.step, `step ${reassigned.step}`);
  t.is(stepN(done), BATCH);
  coordinator.stop();
  await coordinator.result;
  t.true(sink.events('step').every((l) => stepN(l) === BATCH));
});

test.serial('a new worker joins at a step boundary and takes a shard of the following steps', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(BATCH * 40);
  // More epochs than it will run (the test stops it): a short job could end, at ~1 ms a step,
  // before the late worker's process has started.
  const job = testJob(dir, { train: { epochs: 1000, batchSize: BATCH, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } }, cluster: { minWorkers: 1 } });
  const coordinator = await startCoordinator(t, job, { dataset });
  spawnWorker(t, coordinator.port, { name: 'first' });
  const { sink } = coordinator;
  await sink.waitFor((l) => l.event === 'step', 'the first step, with one worker');
  spawnWorker(t, coordinator.port, { name: 'late' });
  const joined = await sink.waitFor((l) => l.event === 'worker_join' && String(l.worker).endsWith('late'), 'the late worker joining');
  const lateId = joined.worker as string;
  const shared = await sink.waitFor((l) => l.event === 'step' && workerIds(l).includes(lateId), 'a step with a shard for the late worker');
  t.true((shared.step as number) > (joined.step as number), 'it joined at a boundary and computed in a later step');
  t.is(workerIds(shared).length, 2);
  coordinator.stop();
  await coordinator.result;
  t.true(sink.events('step').every((l) => stepN(l) === BATCH), 'the global batch stayed fixed');
});

test.serial('drover coordinator --resume continues from the last checkpoint after the coordinator is killed', async (t) => {
  const dir = await tempDir(t);
  const jobFile = path.join(dir, 'job.json');
  await writeFile(jobFile, JSON.stringify({
    name: 'resume-test',
    seed: 4,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: 640 + 64, validationSize: 64, limitTest: 64 },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 16 }] },
    train: { epochs: 2, batchSize: BATCH, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.002 } },
    output: { dir: path.join(dir, 'out') },
    cluster: { port: 0, host: '127.0.0.1', minWorkers: 1, checkpointEvery: 4, joinTimeoutMs: 60_000 },
  }));
  const first = spawnDrover(t, ['coordinator', '--config', jobFile]);
  const listening = await first.sink.waitFor((l) => typeof l.port === 'number', 'the first coordinator listening');
  const port = listening.port as number;
  // Steps of at least 100 ms: the kill must land before the checkpoint of step 8 (real steps
  // take ~1 ms here, less than the test needs to see the event and kill).
  const worker = spawnWorker(t, port, { name: 'steady', args: ['--simulate-compute-ms', '100'] });
  const checkpoint = await first.sink.waitFor((l) => l.event === 'checkpoint' && l.step === 4, 'the checkpoint at step 4');
  first.kill('SIGKILL');
  await first.exited;

  const second = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', '--port', String(port)]);
  const start = await second.sink.waitFor((l) => l.event === 'job_start', 'the resumed job_start');
  t.deepEqual(start.resumedFrom, { epoch: 0, step: 4 });
  t.is(start.job, listening.jobId, 'the same job id, so workers rejoin it');
  const end = await second.sink.waitFor((l) => l.event === 'job_end', 'the resumed job to finish', 90_000);
  t.is(end.status, 'completed');
  t.is(end.steps, 20);
  const steps = second.sink.events('step').map((l) => l.step);
  t.deepEqual(steps, Array.from({ length: 16 }, (_, i) => i + 5), 'continues at step 5, none repeated or skipped');
  t.is(second.sink.events('epoch').length, 2);
  // The same worker process rejoined the restarted coordinator on its own.
  t.is(worker.sink.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('joined job')).length, 2);
  t.is(await worker.exited, 0);
  t.is(await second.exited, 0);
  t.truthy(checkpoint.path);
});
