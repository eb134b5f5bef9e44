import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from '../src/errors.ts';
import { createSampleDecoder, openDataset } from '../src/data/open.ts';
import { DecodePool } from '../src/data/pool.ts';
import type { SampleSplit } from '../src/data/sample-split.ts';
import { at, logSink, makeImageFolder, pngBomb, tempDir, writeBytes, writeSolid } from './helpers/image-fixtures.ts';

let pool: DecodePool;
test.before(() => {
  pool = new DecodePool({ threads: 2 });
});
test.after.always(async () => {
  await pool.close();
});

const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

test('corrupt, truncated, empty, non-image, oversized and bomb files are skipped, counted and logged with their path; the batch keeps the rest', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { good: 3 }, 8, 'jpg');
  const dir = path.join(root, 'good');
  const jpeg = await readFile(path.join(dir, '000.jpg'));
  const bad: Record<string, string> = {
    'truncated.jpg': 'truncated',
    'empty.png': 'empty',
    'text.jpg': 'unsupported_format',
    'corrupt.png': 'corrupt',
    'bomb.png': 'too_large',
    'huge.webp': 'too_large',
  };
  await writeBytes(path.join(dir, 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
  await writeBytes(path.join(dir, 'empty.png'), new Uint8Array(0));
  await writeBytes(path.join(dir, 'text.jpg'), 'this is not an image\n');
  const scratch = await tempDir(t);
  const png = await readFile(await writeSolid(path.join(scratch, 'source.png'), [1, 2, 3], 32));
  const corrupt = Buffer.from(png);
  for (let i = 40; i < corrupt.length - 12; i++) corrupt[i] = (i * 31) & 255; // garble IDAT
  await writeBytes(path.join(dir, 'corrupt.png'), corrupt);
  await writeBytes(path.join(dir, 'bomb.png'), pngBomb(100_000, 100_000));
  await writeBytes(path.join(dir, 'huge.webp'), new Uint8Array(3000).fill(7));
  const sink = logSink();
  const ds = await openDataset({ kind: 'folder', path: root, imageSize: [8, 8], maxFileBytes: 2000 }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  const files = (ds.train as SampleSplit).samples;
  t.is(ds.train.length, 9);
  const batch = await ds.train.loadBatch(all(9), { augment: true });
  t.is(batch.n, 3);
  t.is(batch.y.length, 3);
  t.is(batch.x.length, 3 * 8 * 8 * 3);
  t.deepEqual(batch.skipped!.map((id) => path.basename(files.describe(id))).sort(), Object.keys(bad).sort());
  const skips = sink.lines().filter((l) => l.event === 'data_skip');
  for (const [name, reason] of Object.entries(bad)) {
    const line = skips.find((l) => l.path === path.join(dir, name));
    t.truthy(line, name);
    t.is(line!.reason, reason, name);
    t.is(line!.code, 'DROVER_ERR_SAMPLE');
    t.is(line!.source, `${path.basename(root)}/train`);
  }
  t.deepEqual(ds.skipCounts(), { total: 6, distinct: 6, byReason: { truncated: 1, empty: 1, unsupported_format: 1, corrupt: 1, too_large: 2 } });
  // met again next epoch: counted again, logged again only at debug level
  const again = await ds.train.loadBatch(all(9), { epoch: 1 });
  t.is(again.n, 3);
  t.is(ds.skipCounts().total, 12);
  t.is(ds.skipCounts().distinct, 6);
  const lines = sink.lines().filter((l) => l.event === 'data_skip');
  t.is(lines.filter((l) => l.level === 40).length, 6);
  t.is(lines.filter((l) => l.level === 20 && l.repeat === true).length, 6);
});

test('an image over maxInputPixels is skipped as too large before it is decoded', async (t) => {
  const root = await tempDir(t);
  await writeSolid(path.join(root, 'c', 'big.png'), [5, 5, 5], 64);
  await writeSolid(path.join(root, 'c', 'small.png'), [5, 5, 5], 16);
  const sink = logSink();
  const ds = await openDataset({ kind: 'folder', path: root, imageSize: [8, 8], maxInputPixels: 1000 }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  const batch = await ds.train.loadBatch([0, 1]);
  t.is(batch.n, 1);
  t.is(sink.lines().find((l) => l.event === 'data_skip')!.reason, 'too_large');
});

test('a FIFO named like an image is skipped at once, never waited on', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { c: 1 }, 8);
  try {
    execFileSync('mkfifo', [path.join(root, 'c', 'pipe.jpg')]);
  } catch {
    t.pass('mkfifo not available');
    return;
  }
  const sink = logSink();
  const ds = await openDataset({ kind: 'folder', path: root, imageSize: [8, 8] }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.is(ds.train.length, 1, 'left out at listing time');
  t.is(sink.lines().find((l) => l.event === 'data_skip')!.reason, 'not_a_file');
  // and if one appears after listing, reading it does not block either
  const decoder = createSampleDecoder({ kind: 'folder', path: root, imageSize: [8, 8] }, [8, 8, 3], { pool });
  t.teardown(() => decoder.close());
  const batch = await decoder.evaluation.load([{ path: path.join(root, 'c', 'pipe.jpg') }], [0]);
  t.is(batch.n, 0);
  t.deepEqual(batch.skipped, [0]);
});

test('files that are not images, files outside class folders and hidden folders are logged at listing, not lost silently', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { c: 1 }, 8);
  await writeBytes(path.join(root, 'c', 'notes.txt'), 'hello');
  await writeBytes(path.join(root, 'stray.png'), 'x');
  await mkdir(path.join(root, '.ipynb_checkpoints'));
  const sink = logSink();
  const ds = await openDataset({ kind: 'folder', path: root }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.deepEqual(ds.classNames, ['c']);
  const reasons = Object.fromEntries(sink.lines().filter((l) => l.event === 'data_skip').map((l) => [path.relative(root, String(l.path)), l.reason]));
  t.deepEqual(reasons, { 'c/notes.txt': 'not_an_image', 'stray.png': 'outside_class_folder', '.ipynb_checkpoints': 'hidden_folder' });
});

