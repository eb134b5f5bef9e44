import { z } from 'zod';

const activation = z.enum(['relu', 'relu6', 'elu', 'selu', 'sigmoid', 'tanh', 'swish', 'linear', 'softmax']);
const padding = z.enum(['same', 'valid']);
const size2 = z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])]);

/** One layer of a model given as a list in the job file. */
export const layerSpecSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('conv2d'),
    filters: z.number().int().positive(),
    kernelSize: size2,
    strides: size2.default(1),
    padding: padding.default('same'),
    dilation: size2.default(1),
    activation: activation.default('relu'),
  }),
  z.strictObject({ type: z.literal('batchNorm'), momentum: z.number().gt(0).lt(1).default(0.99), epsilon: z.number().positive().default(1e-3) }),
  z.strictObject({ type: z.literal('activation'), activation }),
  z.strictObject({ type: z.literal('maxPool'), poolSize: size2.default(2), strides: size2.optional(), padding: padding.default('valid') }),
  z.strictObject({ type: z.literal('avgPool'), poolSize: size2.default(2), strides: size2.optional(), padding: padding.default('valid') }),
  z.strictObject({ type: z.literal('globalAvgPool') }),
  z.strictObject({ type: z.literal('dropout'), rate: z.number().min(0).lt(1) }),
  z.strictObject({ type: z.literal('flatten') }),
  z.strictObject({ type: z.literal('dense'), units: z.number().int().positive(), activation: activation.default('relu') }),
]);

export type LayerSpec = z.infer<typeof layerSpecSchema>;
export type LayerSpecInput = z.input<typeof layerSpecSchema>;
