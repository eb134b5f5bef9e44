import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { smallFashionMnist, spawnDrover, spawnWorker, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

const BATCH = 32;

async function readJsonLines(file: string): Promise<Record<string, unknown>[]> {
  return (await readFile(file, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

test.serial('drover coordinator --resume auto starts fresh without a checkpoint, and started again on the same output folder after a SIGTERM continues the job', async (t) => {
  const dir = await tempDir(t);
  const jobFile = path.join(dir, 'job.json');
  await writeFile(jobFile, JSON.stringify({
    name: 'resume-auto',
    seed: 5,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: 640 + 64, validationSize: 64, limitTest: 64 },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 16 }] },
    train: { epochs: 2, batchSize: BATCH, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.002 } },
    output: { dir: path.join(dir, 'out') },
    cluster: { port: 0, host: '127.0.0.1', minWorkers: 1, checkpointEvery: 100, joinTimeoutMs: 60_000 },
  }));

  // The same command both times, as a Job's pod template runs it.
  const first = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', 'auto']);
  const fresh = await first.sink.waitFor((l) => l.resume === 'auto', 'the --resume auto decision');
  t.false(fresh.resuming, 'no checkpoint yet: a fresh start');
  const listening = await first.sink.waitFor((l) => typeof l.port === 'number', 'the first coordinator listening');
  const port = listening.port as number;
  // >= 100 ms a step, so the SIGTERM lands mid-job; --wait-for-resume: the worker waits for the restart.
  const worker = spawnWorker(t, port, { name: 'patient', args: ['--simulate-compute-ms', '100', '--wait-for-resume'] });
  await first.sink.waitFor((l) => l.event === 'step' && (l.step as number) >= 3, 'step 3 of the first run');
  first.kill('SIGTERM'); // a deleted pod: finish the step, checkpoint, stop
  const stopped = await first.sink.waitFor((l) => l.event === 'job_end', 'the first run to stop');
  t.is(stopped.status, 'stopped');
  t.is(await first.exited, 143, 'stopped, not completed: a Job must start it again');
  const stoppedAt = stopped.steps as number;
  t.true(stoppedAt >= 3 && stoppedAt < 40, `stopped mid-job at step ${stoppedAt}`);
  t.truthy(first.sink.events('checkpoint').find((l) => l.step === stoppedAt), 'a checkpoint of the last step on the way out');

  const second = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', 'auto', '--port', String(port)]);
  const resumed = await second.sink.waitFor((l) => l.resume === 'auto', 'the second --resume auto decision');
  t.true(resumed.resuming, 'the checkpoint is found');
  const start = await second.sink.waitFor((l) => l.event === 'job_start', 'the resumed job_start');
  t.is((start.resumedFrom as { step: number }).step, stoppedAt);
  t.is(start.job, listening.jobId, 'the same job id, so the worker rejoins it');
  const end = await second.sink.waitFor((l) => l.event === 'job_end', 'the resumed job to finish', 120_000);
  t.is(end.status, 'completed');
  t.is(end.steps, 40);
  t.deepEqual(second.sink.events('step').map((l) => l.step), Array.from({ length: 40 - stoppedAt }, (_, i) => stoppedAt + 1 + i), 'continues after the stop, no step repeated or skipped');
  t.is(await second.exited, 0);
  t.is(await worker.exited, 0, 'the worker that waited finishes with the job');
  t.true(worker.sink.lines.some((l) => /waiting for it to resume/.test(String(l.msg))));
  // The run folder's own log, with no --log: the resumed run appended to the first one's.
  const log = await readJsonLines(path.join(dir, 'out', 'latest', 'run.jsonl'));
  t.deepEqual(log.filter((l) => l.event === 'job_start').map((l) => l.resumedFrom === undefined ? 'fresh' : 'resumed'), ['fresh', 'resumed']);
  t.deepEqual(log.filter((l) => l.event === 'job_end').map((l) => l.status), ['stopped', 'completed']);
});

