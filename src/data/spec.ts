/**
 * The parts of a dataset spec every image source shares (zod, so the job-file validator embeds
 * them and reports the exact field): augmentation, preprocessing, resizing, validation splits.
 * Each source's own schema (src/data/sources/) spreads `imageOptions` into its fields.
 */
import { z } from 'zod';

export const positiveInt = z.number().int().positive();
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

/** Options shared by every image source: the model's input and how samples become it. */
export const imageOptions = {
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

/** A seeded, per-class fraction of the training set. */
export const validationByFraction = z.strictObject({ fraction, seed: z.number().int().min(0).optional() });
/** A separate folder or file with the same classes. */
export const validationByPath = z.strictObject({ path: z.string().min(1) });

/** The image options as validated (defaults filled in): what the data pipeline is built from. */
export type ImageOptions = z.output<z.ZodObject<typeof imageOptions>>;
export type ResolvedAugmentSpec = z.output<typeof augmentSpecSchema>;
