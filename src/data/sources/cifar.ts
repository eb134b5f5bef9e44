/** `kind: cifar`: the CIFAR-10 / CIFAR-100 binary batches, held in memory, through the pipeline. */
import path from 'node:path';
import { z } from 'zod';
import { readCifar } from '../cifar.ts';
import { stratifiedHoldout } from '../holdout.ts';
import { imageOptions, validationByFraction } from '../spec.ts';
import type { DataSplit, InputShape } from '../types.ts';
import type { DataSource } from './source.ts';

export const cifarSpecSchema = z.strictObject({
  kind: z.literal('cifar'),
  /** Folder holding the binary batches (data_batch_N.bin + test_batch.bin, or train.bin + test.bin). */
  path: z.string().min(1),
  /** 10 or 100; default: detected from the file names. */
  variant: z.union([z.literal(10), z.literal(100)]).optional(),
  /** CIFAR-100 only: the 100 fine or 20 coarse labels. */
  labels: z.enum(['fine', 'coarse']).default('fine'),
  validation: validationByFraction.optional(),
  ...imageOptions,
});
export type CifarSpec = z.output<typeof cifarSpecSchema>;

const NATIVE: InputShape = [32, 32, 3];

export const cifarSource = {
  kind: 'cifar',
  schema: cifarSpecSchema,
  pipeline: { nativeShape: () => NATIVE, inMemory: true, name: (spec) => path.basename(spec.path) },
  async open(spec, context) {
    context.name = 'cifar';
    // Resolved before the batches are read, so a bad option fails fast.
    const pipelines = context.pipelines(NATIVE);
    const data = await readCifar(spec.path, { variant: spec.variant, labels: spec.labels });
    const name = `cifar-${data.variant}`;
    context.name = name;
    let train: DataSplit;
    let validation: DataSplit | undefined;
    if (spec.validation) {
      const holdout = stratifiedHoldout(data.train.labels, spec.validation.fraction, spec.validation.seed ?? spec.seed);
      train = context.pixelSplit('train', data.train, NATIVE, holdout.train, `${name} train`, pipelines);
      validation = context.pixelSplit('validation', data.train, NATIVE, holdout.validation, `${name} train`, pipelines);
    } else {
      train = context.pixelSplit('train', data.train, NATIVE, null, `${name} train`, pipelines);
    }
    const test = data.test ? context.pixelSplit('test', data.test, NATIVE, null, `${name} test`, pipelines) : undefined;
    return {
      name,
      classNames: data.classNames,
      inputShape: [pipelines.train.geometry.height, pipelines.train.geometry.width, pipelines.train.channels],
      train,
      validation,
      test,
    };
  },
} satisfies DataSource<'cifar', typeof cifarSpecSchema>;
