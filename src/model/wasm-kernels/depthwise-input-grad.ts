import * as tf from '@tensorflow/tfjs';
import { convolve } from './convolve.ts';
import { flipSpatially } from './flip.ts';
import type { Pads } from './convolve.ts';
import { inputGradByZeroInsertion } from './input-grad.ts';

/**
 * Gradient of a depthwise convolution with respect to its input: a depthwise forward
 * convolution (XNNPACK) of dy, zero-interleaved when strided, with the spatially flipped
 * filter. Depthwise passes are memory-bound, so the zeros a stride inserts cost little next to
 * interleaving sub-pixel phases, for which the wasm backend has no fast kernel. `info`
 * describes the forward convolution (NHWC, depthwise).
 */
export function depthwiseInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  return inputGradByZeroInsertion(dy, filter, info, correlateDepthwise);
}

function correlateDepthwise(dy: tf.Tensor4D, filter: tf.Tensor4D, pads: Pads, dilations: [number, number]): tf.Tensor4D {
  const [fh, fw, channels, multiplier] = filter.shape;
  const flipped = flipSpatially(filter);
  if (multiplier === 1) return convolve(dy, flipped, pads, [1, 1], dilations, true);
  // Input channel c feeds dy channels c * m + q. Reorder dy's channels to (q, c) so that one
  // depthwise pass with filter[(q, c)] = w[c, q] yields every term, then sum over q.
  const [n, h, w] = dy.shape;
  const byIndex = tf.reshape<tf.Rank.R4>(tf.transpose(tf.reshape(dy, [n * h * w, channels, multiplier]), [0, 2, 1]), [n, h, w, multiplier * channels]);
  const taps = tf.reshape<tf.Rank.R4>(tf.transpose(flipped, [0, 1, 3, 2]), [fh, fw, multiplier * channels, 1]);
  const terms = convolve(byIndex, taps, pads, [1, 1], dilations, true);
  const [, oh, ow] = terms.shape;
  return tf.sum(tf.reshape(terms, [n * oh * ow, multiplier, channels]), 1).reshape([n, oh, ow, channels]);
}
