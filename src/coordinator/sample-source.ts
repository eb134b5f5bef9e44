/**
 * The coordinator's end of shards: the encoder of each split it streams to workers, from the
 * shard codec registry (src/data/shards/), which also says how workers decode what it encodes.
 */
import { SHARD_CODECS, type ShardSource } from '../data/shards/index.ts';
import type { DataSplit } from '../data/types.ts';
import { ConfigError } from '../errors.ts';

export type { EncodedShard, ShardEncoding, ShardSource } from '../data/shards/index.ts';

/** The split's shard encoder, or a ConfigError saying why its samples cannot be streamed. */
export function shardSource(split: DataSplit, what: string): ShardSource {
  for (const codec of SHARD_CODECS) {
    const source = codec.encoder(split);
    if (source) return source;
  }
  throw new ConfigError(
    `${what}: this dataset cannot ship encoded samples to workers; set cluster.dataTransport: shared and mount the dataset on every worker`,
    'cluster.dataTransport',
  );
}
