/**
 * The worker's end of shards: the decoder the replica spec's `samples` names, from the shard
 * codec registry (src/data/shards/) for streamed shards, or the worker's own mount of the
 * dataset (`cluster.dataTransport: shared`).
 */
import { SHARD_CODECS, type ShardDecoder, type WorkerSamples } from '../data/shards/index.ts';
import { sharedDecoder } from '../data/shards/shared.ts';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';

export type { ShardDecoder, ShardInput } from '../data/shards/index.ts';

/** A decoder for the shards `samples` describes. */
export async function shardDecoder(samples: WorkerSamples, log: Logger): Promise<ShardDecoder> {
  if (samples.transport === 'shared') return sharedDecoder(samples, log);
  const codec = SHARD_CODECS.find((c) => c.decoder === samples.decoder);
  if (!codec) throw new ConfigError(`no shard codec decodes samples.decoder ${samples.decoder}`, 'samples.decoder');
  return codec.decoderFor(samples, log);
}