test('an empty class keeps its index and is logged; no class or no image at all is a clear error', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 1, c: 1 }, 8);
  await mkdir(path.join(root, 'b'));
  const sink = logSink();
  const ds = await openDataset({ kind: 'folder', path: root }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.deepEqual(ds.classNames, ['a', 'b', 'c']);
  t.deepEqual([ds.train.label(0), ds.train.label(1)], [0, 2]);
  const line = sink.lines().find((l) => l.reason === 'empty_class')!;
  t.is(line.path, path.join(root, 'b'));

  const noClasses = await tempDir(t);
  await writeSolid(path.join(noClasses, 'loose.png'), [1, 1, 1]);
  await t.throwsAsync(openDataset({ kind: 'folder', path: noClasses }, { pool }), { instanceOf: DatasetError, message: /no class sub-folders/ });
  const noImages = await tempDir(t);
  await mkdir(path.join(noImages, 'a'));
  await writeBytes(path.join(noImages, 'a', 'readme.md'), '#');
  await t.throwsAsync(openDataset({ kind: 'folder', path: noImages }, { pool }), { instanceOf: DatasetError, message: /holds no images/ });
});

test('a missing root, a file as root and a broken class folder are errors naming the path', async (t) => {
  const root = await tempDir(t);
  await t.throwsAsync(openDataset({ kind: 'folder', path: path.join(root, 'nope') }, { pool }), { instanceOf: DatasetError, message: /nope does not exist/ });
  const file = await writeBytes(path.join(root, 'file'), 'x');
  await t.throwsAsync(openDataset({ kind: 'folder', path: file }, { pool }), { instanceOf: DatasetError, message: /is not a folder/ });
  const broken = path.join(root, 'set');
  await makeImageFolder(broken, { a: 1 }, 8);
  await symlink(path.join(root, 'gone'), path.join(broken, 'b'));
  await t.throwsAsync(openDataset({ kind: 'folder', path: broken }, { pool }), { instanceOf: DatasetError, message: /b is a broken symbolic link/ });
});

