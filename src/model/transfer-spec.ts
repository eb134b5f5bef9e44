/**
 * The transfer part of a job file, apart from the model code so that what only validates it
 * (the job file, the replica spec a worker gets on join) does not load tfjs.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.ts';

const layerName = z.string().min(1);
const batchNormPolicy = z.enum(['frozen', 'trainable']);

/** The transfer part of a job file; the job-file validator embeds it. Unknown fields are errors. */
export const transferSpecSchema = z.strictObject({
  /** `nsfwjs:mobilenet_v2`, a directory or model.json path, or an http(s) URL of a tfjs LayersModel. */
  backbone: z.string().min(1),
  /** Features are this layer's output; default: the bundled backbone's feature layer, else the model's output. */
  cutAt: layerName.optional(),
  /** Which backbone layers do not train: all, none, or those up to and including a layer. */
  freeze: z.union([z.enum(['all', 'none']), z.strictObject({ upTo: layerName })]).default('all'),
  /** Backbone batch norm: 'frozen' (Keras' advice) or 'trainable' gamma/beta where the layer is unfrozen. */
  batchNorm: batchNormPolicy.default('frozen'),
  head: z.strictObject({
    pooling: z.enum(['avg', 'max', 'flatten']).default('avg'),
    /** Hidden dense layers (relu), e.g. [256]. */
    dense: z.array(z.number().int().positive()).default([]),
    /** Dropout rate after each hidden dense layer, or after pooling when there is none; 0 = none. */
    dropout: z.number().min(0).lt(1).default(0),
    /** Default: the dataset's class count. */
    classes: z.number().int().min(2).optional(),
  }),
  /** Second phase: unfreeze from this layer upward and train on at a lower learning rate. */
  fineTune: z
    .strictObject({
      from: layerName,
      learningRate: z.number().positive(),
      epochs: z.number().int().positive(),
    })
    .optional(),
});
export type TransferSpec = z.infer<typeof transferSpecSchema>;
export type TransferSpecInput = z.input<typeof transferSpecSchema>;
export type BatchNormPolicy = z.infer<typeof batchNormPolicy>;

/** Validates a transfer spec, naming the field (`transfer.head.classes`) on failure. */
export function parseTransferSpec(input: unknown): TransferSpec {
  const parsed = transferSpecSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = ['transfer', ...issue.path.map(String), ...(issue.code === 'unrecognized_keys' ? [issue.keys[0]!] : [])].join('.');
  throw new ConfigError(`${field}: ${issue.code === 'unrecognized_keys' ? `unknown field` : issue.message}`, field);
}
