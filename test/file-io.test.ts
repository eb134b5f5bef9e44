import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as tf from '@tensorflow/tfjs';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { readWeights } from '../src/model/weights.ts';
import { directoryHandler, readModelArtifacts } from '../src/model/file-io.ts';
import { loadModel, saveModel } from '../src/model/export.ts';
import { ModelError, ModelFileError } from '../src/errors.ts';
import type { ModelFileReason } from '../src/errors.ts';

test.before(async () => {
  await initBackend('wasm');
});

const CLASSES = ['cat', 'dog', 'fox'];

/** A small CNN with batch norm, so non-trainable weights (moving statistics) are in the files too. */
function smallModel(seed = 7): tf.LayersModel {
  return buildScratchModel({
    layers: [{ type: 'conv2d', filters: 4, kernelSize: 3 }, { type: 'batchNorm' }, { type: 'maxPool' }, { type: 'flatten' }, { type: 'dense', units: 8 }],
    inputShape: [8, 8, 3],
    classes: CLASSES.length,
    seed,
  });
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'drover-file-io-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A model saved with drover's metadata in `<tmp>/model`; the model is disposed by teardown. */
async function savedModel(t: ExecutionContext, options: { shardBytes?: number } = {}): Promise<{ model: tf.LayersModel; dir: string }> {
  const model = smallModel();
  t.teardown(() => model.dispose());
  const dir = path.join(await tempDir(t), 'model');
  await saveModel(model, dir, { classNames: CLASSES, preprocess: 'mobilenet', info: { job: 'unit' }, ...options });
  return { model, dir };
}

async function assertSameWeights(t: ExecutionContext, a: tf.LayersModel, b: tf.LayersModel): Promise<void> {
  const wa = await readWeights(a);
  const wb = await readWeights(b);
  t.deepEqual(wb.manifest.map((w) => w.name), wa.manifest.map((w) => w.name));
  wa.values.forEach((values, i) => t.deepEqual(wb.values[i], values, wa.manifest[i]!.name));
}

async function rejectsWith(t: ExecutionContext, promise: Promise<unknown>, reason: ModelFileReason, where: string): Promise<void> {
  const error = await t.throwsAsync(promise, { instanceOf: ModelFileError });
  t.is(error?.code, 'DROVER_ERR_MODEL_FILE');
  t.is(error?.reason, reason);
  t.is(error?.path, where);
  t.true(error?.message.includes(where), `message names ${where}: ${error?.message}`);
}

test.serial('a saved model loads back with equal weights, class names and preprocessing', async (t) => {
  const { model, dir } = await savedModel(t);
  t.deepEqual((await readdir(dir)).sort(), ['model.json', 'weights.bin']);
  const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
  t.is(json.format, 'layers-model');
  t.regex(json.generatedBy, /^TensorFlow\.js tfjs-layers v4\./);
  t.is(json.convertedBy, null);
  t.deepEqual(json.weightsManifest[0].paths, ['weights.bin']);
  t.is(json.userDefinedMetadata.drover.formatVersion, 1);

  const before = tf.memory().numTensors;
  const loaded = await loadModel(dir);
  t.deepEqual(loaded.classNames, CLASSES);
  t.is(loaded.metadata?.preprocess, 'mobilenet');
  t.deepEqual(loaded.metadata?.inputShape, [8, 8, 3]);
  t.deepEqual(loaded.metadata?.info, { job: 'unit' });
  await assertSameWeights(t, model, loaded.model);
  const [expected, got] = tf.tidy(() => {
    const x = tf.randomUniform([2, 8, 8, 3], 0, 1, 'float32', 3);
    return [model, loaded.model].map((m) => (m.predict(x) as tf.Tensor).arraySync());
  });
  t.deepEqual(got, expected);
  loaded.model.dispose();
  t.is(tf.memory().numTensors, before, 'loading and disposing leaves no tensor behind');
});

test.serial('saving replaces the files through temporaries and leaves none behind', async (t) => {
  const { dir } = await savedModel(t, { shardBytes: 512 });
  t.true((await readdir(dir)).length > 2);
  const other = smallModel(99);
  t.teardown(() => other.dispose());
  await saveModel(other, dir, { classNames: ['a', 'b', 'c'] });
  t.deepEqual((await readdir(dir)).sort(), ['model.json', 'weights.bin']);
  const loaded = await loadModel(dir);
  t.teardown(() => loaded.model.dispose());
  t.deepEqual(loaded.classNames, ['a', 'b', 'c']);
  await assertSameWeights(t, other, loaded.model);
});

test.serial('weights split into several shards load back equal', async (t) => {
  const { model, dir } = await savedModel(t, { shardBytes: 256 });
  const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
  const paths: string[] = json.weightsManifest[0].paths;
  t.true(paths.length > 3, `${paths.length} shards`);
  t.is(paths[0], `group1-shard1of${paths.length}.bin`);
  const loaded = await loadModel(path.join(dir, 'model.json'));
  t.teardown(() => loaded.model.dispose());
  await assertSameWeights(t, model, loaded.model);
});

test.serial('a model loads from an http URL (folder or model.json) and from a file:// URL', async (t) => {
  const { model, dir } = await savedModel(t, { shardBytes: 1024 });
  const server = createServer((request, response) => {
    const { pathname } = new URL(request.url ?? '/', 'http://x');
    const served = pathname.startsWith('/models/small/') ? readFile(path.join(dir, path.basename(pathname))) : Promise.reject(new Error('not found'));
    served.then(
      (body) => response.writeHead(200).end(body),
      () => response.writeHead(404).end(),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/small`;

  for (const location of [base, `${base}/`, `${base}/model.json`, pathToFileURL(dir).href]) {
    const loaded = await loadModel(location);
    t.deepEqual(loaded.classNames, CLASSES, location);
    await assertSameWeights(t, model, loaded.model);
    loaded.model.dispose();
  }
  await rejectsWith(t, loadModel(`${base}-gone/model.json`), 'missing-model-json', `${base}-gone/model.json`);
});

test.serial('a missing directory is named in the error', async (t) => {
  const missing = path.join(await tempDir(t), 'no-such-model');
  await rejectsWith(t, loadModel(missing), 'missing-dir', missing);
  await rejectsWith(t, loadModel(path.join(missing, 'model.json')), 'missing-dir', missing);
});

test.serial('a directory without model.json is named in the error', async (t) => {
  const dir = await tempDir(t);
  await rejectsWith(t, loadModel(dir), 'missing-model-json', path.join(dir, 'model.json'));
  await rejectsWith(t, loadModel(path.join(dir, 'other.json')), 'missing-model-json', path.join(dir, 'other.json'));
});

test.serial('malformed model.json is reported with its path', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'model.json');
  await writeFile(file, '{"modelTopology": {');
  await rejectsWith(t, loadModel(dir), 'malformed-model-json', file);
  await writeFile(file, JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: 'weights.bin', weights: [] }] }));
  await rejectsWith(t, loadModel(dir), 'malformed-model-json', file);
  // A manifest may not point outside its folder.
  await mkdir(path.join(dir, 'inner'));
  const inner = path.join(dir, 'inner', 'model.json');
  await writeFile(inner, JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: ['../secret.bin'], weights: [] }] }));
  await rejectsWith(t, loadModel(inner), 'malformed-model-json', inner);
});

test.serial('a missing weight file is named in the error', async (t) => {
  const { dir } = await savedModel(t);
  await unlink(path.join(dir, 'weights.bin'));
  await rejectsWith(t, loadModel(dir), 'missing-weights', path.join(dir, 'weights.bin'));
});

test.serial('a short weight file is named in the error', async (t) => {
  const { dir } = await savedModel(t);
  const file = path.join(dir, 'weights.bin');
  await truncate(file, 100);
  const before = tf.memory().numTensors;
  await rejectsWith(t, loadModel(dir), 'weights-size', file);
  t.is(tf.memory().numTensors, before);
});

test.serial('drover metadata that does not fit the model is rejected', async (t) => {
  const { dir } = await savedModel(t);
  const file = path.join(dir, 'model.json');
  const json = JSON.parse(await readFile(file, 'utf8'));
  json.userDefinedMetadata.drover.classNames = ['only', 'two'];
  await writeFile(file, JSON.stringify(json));
  const before = tf.memory().numTensors;
  await rejectsWith(t, loadModel(dir), 'malformed-model-json', dir);
  t.is(tf.memory().numTensors, before, 'the model built before the check is disposed');
});

test.serial('a plain tfjs model without drover metadata loads with no class names', async (t) => {
  const model = smallModel();
  t.teardown(() => model.dispose());
  const dir = await tempDir(t);
  await model.save(directoryHandler(dir));
  const artifacts = await readModelArtifacts(dir);
  t.is(artifacts.userDefinedMetadata, undefined);
  const loaded = await loadModel(dir);
  t.teardown(() => loaded.model.dispose());
  t.is(loaded.classNames, undefined);
  t.is(loaded.metadata, undefined);
  await assertSameWeights(t, model, loaded.model);
});

test.serial('saveModel checks its options before writing anything', async (t) => {
  const model = smallModel();
  t.teardown(() => model.dispose());
  const dir = path.join(await tempDir(t), 'never');
  await t.throwsAsync(saveModel(model, dir, { classNames: ['a', 'b'] }), { instanceOf: ModelError, message: /options\.classNames has 2 names .* 3 outputs/ });
  await t.throwsAsync(saveModel(model, dir, { classNames: ['a', 'a', 'b'] }), { instanceOf: ModelError, message: /"a" appears twice/ });
  await t.throwsAsync(saveModel(model, dir, { classNames: CLASSES, shardBytes: 0 }), { instanceOf: ModelError, message: /shardBytes/ });
  await t.throwsAsync(readdir(dir), { code: 'ENOENT' });
});
