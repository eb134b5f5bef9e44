/**
 * Samples of a pipeline source (image files, CIFAR, IDX with augmentation): shipped as the
 * source holds them (file bytes, or raw pixels before the pipeline), and run through the data
 * pipeline of the job's spec on the worker (decode, resize, augment seeded per sample id and
 * epoch, normalise), so a worker's batch equals the coordinator's own.
 */
import { DatasetError } from '../../errors.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { SampleInput } from '../decode.ts';
import type { EncodedSample } from '../sample-split.ts';
import { isPipelineSpec } from '../sources/index.ts';
import type { DataSplit, InputShape } from '../types.ts';
import type { EncodedShard, ShardCodec, ShardDecoder, ShardEncoding, ShardInput } from './shard.ts';

/** A split that can hand out encoded samples (the data pipeline's SampleSplit). */
interface EncodingSplit extends DataSplit {
  encodedSamples(indices: ArrayLike<number>): Promise<{ samples: EncodedSample[]; skipped: number[] }>;
}

function canEncode(split: DataSplit): split is EncodingSplit {
  return typeof (split as Partial<EncodingSplit>).encodedSamples === 'function';
}

/** Packs encoded samples into one payload (one copy; the wire then slices it without copying). */
function pack({ samples, skipped }: { samples: EncodedSample[]; skipped: number[] }): EncodedShard {
  let encoding: ShardEncoding | undefined;
  let pixels: EncodedShard['pixels'];
  const parts: Uint8Array[] = [];
  for (const sample of samples) {
    const input = sample.input;
    const kind: ShardEncoding = 'bytes' in input ? 'FILE_BYTES' : 'RAW_PIXELS';
    if (encoding !== undefined && kind !== encoding) throw new DatasetError('a shard mixes file bytes and raw pixels: one split must use one encoding');
    encoding = kind;
    if ('pixels' in input) {
      const dims = { height: input.height, width: input.width, channels: input.channels };
      if (pixels && (pixels.height !== dims.height || pixels.width !== dims.width || pixels.channels !== dims.channels)) {
        throw new DatasetError('raw-pixel samples of one shard differ in size');
      }
      pixels = dims;
      parts.push(input.pixels);
    } else {
      parts.push(input.bytes);
    }
  }
  const total = parts.reduce((sum, p) => sum + p.length, 0);
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return {
    encoding: encoding ?? 'FILE_BYTES',
    pixels,
    ids: samples.map((s) => s.id),
    labels: samples.map((s) => s.label),
    sampleBytes: parts.map((p) => p.length),
    bytes,
    skipped,
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

/** Encoded samples from the coordinator through the data pipeline of the job's dataset spec, on the worker's pool. */
export async function pipelineDecoder(datasetSpec: unknown, inputShape: InputShape, log: Logger): Promise<ShardDecoder> {
  // Loaded on demand: sharp and the pool cost ~1 s of start-up that raw-pixel workers do not need.
  const { createSampleDecoder } = await import('../open.ts');
  const decoder = createSampleDecoder(datasetSpec, inputShape, { logger: log });
  return {
    async decode(shard) {
      const loader = shard.augment ? decoder.train : decoder.evaluation;
      return loader.load(shardSamples(shard), shard.labels, { augment: shard.augment, epoch: shard.epoch, ids: shard.ids });
    },
    close: () => decoder.close(),
  };
}

export const encodedSampleCodec: ShardCodec<{ decoder: 'pipeline'; transport: 'stream' | 'shared'; dataset: unknown; inputShape: InputShape }> = {
  decoder: 'pipeline',
  encoder: (split) => (canEncode(split) ? { split, encode: async (ids) => pack(await split.encodedSamples(ids)) } : undefined),
  workerSamples: (dataset) =>
    dataset.spec !== undefined && isPipelineSpec(dataset.spec) ? { decoder: 'pipeline', transport: 'stream', dataset: dataset.spec, inputShape: dataset.inputShape } : undefined,
  decoderFor: (samples, log) => pipelineDecoder(samples.dataset, samples.inputShape, log),
};
