/**
 * The registry of shard codecs: how a split's samples travel from the coordinator to workers
 * (src/coordinator/sample-source.ts asks for an encoder, src/worker/shard-decoder.ts for a
 * decoder). A source gets one by the splits it builds: in-memory uint8 splits as they are travel
 * as raw pixels, pipeline splits as encoded samples (src/data/sources/source.ts).
 */
import { ConfigError } from '../../errors.ts';
import type { Dataset } from '../types.ts';
import { encodedSampleCodec } from './encoded-samples.ts';
import { rawPixelCodec } from './raw-pixels.ts';
import type { ShardCodec, WorkerSamples } from './shard.ts';
import { sharedSamples } from './shared.ts';

export type { EncodedShard, ShardDecoder, ShardEncoding, ShardInput, ShardSource, WorkerSamples } from './shard.ts';

/** Tried in order: the first that carries a split's samples encodes them; a new codec is one line here. */
export const SHARD_CODECS: readonly ShardCodec[] = [rawPixelCodec, encodedSampleCodec];

/**
 * What workers are told about the dataset's samples (the replica spec's `samples`): how shards
 * are decoded when streamed, or what to open when every node mounts the dataset (`jobData`: the
 * job's `data` section, for a dataset without a pipeline spec).
 */
export function workerSamples(dataset: Dataset, transport: 'stream' | 'shared', jobData: Record<string, unknown>): WorkerSamples {
  if (transport === 'shared') return sharedSamples(dataset, jobData);
  for (const codec of SHARD_CODECS) {
    const samples = codec.workerSamples(dataset);
    if (samples) return samples;
  }
  throw new ConfigError(`dataset ${dataset.name} has no spec a worker could decode its samples with; use cluster.dataTransport: shared`, 'cluster.dataTransport');
}