test('unreadable sub-folders are skipped and logged; a symlink loop ends', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 2 }, 8);
  await symlink(path.join(root, 'a'), path.join(root, 'a', 'loop'));
  await symlink(path.join(root, 'missing'), path.join(root, 'a', 'dangling'));
  const locked = path.join(root, 'a', 'locked');
  await mkdir(locked);
  await writeSolid(path.join(locked, 'x.png'), [1, 1, 1], 8);
  await chmod(locked, 0o000);
  t.teardown(() => chmod(locked, 0o755));
  const asRoot = process.getuid?.() === 0; // root reads through permissions
  const sink = logSink();
  const ds = await openDataset({ kind: 'folder', path: root }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.is(ds.train.length, asRoot ? 3 : 2);
  const reasons = sink.lines().filter((l) => l.event === 'data_skip').map((l) => [path.relative(root, String(l.path)), l.reason]);
  t.true(reasons.some(([p, r]) => p === 'a/dangling' && r === 'unreadable'));
  if (!asRoot) t.true(reasons.some(([p, r]) => p === 'a/locked' && r === 'unreadable_folder'));
});

test('a batch whose every sample is bad comes back empty with every id reported, not as a failure', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 1 }, 8);
  const decoder = createSampleDecoder({ kind: 'folder', path: root, imageSize: [8, 8] }, [8, 8, 3], { pool });
  t.teardown(() => decoder.close());
  const batch = await decoder.train.load(
    [{ bytes: new Uint8Array([0xff, 0xd8, 0xff, 0, 1, 2]) }, { bytes: new Uint8Array(0) }, { pixels: new Uint8Array(5), width: 2, height: 2, channels: 3 }],
    [0, 0, 0],
    { ids: [10, 11, 12], augment: true },
  );
  t.is(batch.n, 0);
  t.is(batch.x.length, 0);
  t.deepEqual(batch.skipped, [10, 11, 12]);
  t.deepEqual(decoder.skipCounts().byReason, { truncated: 1, empty: 1, bad_pixels: 1 });
});

