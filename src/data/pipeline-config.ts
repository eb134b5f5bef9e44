/**
 * The data pipeline's settings, resolved from a spec's image options: geometry, channels,
 * augmentation ranges and normalisation. Plain data sent with every pool task (structured-clone
 * safe), so one pool serves a training split (augmented) and a validation split (not) alike.
 */
import type { AugmentConfig, AugmentParams, GeometryConfig } from './augment.ts';
import type { ImageOptions, PreprocessSpec, ResolvedAugmentSpec } from './spec.ts';
import type { InputShape } from './types.ts';
import type { PixelMap } from './warp.ts';
import { ConfigError } from '../errors.ts';

export interface Normalisation {
  /** Per output slot k: value = pixel * scale[k] + bias[k] (pixel in 0..255). */
  scale: number[];
  bias: number[];
  /** Output slot of each source channel, e.g. [2, 1, 0] for BGR; null for identity. */
  perm: number[] | null;
}

export interface PipelineConfig {
  geometry: GeometryConfig;
  channels: 1 | 3;
  /** Ranges to draw from when a batch asks for augmentation; null: the split never augments. */
  augment: AugmentConfig | null;
  normalisation: Normalisation;
  maxInputPixels: number;
  maxFileBytes: number;
}

/** A spec's two pipelines: training (augments when asked) and evaluation (never augments). */
export interface Pipelines {
  train: PipelineConfig;
  evaluation: PipelineConfig;
}

/** Default input size for image files when the spec gives none (Keras' default). */
const DEFAULT_FILE_SIZE: [number, number] = [256, 256];

/** The training (augmenting) and evaluation pipelines of a spec, given the source's own shape (null: image files). */
export function resolvePipelines(spec: ImageOptions, native: InputShape | null): Pipelines {
  const [height, width] = spec.imageSize ?? (native ? [native[0], native[1]] : DEFAULT_FILE_SIZE);
  const channels = spec.channels ?? ((native?.[2] === 1 ? 1 : 3) as 1 | 3);
  const geometry: GeometryConfig = {
    height,
    width,
    resize: spec.resize,
    fill: spec.augment?.fillMode ?? 'nearest',
    fillValue: spec.augment?.fillValue ?? 0,
    interpolation: spec.augment?.interpolation ?? 'bilinear',
  };
  const base: PipelineConfig = {
    geometry,
    channels,
    augment: null,
    normalisation: resolveNormalisation(spec.preprocess, channels),
    maxInputPixels: spec.maxInputPixels,
    maxFileBytes: spec.maxFileBytes,
  };
  return { train: { ...base, augment: resolveAugment(spec.augment) }, evaluation: base };
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];
const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68];

function perChannel(values: readonly number[], channels: number, field: string): number[] {
  if (values.length === channels) return [...values];
  if (values.length === 1) return new Array<number>(channels).fill(values[0]!);
  throw new ConfigError(`${field} has ${values.length} values for ${channels} channels: give one per channel, or one for all`, field);
}

/** Turns a preprocess spec into per-channel scale / bias (and BGR order for 'caffe'). */
export function resolveNormalisation(spec: PreprocessSpec, channels: number): Normalisation {
  const fill = (v: number): number[] => new Array<number>(channels).fill(v);
  if (typeof spec === 'object') {
    const mean = perChannel(spec.mean, channels, 'preprocess.mean');
    const std = perChannel(spec.std, channels, 'preprocess.std');
    return { scale: std.map((s) => 1 / (255 * s)), bias: mean.map((m, c) => -m / std[c]!), perm: null };
  }
  switch (spec) {
    case 'rescale':
      return { scale: fill(1 / 255), bias: fill(0), perm: null };
    case 'mobilenet':
    case 'tf':
      return { scale: fill(1 / 127.5), bias: fill(-1), perm: null };
    case 'torch': {
      const mean = channels === 3 ? IMAGENET_MEAN : [IMAGENET_MEAN[0]!];
      const std = channels === 3 ? IMAGENET_STD : [IMAGENET_STD[0]!];
      return { scale: std.map((s) => 1 / (255 * s)), bias: mean.map((m, c) => -m / std[c]!), perm: null };
    }
    case 'caffe':
      // Keras' caffe mode: RGB -> BGR, minus the ImageNet means, no scaling.
      if (channels === 3) return { scale: fill(1), bias: CAFFE_MEAN_BGR.map((m) => -m), perm: [2, 1, 0] };
      return { scale: fill(1), bias: [-CAFFE_MEAN_BGR[1]!], perm: null };
    case 'none':
      return { scale: fill(1), bias: fill(0), perm: null };
  }
}

/** The warp's pixel map for one sample: normalisation plus its colour draws. */
export function pixelMapFor(norm: Normalisation, params: AugmentParams, channels: number): PixelMap {
  const shift = new Float64Array(channels).fill(params.channelShift);
  // The normalisation is given per output slot; the warp applies it per source channel.
  const bias = new Float64Array(channels);
  const scale = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    const slot = norm.perm ? norm.perm[c]! : c;
    scale[c] = norm.scale[slot]!;
    bias[c] = norm.bias[slot]!;
  }
  return {
    scale,
    bias,
    gain: params.brightness,
    shift,
    clamp: params.brightness !== 1 || params.channelShift !== 0,
    perm: norm.perm ? Int32Array.from(norm.perm) : undefined,
  };
}

/** Resolves the spec's augmentation block into ranges (null when absent or all-off). */
export function resolveAugment(spec: ResolvedAugmentSpec | undefined): AugmentConfig | null {
  if (!spec) return null;
  const zoom: [number, number] = typeof spec.zoomRange === 'number' ? [1 - spec.zoomRange, 1 + spec.zoomRange] : spec.zoomRange;
  const config: AugmentConfig = {
    rotation: spec.rotationRange,
    widthShift: spec.widthShiftRange,
    heightShift: spec.heightShiftRange,
    shear: spec.shearRange,
    zoom,
    horizontalFlip: spec.horizontalFlip,
    verticalFlip: spec.verticalFlip,
    brightness: spec.brightnessRange ?? null,
    channelShift: spec.channelShiftRange,
  };
  const active =
    config.rotation > 0 || config.widthShift > 0 || config.heightShift > 0 || config.shear > 0 ||
    zoom[0] !== 1 || zoom[1] !== 1 || config.horizontalFlip || config.verticalFlip ||
    config.brightness !== null || config.channelShift > 0;
  return active ? config : null;
}
