import test from 'ava';
import { symlink } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from '../src/errors.ts';
import { createSampleDecoder, openDataset } from '../src/data/open.ts';
import { DecodePool } from '../src/data/pool.ts';
import type { SampleSplit } from '../src/data/sample-split.ts';
import { at, cifarRecords, idxBytes, logSink, makeImageFolder, tempDir, writeBytes, writeSolid, type ImageFormat } from './helpers/image-fixtures.ts';

// One pool for the whole file: starting threads is the slow part.
let pool: DecodePool;
test.before(() => {
  pool = new DecodePool({ threads: 2 });
});
test.after.always(async () => {
  await pool.close();
});

const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

test('an image folder gives sorted class names, labels by folder, and finds images in sub-folders', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { zebra: 2, ant: 3 });
  await writeSolid(path.join(root, 'ant', 'nested', 'deeper', 'x.png'), [1, 2, 3]);
  const ds = await openDataset({ kind: 'folder', path: root, imageSize: [8, 8], preprocess: 'none' }, { pool });
  t.teardown(() => ds.close());
  t.deepEqual(ds.classNames, ['ant', 'zebra']);
  t.deepEqual(ds.inputShape, [8, 8, 3]);
  t.is(ds.train.length, 6);
  t.is(ds.validation, undefined);
  const labels = all(6).map((i) => ds.train.label(i));
  t.deepEqual(labels.sort(), [0, 0, 0, 0, 1, 1]);
  const batch = await ds.train.loadBatch(all(6));
  t.is(batch.n, 6);
  t.deepEqual(batch.shape, [8, 8, 3]);
  // makeImageFolder encodes the class folder's position in red: 'zebra' was written first (0), 'ant' second (40)
  for (let i = 0; i < 6; i++) {
    const red = at(batch.x, batch.shape, i, 4, 4, 0);
    const isNested = red === 1;
    t.true(isNested || red === (batch.y[i] === 0 ? 40 : 0), `sample ${i}: red ${red}, label ${batch.y[i]}`);
  }
});

for (const format of ['jpg', 'png', 'webp', 'gif', 'tiff'] as ImageFormat[]) {
  test(`a ${format} image decodes to its colours`, async (t) => {
    const root = await tempDir(t);
    await writeSolid(path.join(root, 'c', `a.${format}`), [200, 40, 90], 16, format);
    const ds = await openDataset({ kind: 'folder', path: root, imageSize: [16, 16], preprocess: 'none' }, { pool });
    t.teardown(() => ds.close());
    const batch = await ds.train.loadBatch([0]);
    t.is(batch.n, 1);
    const tolerance = format === 'jpg' || format === 'gif' ? 6 : 0;
    for (const [c, want] of [200, 40, 90].entries()) t.true(Math.abs(at(batch.x, batch.shape, 0, 8, 8, c) - want) <= tolerance, `${format} channel ${c}`);
  });
}

test('greyscale and RGBA files become the requested channel count', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 1 });
  const sharp = (await import('sharp')).default;
  await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 10, g: 20, b: 30, alpha: 0.5 } } }).png().toFile(path.join(root, 'a', 'rgba.png'));
  await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 90, g: 90, b: 90 } } }).greyscale().png().toFile(path.join(root, 'a', 'grey.png'));
  const rgb = await openDataset({ kind: 'folder', path: root, imageSize: [8, 8], preprocess: 'none' }, { pool });
  t.teardown(() => rgb.close());
  const grey = await openDataset({ kind: 'folder', path: root, imageSize: [8, 8], channels: 1, preprocess: 'none' }, { pool });
  t.teardown(() => grey.close());
  const b3 = await rgb.train.loadBatch(all(3));
  const b1 = await grey.train.loadBatch(all(3));
  t.deepEqual(b3.shape, [8, 8, 3]);
  t.deepEqual(b1.shape, [8, 8, 1]);
  t.is(b1.x.length, 3 * 64);
  const files = (rgb.train as SampleSplit).samples;
  const greyIndex = all(3).find((i) => files.describe(i).endsWith('grey.png'))!;
  t.deepEqual([0, 1, 2].map((c) => at(b3.x, b3.shape, greyIndex, 2, 2, c)), [90, 90, 90]);
});

