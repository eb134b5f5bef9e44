/**
 * The dataset spec as written in a job file: a zod schema (so the job-file validator can embed
 * it and report the exact field) and the types it yields. Unknown fields are errors.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.ts';

const positiveInt = z.number().int().positive();
const fraction = z.number().gt(0).lt(1);

/** Keras-style augmentation; every field optional, absent means "off". */
export const augmentSpecSchema = z.strictObject({
  /** Degrees: the angle is drawn uniformly in [-rotationRange, rotationRange]. */
  rotationRange: z.number().min(0).max(180).default(0),
  /** Fraction of the width if < 1, else pixels. */
  widthShiftRange: z.number().min(0).default(0),
  /** Fraction of the height if < 1, else pixels. */
  heightShiftRange: z.number().min(0).default(0),
  /** Shear angle in degrees. */
  shearRange: z.number().min(0).max(89).default(0),
  /** A number z means [1 - z, 1 + z]; or [lo, hi]. < 1 zooms in, > 1 zooms out. */
  zoomRange: z
    .union([z.number().min(0).lt(1), z.tuple([z.number().positive(), z.number().positive()])])
    .default(0)
    .refine((v) => typeof v === 'number' || v[0] <= v[1], { message: 'zoomRange [lo, hi] needs lo <= hi' }),
  horizontalFlip: z.boolean().default(false),
  verticalFlip: z.boolean().default(false),
  /** Brightness factors [lo, hi], e.g. [0.8, 1.2]. */
  brightnessRange: z
    .tuple([z.number().min(0), z.number().min(0)])
    .refine((v) => v[0] <= v[1], { message: 'brightnessRange [lo, hi] needs lo <= hi' })
    .optional(),
  /** Pixel units (0..255): one intensity in [-v, v] added to every channel, then clipped. */
  channelShiftRange: z.number().min(0).max(255).default(0),
  /** How points outside the image are filled (Keras' fill_mode). */
  fillMode: z.enum(['nearest', 'constant', 'reflect', 'wrap']).default('nearest'),
  /** Fill value (0..255) for fillMode 'constant'. */
  fillValue: z.number().min(0).max(255).default(0),
  interpolation: z.enum(['bilinear', 'nearest']).default('bilinear'),
});
export type AugmentSpec = z.input<typeof augmentSpecSchema>;

/**
 * How pixel values (0..255) become the model's floats: 'rescale' [0, 1]; 'mobilenet' (alias
 * 'tf') [-1, 1]; 'torch' ImageNet mean/std on [0, 1]; 'caffe' BGR minus ImageNet means;
 * 'none' raw 0..255; or an explicit per-channel mean/std applied to [0, 1] values.
 */
export const preprocessSpecSchema = z.union([
  z.enum(['rescale', 'mobilenet', 'tf', 'torch', 'caffe', 'none']),
  z.strictObject({
    mean: z.array(z.number()).min(1).max(4),
    std: z.array(z.number().positive()).min(1).max(4),
  }),
]);
export type PreprocessSpec = z.infer<typeof preprocessSpecSchema>;

/** How an image becomes the model's input size: see `resize` below. */
export const resizeModeSchema = z.enum(['cover', 'stretch', 'contain']);
export type ResizeModeSpec = z.infer<typeof resizeModeSchema>;

