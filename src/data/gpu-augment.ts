/**
 * The augmentation's geometric pass and normalisation as tfjs ops, for a GPU backend: decode
 * stays on sharp (the pool), the decoded uint8 pixels go to the device, and the affine warp
 * (tf.image.transform, the same matrices and fill mode as warp.ts), the colour draws
 * (brightness gain, channel shift, clipping) and the normalisation run there, batched.
 *
 * Same sampling convention as warp.ts: an output pixel's centre (x + 0.5, y + 0.5) maps
 * through the affine to source coordinates, sampled at (sx - 0.5, sy - 0.5) in pixel-index
 * space, which is the space tf.image.transform works in. Results match warpInto within
 * interpolation tolerance (warp.ts uses 8-bit bilinear weights; fill modes 'reflect' and
 * 'wrap' fold the coordinate before interpolating where warp.ts folds each tap).
 */
import * as tf from '@tensorflow/tfjs';
import { DatasetError } from '../errors.ts';
import type { Affine, FillMode, Interpolation, PixelSource } from './warp.ts';
import type { AugmentParams } from './augment.ts';
import type { Normalisation } from './pipeline-config.ts';

/** Where augmented batches are warped and normalised: the job's `data.augmentOn`. */
export type AugmentOn = 'auto' | 'cpu' | 'device';

/**
 * True when augmentation runs on the device: asked for ('device'), or 'auto' on webgpu, where
 * the decode pool, not the GPU, would otherwise set the pace (issue 14, bench/gpu-feed.ts).
 */
export function augmentsOnDevice(augmentOn: AugmentOn): boolean {
  return augmentOn === 'device' || (augmentOn === 'auto' && tf.getBackend() === 'webgpu');
}

/** One decoded sample and what the CPU path would have drawn for it. */
export interface DeviceSample {
  image: PixelSource;
  /** Output pixel -> source pixel (augment.ts sampleAffine). */
  affine: Affine;
  /** Colour draws: brightness gain and channel shift (pixel units). */
  colour: Pick<AugmentParams, 'brightness' | 'channelShift'>;
}

export interface DeviceWarpConfig {
  width: number;
  height: number;
  channels: 1 | 3;
  fill: FillMode;
  /** Fill value for 'constant', in pixel units (0..255). */
  fillValue: number;
  interpolation: Interpolation;
  normalisation: Normalisation;
}

/**
 * The 8 projective coefficients tf.image.transform takes for `m` (drover's affine maps pixel
 * centres; tf.image.transform maps pixel indices): input = (a0 x + a1 y + a2, b0 x + b1 y + b2).
 */
export function transformCoefficients(m: Affine): number[] {
  return [m.a, m.b, 0.5 * (m.a + m.b) + m.c - 0.5, m.d, m.e, 0.5 * (m.d + m.e) + m.f - 0.5, 0, 0];
}

/**
 * Warps, colours and normalises a batch on the active backend: [n, height, width, channels]
 * float32, in sample order. Images of one size go through one transform call; the caller
 * owns (and disposes) the result.
 */
export function warpOnDevice(samples: readonly DeviceSample[], config: DeviceWarpConfig): tf.Tensor4D {
  if (samples.length === 0) throw new DatasetError('warpOnDevice: empty batch');
  const C = config.channels;
  for (const [i, s] of samples.entries()) {
    const { width, height, channels, data } = s.image;
    if (channels !== C) throw new DatasetError(`warpOnDevice: sample ${i} has ${channels} channels, the batch ${C}`);
    if (data.length !== width * height * channels) throw new DatasetError(`warpOnDevice: sample ${i} has ${data.length} bytes for ${width}x${height}x${channels}`);
  }
  return tf.tidy(() => {
    // Group by source size: one upload and one transform per group.
    const groups = new Map<string, number[]>();
    samples.forEach((s, i) => {
      const key = `${s.image.height}x${s.image.width}`;
      const list = groups.get(key);
      if (list) list.push(i);
      else groups.set(key, [i]);
    });
    const parts: tf.Tensor4D[] = [];
    const order: number[] = [];
    for (const indices of groups.values()) {
      parts.push(warpGroup(indices.map((i) => samples[i]!), config));
      order.push(...indices);
    }
    let warped = parts.length === 1 ? parts[0]! : tf.concat4d(parts, 0);
    if (parts.length > 1) {
      // Back to sample order: position of each sample in the concatenation.
      const back = new Int32Array(order.length);
      order.forEach((sample, position) => (back[sample] = position));
      warped = tf.gather(warped, tf.tensor1d(back, 'int32'), 0) as tf.Tensor4D;
    }
    return colourAndNormalise(warped, samples, config);
  });
}

function warpGroup(group: readonly DeviceSample[], config: DeviceWarpConfig): tf.Tensor4D {
  const { width: W, height: H, channels: C } = group[0]!.image;
  const size = W * H * C;
  const pixels = new Float32Array(group.length * size);
  group.forEach((s, i) => pixels.set(s.image.data, i * size));
  const images = tf.tensor4d(pixels, [group.length, H, W, C], 'float32');
  const coefficients = tf.tensor2d(group.flatMap((s) => transformCoefficients(s.affine)), [group.length, 8], 'float32');
  const transform = (x: tf.Tensor4D, t: tf.Tensor2D): tf.Tensor4D =>
    tf.image.transform(x, t, config.interpolation, config.fill, config.fillValue, [config.height, config.width]);
  if (tf.getBackend() !== 'cpu' || group.length === 1) return transform(images, coefficients);
  // tfjs-backend-cpu 4.22's Transform returns after the first image of a batch: one at a time.
  const one = tf.split(images, group.length, 0) as tf.Tensor4D[];
  const rows = tf.split(coefficients, group.length, 0) as tf.Tensor2D[];
  return tf.concat4d(
    one.map((x, i) => transform(x, rows[i]!)),
    0,
  );
}

/**
 * out[slot(c)] = clip(v * gain + shift) * scale[slot] + bias[slot], clipping only for samples
 * with a colour draw (as warp.ts's PixelMap.clamp).
 */
function colourAndNormalise(x: tf.Tensor4D, samples: readonly DeviceSample[], config: DeviceWarpConfig): tf.Tensor4D {
  const n = samples.length;
  const C = config.channels;
  const { scale, bias, perm } = config.normalisation;
  let v: tf.Tensor4D = x;
  const coloured = samples.map((s) => s.colour.brightness !== 1 || s.colour.channelShift !== 0);
  if (coloured.some(Boolean)) {
    const gain = tf.tensor4d(samples.map((s) => s.colour.brightness), [n, 1, 1, 1]);
    const shift = tf.tensor4d(samples.map((s) => s.colour.channelShift), [n, 1, 1, 1]);
    const moved = tf.add(tf.mul(v, gain), shift);
    const clipped = tf.clipByValue(moved, 0, 255);
    const mask = tf.tensor4d(Uint8Array.from(coloured, Number), [n, 1, 1, 1], 'bool');
    v = tf.where(tf.broadcastTo(mask, v.shape), clipped, moved) as tf.Tensor4D;
  }
  if (perm) {
    // Source channel c goes to output slot perm[c].
    const from = new Int32Array(C);
    perm.forEach((slot, c) => (from[slot] = c));
    v = tf.gather(v, tf.tensor1d(from, 'int32'), 3);
  }
  return tf.add(tf.mul(v, tf.tensor1d(scale.slice(0, C))), tf.tensor1d(bias.slice(0, C))) as tf.Tensor4D;
}
