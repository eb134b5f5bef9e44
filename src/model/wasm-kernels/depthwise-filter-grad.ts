import * as tf from '@tensorflow/tfjs';
import { convolve } from './convolve.ts';
import { inputSpan } from './window.ts';

/**
 * Gradient of a depthwise convolution with respect to its filter [fH, fW, C, m] (`info`
 * describes the forward convolution, NHWC, depthwise): one depthwise convolution of x with the
 * batch folded into the channels ([1, H, W, N * C]) and dy as a per-(sample, channel) filter
 * ([outH, outW, N * C, m]), the forward stride as dilation and the forward dilation as stride,
 * then a sum over the batch.
 *
 * XNNPACK runs depthwise filters of 1, 3, 4, 9 or 25 taps with fast kernels and others (here:
 * outH x outW taps) on a slower path, so this costs 5-15x the forward pass. Measured and
 * rejected: per-tap slices times dy summed over positions (slower: the wasm Slice kernel
 * copies its whole input through JavaScript), and plain JavaScript loops over the tensors
 * (4-5 ns per multiply-add, no faster).
 */
export function depthwiseFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { filterHeight, filterWidth, padInfo, batchSize, inChannels } = info;
  const multiplier = info.outChannels / inChannels;
  const spanH = inputSpan(outHeight, filterHeight, strideHeight, dilationHeight);
  const spanW = inputSpan(outWidth, filterWidth, strideWidth, dilationWidth);
  const pads = {
    top: padInfo.top,
    left: padInfo.left,
    bottom: spanH - padInfo.top - inHeight,
    right: spanW - padInfo.left - inWidth,
  };
  const folded = tf.reshape<tf.Rank.R4>(tf.transpose(x, [1, 2, 0, 3]), [1, inHeight, inWidth, batchSize * inChannels]);
  const filters = tf.reshape<tf.Rank.R4>(tf.transpose(dy, [1, 2, 0, 3]), [outHeight, outWidth, batchSize * inChannels, multiplier]);
  const perSample = convolve(folded, filters, pads, [dilationHeight, dilationWidth], [strideHeight, strideWidth], true);
  const grad = tf.sum(tf.reshape(perSample, [filterHeight, filterWidth, batchSize, inChannels * multiplier]), 2);
  return tf.reshape<tf.Rank.R4>(grad, [filterHeight, filterWidth, inChannels, multiplier]);
}