/** Options shared by every source: the model's input and how samples become it. */
const imageOptions = {
  /** [height, width] of the model's input; default: the source's own size (32 for CIFAR, 28 for MNIST), 256 for files. */
  imageSize: z.tuple([positiveInt.max(8192), positiveInt.max(8192)]).optional(),
  /** 1 (greyscale) or 3 (RGB); default: the source's own (3 for files and CIFAR, 1 for IDX). */
  channels: z.union([z.literal(1), z.literal(3)]).optional(),
  /** cover: scale to fill and centre-crop (no distortion); stretch: ignore aspect ratio; contain: fit and pad. */
  resize: resizeModeSchema.default('cover'),
  /** Training-only augmentation; absent means none. */
  augment: augmentSpecSchema.optional(),
  /**
   * Where augmented batches are warped, coloured and normalised: 'cpu' in the decode pool;
   * 'device' as tfjs ops on the compute backend (the pool only decodes); 'auto' (default):
   * the device on webgpu, where the pool would otherwise set the pace, the pool elsewhere.
   */
  augmentOn: z.enum(['auto', 'cpu', 'device']).default('auto'),
  preprocess: preprocessSpecSchema.default('rescale'),
  /** Seed of the validation split and of every augmentation draw. */
  seed: z.number().int().min(0).default(0),
  /** Decompression-bomb guard: images with more pixels are skipped (default 50 MP). */
  maxInputPixels: positiveInt.default(50_000_000),
  /** Files larger than this many bytes are skipped unread (default 100 MiB). */
  maxFileBytes: positiveInt.default(100 * 1024 * 1024),
};

const validationByFraction = z.strictObject({ fraction, seed: z.number().int().min(0).optional() });
const validationByPath = z.strictObject({ path: z.string().min(1) });

export const folderSpecSchema = z.strictObject({
  kind: z.literal('folder'),
  /** One sub-folder per class (sorted names become class indices), like Keras' image_dataset_from_directory. */
  path: z.string().min(1),
  /** A seeded, per-class fraction of `path`, or a separate folder with the same class sub-folders. */
  validation: z.union([validationByFraction, validationByPath]).optional(),
  test: validationByPath.optional(),
  ...imageOptions,
});

export const manifestSpecSchema = z.strictObject({
  kind: z.literal('manifest'),
  /** A .csv (header with `path` and `label` columns) or .jsonl file ({"path", "label"} per line). */
  path: z.string().min(1),
  format: z.enum(['csv', 'jsonl']).optional(),
  /** Folder relative paths resolve against; default: the manifest's folder. */
  root: z.string().min(1).optional(),
  /** Class names in index order; labels may then be names or indices. Default: sorted distinct labels. */
  classNames: z.array(z.string().min(1)).min(1).optional(),
  validation: z.union([validationByFraction, validationByPath]).optional(),
  test: validationByPath.optional(),
  /** A class with fewer training samples than this (but at least one) is an error naming its rows: most often a mistyped label. */
  minClassSamples: positiveInt.default(2),
  ...imageOptions,
});

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

/** MNIST-style IDX folder; fields as in the lead's `openIdxDataset` (src/data/idx.ts). */
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

/** Any dataset drover can open. */
export const datasetSpecSchema = z.discriminatedUnion('kind', [folderSpecSchema, manifestSpecSchema, cifarSpecSchema, idxSpecSchema]);

/** As written (defaults optional). */
export type DatasetSpecInput = z.input<typeof datasetSpecSchema>;
/** As validated (defaults filled in). */
export type DatasetSpec = z.output<typeof datasetSpecSchema>;
export type FolderSpec = z.output<typeof folderSpecSchema>;
export type ManifestSpec = z.output<typeof manifestSpecSchema>;
export type CifarSpec = z.output<typeof cifarSpecSchema>;
export type IdxSpec = z.output<typeof idxSpecSchema>;
export type ResolvedAugmentSpec = z.output<typeof augmentSpecSchema>;

/**
 * Validates a dataset spec (defaults filled in); throws a ConfigError whose `field` is the
 * dotted path of the first bad field, prefixed with `field` (e.g. "data").
 */
export function parseDatasetSpec(input: unknown, field = ''): DatasetSpec {
  const result = datasetSpecSchema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => {
    const segments = [...(field ? [field] : []), ...issue.path.map(String)];
    if (issue.code === 'unrecognized_keys') segments.push(issue.keys[0]!);
    const where = segments.join('.') || '(root)';
    return { where, text: issue.code === 'unrecognized_keys' ? `unknown field ${issue.keys.join(', ')}` : issue.message };
  });
  const first = issues[0]!;
  return throwConfig(`dataset spec: ${issues.map((i) => `${i.where}: ${i.text}`).join('; ')}`, first.where);
}

function throwConfig(message: string, where: string): never {
  throw new ConfigError(message, where);
}
