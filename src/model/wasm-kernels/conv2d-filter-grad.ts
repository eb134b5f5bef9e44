import * as tf from '@tensorflow/tfjs';
import { convolve, matMulByConvolution } from './convolve.ts';
import { inputSpan, padOrCrop } from './window.ts';

/**
 * How conv2dFilterGrad reduces over the batch and output positions:
 * - `convolution`: ONE forward convolution of x^T ([inC, H, W, N]: the batch becomes the
 *   channels) with dy^T ([outH, outW, N, outC]) as the filter, the forward stride as dilation
 *   and the forward dilation as stride; output [inC, fH, fW, outC].
 * - `per-tap`: one matrix product per filter tap, dW[kh, kw] = X_tap^T . dy (see tapOperands).
 *   dy is every product's filter, so XNNPACK packs it once.
 * - `stacked-taps`: the per-tap operands in ONE product, dW^T = dy^T . [X_tap ...]^T, for
 *   convolutions with few input channels (a network's first layer), where the stacked taps
 *   ([positions, taps * inC]) are smaller than dy, the operand the other methods pack.
 * Measured on this backend (XNNPACK, 1 thread): `convolution` is as fast or faster for
 * filters with several taps (XNNPACK's indirect GEMM over the outH x outW "filter"), while for
 * 1x1 filters, where `per-tap` is one plain GEMM, `convolution` is 2-5x slower. XNNPACK packs
 * the filter operand at several ns per element, which dominates when the product is short:
 * the fmnist-cnn's first layer (x [64, 28, 28, 1], dy [64, 26, 26, 32]) takes 8.7 ms by
 * `convolution` (packing dy^T, 1.4 M elements) and 3 ms by `stacked-taps`.
 */
export type FilterGradMethod = 'convolution' | 'per-tap' | 'stacked-taps';

/** The method conv2dFilterGrad picks for a filter of this size. */
export function filterGradMethod(info: tf.backend_util.Conv2DInfo): FilterGradMethod {
  const taps = info.filterHeight * info.filterWidth;
  if (taps * info.inChannels < info.outChannels) return 'stacked-taps';
  return taps === 1 ? 'per-tap' : 'convolution';
}

/**
 * Gradient of a 2-D convolution with respect to its filter. `info` describes the forward
 * convolution (NHWC); strides, dilations and any padding are supported.
 */
export function conv2dFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  info: tf.backend_util.Conv2DInfo,
  method: FilterGradMethod = filterGradMethod(info),
): tf.Tensor4D {
  if (method === 'convolution') return byConvolution(x, dy, info);
  return method === 'per-tap' ? perTap(x, dy, info) : stackedTaps(x, dy, info);
}

function byConvolution(x: tf.Tensor4D, dy: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { filterHeight, filterWidth, padInfo } = info;
  const spanH = inputSpan(outHeight, filterHeight, strideHeight, dilationHeight);
  const spanW = inputSpan(outWidth, filterWidth, strideWidth, dilationWidth);
  const pads = {
    top: padInfo.top,
    left: padInfo.left,
    bottom: spanH - padInfo.top - inHeight,
    right: spanW - padInfo.left - inWidth,
  };
  const xT = tf.transpose(x, [3, 1, 2, 0]);
  const dyT = tf.transpose(dy, [1, 2, 0, 3]);
  const grad = convolve(xT, dyT, pads, [dilationHeight, dilationWidth], [strideHeight, strideWidth], false);
  return tf.transpose(grad, [1, 2, 0, 3]);
}

function perTap(x: tf.Tensor4D, dy: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { xTaps, dyRows } = tapOperands(x, dy, info);
  const products = xTaps.map((xTap) => matMulByConvolution(xTap, dyRows));
  return tf.reshape(tf.concat(products, 0), [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels]);
}

/**
 * dW^T = dy^T . [X_tap ...]^T: one product whose right operand, the one XNNPACK packs (a
 * cost per element of several ns, more than the multiply-adds when the other side is short),
 * is the taps stacked ([cells, taps * inC]) rather than dy ([cells, outC]).
 */
function stackedTaps(x: tf.Tensor4D, dy: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { xTaps, dyRows } = tapOperands(x, dy, info);
  const stacked = tf.transpose(xTaps.length === 1 ? xTaps[0]! : tf.concat(xTaps, 0));
  const gradT = matMulByConvolution(tf.transpose(dyRows), stacked);
  return tf.reshape(tf.transpose(gradT), [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels]);
}

