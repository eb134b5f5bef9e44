import { DatasetError } from '../errors.ts';
import { InMemorySplit } from '../data/idx.ts';
import type { SampleInput } from '../data/decode.ts';
import type { Batch, DataSplit, Dataset, InputShape } from '../data/types.ts';
import type { Logger } from '../telemetry/logger.ts';

/** A shard as it arrives: ids, labels, and (stream transport) the samples' encoded bytes. */
export interface ShardInput {
  split: string;
  ids: readonly number[];
  labels: readonly number[];
  encoding: 'FILE_BYTES' | 'RAW_PIXELS' | 'SAMPLE_ENCODING_UNSPECIFIED';
  /** Size of each sample for RAW_PIXELS. */
  pixels: { height: number; width: number; channels: number };
  sampleBytes: readonly number[];
  /** Concatenated encoded samples; undefined when the worker reads the dataset itself. */
  payload: Uint8Array | undefined;
  augment: boolean;
  epoch: number;
}

/**
 * Turns shards into batches: the worker's decode pool plugs in here. A batch may hold fewer
 * samples than the shard (`skipped`: ids that could not be decoded, counted and logged).
 */
export interface ShardDecoder {
  decode(shard: ShardInput): Promise<Batch>;
  close(): Promise<void>;
}

/** Shards of raw uint8 pixels (IDX, generated sets): scaled to [0, 1] exactly as the in-memory split does. */
export function rawPixelDecoder(shape: InputShape): ShardDecoder {
  const sampleSize = shape[0] * shape[1] * shape[2];
  return {
    async decode(shard) {
      const n = shard.ids.length;
      if (!shard.payload && n > 0) throw new DatasetError(`shard of ${n} samples has no payload (raw pixels expected)`);
      const payload = shard.payload ?? new Uint8Array(0);
      if (shard.labels.length !== n || shard.sampleBytes.some((b) => b !== sampleSize) || payload.length !== n * sampleSize) {
        throw new DatasetError(`shard of ${n} samples has ${shard.labels.length} labels and ${payload.length} bytes; expected ${sampleSize} bytes per sample`);
      }
      const split = new InMemorySplit(payload, Int32Array.from(shard.labels), shape);
      return split.loadBatch(Array.from({ length: n }, (_, i) => i), { augment: shard.augment, epoch: shard.epoch });
    },
    async close() {},
  };
}

/** Splits a payload into the samples the data pipeline takes. */
export function shardSamples(shard: ShardInput): SampleInput[] {
  const payload = shard.payload ?? new Uint8Array(0);
  const samples: SampleInput[] = [];
  let offset = 0;
  for (const length of shard.sampleBytes) {
    if (offset + length > payload.length) throw new DatasetError(`shard payload of ${payload.length} bytes is shorter than its samples declare`);
    const bytes = payload.subarray(offset, offset + length);
    offset += length;
    samples.push(shard.encoding === 'RAW_PIXELS' ? { pixels: bytes, ...shard.pixels } : { bytes });
  }
  if (offset !== payload.length || samples.length !== shard.ids.length) {
    throw new DatasetError(`shard declares ${shard.ids.length} samples in ${offset} bytes, payload holds ${payload.length}`);
  }
  return samples;
}

/**
 * Encoded samples from the coordinator through the data pipeline of the job's dataset spec
 * (decode, resize, augment seeded per sample id and epoch, normalise) on the worker's pool.
 */
export async function pipelineDecoder(datasetSpec: unknown, inputShape: InputShape, log: Logger): Promise<ShardDecoder> {
  // Loaded on demand: sharp and the pool cost ~1 s of start-up that raw-pixel workers do not need.
  const { createSampleDecoder } = await import('../data/open.ts');
  const decoder = createSampleDecoder(datasetSpec, inputShape, { logger: log });
  return {
    async decode(shard) {
      const loader = shard.augment ? decoder.train : decoder.evaluation;
      return loader.load(shardSamples(shard), shard.labels, { augment: shard.augment, epoch: shard.epoch, ids: shard.ids });
    },
    close: () => decoder.close(),
  };
}

/** Shards given as ids into a dataset every node mounts (`cluster.dataTransport: shared`). */
export function sharedDatasetDecoder(dataset: Dataset): ShardDecoder {
  const splits: Record<string, DataSplit | undefined> = { train: dataset.train, validation: dataset.validation, test: dataset.test };
  return {
    async decode(shard) {
      const split = splits[shard.split];
      if (!split) throw new DatasetError(`dataset ${dataset.name} has no ${shard.split} split`);
      for (let i = 0; i < shard.ids.length; i++) {
        if (split.label(shard.ids[i]!) !== shard.labels[i]) {
          throw new DatasetError(`sample ${shard.ids[i]} of the ${shard.split} split has label ${split.label(shard.ids[i]!)} here but ${shard.labels[i]} on the coordinator: the mounted datasets differ`);
        }
      }
      return split.loadBatch(shard.ids, { augment: shard.augment, epoch: shard.epoch });
    },
    close: () => dataset.close(),
  };
}
