import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openDataset } from '../src/data/open.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { loadModel } from '../src/model/export.ts';
import { readWeights } from '../src/model/weights.ts';
import { Trainer } from '../src/train/trainer.ts';
import { runWorker } from '../src/worker/run-worker.ts';
import { makeImageFolder } from './helpers/image-fixtures.ts';
import { EventSink, compareUpdates, sinkLogger, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

test.before(async () => {
  await initBackend('wasm');
});

test('image files travel as their encoded bytes and are decoded in the workers\' pools; an undecodable one is a counted skip in the coordinator\'s run log', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'images');
  await makeImageFolder(root, { cats: 20, dogs: 20 }, 16, 'png');
  // Readable (so the coordinator ships it) but not an image: the worker that decodes it skips it.
  await writeFile(path.join(root, 'dogs', 'broken.png'), 'this is not a PNG');
  const spec = { kind: 'folder', path: root, imageSize: [12, 12] };
  const dataset = await openDataset(spec);
  t.teardown(() => dataset.close());
  t.is(dataset.train.length, 41);
  const layers = [{ type: 'flatten' as const }, { type: 'dense' as const, units: 8 }];
  const job = testJob(dir, { seed: 5, model: { layers }, train: { epochs: 1, batchSize: 41, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.5 } }, cluster: { minWorkers: 2, balance: 'equal' } });
  const coordinator = await startCoordinator(t, job, { dataset });
  const sinks = [new EventSink(), new EventSink()];
  const workers = sinks.map((sink, i) => runWorker({ coordinator: `127.0.0.1:${coordinator.port}`, backend: 'wasm', name: `w${i}`, log: sinkLogger(sink) }));
  const result = await coordinator.result;
  await Promise.all(workers);
  const [step] = coordinator.sink.events('step');
  t.is(step!.n, 40, 'the broken file was skipped, the other 40 samples trained');
  const skips = sinks.flatMap((s) => s.events('data_skip'));
  t.is(skips.length, 1);
  t.is(skips[0]!.reason, 'unsupported_format');
  // The coordinator's run log (what the dashboard and reports read) has it too, by its path.
  const logged = coordinator.sink.events('data_skip');
  t.is(logged.length, 1);
  t.is(logged[0]!.path, path.join(root, 'dogs', 'broken.png'));
  t.is(logged[0]!.reason, 'unsupported_format');
  t.regex(String(logged[0]!.worker), /^w\d-w[01]$/);
  t.is(result.steps, 1);

  // Decoding on the workers gives exactly the batch the coordinator's own pipeline gives.
  const reference = new Trainer(buildScratchModel({ layers, inputShape: dataset.inputShape, classes: 2, l2: 0, seed: 5 }), { optimizer: job.train.optimizer });
  const w0 = await readWeights(reference.model);
  const batch = await dataset.train.loadBatch(Array.from({ length: 41 }, (_, i) => i));
  t.is(batch.n, 40);
  await reference.applyGradients((await reference.computeGradients(batch)).grads, 0.5);
  const expected = await readWeights(reference.model);
  const saved = await loadModel(path.join(dir, 'model'));
  t.deepEqual(saved.classNames, ['cats', 'dogs']);
  for (const weight of compareUpdates(w0, (await readWeights(saved.model)), expected)) t.true(weight.error <= 1e-5, weight.name);
  saved.model.dispose();
  reference.model.dispose();
});
