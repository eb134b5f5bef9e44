import test from 'ava';
import { parseJob } from '../src/job/job-file.ts';
import { runCoordinator } from '../src/coordinator/run-coordinator.ts';
import { createRunFeed } from '../src/telemetry/feed.ts';
import { EventSink, smallFashionMnist, spawnWorker, tempDir, testJob } from './helpers/cluster.ts';

// One checkpoint interval, train.checkpointEvery, for single-process and distributed runs;
// cluster.checkpointEvery is its deprecated alias.

const train = { epochs: 1, batchSize: 32, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } } as const;

test('cluster.checkpointEvery is an alias of train.checkpointEvery: whichever is set applies to both; two different values are a ConfigError', (t) => {
  t.like(parseJob({ train: { checkpointEvery: 5 }, cluster: {} }), { train: { checkpointEvery: 5 }, cluster: { checkpointEvery: 5 } });
  t.like(parseJob({ cluster: { checkpointEvery: 7 } }), { train: { checkpointEvery: 7 }, cluster: { checkpointEvery: 7 } });
  t.like(parseJob({ train: { checkpointEvery: 3 } }), { train: { checkpointEvery: 3 } });
  t.like(parseJob({ train: { checkpointEvery: 4 }, cluster: { checkpointEvery: 4 } }), { train: { checkpointEvery: 4 } });
  t.throws(() => parseJob({ train: { checkpointEvery: 4 }, cluster: { checkpointEvery: 6 } }, 'job.yaml'), {
    code: 'DROVER_ERR_CONFIG',
    message: /job\.yaml: cluster\.checkpointEvery \(6\) is a deprecated alias of train\.checkpointEvery \(4\)/,
  });
});

test.serial('a distributed run checkpoints every train.checkpointEvery steps (no cluster section needed)', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(256);
  t.teardown(() => dataset.close());
  const sink = new EventSink();
  const feed = await createRunFeed({ stdout: sink as unknown as NodeJS.WriteStream, progress: 'never' });
  t.teardown(() => feed.close());
  const job = testJob(dir, { train: { ...train, checkpointEvery: 3 }, cluster: { minWorkers: 1 } });
  const result = await runCoordinator({ job, dataset, log: feed.logger, onListening: (info) => {
    spawnWorker(t, info.port, { name: 'every3' });
  } });
  t.is(result.status, 'completed');
  t.is(result.steps, 8);
  // Steps 3 and 6 inside the epoch, then the epoch's end (step 8).
  t.deepEqual(sink.events('checkpoint').map((e) => e.step), [3, 6, 8]);
});
