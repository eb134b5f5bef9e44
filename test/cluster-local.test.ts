import test from 'ava';
import { runWithLocalWorkers } from '../src/launch/local-workers.ts';
import { ClusterError } from '../src/errors.ts';
import { initBackend } from '../src/model/backend.ts';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { loadModel } from '../src/model/export.ts';
import { parseEventObject } from '../src/telemetry/events.ts';
import { alive, EventSink, sinkLogger, tempDir, testJob } from './helpers/cluster.ts';

test.before(async () => {
  await initBackend('wasm');
});


const smallData = { kind: 'idx' as const, dir: FASHION_MNIST_DIR, limitTrain: 64 * 12 + 128, validationSize: 128, limitTest: 128 };

test.serial('drover train --workers 2 trains with two local worker processes and leaves none running', async (t) => {
  const dir = await tempDir(t);
  const sink = new EventSink();
  let pids: number[] = [];
  const result = await runWithLocalWorkers({
    job: testJob(dir, { data: smallData, train: { epochs: 1, batchSize: 64, logEvery: 4, optimizer: { name: 'adam', learningRate: 0.003 } } }),
    workers: 2,
    log: sinkLogger(sink),
    onWorkers: (started) => {
      pids = started;
    },
  });
  t.is(result.status, 'completed');
  t.is(result.steps, 12);
  t.is(pids.length, 2);
  t.deepEqual(pids.map(alive), [false, false]);
  t.is(sink.events('worker_join').length, 2);
  t.true(result.test!.accuracy > 0.4, `test accuracy ${result.test!.accuracy}`);
  t.is(sink.events('job_end')[0]!.status, 'completed');
  // Every event the coordinator wrote fits the schema the dashboard and reports read.
  const events = sink.lines.filter((l) => l.event !== undefined);
  t.true(events.length > 10);
  for (const line of events) t.is(parseEventObject(line).kind, 'event', `${line.event}: ${JSON.stringify(parseEventObject(line))}`);
  const saved = await loadModel(result.modelDir!);
  t.is(saved.classNames!.length, 10);
  t.is(saved.classNames![0], 'T-shirt/top');
  saved.model.dispose();
});

test.serial('Ctrl-C stops the coordinator after the step, checkpoints, and every worker exits', async (t) => {
  const dir = await tempDir(t);
  const sink = new EventSink();
  const controller = new AbortController();
  let pids: number[] = [];
  const run = runWithLocalWorkers({
    job: testJob(dir, { data: smallData, train: { epochs: 20, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } } }),
    workers: 2,
    log: sinkLogger(sink),
    signal: controller.signal,
    onWorkers: (started) => {
      pids = started;
    },
  });
  await sink.waitFor((l) => l.event === 'step' && l.step === 2, 'step 2');
  controller.abort();
  const result = await run;
  t.is(result.status, 'stopped');
  t.truthy(sink.events('checkpoint').at(-1), 'a checkpoint of where it stopped');
  t.is(sink.events('job_end')[0]!.status, 'stopped');
  t.deepEqual(pids.map(alive), [false, false]);
});

test.serial('when every local worker dies, the job fails at once and names it', async (t) => {
  const dir = await tempDir(t);
  const sink = new EventSink();
  let pids: number[] = [];
  const run = runWithLocalWorkers({
    job: testJob(dir, { data: smallData, train: { epochs: 50, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } } }),
    workers: 2,
    log: sinkLogger(sink),
    onWorkers: (started) => {
      pids = started;
    },
  });
  await sink.waitFor((l) => l.event === 'step', 'a first step');
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  await t.throwsAsync(run, { instanceOf: ClusterError, message: /every local worker is gone/ });
  const end = sink.events('job_end')[0]!;
  t.is(end.status, 'failed');
  t.is(end.code, 'DROVER_ERR_CLUSTER');
  t.deepEqual(pids.map(alive), [false, false]);
});
