/**
 * `kind: idx`: an MNIST-style IDX folder (src/data/idx.ts reads it), held in memory. As it is
 * (scaled to [0, 1]) unless the spec asks for more: then through the pipeline.
 */
import path from 'node:path';
import { z } from 'zod';
import { openIdxDataset, type InMemorySplit } from '../idx.ts';
import { imageOptions, positiveInt } from '../spec.ts';
import type { DataSplit, InputShape } from '../types.ts';
import type { DataSource, SplitName } from './source.ts';

/** MNIST-style IDX folder; fields as in `openIdxDataset` (src/data/idx.ts). */
export const idxSpecSchema = z.strictObject({
  kind: z.literal('idx'),
  dir: z.string().min(1),
  classNames: z.array(z.string().min(1)).min(2).optional(),
  /** Samples cut from the end of the training set for validation (default 5000). */
  validationSize: z.number().int().min(0).default(5000),
  limitTrain: positiveInt.optional(),
  limitTest: positiveInt.optional(),
  ...imageOptions,
});
export type IdxSpec = z.output<typeof idxSpecSchema>;

/** True when the in-memory IDX splits already give what the spec asks (no copy, no pool). */
function asIs(spec: IdxSpec, native: InputShape): boolean {
  return spec.augment === undefined && spec.preprocess === 'rescale' &&
    (spec.imageSize === undefined || (spec.imageSize[0] === native[0] && spec.imageSize[1] === native[1])) &&
    (spec.channels === undefined || spec.channels === native[2]);
}

export const idxSource = {
  kind: 'idx',
  schema: idxSpecSchema,
  // The IDX files say their own size; the coordinator's dataset.inputShape carries it.
  pipeline: { nativeShape: (_spec, inputShape) => inputShape, inMemory: true, name: (spec) => path.basename(spec.dir) },
  async open(spec, context) {
    context.name = path.basename(spec.dir);
    const idx = await openIdxDataset({
      dir: spec.dir, classNames: spec.classNames, validationSize: spec.validationSize,
      limitTrain: spec.limitTrain, limitTest: spec.limitTest,
    });
    context.name = idx.name;
    const native = idx.inputShape;
    if (asIs(spec, native)) return { name: idx.name, classNames: idx.classNames, inputShape: native, train: idx.train, validation: idx.validation, test: idx.test };
    const pipelines = context.pipelines(native);
    const wrap = (which: SplitName, part: DataSplit | undefined): DataSplit | undefined =>
      part ? context.pixelSplit(which, part as InMemorySplit, native, null, `${idx.name} ${which}`, pipelines) : undefined;
    return {
      name: idx.name,
      classNames: idx.classNames,
      inputShape: [pipelines.train.geometry.height, pipelines.train.geometry.width, pipelines.train.channels],
      train: wrap('train', idx.train)!,
      validation: wrap('validation', idx.validation),
      test: wrap('test', idx.test),
    };
  },
} satisfies DataSource<'idx', typeof idxSpecSchema>;
