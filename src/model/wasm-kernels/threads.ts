import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BackendError } from '../../errors.ts';

/**
 * Multi-threaded XNNPACK for tfjs-backend-wasm under Node, without touching node_modules.
 *
 * The package never picks its threaded binary in Node: the WASM_HAS_MULTITHREAD_SUPPORT flag
 * answers false there (tfjs#3830). Setting the flag is not enough: the Emscripten pthread
 * workers are then started from `URL.createObjectURL(blob)` URLs, which Node's Worker refuses
 * (ERR_WORKER_PATH), and each worker is told to load the main script from a Blob, through the
 * same call. So, for the duration of the backend's start:
 * - the flag is set, and the thread count handed to `setThreadsCount`;
 * - the main thread's URL.createObjectURL answers the worker Blob with the path of a CommonJS
 *   file written to a cache directory: the package's own worker script, preceded by two lines
 *   that make the worker's URL.createObjectURL answer with the path of the main script (the
 *   package's own threaded factory, written next to it).
 * - os.cpus() answers with at least 2 x threads entries: the binary caps its pool at half the
 *   logical cores (assuming hyperthreads), 1 on a 2-core machine, and never more than 8.
 * The binary starts its 8 pthread workers while the backend starts, so none is created after
 * the patches are lifted.
 */

export interface WasmThreadsOptions {
  /**
   * Threads XNNPACK uses, the calling thread included, 1 to 8 (the binary pre-creates 8
   * workers); 1 keeps the single-threaded binary. Work outside XNNPACK (most element-wise and
   * reshaping kernels, and the JavaScript around them) stays on the calling thread.
   */
  threads: number;
  /** Where the two loader scripts are written; default: a drover folder in os.tmpdir(). */
  cacheDir?: string;
}

const require = createRequire(import.meta.url);
/** The threaded binary's pthread pool size (tfjs-backend-wasm's cc/BUILD). */
const MAX_THREADS = 8;

interface WasmModuleApi {
  setThreadsCount(n: number): void;
  getThreadsCount(): number;
}

/**
 * Runs `start` (which must initialise the wasm backend: tf.setBackend('wasm') and tf.ready())
 * with threads enabled, and returns the thread count XNNPACK reports: 1 when the backend had
 * already been initialised in this process (the binary is chosen once), so call it first.
 */
export async function startWasmWithThreads(options: WasmThreadsOptions, start: () => Promise<void>): Promise<number> {
  const { threads } = options;
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new BackendError(`options.threads must be an integer from 1 to ${MAX_THREADS}, got ${String(threads)}`);
  }
  const wasm = (await import('@tensorflow/tfjs-backend-wasm')) as unknown as WasmModuleApi;
  if (threads === 1) {
    await start();
    return 1;
  }
  const { worker } = writeLoaders(options.cacheDir ?? path.join(os.tmpdir(), `drover-tfjs-wasm-${tf.version.tfjs}`));
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasm.setThreadsCount(threads);
  const createObjectURL = URL.createObjectURL;
  URL.createObjectURL = (object: Blob) => {
    // The package makes exactly one kind of JavaScript Blob URL in the main thread: the worker's.
    if (object instanceof Blob && object.type === 'application/javascript') return worker;
    return createObjectURL.call(URL, object);
  };
  // The binary caps its pool at os.cpus().length / 2 (it assumes 2 hyperthreads per core) and
  // reads that once, while it starts: answer with enough entries for the requested count.
  const cpus = os.cpus;
  os.cpus = () => {
    const real = cpus.call(os);
    const wanted = Math.max(real.length, 2 * threads);
    return Array.from({ length: wanted }, (_, i) => real[i % real.length]!);
  };
  try {
    await start();
  } finally {
    URL.createObjectURL = createObjectURL;
    os.cpus = cpus;
  }
  // XNNPACK's pool threads run (wait for work) for the life of the backend; Emscripten keeps
  // running workers referenced, which would keep the process alive after its work is done.
  const pthreads = (tf.findBackend('wasm') as unknown as { wasm?: { PThread?: { runningWorkers?: { unref(): void }[] } } } | null)?.wasm?.PThread;
  for (const worker of pthreads?.runningWorkers ?? []) worker.unref();
  return wasm.getThreadsCount();
}

/** Writes (if changed) the worker and main scripts; returns their paths. */
function writeLoaders(dir: string): { worker: string; main: string } {
  const packageDir = path.dirname(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')));
  const packageWorker = path.join(packageDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js');
  const packageMain = path.join(packageDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js');
  const mainSource = fs.readFileSync(packageMain, 'utf8');
  // The factory, without the CommonJS export lines at its end: workers eval it in global scope.
  const cut = mainSource.indexOf("\nif (typeof exports === 'object'");
  if (cut < 0) throw new BackendError(`unexpected layout of ${packageMain}: cannot enable wasm threads with this tfjs version`);
  const main = path.join(dir, 'tfjs-wasm-threaded-main.js');
  const worker = path.join(dir, 'tfjs-wasm-threaded-worker.cjs');
  // The package ships the worker as a string export, its "\n" escapes turned into newlines by
  // the template literal that holds it: undo that, as the package does before making its Blob.
  const { wasmWorkerContents } = require(packageWorker) as { wasmWorkerContents: string };
  const workerSource = [
    '"use strict";',
    '// Written by drover (src/model/wasm-kernels/threads.ts): the tfjs wasm pthread worker, loadable by Node.',
    '// It receives the main script as a Blob and loads it via URL.createObjectURL + importScripts (a file read).',
    `URL.createObjectURL = () => ${JSON.stringify(main)};`,
    'URL.revokeObjectURL = () => {};',
    wasmWorkerContents.replace(/\n/g, '\\n'),
    '',
  ].join('\n');
  fs.mkdirSync(dir, { recursive: true });
  writeIfChanged(main, mainSource.slice(0, cut) + '\n');
  writeIfChanged(worker, workerSource);
  return { worker, main };
}

function writeIfChanged(file: string, content: string): void {
  try {
    if (fs.readFileSync(file, 'utf8') === content) return;
  } catch {
    // absent: write it
  }
  // Another process may be writing the same file: write aside, then rename (atomic).
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, content);
  fs.renameSync(temp, file);
}