test('a manifest pointing at missing files skips them with the OS error code', async (t) => {
  const root = await tempDir(t);
  await writeSolid(path.join(root, 'ok.png'), [1, 1, 1], 8);
  const file = path.join(root, 'm.csv');
  await writeFile(file, 'path,label\nok.png,a\nmissing.png,b\n');
  const sink = logSink();
  const ds = await openDataset({ kind: 'manifest', path: file, imageSize: [8, 8], minClassSamples: 1 }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  const batch = await ds.train.loadBatch([0, 1]);
  t.is(batch.n, 1);
  t.deepEqual([...batch.y], [0]);
  const line = sink.lines().find((l) => l.event === 'data_skip')!;
  t.is(line.reason, 'unreadable');
  t.is(line.errno, 'ENOENT');
  t.is(line.path, path.join(root, 'missing.png'));
});

test('manifest rows outside the manifest folder (.., absolute paths, symlinks pointing out) are outside_root skips, never read', async (t) => {
  const base = await tempDir(t);
  const root = path.join(base, 'dataset');
  const outside = path.join(base, 'private');
  // Valid images outside the root: read, they would train (and travel to workers).
  await writeSolid(path.join(outside, 'secret.png'), [200, 0, 0], 8);
  await writeSolid(path.join(root, 'img', 'a1.png'), [10, 10, 10], 8);
  await writeSolid(path.join(root, 'img', 'a2.png'), [20, 20, 20], 8);
  await writeSolid(path.join(root, 'img', 'b1.png'), [30, 30, 30], 8);
  await symlink(path.join(outside, 'secret.png'), path.join(root, 'img', 'link.png'));
  await symlink(outside, path.join(root, 'linked-dir'));
  // A link that stays inside the root is fine.
  await symlink(path.join(root, 'img', 'b1.png'), path.join(root, 'img', 'b2.png'));
  const file = path.join(root, 'm.csv');
  await writeFile(file, [
    'path,label',
    'img/a1.png,a', // 2
    'img/../img/a2.png,a', // 3
    'img/b1.png,b', // 4
    'img/b2.png,b', // 5
    '../private/secret.png,a', // 6
    `${path.join(outside, 'secret.png')},b`, // 7
    '/etc/passwd,a', // 8
    '../../../../../../../../etc/shadow,b', // 9
    'img/link.png,a', // 10
    'linked-dir/secret.png,b', // 11
  ].join('\n') + '\n');
  const sink = logSink();
  const ds = await openDataset({ kind: 'manifest', path: file, imageSize: [8, 8], preprocess: 'none' }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.is(ds.train.length, 4);
  const batch = await ds.train.loadBatch(all(4));
  t.is(batch.n, 4);
  t.false([0, 1, 2, 3].some((i) => at(batch.x, batch.shape, i, 1, 1, 0) === 200), 'an outside image was read');
  const skips = sink.lines().filter((l) => l.event === 'data_skip');
  t.deepEqual(skips.map((l) => l.path), [6, 7, 8, 9, 10, 11].map((line) => `${file}:${line}`));
  t.true(skips.every((l) => l.reason === 'outside_root' && l.code === 'DROVER_ERR_SAMPLE'));
  t.regex(String(skips.find((l) => l.path === `${file}:10`)!.detail), /link to .*private/);
  t.is(ds.skipCounts().byReason.outside_root, 6);
});

test('a declared data.root confines manifest rows to it instead of the manifest folder', async (t) => {
  const base = await tempDir(t);
  const images = path.join(base, 'images');
  await writeSolid(path.join(images, 'x1.png'), [1, 1, 1], 8);
  await writeSolid(path.join(images, 'x2.png'), [2, 2, 2], 8);
  await writeSolid(path.join(base, 'lists', 'beside.png'), [3, 3, 3], 8);
  const file = path.join(base, 'lists', 'm.jsonl');
  await writeFile(file, ['x1.png', 'x2.png', '../lists/beside.png'].map((p) => JSON.stringify({ path: p, label: 'x' })).join('\n') + '\n');
  const sink = logSink();
  const ds = await openDataset({ kind: 'manifest', path: file, root: images, imageSize: [8, 8] }, { pool, logger: sink.logger });
  t.teardown(() => ds.close());
  t.is(ds.train.length, 2);
  t.deepEqual(sink.lines().filter((l) => l.event === 'data_skip').map((l) => [l.path, l.reason]), [[`${file}:3`, 'outside_root']]);
});

test('without classNames, a class with fewer than data.minClassSamples samples is an error naming it and its rows', async (t) => {
  const root = await tempDir(t);
  for (const name of ['c1', 'c2', 'c3', 'd1', 'd2']) await writeSolid(path.join(root, `${name}.png`), [5, 5, 5], 8);
  const file = path.join(root, 'labels.csv');
  await writeFile(file, 'path,label\nc1.png,cat\nc2.png,cat\nd1.png,dog\nc3.png,catt\nd2.png,dog\n');
  const error = await t.throwsAsync(openDataset({ kind: 'manifest', path: file, imageSize: [8, 8] }, { pool }), { instanceOf: DatasetError });
  t.regex(error!.message, /"catt" has 1 sample \(.*labels\.csv:5\)/);
  t.regex(error!.message, /minClassSamples = 2/);
  t.notRegex(error!.message, /"cat"|"dog"/);
  // Declared on purpose: the threshold can be lowered.
  const ds = await openDataset({ kind: 'manifest', path: file, imageSize: [8, 8], minClassSamples: 1 }, { pool });
  t.teardown(() => ds.close());
  t.deepEqual(ds.classNames, ['cat', 'catt', 'dog']);
  // With a class list the typo is an unknown_label skip, not a class.
  const listed = await openDataset({ kind: 'manifest', path: file, imageSize: [8, 8], classNames: ['cat', 'dog'] }, { pool });
  t.teardown(() => listed.close());
  t.is(listed.train.length, 4);
});
