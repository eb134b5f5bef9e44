import type * as tf from '@tensorflow/tfjs';
import type { Pads } from './convolve.ts';
import { interleaveZeros } from './window.ts';

/**
 * Correlates dy with a filter (regular: [fH, fW, inC, outC], depthwise: [fH, fW, C, m]) flipped
 * in space and read backwards along its channel arrangement, so that the result has the
 * forward convolution's input channels. Padding and dilation apply to dy.
 */
export type BackwardCorrelation = (dy: tf.Tensor4D, filter: tf.Tensor4D, pads: Pads, dilations: [number, number]) => tf.Tensor4D;

/**
 * Gradient of a convolution with respect to its input (a transposed convolution) for the
 * forward convolution that `info` describes (NHWC): dy with (stride - 1) zeros inserted between
 * its pixels, padded so that every filter tap lands, correlated with the flipped filter at the
 * forward dilation. With stride s this spends s^2 times the forward pass's multiplications on
 * the inserted zeros; conv2dInputGrad avoids that for regular convolutions.
 */
export function inputGradByZeroInsertion(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  info: tf.backend_util.Conv2DInfo,
  correlate: BackwardCorrelation,
): tf.Tensor4D {
  const { inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { filterHeight, filterWidth, padInfo } = info;
  const spread = interleaveZeros(dy, strideHeight, strideWidth);
  const reachH = (filterHeight - 1) * dilationHeight;
  const reachW = (filterWidth - 1) * dilationWidth;
  const top = reachH - padInfo.top;
  const left = reachW - padInfo.left;
  const pads = {
    top,
    left,
    // interleaveZeros leaves stride - 1 zero rows after the last row: part of the padding.
    bottom: inHeight + reachH - top - outHeight * strideHeight,
    right: inWidth + reachW - left - outWidth * strideWidth,
  };
  return correlate(spread, filter, pads, [dilationHeight, dilationWidth]);
}
