import * as tf from '@tensorflow/tfjs';
import { convolve } from './convolve.ts';
import { flipSpatially } from './flip.ts';
import type { Pads } from './convolve.ts';
import { inputGradByZeroInsertion } from './input-grad.ts';
import { padOrCrop } from './window.ts';

/**
 * Gradient of a 2-D convolution with respect to its input, as forward convolutions (XNNPACK).
 * `info` describes the forward convolution (NHWC).
 * - Stride 1 (any dilation): dy correlated with the filter flipped in space, in/out swapped.
 * - Stride s > 1: the sub-pixel form. Input rows congruent to r mod s only receive the filter
 *   rows congruent to (r + padTop) mod s, so all s x s phases of dx come out of ONE stride-1
 *   convolution of dy with a filter that stacks the phases' sub-filters along its output
 *   channels ([T, T, outC, s * s * inC], T = ceil(fH / s) or one more); a transpose then
 *   interleaves the phases. This does (s * T / fH)^2 times the forward pass's work (16/9 for
 *   3x3 stride 2) where inserting zeros into dy would do s^2 (4x).
 */
export function conv2dInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const strided = info.strideHeight > 1 || info.strideWidth > 1;
  const dilated = info.dilationHeight > 1 || info.dilationWidth > 1;
  if (strided && !dilated) return subPixel(dy, filter, info);
  return inputGradByZeroInsertion(dy, filter, info, correlateFlipped);
}

function correlateFlipped(dy: tf.Tensor4D, filter: tf.Tensor4D, pads: Pads, dilations: [number, number]): tf.Tensor4D {
  const flipped = tf.transpose(flipSpatially(filter), [0, 1, 3, 2]);
  return convolve(dy, flipped, pads, [1, 1], dilations, false);
}

/** How the phases of one spatial axis map onto dy offsets and filter taps. */
interface AxisPhases {
  /** Correlation window length T shared by all phases. */
  window: number;
  /** dy offset of the window's first tap relative to the phase's output index. */
  offset: number;
  /** tap[t * stride + r]: filter index feeding window position t of phase r, or -1. */
  tap: number[];
}

/**
 * Output index i * s + r receives dy[o] * w[k] exactly when k = first_r + s * j and
 * o = i + lead_r - j, with first_r = (r + pad) mod s and lead_r = floor((r + pad) / s).
 */
function axisPhases(stride: number, pad: number, filterSize: number): AxisPhases {
  const phases = [];
  for (let r = 0; r < stride; r++) {
    const first = (r + pad) % stride;
    const lead = Math.floor((r + pad) / stride);
    const taps = first < filterSize ? Math.ceil((filterSize - first) / stride) : 0;
    phases.push({ first, lead, taps });
  }
  const live = phases.filter((p) => p.taps > 0);
  const offset = Math.min(...live.map((p) => p.lead - p.taps + 1));
  const window = Math.max(...live.map((p) => p.lead)) - offset + 1;
  const tap: number[] = [];
  for (let t = 0; t < window; t++) {
    for (const p of phases) {
      const j = p.lead - (offset + t);
      tap.push(j >= 0 && j < p.taps ? p.first + stride * j : -1);
    }
  }
  return { window, offset, tap };
}

function subPixel(dy: tf.Tensor4D, filter: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, padInfo } = info;
  const { filterHeight, filterWidth, inChannels, outChannels, batchSize } = info;
  const rows = axisPhases(strideHeight, padInfo.top, filterHeight);
  const cols = axisPhases(strideWidth, padInfo.left, filterWidth);
  // Gather the stacked filter from the filter's taps plus one zero tap (index fH * fW).
  const zeroTap = filterHeight * filterWidth;
  const index: number[] = [];
  for (let th = 0; th < rows.window; th++) {
    for (let tw = 0; tw < cols.window; tw++) {
      for (let rh = 0; rh < strideHeight; rh++) {
        for (let rw = 0; rw < strideWidth; rw++) {
          const kh = rows.tap[th * strideHeight + rh]!;
          const kw = cols.tap[tw * strideWidth + rw]!;
          index.push(kh < 0 || kw < 0 ? zeroTap : kh * filterWidth + kw);
        }
      }
    }
  }
  const taps = tf.concat([tf.reshape(filter, [zeroTap, inChannels, outChannels]), tf.zeros([1, inChannels, outChannels])], 0);
  const phaseCount = strideHeight * strideWidth;
  const gathered = tf.reshape(tf.gather(taps, tf.tensor1d(index, 'int32')), [rows.window * cols.window, phaseCount, inChannels, outChannels]);
  const stacked = tf.reshape<tf.Rank.R4>(tf.transpose(gathered, [0, 3, 1, 2]), [rows.window, cols.window, outChannels, phaseCount * inChannels]);
  const phaseH = Math.ceil(inHeight / strideHeight);
  const phaseW = Math.ceil(inWidth / strideWidth);
  const pads = {
    top: -rows.offset,
    left: -cols.offset,
    bottom: phaseH + rows.window - 1 + rows.offset - outHeight,
    right: phaseW + cols.window - 1 + cols.offset - outWidth,
  };
  const phases = convolve(dy, stacked, pads, [1, 1], [1, 1], false);
  // [N * pH, pW, sH, sW * C] -> [N * pH, sH, pW, sW * C] is dx with its rows and columns interleaved.
  const split = tf.reshape(phases, [batchSize * phaseH, phaseW, strideHeight, strideWidth * inChannels]);
  const dx = tf.reshape<tf.Rank.R4>(tf.transpose(split, [0, 2, 1, 3]), [batchSize, phaseH * strideHeight, phaseW * strideWidth, inChannels]);
  if (phaseH * strideHeight === inHeight && phaseW * strideWidth === inWidth) return dx;
  return padOrCrop(dx, 0, 0, inHeight, inWidth);
}
