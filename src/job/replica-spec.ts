import { z } from 'zod';
import { layerSpecSchema } from '../model/layer-spec.ts';
import { transferSpecSchema } from '../model/transfer-spec.ts';
import { ProtocolError } from '../errors.ts';

const dim = z.number().int().positive();

/**
 * What a worker needs to build its replica and read its shards, sent as JSON in JoinReply and
 * validated here (it comes from the network). Weights are not in it: they follow on the stream.
 */
export const replicaSpecSchema = z.strictObject({
  jobName: z.string(),
  model: z.discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('scratch'),
      layers: z.array(layerSpecSchema).min(1),
      inputShape: z.tuple([dim, dim, dim]),
      classes: z.number().int().min(2),
      l2: z.number().min(0),
      seed: z.number().int().min(0),
    }),
    /**
     * A pretrained backbone under a new head (src/model/transfer.ts). Each worker loads the
     * backbone itself (`nsfwjs:` from its own install; a path must exist on the worker).
     */
    z.strictObject({
      kind: z.literal('transfer'),
      /** The job's transfer section as the coordinator validated it (defaults filled in). */
      transfer: transferSpecSchema,
      inputShape: z.tuple([dim, dim, dim]),
      classes: z.number().int().min(2),
      seed: z.number().int().min(0),
      /** The fine-tuning phase's first trainable layer (unfreezeFrom); null: the first phase, frozen as `transfer.freeze` says. */
      trainableFrom: z.string().min(1).nullable(),
    }),
  ]),
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
export type ReplicaModelSpec = ReplicaSpec['model'];

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
