import * as tf from '@tensorflow/tfjs';

/**
 * Corrections to tfjs-backend-webgpu 4.22's kernels, found by the kernel-reference tests
 * (test/webgpu.test.ts): its depthwise backprop kernels ignore `dilations`, so a dilated
 * depthwise layer would train on wrong gradients. A stride-1 dilated depthwise convolution
 * equals an undilated one with the filter's taps spread `d` apart (zeros between), so with
 * d > 1 these wrappers run the backend's own kernel on the spread filter, all on the GPU.
 */

type Dilations = number | [number, number];

function dilationOf(attrs: tf.NamedAttrMap): number {
  const d = attrs.dilations as Dilations | undefined;
  const [dh, dw] = Array.isArray(d) ? d : [d ?? 1, d ?? 1];
  // tfjs allows dilation > 1 only with stride 1, and the same in both axes for depthwise layers.
  return dh === dw ? dh : Number.NaN;
}

/**
 * [fH, fW, a, b] -> taps `d` apart, zeros between: [(fH - 1) d + 1, (fW - 1) d + 1, a, b].
 * One axis at a time in tensors of rank <= 4: the webgpu Pad kernel miscompiles higher ranks.
 */
function spreadFilter(filter: tf.Tensor4D, d: number): tf.Tensor4D {
  const [fh, fw, a, b] = filter.shape;
  const h = (fh - 1) * d + 1;
  const w = (fw - 1) * d + 1;
  const rows = tf.pad(tf.reshape(filter, [fh, 1, fw, a * b]), [[0, 0], [0, d - 1], [0, 0], [0, 0]]);
  const tall = tf.slice(tf.reshape(rows, [fh * d, fw, a * b]), 0, [h, fw, a * b]);
  const cols = tf.pad(tf.reshape(tall, [h, fw, 1, a * b]), [[0, 0], [0, 0], [0, d - 1], [0, 0]]);
  const wide = tf.slice(tf.reshape(cols, [h, fw * d, a * b]), 0, [h, w, a * b]);
  return tf.reshape(wide, [h, w, a, b]);
}

interface RefCountingBackend extends tf.KernelBackend {
  incRef(dataId: tf.DataId): void;
}

/** Hands a tensor's buffer to the engine as a kernel output, and drops the tensor. */
function asOutput(t: tf.Tensor, backend: tf.KernelBackend): tf.TensorInfo {
  (backend as RefCountingBackend).incRef(t.dataId);
  const info = { dataId: t.dataId, shape: t.shape, dtype: t.dtype };
  t.dispose();
  return info;
}

function inputGrad(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const d = dilationOf(args.attrs ?? {});
    if (d === 1) return original(args);
    // The engine passes its tensors as the inputs.
    const filter = args.inputs.filter as tf.Tensor4D;
    const spread = tf.tidy(() => spreadFilter(filter, d));
    try {
      return original({ ...args, inputs: { ...args.inputs, filter: spread }, attrs: { ...args.attrs, dilations: 1 } });
    } finally {
      spread.dispose();
    }
  };
}

function filterGrad(original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const d = dilationOf(args.attrs ?? {});
    if (d === 1) return original(args);
    const [fh, fw, a, b] = args.attrs!.filterShape as [number, number, number, number];
    const spreadShape = [(fh - 1) * d + 1, (fw - 1) * d + 1, a, b];
    const spreadGrad = original({ ...args, attrs: { ...args.attrs, dilations: 1, filterShape: spreadShape } }) as tf.TensorInfo;
    // Owns the kernel's output buffer: disposing it frees that.
    const full = tf.engine().makeTensorFromTensorInfo(spreadGrad) as tf.Tensor4D;
    const taps = tf.tidy(() => tf.stridedSlice(full, [0, 0, 0, 0], spreadShape, [d, d, 1, 1]));
    full.dispose();
    return asOutput(taps, args.backend as tf.KernelBackend);
  };
}

const FIXES: [string, (original: tf.KernelFunc) => tf.KernelFunc][] = [
  [tf.DepthwiseConv2dNativeBackpropInput, inputGrad],
  [tf.DepthwiseConv2dNativeBackpropFilter, filterGrad],
];

let registered = false;

/** Wraps the webgpu kernels above (once; tfjs-backend-webgpu must be imported first). */
export function registerWebGpuKernelFixes(): void {
  if (registered) return;
  for (const [kernelName, wrap] of FIXES) {
    const original = tf.getKernel(kernelName, 'webgpu');
    if (original === undefined) continue;
    tf.unregisterKernel(kernelName, 'webgpu');
    tf.registerKernel({ ...original, kernelFunc: wrap(original.kernelFunc) });
  }
  registered = true;
}
