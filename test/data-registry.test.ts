/**
 * The data source registry is the one place a source is added: every registered kind is
 * accepted by the job schema, opens, knows its spec, and its samples round-trip coordinator ->
 * worker (encoded into a shard, decoded on the worker; or read from a shared mount) into exactly
 * the batch the coordinator's own dataset gives. A new source without a fixture here fails.
 */
import test, { type ExecutionContext } from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openJobDataset } from '../src/data/open.ts';
import { workerSamples, type EncodedShard } from '../src/data/shards/index.ts';
import { DATA_SOURCES, dataSpecSchema } from '../src/data/sources/index.ts';
import type { Batch, DataSplit } from '../src/data/types.ts';
import { shardSource } from '../src/coordinator/sample-source.ts';
import { parseJob } from '../src/job/job-file.ts';
import { replicaSpecSchema } from '../src/job/replica-spec.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { shardDecoder } from '../src/worker/shard-decoder.ts';
import { cifarRecords, idxBytes, rgbPixels, tempDir, writeBytes, writeImage } from './helpers/image-fixtures.ts';

/** Writes a tiny dataset of a kind and returns job `data` sections over it (one per way it opens). */
type Fixture = (t: ExecutionContext) => Promise<Record<string, unknown>[]>;

const augment = { horizontalFlip: true, rotationRange: 20 };

/** A 12 px PNG with a gradient (so a flip or rotation shows), distinct per k. */
const writeGradient = (file: string, k: number) => writeImage(file, rgbPixels(12, 12, (x, y) => [x * 20 + k, y * 20, k * 25]), 12, 12);

const fixtures: Record<string, Fixture> = {
  default: async () => [{ kind: 'default' }],
  shapes: async (t) => [{ kind: 'shapes', dir: await tempDir(t), perClass: 4, size: 16 }],
  folder: async (t) => {
    const root = await tempDir(t);
    for (let k = 0; k < 8; k++) await writeGradient(path.join(root, k % 2 ? 'b' : 'a', `${k}.png`), k);
    return [{ kind: 'folder', path: root, imageSize: [8, 8], augment, validation: { fraction: 0.25 } }];
  },
  manifest: async (t) => {
    const root = await tempDir(t);
    const rows = ['path,label'];
    for (let i = 0; i < 8; i++) {
      await writeGradient(path.join(root, `img-${i}.png`), i);
      rows.push(`img-${i}.png,${i % 2 ? 'odd' : 'even'}`);
    }
    await writeFile(path.join(root, 'list.csv'), `${rows.join('\n')}\n`);
    return [{ kind: 'manifest', path: path.join(root, 'list.csv'), imageSize: [8, 8], augment }];
  },
  cifar: async (t) => {
    const root = await tempDir(t);
    const records = (from: number, count: number) =>
      cifarRecords(Array.from({ length: count }, (_, k) => ({ labels: [(from + k) % 10], rgb: (x: number, y: number) => [(x * 8 + k) % 256, (y * 8) % 256, (from + k) * 20] as [number, number, number] })));
    await writeBytes(path.join(root, 'data_batch_1.bin'), records(0, 8));
    await writeBytes(path.join(root, 'test_batch.bin'), records(0, 2));
    return [{ kind: 'cifar', path: root, imageSize: [16, 16], augment }];
  },
  idx: async (t) => {
    const dir = await tempDir(t);
    const n = 8;
    const images = Uint8Array.from({ length: n * 28 * 28 }, (_, i) => (i * 7) % 251);
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
    await writeBytes(path.join(dir, 'train-images-idx3-ubyte'), idxBytes([n, 28, 28], images));
    await writeBytes(path.join(dir, 'train-labels-idx1-ubyte'), idxBytes([n], labels));
    await writeBytes(path.join(dir, 't10k-images-idx3-ubyte'), idxBytes([2, 28, 28], images.subarray(0, 2 * 784)));
    await writeBytes(path.join(dir, 't10k-labels-idx1-ubyte'), idxBytes([2], labels.subarray(0, 2)));
    // As it is (raw pixels on the wire), and through the pipeline (encoded samples).
    return [{ kind: 'idx', dir, validationSize: 2 }, { kind: 'idx', dir, validationSize: 2, imageSize: [14, 14], augment }];
  },
};

