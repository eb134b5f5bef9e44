/**
 * In-memory uint8 images as they are (IDX, the generated shapes, `default`): their raw pixels
 * are their encoding, and a worker scales them to [0, 1] exactly as the in-memory split does.
 */
import { DatasetError } from '../../errors.ts';
import { InMemorySplit } from '../idx.ts';
import type { InputShape } from '../types.ts';
import type { ShardCodec, ShardDecoder, ShardSource } from './shard.ts';

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

/** Shards of raw uint8 pixels: scaled to [0, 1] exactly as the in-memory split does. */
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

export const rawPixelCodec: ShardCodec<{ decoder: 'raw-u8'; transport: 'stream'; shape: InputShape }> = {
  decoder: 'raw-u8',
  encoder: (split) => (split instanceof InMemorySplit ? rawPixelSource(split) : undefined),
  workerSamples: (dataset) => (dataset.train instanceof InMemorySplit ? { decoder: 'raw-u8', transport: 'stream', shape: dataset.inputShape } : undefined),
  decoderFor: async (samples) => rawPixelDecoder(samples.shape),
};
