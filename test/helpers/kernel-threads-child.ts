/**
 * Child process for the threaded-wasm test: starts tfjs-backend-wasm with the thread count in
 * argv[2] (threads must be chosen before the backend's first start, so not in the test's own
 * process), runs drover's gradient kernels on seeded inputs and prints one JSON line:
 * { threads, values }. It must then exit on its own.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { registerWasmKernels } from '../../src/model/wasm-kernels/index.ts';
import { startWasmWithThreads } from '../../src/model/wasm-kernels/threads.ts';
import { threadedKernelRuns } from './kernel-reference.ts';

const wasm = await import('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
registerWasmKernels();
const threads = await startWasmWithThreads({ threads: Number(process.argv[2]) }, async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});
const values = tf.tidy(() => threadedKernelRuns()).map((t) => Array.from(t.dataSync()));
process.stdout.write(`${JSON.stringify({ threads, backend: tf.getBackend(), values })}\n`);
