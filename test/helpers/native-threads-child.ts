/**
 * Child process for the native kernels' threaded-wasm test: starts the threaded wasm binary (its
 * heap is a SharedArrayBuffer; threads must be chosen before the backend's first start, so not
 * in the test's own process), registers the oneDNN kernels, runs a convolution's gradients on
 * wasm and on cpu and prints one JSON line: { heap, errors, calls }. initBackend keeps wasm
 * single-threaded when oneDNN is on, so the threaded binary is started here directly, as a
 * library user could.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import path from 'node:path';
import { registerWasmKernels } from '../../src/model/wasm-kernels/index.ts';
import { startWasmWithThreads } from '../../src/model/wasm-kernels/threads.ts';
import { registerNativeKernels } from '../../src/model/native/index.ts';
import { nativeKernelCalls } from '../../src/model/native/kernels.ts';
import { relativeError, seededTensorValues, valuesOn } from './kernel-reference.ts';

const wasm = await import('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
registerWasmKernels();
await startWasmWithThreads({ threads: 2 }, async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});
registerNativeKernels({ threads: 2 });
const heap = ((tf.backend() as BackendWasm).wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.buffer.constructor.name;
const x = seededTensorValues([2, 9, 7, 3], 1);
const w = seededTensorValues([3, 3, 3, 5], 2);
const loss = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')));
const run = (): tf.Tensor[] => tf.grads(loss)([tf.tensor4d(x.values, x.shape as [number, number, number, number]), tf.tensor4d(w.values, w.shape as [number, number, number, number])]);
const reference = await valuesOn('cpu', run);
const actual = await valuesOn('wasm', run);
const errors = reference.map((r, i) => relativeError(actual[i]!, r));
process.stdout.write(`${JSON.stringify({ heap, errors, calls: Object.fromEntries(nativeKernelCalls()) })}\n`);