test('the job schema accepts exactly the registered kinds, and every one has a fixture below', (t) => {
  const kinds = DATA_SOURCES.map((source) => source.kind);
  t.deepEqual(new Set(kinds).size, kinds.length, 'one source per kind');
  t.deepEqual(Object.keys(fixtures).sort(), [...kinds].sort(), 'a registered source needs a fixture in test/data-registry.test.ts');
  t.deepEqual([...dataSpecSchema.options.map((schema) => schema.shape.kind.value)], kinds);
  t.false(dataSpecSchema.safeParse({ kind: 'tfrecord' }).success);
});

const sameBatch = (t: ExecutionContext, got: Batch, want: Batch, what: string): void => {
  t.is(got.n, want.n, what);
  t.deepEqual(got.shape, want.shape, what);
  t.deepEqual([...got.y], [...want.y], what);
  t.deepEqual([...got.x], [...want.x], what);
};

/** The ShardInput a worker's session builds from a streamed shard. */
function arriving(shard: EncodedShard, split: string, augmentIt: boolean) {
  return {
    split,
    ids: shard.ids,
    labels: shard.labels,
    encoding: shard.encoding,
    pixels: shard.pixels ?? { height: 0, width: 0, channels: 0 },
    sampleBytes: shard.sampleBytes,
    payload: shard.bytes,
    augment: augmentIt,
    epoch: 2,
  };
}

for (const source of DATA_SOURCES) {
  test(`${source.kind}: job schema -> open -> shard encode -> worker decode gives the coordinator's own batch`, async (t) => {
    const fixture = fixtures[source.kind];
    if (!fixture) return t.fail(`no fixture for data source ${source.kind}`);
    const log = silentLogger();
    for (const data of await fixture(t)) {
      const what = JSON.stringify(data);
      const spec = parseJob({ data }).data;
      t.is(spec.kind, source.kind);
      const dataset = await openJobDataset(spec, log);
      t.teardown(() => dataset.close());
      t.deepEqual(dataset.spec, spec, 'the dataset knows its spec');
      const splits: [string, DataSplit | undefined][] = [['train', dataset.train], ['validation', dataset.validation]];
      for (const transport of ['stream', 'shared'] as const) {
        // What the replica spec carries, through JSON and the worker's validation.
        const samples = replicaSpecSchema.shape.samples.parse(JSON.parse(JSON.stringify(workerSamples(dataset, transport, spec as Record<string, unknown>))));
        t.is(samples.transport, transport);
        const decoder = await shardDecoder(samples, log);
        try {
          for (const [name, split] of splits) {
            if (!split) continue;
            const ids = Array.from({ length: Math.min(split.length, 5) }, (_, i) => split.length - 1 - i);
            const augmentIt = name === 'train';
            const want = await split.loadBatch(ids, { augment: augmentIt, epoch: 2 });
            let got: Batch;
            if (transport === 'stream') {
              const shard = await shardSource(split, `${name} split`).encode(ids);
              t.deepEqual(shard.skipped, []);
              got = await decoder.decode(arriving(shard, name, augmentIt));
            } else {
              got = await decoder.decode({ split: name, ids, labels: ids.map((id) => split.label(id)), encoding: 'SAMPLE_ENCODING_UNSPECIFIED', pixels: { height: 0, width: 0, channels: 0 }, sampleBytes: [], payload: undefined, augment: augmentIt, epoch: 2 });
            }
            sameBatch(t, got, want, `${what} ${transport} ${name}`);
          }
        } finally {
          await decoder.close();
        }
      }
    }
  });
}
