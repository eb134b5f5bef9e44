import test from 'ava';
import { Piscina } from 'piscina';
import { setImmediate as tick } from 'node:timers/promises';
import path from 'node:path';
import { ConfigError, DatasetError } from '../src/errors.ts';
import { decodeBatch, type BatchTask, type BatchTaskResult } from '../src/data/batch-task.ts';
import { openDataset } from '../src/data/open.ts';
import { resolvePipelines } from '../src/data/pipeline-config.ts';
import { DecodePool, tsWorkerExecArgv } from '../src/data/pool.ts';
import { prefetch } from '../src/data/prefetch.ts';
import { parseDatasetSpec } from '../src/data/sources/index.ts';
import { makeImageFolder, rgbPixels, tempDir, writeImage } from './helpers/image-fixtures.ts';

const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function tinyTask(count: number, size = 8): BatchTask {
  const { train } = resolvePipelines(parseDatasetSpec({ kind: 'cifar', path: 'x', imageSize: [size, size] }), [size, size, 3]);
  return {
    samples: all(count).map((i) => ({ pixels: new Uint8Array(size * size * 3).fill(i), width: size, height: size, channels: 3 })),
    seeds: null,
    pipeline: train,
  };
}

test('the task hands its batch buffer back as a transfer, not a copy', async (t) => {
  const moved = (await decodeBatch(tinyTask(3))) as unknown as Record<symbol, unknown>;
  const value = moved[Piscina.valueSymbol] as BatchTaskResult;
  const transfer = moved[Piscina.transferableSymbol] as ArrayBuffer[];
  t.truthy(value?.x);
  t.deepEqual(transfer, [value.x!.buffer]);
  t.is(value.x!.length, 3 * 8 * 8 * 3);
});

test('one, two and zero (inline) threads give identical batches', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 6, b: 6 }, 24, 'jpg');
  const spec = { kind: 'folder', path: root, imageSize: [16, 16], augment: { rotationRange: 25, zoomRange: 0.2, horizontalFlip: true, fillMode: 'reflect' } };
  const results: Float32Array[] = [];
  for (const threads of [0, 1, 2]) {
    const ds = await openDataset(spec, { threads });
    try {
      const batch = await ds.train.loadBatch([11, 3, 7, 0, 5, 2, 9, 1, 4, 10], { augment: true, epoch: 2 });
      t.is(batch.n, 10);
      results.push(batch.x.slice());
    } finally {
      await ds.close();
    }
  }
  t.deepEqual([...results[1]!], [...results[0]!]);
  t.deepEqual([...results[2]!], [...results[0]!]);
});

test('a full queue makes callers wait instead of growing or failing', async (t) => {
  const pool = new DecodePool({ threads: 1, maxQueue: 1 });
  t.teardown(() => pool.close());
  let most = 0;
  const runs = all(6).map(() => pool.run(tinyTask(4, 32)).then((r) => {
    most = Math.max(most, pool.pending);
    return r;
  }));
  most = Math.max(most, pool.pending);
  t.is(pool.pending, 2, 'one running, one queued, four waiting');
  const results = await Promise.all(runs);
  t.true(most <= 2);
  t.true(results.every((r) => r.failures.length === 0 && r.x!.length === 4 * 32 * 32 * 3));
});

test('prefetch keeps at most `depth` loads in flight, in order, and waits for them when the consumer stops', async (t) => {
  let inFlight = 0;
  let most = 0;
  let settled = 0;
  const load = async (i: number): Promise<number> => {
    inFlight++;
    most = Math.max(most, inFlight);
    await tick();
    inFlight--;
    settled++;
    return i * 10;
  };
  const seen: number[] = [];
  for await (const value of prefetch(all(10), load, { depth: 3 })) {
    seen.push(value);
    await tick();
    await tick();
    if (seen.length === 6) break;
  }
  t.deepEqual(seen, [0, 10, 20, 30, 40, 50]);
  t.true(most <= 3);
  t.is(inFlight, 0, 'no load left running after the consumer stopped');
  t.true(settled <= 9);
  const failing = prefetch(all(5), async (i) => {
    if (i === 2) throw new DatasetError('boom');
    return i;
  });
  const got: number[] = [];
  await t.throwsAsync(async () => {
    for await (const v of failing) got.push(v);
  }, { instanceOf: DatasetError });
  t.deepEqual(got, [0, 1], 'values before the failure arrive first, in order');
});

test('close stops every thread; tasks after or during close reject instead of hanging', async (t) => {
  const pool = new DecodePool({ threads: 2 });
  await pool.run(tinyTask(2));
  t.is(pool.liveThreads, 2);
  const pending = pool.run(tinyTask(200, 64));
  await pool.close();
  await t.throwsAsync(pending, { instanceOf: DatasetError });
  t.is(pool.liveThreads, 0);
  await t.throwsAsync(pool.run(tinyTask(1)), { instanceOf: DatasetError, message: /closed/ });
  await pool.close(); // twice is fine
});

test('a task over its deadline fails with a clear error and the pool carries on', async (t) => {
  const root = await tempDir(t);
  const big = rgbPixels(1024, 1024, (x, y) => [x & 255, y & 255, (x ^ y) & 255]);
  for (let i = 0; i < 6; i++) await writeImage(path.join(root, 'a', `${i}.png`), big, 1024, 1024, 'png');
  const ds = await openDataset({ kind: 'folder', path: root, imageSize: [64, 64] }, { threads: 1, taskTimeoutMs: 5 });
  t.teardown(() => ds.close());
  await t.throwsAsync(ds.train.loadBatch(all(6)), { instanceOf: DatasetError, message: /longer than 5 ms/ });
  const pool = new DecodePool({ threads: 1, taskTimeoutMs: 60_000 });
  t.teardown(() => pool.close());
  t.is((await pool.run(tinyTask(2))).failures.length, 0);
});

test('a released batch buffer is handed to the thread and back for the next batch', async (t) => {
  const root = await tempDir(t);
  await makeImageFolder(root, { a: 4 }, 8);
  const ds = await openDataset({ kind: 'folder', path: root, imageSize: [8, 8], preprocess: 'none' }, { threads: 1 });
  t.teardown(() => ds.close());
  const first = await ds.train.loadBatch([0, 1]);
  const copy = first.x.slice();
  first.release!();
  first.release!(); // twice is harmless
  const second = await ds.train.loadBatch([0, 1]);
  t.is(first.x.length, 0, 'the released buffer moved to the decode thread (detached here)');
  t.deepEqual([...second.x], [...copy]);
});

test('pool options are validated by name, and TypeScript workers get tsx once', (t) => {
  t.throws(() => new DecodePool({ threads: -1 }), { instanceOf: ConfigError, message: /threads/ });
  t.throws(() => new DecodePool({ maxQueue: 1.5 }), { instanceOf: ConfigError, message: /maxQueue/ });
  const args = tsWorkerExecArgv('/x/task.ts');
  t.is(args.filter((a) => a === 'tsx' || a === '--import=tsx').length, 1);
  t.deepEqual(tsWorkerExecArgv('/x/task.js'), process.execArgv);
});

test('an unknown pool option is refused by name', (t) => {
  const error = t.throws(() => new DecodePool({ thread: 2 } as never), { instanceOf: ConfigError });
  t.is(error!.field, 'thread');
});