test('validation by fraction is per class, seeded and disjoint from training', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 10, b: 20 }, 4);
  const open = (seed: number) => openDataset({ kind: 'folder', path: root, validation: { fraction: 0.2, seed } }, { pool });
  const ds = await open(1);
  t.teardown(() => ds.close());
  t.is(ds.train.length, 24);
  t.is(ds.validation!.length, 6);
  const v = ds.validation as SampleSplit;
  const tr = ds.train as SampleSplit;
  const valFiles = all(6).map((i) => v.samples.describe(i));
  t.deepEqual(all(6).map((i) => v.label(i)).sort(), [0, 0, 1, 1, 1, 1]);
  const trainFiles = new Set(all(24).map((i) => tr.samples.describe(i)));
  t.true(valFiles.every((f) => !trainFiles.has(f)));
  const again = await open(1);
  t.teardown(() => again.close());
  t.deepEqual(all(6).map((i) => (again.validation as SampleSplit).samples.describe(i)), valFiles);
  const other = await open(2);
  t.teardown(() => other.close());
  t.notDeepEqual(all(6).map((i) => (other.validation as SampleSplit).samples.describe(i)), valFiles);
});

test('validation and test may be separate folders with the training classes; an unknown class is an error', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(path.join(root, 'train'), { cat: 2, dog: 2 }, 4);
  await makeImageFolder(path.join(root, 'val'), { dog: 1 }, 4);
  await makeImageFolder(path.join(root, 'test'), { cat: 1, dog: 1 }, 4);
  const sink = logSink();
  const ds = await openDataset(
    { kind: 'folder', path: path.join(root, 'train'), validation: { path: path.join(root, 'val') }, test: { path: path.join(root, 'test') } },
    { pool, logger: sink.logger },
  );
  t.teardown(() => ds.close());
  t.is(ds.validation!.length, 1);
  t.is(ds.validation!.label(0), 1, 'dog keeps the training index 1');
  t.is(ds.test!.length, 2);
  t.true(sink.lines().some((l) => l.reason === 'empty_class' && String(l.path).endsWith(path.join('val', 'cat'))));
  await makeImageFolder(path.join(root, 'val2'), { dog: 1, horse: 1 }, 4);
  await t.throwsAsync(openDataset({ kind: 'folder', path: path.join(root, 'train'), validation: { path: path.join(root, 'val2') } }, { pool }), {
    instanceOf: DatasetError,
    message: /horse/,
  });
});

