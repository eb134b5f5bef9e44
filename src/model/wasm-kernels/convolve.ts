import * as tf from '@tensorflow/tfjs';
import { padOrCrop } from './window.ts';

/** Zero padding (negative: cropping) on each side of the two spatial axes of an NHWC tensor. */
export interface Pads {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * A forward convolution (regular or depthwise) on the active backend, called as a kernel so
 * that the wasm backend runs it through XNNPACK. Non-negative pads go to XNNPACK as explicit
 * padding (no copy); negative ones crop x first. Unlike the public ops this accepts stride and
 * dilation both above 1, which XNNPACK supports and the gradients below need.
 */
export function convolve(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  pads: Pads,
  strides: [number, number],
  dilations: [number, number],
  depthwise: boolean,
): tf.Tensor4D {
  let input = x;
  let { top, bottom, left, right } = pads;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [, h, w] = x.shape;
    input = padOrCrop(x, Math.min(0, top), Math.min(0, left), h + Math.min(0, top) + Math.min(0, bottom), w + Math.min(0, left) + Math.min(0, right));
    top = Math.max(0, top);
    bottom = Math.max(0, bottom);
    left = Math.max(0, left);
    right = Math.max(0, right);
  }
  const attrs = {
    strides,
    dilations,
    pad: [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ] as tf.backend_util.ExplicitPadding,
    dataFormat: 'NHWC' as const,
  };
  const kernel = depthwise ? tf.DepthwiseConv2dNative : tf.Conv2D;
  const inputs = { x: input, filter };
  return tf.engine().runKernel(kernel, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/**
 * a [M, K] times b [K, N] as a 1x1 convolution of M pixels with K channels. The wasm backend
 * hands plain products to XNNPACK's fully-connected operator, which packs b through a slow
 * transposing path every time b is a new tensor (about 30 ns per element: 200 ms for a 7 M
 * element b); its convolution transposes the filter in C++ first and packs fast. The packed
 * filter is cached per filter tensor, so calls that share b pack it once.
 */
export function matMulByConvolution(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const [m, k] = a.shape;
  const n = b.shape[1];
  const pixels = tf.reshape<tf.Rank.R4>(a, [1, 1, m, k]);
  const filter = tf.reshape<tf.Rank.R4>(b, [1, 1, k, n]);
  const none = { top: 0, bottom: 0, left: 0, right: 0 };
  return tf.reshape<tf.Rank.R2>(convolve(pixels, filter, none, [1, 1], [1, 1], false), [m, n]);
}
