/**
 * Child process for the threaded-wasm test: starts tfjs-backend-wasm with the thread count in
 * argv[2] (threads must be chosen before the backend's first start, so not in the test's own
 * process), runs drover's gradient kernels on seeded inputs and prints one JSON line:
 * { threads, backend, values, patchedWhilePending }. It must then exit on its own.
 * `patchedWhilePending` lists the globals (URL.createObjectURL, os.cpus) found patched while
 * the start was pending: by a poll on every turn of the event loop, and from inside `start`.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { registerWasmKernels } from '../../src/model/wasm-kernels/index.ts';
import { startWasmWithThreads } from '../../src/model/wasm-kernels/threads.ts';
import { threadedKernelRuns } from './kernel-reference.ts';

const wasm = await import('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
registerWasmKernels();
const createObjectURL = URL.createObjectURL;
const cpus = os.cpus;
const patchedWhilePending = new Set<string>();
const look = (): void => {
  if (URL.createObjectURL !== createObjectURL) patchedWhilePending.add('URL.createObjectURL');
  if (os.cpus !== cpus) patchedWhilePending.add('os.cpus');
};
let pending = true;
const poll = (): void => {
  look();
  if (pending) setImmediate(poll);
};
poll();
const threads = await startWasmWithThreads({ threads: Number(process.argv[2]) }, async () => {
  look();
  await tf.setBackend('wasm');
  look();
  await tf.ready();
  look();
});
pending = false;
const values = tf.tidy(() => threadedKernelRuns()).map((t) => Array.from(t.dataSync()));
process.stdout.write(`${JSON.stringify({ threads, backend: tf.getBackend(), values, patchedWhilePending: [...patchedWhilePending] })}\n`);