/**
 * The per-tap operands: X_tap^T ([inC, rows]) per filter tap, row-major, and dy ([rows, outC]),
 * such that dW[kh, kw] = X_tap^T . dy. Positions run over one grid shared by dy (zero outside
 * outH x outW) and by x's stride phases, so that every X_tap^T is the channel-first x shifted
 * by a constant: a 2-D pad, no im2col buffer.
 */
function tapOperands(x: tf.Tensor4D, dy: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): { xTaps: tf.Tensor2D[]; dyRows: tf.Tensor2D } {
  const { outHeight, outWidth, strideHeight, strideWidth, padInfo, batchSize, inChannels, outChannels } = info;
  const grid = tapGrid(info);
  const xp = padOrCrop(x, padInfo.top, padInfo.left, grid.height * strideHeight, grid.width * strideWidth);
  // Channel-first x: one [inC, N * gridH * gridW] matrix per stride phase that a tap reads.
  const channelFirst = tf.transpose(xp, [3, 0, 1, 2]);
  const phases = new Map<number, tf.Tensor2D>();
  if (strideHeight === 1 && strideWidth === 1) {
    phases.set(0, tf.reshape<tf.Rank.R2>(channelFirst, [inChannels, grid.cells]));
  } else {
    const split = tf.reshape(channelFirst, [inChannels * batchSize * grid.height, strideHeight, grid.width, strideWidth]);
    const byPhase = tf.reshape<tf.Rank.R2>(tf.transpose(split, [1, 3, 0, 2]), [strideHeight * strideWidth * inChannels, grid.cells]);
    for (const { phase } of grid.taps) {
      if (!phases.has(phase)) phases.set(phase, tf.slice(byPhase, [phase * inChannels, 0], [inChannels, grid.cells]));
    }
  }
  // dy on the grid, led by maxShift zero rows, so that tap `shift` pairs x[:, p + shift] with dy[p].
  const dyGrid = tf.reshape<tf.Rank.R2>(
    tf.pad(dy, [
      [0, 0],
      [0, grid.height - outHeight],
      [0, grid.width - outWidth],
      [0, 0],
    ]),
    [grid.cells, outChannels],
  );
  const dyRows = grid.maxShift === 0 ? dyGrid : tf.pad(dyGrid, [
    [grid.maxShift, 0],
    [0, 0],
  ]);
  const xTaps = grid.taps.map(({ phase, shift }) => {
    const xPhase = phases.get(phase)!;
    // Shift by padding: the wasm Slice kernel copies its whole input through JavaScript.
    return grid.maxShift === 0 ? xPhase : tf.pad(xPhase, [
      [0, 0],
      [grid.maxShift - shift, shift],
    ]);
  });
  return { xTaps, dyRows };
}

/** The position grid shared by dy and the stride phases of x, and where each tap reads it. */
interface TapGrid {
  height: number;
  width: number;
  /** batch * height * width */
  cells: number;
  /** Largest tap offset along the flattened grid. */
  maxShift: number;
  /** Per filter tap (row-major): the stride phase of x it reads and its offset in the grid. */
  taps: { phase: number; shift: number }[];
}

function tapGrid(info: tf.backend_util.Conv2DInfo): TapGrid {
  const { outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth, filterHeight, filterWidth } = info;
  const maxShiftH = Math.floor(((filterHeight - 1) * dilationHeight) / strideHeight);
  const maxShiftW = Math.floor(((filterWidth - 1) * dilationWidth) / strideWidth);
  // Reads that run past a grid row's end only ever meet dy's zero columns.
  const height = outHeight + maxShiftH;
  const width = outWidth + maxShiftW;
  const taps = [];
  for (let row = 0; row < filterHeight; row++) {
    for (let col = 0; col < filterWidth; col++) {
      const offH = row * dilationHeight;
      const offW = col * dilationWidth;
      taps.push({
        phase: (offH % strideHeight) * strideWidth + (offW % strideWidth),
        shift: Math.floor(offH / strideHeight) * width + Math.floor(offW / strideWidth),
      });
    }
  }
  return { height, width, cells: info.batchSize * height * width, maxShift: maxShiftH * width + maxShiftW, taps };
}
