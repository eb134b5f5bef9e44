/**
 * A shard is the samples of one task, shipped from the coordinator to a worker. These are its
 * two ends: what the coordinator encodes (`ShardSource`) and what a worker decodes
 * (`ShardDecoder`), plus `WorkerSamples`, the replica spec's word on how to decode them.
 */
import type { Logger } from '../../telemetry/logger.ts';
import type { Batch, DataSplit, Dataset, InputShape } from '../types.ts';

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

/**
 * How a worker turns shards into batches: the replica spec's `samples` (src/job/replica-spec.ts
 * validates it off the wire). `raw-u8`: shards carry uint8 pixels, scaled to [0, 1].
 * `pipeline`: the data pipeline of `dataset` (a pipeline source's spec) over encoded samples
 * (`stream`) or over the worker's own mount of the dataset (`shared`). `job-data`: the job's
 * `data` section, opened by the worker itself.
 */
export type WorkerSamples =
  | { decoder: 'raw-u8'; transport: 'stream'; shape: InputShape }
  | { decoder: 'pipeline'; transport: 'stream' | 'shared'; dataset: unknown; inputShape: InputShape }
  | { decoder: 'job-data'; transport: 'shared'; data: Record<string, unknown> };

/** One way samples travel as shards: its encoder on the coordinator, its decoder on a worker. */
export interface ShardCodec<Samples extends WorkerSamples = WorkerSamples> {
  /** The `samples.decoder` a worker is told. */
  readonly decoder: Samples['decoder'];
  /** The split's encoder, or undefined when this codec does not carry its samples. */
  encoder(split: DataSplit): ShardSource | undefined;
  /** What a worker is told to decode the dataset's streamed shards, or undefined when this codec does not carry them. */
  workerSamples(dataset: Dataset): Samples | undefined;
  /** A worker's decoder for `samples`. */
  decoderFor(samples: Samples, log: Logger): Promise<ShardDecoder>;
}
