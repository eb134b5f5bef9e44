import * as tf from '@tensorflow/tfjs';
import { registerFusedUpdateKernels } from '../update-kernels.ts';
import { BackendError } from '../../errors.ts';
import { gradientKernelConfigs } from './gradient-kernels.ts';
import { matMulKernelConfigs } from './matmul-kernels.ts';
import { maxPoolGradConfig } from './max-pool-grad.ts';
import { sumKernelConfig } from './sum-leading-axes.ts';
import { tileKernelConfig } from './tile-broadcast.ts';
import { zeroCopyKernelConfigs } from './zero-copy.ts';

/**
 * Kernels the wasm backend lacks for training, or has only in a slow form, composed from its
 * fast (XNNPACK) kernels: Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropInput and
 * DepthwiseConv2dNativeBackpropFilter (missing in tfjs-backend-wasm 4.22), and
 * Conv2DBackpropInput (present, but a naive loop ~10x slower than the forward pass); and
 * BatchMatMul / _FusedMatMul for single matrices (dense layers), whose stock forms take slow
 * paths for transposed operands and for freshly updated weights; and MaxPoolGrad, whose stock
 * form is slow and misroutes the gradient of windows whose values are all <= 0; and Sum over
 * leading axes (bias gradients), which the stock kernel transposes first; and Identity and
 * same-dtype Cast, which the stock kernels copy; and Tile that only broadcasts (batch norm
 * gradients), which the stock kernel does element by element.
 */
let registered = false;

/**
 * Registers the kernels on the wasm backend, replacing its own where it has one. Call after
 * importing @tensorflow/tfjs-backend-wasm (whose import registers its kernels: ours must come
 * after) and before running any training step; calling it again does nothing.
 */
export function registerWasmKernels(): void {
  if (registered) return;
  if (tf.getKernel(tf.Conv2D, 'wasm') === undefined) {
    throw new BackendError('registerWasmKernels: @tensorflow/tfjs-backend-wasm is not loaded yet; import it first, so that its kernels do not replace these');
  }
  // The optimizers' fused update, so that the native kernels (registered after these) find it.
  registerFusedUpdateKernels();
  const sum = sumKernelConfig();
  const tile = tileKernelConfig();
  for (const config of [...gradientKernelConfigs, maxPoolGradConfig, ...matMulKernelConfigs(), ...(sum ? [sum] : []), ...(tile ? [tile] : []), ...zeroCopyKernelConfigs()]) {
    // registerKernel would replace an existing kernel too, but with a console warning.
    if (tf.getKernel(config.kernelName, config.backendName) !== undefined) tf.unregisterKernel(config.kernelName, config.backendName);
    tf.registerKernel(config);
  }
  registered = true;
}

export { startWasmWithThreads } from './threads.ts';
export type { WasmThreadsOptions } from './threads.ts';
