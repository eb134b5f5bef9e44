import { ConfigError, DatasetError } from '../errors.ts';
import { InMemorySplit } from '../data/idx.ts';
import type { EncodedSample } from '../data/sample-split.ts';
import type { DataSplit } from '../data/types.ts';

/** How the samples of a shard are encoded on the wire. */
export type ShardEncoding = 'FILE_BYTES' | 'RAW_PIXELS';

/** A shard's payload: the samples' bytes back to back, each one's length, labels, and what was skipped. */
export interface EncodedShard {
  encoding: ShardEncoding;
  /** Size of each sample for RAW_PIXELS. */
  pixels: { height: number; width: number; channels: number } | undefined;
  /** Ids in the payload, in order (the shard's ids minus the skipped ones). */
  ids: number[];
  labels: number[];
  sampleBytes: number[];
  bytes: Uint8Array;
  /** Ids that could not be read at the source (counted and logged there). */
  skipped: number[];
}

/** Where a coordinator gets the encoded samples of a split, for shipping to workers. */
export interface ShardSource {
  readonly split: DataSplit;
  encode(ids: ArrayLike<number>): Promise<EncodedShard>;
}

/** A split that can hand out encoded samples (the data pipeline's SampleSplit). */
interface EncodingSplit extends DataSplit {
  encodedSamples(indices: ArrayLike<number>): Promise<{ samples: EncodedSample[]; skipped: number[] }>;
}

function canEncode(split: DataSplit): split is EncodingSplit {
  return typeof (split as Partial<EncodingSplit>).encodedSamples === 'function';
}

/** The split's shard source, or a ConfigError saying why its samples cannot be streamed. */
export function shardSource(split: DataSplit, what: string): ShardSource {
  if (split instanceof InMemorySplit) return rawPixelSource(split);
  if (canEncode(split)) return { split, encode: async (ids) => pack(await split.encodedSamples(ids)) };
  throw new ConfigError(
    `${what}: this dataset cannot ship encoded samples to workers; set cluster.dataTransport: shared and mount the dataset on every worker`,
    'cluster.dataTransport',
  );
}

/** In-memory uint8 images (IDX, generated shapes): their raw pixels are their encoding. */
function rawPixelSource(split: InMemorySplit): ShardSource {
  const [height, width, channels] = split.shape;
  const size = height * width * channels;
  return {
    split,
    async encode(ids) {
      const bytes = new Uint8Array(ids.length * size);
      const labels: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i]!;
        if (!(Number.isInteger(id) && id >= 0 && id < split.length)) throw new DatasetError(`sample index ${id} is out of range 0..${split.length - 1}`);
        bytes.set(split.images.subarray(id * size, (id + 1) * size), i * size);
        labels.push(split.label(id));
      }
      return { encoding: 'RAW_PIXELS', pixels: { height, width, channels }, ids: Array.from(ids), labels, sampleBytes: new Array<number>(ids.length).fill(size), bytes, skipped: [] };
    },
  };
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
