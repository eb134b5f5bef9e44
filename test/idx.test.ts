import test from 'ava';
import { gzipSync } from 'node:zlib';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseIdx, openIdxDataset, FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { DatasetError } from '../src/errors.ts';

function idx(dims: number[], data: Uint8Array): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const out = new Uint8Array(header.length + data.length);
  out.set(header);
  out.set(data, header.length);
  return out;
}

test('parseIdx reads raw and gzipped IDX files identically', (t) => {
  const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 7);
  const raw = parseIdx(idx([2, 3, 4], data));
  const gz = parseIdx(gzipSync(idx([2, 3, 4], data)));
  t.deepEqual(raw.dims, [2, 3, 4]);
  t.deepEqual([...raw.data], [...data]);
  t.deepEqual([...gz.data], [...data]);
});

test('parseIdx rejects bad magic, other element types and truncated data with a DatasetError', (t) => {
  const good = idx([2, 2], new Uint8Array(4));
  const badMagic = good.slice();
  badMagic[0] = 1;
  t.throws(() => parseIdx(badMagic), { instanceOf: DatasetError, message: /bad magic/ });
  const floatType = good.slice();
  floatType[2] = 0x0d;
  t.throws(() => parseIdx(floatType), { instanceOf: DatasetError, message: /not supported/ });
  t.throws(() => parseIdx(good.subarray(0, good.length - 1)), { instanceOf: DatasetError, message: /truncated/ });
  t.throws(() => parseIdx(gzipSync(good).subarray(0, 10)), { instanceOf: DatasetError, message: /gzip/ });
});

test('openIdxDataset splits train / validation / test and scales pixels to [0, 1]', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-idx-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const n = 10;
  const images = Uint8Array.from({ length: n * 4 }, (_, i) => (i * 13) % 256);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 3);
  await writeFile(path.join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(idx([n, 2, 2], images)));
  await writeFile(path.join(dir, 'train-labels-idx1-ubyte'), idx([n], labels));
  await writeFile(path.join(dir, 't10k-images-idx3-ubyte'), idx([2, 2, 2], images.subarray(0, 8)));
  await writeFile(path.join(dir, 't10k-labels-idx1-ubyte'), idx([2], labels.subarray(0, 2)));
  const ds = await openIdxDataset({ dir, classNames: ['a', 'b', 'c'], validationSize: 3 });
  t.deepEqual(ds.inputShape, [2, 2, 1]);
  t.is(ds.train.length, 7);
  t.is(ds.validation!.length, 3);
  t.is(ds.test!.length, 2);
  const batch = await ds.validation!.loadBatch([0, 2]);
  t.is(batch.n, 2);
  t.deepEqual([...batch.y], [labels[7], labels[9]]);
  t.is(batch.x[0], Math.fround(images[7 * 4]! / 255));
  t.is(batch.x[4 + 3], Math.fround(images[9 * 4 + 3]! / 255));
});

test('openIdxDataset names the missing file and rejects label/image count mismatches', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-idx-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await t.throwsAsync(openIdxDataset({ dir }), { instanceOf: DatasetError, message: /train-images-idx3-ubyte/ });
  await writeFile(path.join(dir, 'train-images-idx3-ubyte'), idx([3, 2, 2], new Uint8Array(12)));
  await writeFile(path.join(dir, 'train-labels-idx1-ubyte'), idx([2], new Uint8Array(2)));
  await writeFile(path.join(dir, 't10k-images-idx3-ubyte'), idx([1, 2, 2], new Uint8Array(4)));
  await writeFile(path.join(dir, 't10k-labels-idx1-ubyte'), idx([1], new Uint8Array(1)));
  await t.throwsAsync(openIdxDataset({ dir }), { instanceOf: DatasetError, message: /3 images but 2 labels/ });
});

test('the installed Fashion-MNIST reads as 55000 / 5000 / 10000 samples of 28x28x1', async (t) => {
  const ds = await openIdxDataset({ dir: FASHION_MNIST_DIR });
  t.is(ds.train.length, 55000);
  t.is(ds.validation!.length, 5000);
  t.is(ds.test!.length, 10000);
  t.deepEqual(ds.inputShape, [28, 28, 1]);
  t.is(ds.classNames[9], 'Ankle boot');
  const counts = new Array(10).fill(0);
  for (let i = 0; i < ds.test!.length; i++) counts[ds.test!.label(i)]++;
  t.deepEqual(counts, new Array(10).fill(1000));
});
