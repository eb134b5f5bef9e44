import test from 'ava';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadJobFile, parseJob } from '../src/job/job-file.ts';
import { ConfigError } from '../src/errors.ts';

test('an empty job gets the reference defaults: fmnist-cnn, Adam 1e-3, batch 64, 5 epochs', (t) => {
  const job = parseJob({});
  t.is(job.train.epochs, 5);
  t.is(job.model.preset, 'fmnist-cnn');
  t.is(job.train.batchSize, 64);
  t.deepEqual(job.train.optimizer, { name: 'adam', learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 });
  t.is(job.data.kind, 'default');
});

const badJobs: Array<[string, unknown, string]> = [
  ['a negative learning rate', { train: { optimizer: { name: 'adam', learningRate: -1 } } }, 'train.optimizer.learningRate'],
  ['a misspelt section', { trian: { epochs: 3 } }, 'trian'],
  ['an unknown optimizer field', { train: { optimizer: { name: 'sgd', lr: 0.1 } } }, 'train.optimizer.lr'],
  ['an unknown preset', { model: { preset: 'resnet-9000' } }, 'model.preset'],
  ['a layer with a wrong type', { model: { layers: [{ type: 'conv2d', filters: 'many', kernelSize: 3 }] } }, 'model.layers[0].filters'],
  ['an unknown layer type', { model: { layers: [{ type: 'flatten' }, { type: 'lstm' }] } }, 'model.layers[1].type'],
  ['a zero batch size', { train: { batchSize: 0 } }, 'train.batchSize'],
  ['an unknown backend', { backend: 'cuda' }, 'backend'],
  ['an idx source without a folder', { data: { kind: 'idx' } }, 'data.dir'],
];

for (const [what, job, field] of badJobs) {
  test(`a job with ${what} is refused naming ${field}`, (t) => {
    const error = t.throws(() => parseJob(job), { instanceOf: ConfigError });
    t.is(error?.field, field);
    t.is(error?.code, 'DROVER_ERR_CONFIG');
    t.true(error!.message.includes(field));
  });
}

test('preset and layers together are refused', (t) => {
  const error = t.throws(() => parseJob({ model: { preset: 'fmnist-cnn', layers: [{ type: 'flatten' }] } }), { instanceOf: ConfigError });
  t.regex(error!.message, /exactly one of model.preset, model.layers or model.transfer/);
});

test('YAML and JSON job files load; a syntax error names the file', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-job-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const yamlFile = path.join(dir, 'job.yaml');
  await writeFile(yamlFile, 'name: demo\ntrain:\n  epochs: 2\n  optimizer: { name: sgd, learningRate: 0.1, momentum: 0.9 }\n');
  const job = await loadJobFile(yamlFile);
  t.is(job.name, 'demo');
  t.is(job.train.epochs, 2);
  t.like(job.train.optimizer, { name: 'sgd', learningRate: 0.1, momentum: 0.9 });
  const jsonFile = path.join(dir, 'job.json');
  await writeFile(jsonFile, '{"train": {"epochs": 4}}');
  t.is((await loadJobFile(jsonFile)).train.epochs, 4);
  const broken = path.join(dir, 'broken.json');
  await writeFile(broken, '{"train": ');
  await t.throwsAsync(loadJobFile(broken), { instanceOf: ConfigError, message: /broken\.json is not valid JSON/ });
});
