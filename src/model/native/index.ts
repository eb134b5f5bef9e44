import * as tf from '@tensorflow/tfjs';
import { BackendError } from '../../errors.ts';
import { loadOnednnAddon } from './addon.ts';
import { nativeKernelFactories } from './kernels.ts';

export interface NativeKernelsOptions {
  /** oneDNN's OpenMP threads, drover's --threads; default 1. */
  threads?: number;
}

export type NativeKernelsInfo =
  | {
      enabled: true;
      /** Suffix for the backend description: 'onednn' (as in 'wasm+onednn'). */
      name: 'onednn';
      /** e.g. 'oneDNN 2.6.0 (OpenMP, 2 threads)'. */
      detail: string;
      kernels: string[];
    }
  | {
      enabled: false;
      reason: string;
      /** The addon should be here and is not (fails to load, or missing where it could be built): warn loudly. */
      broken: boolean;
    };

let registered: NativeKernelsInfo | undefined;

/**
 * Replaces wasm kernels with oneDNN ones when the addon (native/) is built and loads; else
 * changes nothing and says why, so the caller can log it once. Call after
 * registerWasmKernels(): each native kernel falls back to the kernel registered before it for
 * the cases it does not cover. A second call only updates the thread count.
 */
export function registerNativeKernels(options: NativeKernelsOptions = {}): NativeKernelsInfo {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new BackendError(`options.threads must be a positive integer, got ${String(threads)}`);
  }
  const load = loadOnednnAddon();
  if (load.addon === undefined) return { enabled: false, reason: load.reason, broken: load.broken };
  const { addon } = load;
  addon.setThreads(threads);
  if (registered?.enabled) return { ...registered, detail: addon.info() };
  if (tf.getKernel(tf.Conv2D, 'wasm') === undefined) {
    throw new BackendError('registerNativeKernels: @tensorflow/tfjs-backend-wasm is not loaded yet; import it and call registerWasmKernels() first');
  }
  const kernels: string[] = [];
  for (const [kernelName, factory] of Object.entries(nativeKernelFactories(addon))) {
    const previous = tf.getKernel(kernelName, 'wasm');
    if (previous === undefined) continue;
    tf.unregisterKernel(kernelName, 'wasm');
    const config: tf.KernelConfig = { kernelName, backendName: 'wasm', kernelFunc: factory(previous, kernelName) };
    // The previous kernel may bind its wasm entry point at backend start; keep that.
    if (previous.setupFunc !== undefined) config.setupFunc = previous.setupFunc;
    if (previous.disposeFunc !== undefined) config.disposeFunc = previous.disposeFunc;
    tf.registerKernel(config);
    kernels.push(kernelName);
  }
  registered = { enabled: true, name: 'onednn', detail: addon.info(), kernels };
  return registered;
}
