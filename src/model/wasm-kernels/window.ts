import * as tf from '@tensorflow/tfjs';

/**
 * Spatial window arithmetic shared by the convolution gradient kernels. Every gradient here is
 * rewritten as a forward convolution or a matrix product over a padded (or cropped) NHWC
 * tensor; these helpers produce that tensor with a single slice and a single pad.
 */

/** How many rows (or columns) a window of `kernel` taps spans at dilation `dilation`. */
export function effectiveKernel(kernel: number, dilation: number): number {
  return (kernel - 1) * dilation + 1;
}

/** Rows (or columns) of input a strided, dilated window reads to produce `out` outputs. */
export function inputSpan(out: number, kernel: number, stride: number, dilation: number): number {
  return (out - 1) * stride + effectiveKernel(kernel, dilation);
}

/**
 * Returns x[:, -top : -top + height, -left : -left + width, :] with zeros outside x: rows before
 * the first one (top > 0) and past the last one are zero padding, and a negative `top` (or a
 * `height` shorter than what x has past the padding) crops. The result is [N, height, width, C].
 */
export function padOrCrop(x: tf.Tensor4D, top: number, left: number, height: number, width: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const cropTop = Math.max(0, -top);
  const cropLeft = Math.max(0, -left);
  const padTop = Math.max(0, top);
  const padLeft = Math.max(0, left);
  // Rows of x that land inside the window, once the leading crop or pad is applied.
  const keepH = Math.max(0, Math.min(h - cropTop, height - padTop));
  const keepW = Math.max(0, Math.min(w - cropLeft, width - padLeft));
  if (keepH === 0 || keepW === 0) return tf.zeros([n, height, width, c]);
  let kept = x;
  if (cropTop > 0 || cropLeft > 0 || keepH < h || keepW < w) {
    kept = tf.slice(x, [0, cropTop, cropLeft, 0], [n, keepH, keepW, c]);
  }
  const padBottom = height - padTop - keepH;
  const padRight = width - padLeft - keepW;
  if (padTop === 0 && padLeft === 0 && padBottom === 0 && padRight === 0) return kept;
  return tf.pad(kept, [
    [0, 0],
    [padTop, padBottom],
    [padLeft, padRight],
    [0, 0],
  ]);
}

/**
 * Inserts `strideH - 1` zero rows after every row of x and `strideW - 1` zero columns after
 * every column: [N, H, W, C] becomes [N, H * strideH, W * strideW, C]. The trailing zeros
 * belong to the last row; callers that need (H - 1) * stride + 1 rows crop them with padOrCrop.
 */
export function interleaveZeros(x: tf.Tensor4D, strideH: number, strideW: number): tf.Tensor4D {
  if (strideH === 1 && strideW === 1) return x;
  const [n, h, w, c] = x.shape;
  const spread = tf.pad(tf.reshape(x, [n, h, 1, w, 1, c]), [
    [0, 0],
    [0, 0],
    [0, strideH - 1],
    [0, 0],
    [0, strideW - 1],
    [0, 0],
  ]);
  return tf.reshape(spread, [n, h * strideH, w * strideW, c]);
}
