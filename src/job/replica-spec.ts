import { z } from 'zod';
import { modelSpecSchema, type ModelSpec } from '../model/model-spec.ts';
import { ProtocolError } from '../errors.ts';

const dim = z.number().int().positive();

/**
 * What a worker needs to build its replica and read its shards, sent as JSON in JoinReply and
 * validated here (it comes from the network). Weights are not in it: they follow on the stream.
 */
export const replicaSpecSchema = z.strictObject({
  jobName: z.string(),
  /**
   * The model to build (src/model/model-spec.ts). A transfer backbone is loaded by each worker
   * itself (`nsfwjs:` from its own install; a path must exist on the worker).
   */
  model: modelSpecSchema,
  /** Every weight of the model in order (what a broadcast holds); the trainable ones get gradients. */
  weights: z.array(z.strictObject({ name: z.string(), shape: z.array(z.number().int().min(0)), trainable: z.boolean() })),
  /**
   * How the worker turns a shard into a batch. `raw-u8`: shards carry uint8 pixels, scaled to
   * [0, 1] as the in-memory IDX split does. `pipeline`: the data pipeline of `dataset` (a
   * pipeline source's spec, src/data/sources/: decode, resize, augment, normalise) over encoded
   * samples from the coordinator, or over the worker's own mount of the dataset (`shared`).
   * `job-data`: the job's `data` spec, opened by the worker itself (`shared`). The coordinator
   * builds it with `workerSamples` (src/data/shards/index.ts), whose type mirrors this schema.
   */
  samples: z.discriminatedUnion('decoder', [
    z.strictObject({ decoder: z.literal('raw-u8'), transport: z.literal('stream'), shape: z.tuple([dim, dim, dim]) }),
    z.strictObject({ decoder: z.literal('pipeline'), transport: z.enum(['stream', 'shared']), dataset: z.unknown(), inputShape: z.tuple([dim, dim, dim]) }),
    /** `data` is the job file's data section, validated by the worker when it opens it. */
    z.strictObject({ decoder: z.literal('job-data'), transport: z.literal('shared'), data: z.record(z.string(), z.unknown()) }),
  ]),
});

export type ReplicaSpec = z.infer<typeof replicaSpecSchema>;
/** The model part of a replica spec: model/'s ModelSpec (the name callers of the wire know it by). */
export type ReplicaModelSpec = ModelSpec;

/** Parses the JSON of a JoinReply; throws a ProtocolError naming the first bad field. */
export function parseReplicaSpec(json: string): ReplicaSpec {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (cause) {
    throw new ProtocolError(`replica spec is not JSON: ${(cause as Error).message}`, { cause });
  }
  const result = replicaSpecSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ProtocolError(`replica spec: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return result.data;
}
