import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * MaxPoolGrad for the wasm backend, as a loop over the wasm heap in JavaScript. It replaces a
 * stock kernel that is slow (60 ms of a 210 ms training step of the reference CNN) and wrong:
 * it starts its running max at FLT_MIN (the smallest POSITIVE float), so a window whose
 * values are all <= 0 sends its gradient to element 0 of the batch instead of to its max,
 * and it breaks ties towards the last maximum. This follows TensorFlow and tfjs-backend-cpu:
 * each window's gradient goes to its first maximum (row-major), padding never wins.
 * The work is one comparison per window tap: memory-bound, so plain loops do well.
 */

interface MaxPoolGradAttrs {
  filterSize: [number, number] | number;
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

export const maxPoolGradConfig: tf.KernelConfig = {
  kernelName: tf.MaxPoolGrad,
  backendName: 'wasm',
  kernelFunc: ({ inputs, attrs, backend }) => {
    const { dy, input } = inputs;
    const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolGradAttrs;
    if (input!.dtype !== 'float32' || dy!.dtype !== 'float32') throw new TypeError('MaxPoolGrad on wasm supports float32 tensors only');
    const wasm = backend as BackendWasm;
    const info = tf.backend_util.computePool2DInfo(input!.shape as [number, number, number, number], filterSize, strides, 1, pad, dimRoundingMode);
    const out = wasm.makeOutput(input!.shape, 'float32');
    // Views of the heap, taken after makeOutput (which may grow, and so detach, the heap).
    const dx = wasm.typedArrayFromHeap(out) as Float32Array;
    maxPoolGrad(wasm.typedArrayFromHeap(input!) as Float32Array, wasm.typedArrayFromHeap(dy!) as Float32Array, dx, info);
    return out;
  },
};

/** dx (zeroed here) += each window's dy at the window's first maximum of x. NHWC. */
export function maxPoolGrad(x: Float32Array, dy: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { dilationHeight, dilationWidth, filterHeight, filterWidth, padInfo } = info;
  dx.fill(0);
  const best = new Float32Array(channels);
  const at = new Int32Array(channels);
  for (let n = 0; n < batchSize; n++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        best.fill(Number.NEGATIVE_INFINITY);
        at.fill(-1);
        for (let kh = 0; kh < filterHeight; kh++) {
          const ih = oh * strideHeight - padInfo.top + kh * dilationHeight;
          if (ih < 0 || ih >= inHeight) continue;
          for (let kw = 0; kw < filterWidth; kw++) {
            const iw = ow * strideWidth - padInfo.left + kw * dilationWidth;
            if (iw < 0 || iw >= inWidth) continue;
            const base = ((n * inHeight + ih) * inWidth + iw) * channels;
            for (let c = 0; c < channels; c++) {
              const v = x[base + c]!;
              // Strictly greater: the first maximum wins; NaN never does (as on cpu).
              if (v > best[c]!) {
                best[c] = v;
                at[c] = base + c;
              }
            }
          }
        }
        const dyBase = ((n * outHeight + oh) * outWidth + ow) * channels;
        for (let c = 0; c < channels; c++) {
          const target = at[c]!;
          if (target >= 0) dx[target] += dy[dyBase + c]!;
        }
      }
    }
  }
}
