/**
 * What model a replica builds: layers from scratch, or a transfer backbone under a new head.
 * Validation only (zod, no tfjs), so that what merely checks a spec, such as the replica spec a
 * worker gets on join, does not load tfjs; buildReplicaModel (replica-model.ts) builds it.
 */
import { z } from 'zod';
import { layerSpecSchema } from './layer-spec.ts';
import { transferSpecSchema } from './transfer-spec.ts';

const dim = z.number().int().positive();

export const modelSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('scratch'),
    layers: z.array(layerSpecSchema).min(1),
    inputShape: z.tuple([dim, dim, dim]),
    classes: z.number().int().min(2),
    l2: z.number().min(0),
    seed: z.number().int().min(0),
  }),
  /**
   * A pretrained backbone under a new head (transfer.ts). Whoever builds it loads the backbone
   * itself (`nsfwjs:` from its own install; a path must exist on that machine).
   */
  z.strictObject({
    kind: z.literal('transfer'),
    /** The job's transfer section, validated (defaults filled in). */
    transfer: transferSpecSchema,
    inputShape: z.tuple([dim, dim, dim]),
    classes: z.number().int().min(2),
    seed: z.number().int().min(0),
    /** The fine-tuning phase's first trainable layer (unfreezeFrom); null: the first phase, frozen as `transfer.freeze` says. */
    trainableFrom: z.string().min(1).nullable(),
  }),
]);

export type ModelSpec = z.infer<typeof modelSpecSchema>;
