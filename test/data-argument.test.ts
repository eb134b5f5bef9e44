import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { resolveDataArgument } from '../src/data/data-argument.ts';
import { tempDir } from './helpers/image-fixtures.ts';

test('--data tells an IDX folder, a CIFAR folder, a manifest and an image folder apart by what they hold', async (t) => {
  const base = await tempDir(t);
  const idx = path.join(base, 'fashion');
  await mkdir(idx);
  await writeFile(path.join(idx, 'train-images-idx3-ubyte.gz'), '');
  const cifar = path.join(base, 'cifar');
  await mkdir(path.join(cifar, 'cifar-10-batches-bin'), { recursive: true });
  const photos = path.join(base, 'photos');
  await mkdir(path.join(photos, 'cats'), { recursive: true });
  const csv = path.join(base, 'labels.csv');
  await writeFile(csv, 'path,label\n');
  const jsonl = path.join(base, 'labels.jsonl');
  await writeFile(jsonl, '');
  t.deepEqual(await resolveDataArgument(idx), { kind: 'idx', dir: idx });
  t.deepEqual(await resolveDataArgument(cifar), { kind: 'cifar', path: cifar });
  t.deepEqual(await resolveDataArgument(photos), { kind: 'folder', path: photos });
  t.deepEqual(await resolveDataArgument(csv), { kind: 'manifest', path: csv });
  t.deepEqual(await resolveDataArgument(jsonl), { kind: 'manifest', path: jsonl });
  await t.throwsAsync(resolveDataArgument(path.join(base, 'missing')), { code: 'DROVER_ERR_CONFIG', message: /no such file or folder/ });
  const text = path.join(base, 'notes.txt');
  await writeFile(text, 'hello');
  await t.throwsAsync(resolveDataArgument(text), { code: 'DROVER_ERR_CONFIG', message: /expected a folder, a \.csv/ });
});
