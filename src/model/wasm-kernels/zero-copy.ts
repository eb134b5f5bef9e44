import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * Identity, and Cast to the dtype a tensor already has, for the wasm backend as new references
 * to the same heap buffer (as its Reshape, and the cpu backend's Identity, do). The stock
 * kernels copy: the engine clones every tensor it saves for the backward pass through
 * Identity, and the ReLU gradient casts its float32 mask to float32, about 3 ms of copies per
 * step of the reference CNN. (Cast to bool also gets fixed on the way.) Tensors are immutable, so sharing the buffer is safe; the backend
 * counts references and frees it with the last one.
 */

function shared(x: tf.TensorInfo, backend: unknown): tf.TensorInfo {
  (backend as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Configs wrapping the stock kernels registered for wasm now (call once, before replacing them). */
export function zeroCopyKernelConfigs(): tf.KernelConfig[] {
  const stockIdentity = tf.getKernel(tf.Identity, 'wasm');
  const stockCast = tf.getKernel(tf.Cast, 'wasm');
  if (stockIdentity === undefined || stockCast === undefined) return [];
  return [
    {
      kernelName: tf.Identity,
      backendName: 'wasm',
      kernelFunc: (args) => (args.inputs.x!.dtype === 'string' ? stockIdentity.kernelFunc(args) : shared(args.inputs.x!, args.backend)),
    },
    {
      kernelName: tf.Cast,
      backendName: 'wasm',
      kernelFunc: (args) => {
        const x = args.inputs.x!;
        const { dtype } = args.attrs as unknown as { dtype: tf.DataType };
        if (dtype === x.dtype && dtype !== 'string') return shared(x, args.backend);
        // The stock kernel stores each value's low byte as the bool (-2 becomes 254, 256 false).
        if (dtype === 'bool' && x.dtype !== 'string') {
          return tf.tidy(() => tf.notEqual(x instanceof tf.Tensor ? x : tf.engine().makeTensorFromTensorInfo(x), tf.scalar(0, x.dtype)));
        }
        return stockCast.kernelFunc(args);
      },
    },
  ];
}