test.serial('a drover worker stopped by SIGTERM leaves the job and exits 143, so a Kubernetes Job runs its index again', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(128);
  t.teardown(() => dataset.close());
  // minWorkers 2: the one worker joins and waits, the job does not end under it.
  const coordinator = await startCoordinator(t, testJob(dir, { cluster: { minWorkers: 2 } }), { dataset });
  const worker = spawnWorker(t, coordinator.port, { name: 'terminated', args: ['--simulate-compute-ms', '1', '--wait-for-resume'] });
  await worker.sink.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('joined job'), 'the worker to join');
  worker.kill('SIGTERM');
  t.is(await worker.exited, 143);
  const left = await coordinator.sink.waitFor((l) => l.event === 'worker_leave', 'the worker to leave');
  t.regex(String(left.reason), /signal/);
  t.true(worker.sink.lines.some((l) => l.msg === 'worker finished: stopped'));
});

/** A small job file for the coordinator restarts below. */
async function writeSmallJob(dir: string, name: string): Promise<string> {
  const jobFile = path.join(dir, 'job.json');
  await writeFile(jobFile, JSON.stringify({
    name,
    seed: 3,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: 128 + 32, validationSize: 32, limitTest: 32 },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 8 }] },
    train: { epochs: 1, batchSize: BATCH, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.01 } },
    output: { dir: path.join(dir, 'out') },
    cluster: { port: 0, host: '127.0.0.1', minWorkers: 1, joinTimeoutMs: 60_000 },
  }));
  return jobFile;
}

test.serial('a drover coordinator stopped by SIGTERM before any worker joins exits 143, so a Kubernetes Job does not count a failure', async (t) => {
  const dir = await tempDir(t);
  const jobFile = await writeSmallJob(dir, 'stopped-waiting');
  const coordinator = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', 'auto']);
  await coordinator.sink.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('waiting for workers'), 'the coordinator to wait for workers');
  coordinator.kill('SIGTERM');
  const end = await coordinator.sink.waitFor((l) => l.event === 'job_end', 'the coordinator to stop');
  t.is(end.status, 'stopped');
  t.is(end.steps, 0);
  t.is(await coordinator.exited, 143);
});

test.serial('a worker waiting for resume joins a coordinator restarted before its first checkpoint, which runs the job under a new id', async (t) => {
  const dir = await tempDir(t);
  const jobFile = await writeSmallJob(dir, 'restart-early');
  // --min-workers 2: the one worker joins, nothing trains, so no checkpoint keeps the job id.
  const first = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', 'auto', '--min-workers', '2']);
  const listening = await first.sink.waitFor((l) => typeof l.port === 'number', 'the first coordinator listening');
  const port = listening.port as number;
  const worker = spawnWorker(t, port, { name: 'patient', args: ['--simulate-compute-ms', '1', '--wait-for-resume'] });
  await worker.sink.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('joined job'), 'the worker to join');
  first.kill('SIGTERM');
  t.is(await first.exited, 143);

  const second = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', 'auto', '--port', String(port)]);
  const restarted = await second.sink.waitFor((l) => typeof l.jobId === 'string', 'the second coordinator listening');
  t.not(restarted.jobId, listening.jobId, 'a fresh start: a new job id');
  const end = await second.sink.waitFor((l) => l.event === 'job_end', 'the restarted job to finish', 120_000);
  t.is(end.status, 'completed');
  t.is(await second.exited, 0);
  t.is(await worker.exited, 0, 'the worker rejoined the new job and finished with it');
  const joins = worker.sink.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('joined job'));
  t.deepEqual(joins.map((l) => l.job), [listening.jobId, restarted.jobId]);
});

test.serial('a fresh start under --resume auto (no checkpoint) truncates the --log file instead of appending a second run to it', async (t) => {
  const dir = await tempDir(t);
  const jobFile = await writeSmallJob(dir, 'fresh-log');
  const logFile = path.join(dir, 'run.jsonl');
  for (const run of ['first', 'second']) {
    // Stopped before any worker joins: no checkpoint, so the second start is fresh too.
    const coordinator = spawnDrover(t, ['coordinator', '--config', jobFile, '--resume', 'auto', '--log', logFile]);
    await coordinator.sink.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('waiting for workers'), `the ${run} coordinator to wait for workers`);
    coordinator.kill('SIGTERM');
    t.is(await coordinator.exited, 143);
  }
  const log = await readJsonLines(logFile);
  t.is(log.filter((l) => l.event === 'job_start').length, 1, 'only the second run, which started fresh');
  t.is(log.filter((l) => l.resume === 'auto').length, 1);
});