test('a CSV manifest reads quoted paths relative to its folder, names classes by sorted label, and logs bad rows', async (t) => {
  const root = await tempDir(t);
  await writeSolid(path.join(root, 'img', 'a, with comma.png'), [10, 10, 10], 4);
  await writeSolid(path.join(root, 'img', 'b.png'), [20, 20, 20], 4);
  await writeSolid(path.join(root, 'img', 'c.png'), [30, 30, 30], 4);
  const sink = logSink();
  const file = await writeBytes(
    path.join(root, 'list.csv'),
    'id,path,label\r\n1,"img/a, with comma.png",zebra\r\n2,img/b.png,ant\r\n3,,ant\r\n4,img/c.png,zebra\r\n',
  );
  // One "ant" row is left: a class that small is allowed here on purpose.
  const ds = await openDataset({ kind: 'manifest', path: file, imageSize: [4, 4], preprocess: 'none', minClassSamples: 1 }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.deepEqual(ds.classNames, ['ant', 'zebra']);
  t.is(ds.train.length, 3);
  const batch = await ds.train.loadBatch([0, 1, 2]);
  t.deepEqual([...batch.y], [1, 0, 1]);
  t.deepEqual([0, 1, 2].map((i) => at(batch.x, batch.shape, i, 1, 1, 0)), [10, 20, 30]);
  const bad = sink.lines().filter((l) => l.event === 'data_skip');
  t.is(bad.length, 1);
  t.is(bad[0]!.path, `${file}:4`);
  t.is(bad[0]!.reason, 'bad_manifest_row');
  t.is(ds.skipCounts().byReason.bad_manifest_row, 1);
});

test('a JSONL manifest takes integer labels into given class names and skips unknown labels', async (t) => {
  const root = await tempDir(t);
  await writeSolid(path.join(root, 'x.png'), [1, 1, 1], 4);
  await writeSolid(path.join(root, 'y.png'), [2, 2, 2], 4);
  const sink = logSink();
  const file = await writeBytes(
    path.join(root, 'list.jsonl'),
    ['{"path":"x.png","label":1}', '', '{"path":"y.png","label":"cat"}', '{"path":"y.png","label":7}', 'not json'].join('\n'),
  );
  const ds = await openDataset({ kind: 'manifest', path: file, classNames: ['cat', 'dog'] }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.is(ds.train.length, 2);
  t.deepEqual([ds.train.label(0), ds.train.label(1)], [1, 0]);
  t.deepEqual(
    sink.lines().filter((l) => l.event === 'data_skip').map((l) => [l.path, l.reason]),
    [[`${file}:5`, 'bad_manifest_row'], [`${file}:4`, 'unknown_label']],
  );
});

test('CIFAR-10 batches read into interleaved RGB with their labels, class names and a seeded validation split', async (t) => {
  const root = await tempDir(t);
  const colour = (i: number) => (x: number, y: number): [number, number, number] => [x * 8, y * 8, i * 20];
  const records = (from: number, count: number) =>
    cifarRecords(Array.from({ length: count }, (_, k) => ({ labels: [(from + k) % 10], rgb: colour(from + k) })));
  await writeBytes(path.join(root, 'cifar-10-batches-bin', 'data_batch_1.bin'), records(0, 6));
  await writeBytes(path.join(root, 'cifar-10-batches-bin', 'data_batch_2.bin'), records(6, 6));
  await writeBytes(path.join(root, 'cifar-10-batches-bin', 'test_batch.bin'), records(0, 3));
  const ds = await openDataset({ kind: 'cifar', path: root, preprocess: 'none' }, { pool });
  t.teardown(() => ds.close());
  t.is(ds.name, 'cifar-10');
  t.deepEqual(ds.inputShape, [32, 32, 3]);
  t.is(ds.classNames[3], 'cat');
  t.is(ds.train.length, 12);
  t.is(ds.test!.length, 3);
  const batch = await ds.train.loadBatch([7]);
  t.is(batch.y[0], 7);
  t.deepEqual([0, 1, 2].map((c) => at(batch.x, batch.shape, 0, 5, 3, c)), [3 * 8, 5 * 8, 7 * 20]);
  const split = await openDataset({ kind: 'cifar', path: root, validation: { fraction: 0.5 } }, { pool });
  t.teardown(() => split.close());
  t.is(split.train.length + split.validation!.length, 12);
  t.true(split.validation!.length >= 2);
});

test('CIFAR-100 reads fine or coarse labels; a truncated batch is an error naming the file', async (t) => {
  const root = await tempDir(t);
  const rgb = (): [number, number, number] => [1, 2, 3];
  await writeBytes(path.join(root, 'train.bin'), cifarRecords([{ labels: [3, 42], rgb }, { labels: [19, 99], rgb }]));
  const fine = await openDataset({ kind: 'cifar', path: root }, { pool });
  t.teardown(() => fine.close());
  t.is(fine.name, 'cifar-100');
  t.is(fine.classNames.length, 100);
  t.deepEqual([fine.train.label(0), fine.train.label(1)], [42, 99]);
  const coarse = await openDataset({ kind: 'cifar', path: root, labels: 'coarse' }, { pool });
  t.teardown(() => coarse.close());
  t.is(coarse.classNames.length, 20);
  t.deepEqual([coarse.train.label(0), coarse.train.label(1)], [3, 19]);
  const broken = await tempDir(t);
  await writeBytes(path.join(broken, 'data_batch_1.bin'), cifarRecords([{ labels: [1], rgb }]).subarray(0, 2000));
  await t.throwsAsync(openDataset({ kind: 'cifar', path: broken }, { pool }), { instanceOf: DatasetError, message: /data_batch_1\.bin.*whole number/ });
});

test('IDX folders go through the shared IDX reader: as-is by default, resized, RGB and augmented on request', async (t) => {
  const dir = await tempDir(t);
  const n = 12;
  const images = Uint8Array.from({ length: n * 28 * 28 }, (_, i) => i % 251);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  await writeBytes(path.join(dir, 'train-images-idx3-ubyte.gz'), idxBytes([n, 28, 28], images, true));
  await writeBytes(path.join(dir, 'train-labels-idx1-ubyte'), idxBytes([n], labels));
  await writeBytes(path.join(dir, 't10k-images-idx3-ubyte'), idxBytes([2, 28, 28], images.subarray(0, 2 * 784)));
  await writeBytes(path.join(dir, 't10k-labels-idx1-ubyte.gz'), idxBytes([2], labels.subarray(0, 2), true));
  const plain = await openDataset({ kind: 'idx', dir, validationSize: 2 }, { pool });
  t.teardown(() => plain.close());
  t.deepEqual(plain.inputShape, [28, 28, 1]);
  t.is(plain.train.length, 10);
  t.is(plain.validation!.length, 2);
  const p = await plain.train.loadBatch([3]);
  t.is(p.x[100], Math.fround(images[3 * 784 + 100]! / 255));
  const rgb = await openDataset({ kind: 'idx', dir, validationSize: 2, channels: 3, imageSize: [56, 56], augment: { horizontalFlip: true } }, { pool });
  t.teardown(() => rgb.close());
  t.deepEqual(rgb.inputShape, [56, 56, 3]);
  const b = await rgb.train.loadBatch([3, 4], { augment: true, epoch: 0 });
  t.deepEqual(b.shape, [56, 56, 3]);
  t.is(b.x.length, 2 * 56 * 56 * 3);
  t.is(at(b.x, b.shape, 0, 10, 10, 0), at(b.x, b.shape, 0, 10, 10, 2), 'grey replicated to RGB');
  t.deepEqual([...b.y], [3, 4]);
});

test('a worker decoding the encoded bytes it was sent gets exactly what the dataset itself loads', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 3, b: 3 }, 20, 'jpg');
  const spec = { kind: 'folder', path: root, imageSize: [16, 16], augment: { rotationRange: 30, horizontalFlip: true, brightnessRange: [0.8, 1.2] } };
  const ds = await openDataset(spec, { pool });
  t.teardown(() => ds.close());
  const ids = [5, 0, 3];
  const direct = await ds.train.loadBatch(ids, { augment: true, epoch: 4 });
  const { samples, skipped } = await (ds.train as SampleSplit).encodedSamples(ids);
  t.deepEqual(skipped, []);
  t.true(samples.every((s) => 'bytes' in s.input));
  const decoder = createSampleDecoder(spec, ds.inputShape, { pool });
  t.teardown(() => decoder.close());
  const remote = await decoder.train.load(samples.map((s) => s.input), samples.map((s) => s.label), { augment: true, epoch: 4, ids: samples.map((s) => s.id) });
  t.deepEqual([...remote.y], [...direct.y]);
  t.deepEqual([...remote.x], [...direct.x]);
  const other = await ds.train.loadBatch(ids, { augment: true, epoch: 5 });
  t.notDeepEqual([...other.x], [...direct.x], 'another epoch, other draws');
});

test('a class folder reached through a symbolic link counts like any other', async (t) => {
  const root = await tempDir(t);
  const elsewhere = await tempDir(t);
  await makeImageFolder(elsewhere, { real: 2 }, 4);
  await makeImageFolder(root, { a: 1 }, 4);
  await symlink(path.join(elsewhere, 'real'), path.join(root, 'linked'));
  const ds = await openDataset({ kind: 'folder', path: root }, { pool });
  t.teardown(() => ds.close());
  t.deepEqual(ds.classNames, ['a', 'linked']);
  t.is(ds.train.length, 3);
});
