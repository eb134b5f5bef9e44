import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BackendError } from '../../errors.ts';

/**
 * Multi-threaded XNNPACK for tfjs-backend-wasm under Node, without touching node_modules and
 * without a global left patched while other code runs.
 *
 * The package never picks its threaded binary in Node: the WASM_HAS_MULTITHREAD_SUPPORT flag
 * answers false there (tfjs#3830), and even with the flag set its start hands the Emscripten
 * pthread workers `URL.createObjectURL(blob)` URLs, which Node's Worker refuses
 * (ERR_WORKER_PATH). So drover starts the threaded module itself, as the package's own start
 * (`init` in its backend_wasm.js) would, but with file paths:
 * - the pthread workers run a CommonJS file written to a cache directory (the package's own
 *   worker script), and load the main script from a file next to it (the package's own
 *   threaded factory): no Blob, no object URL, no patched URL.createObjectURL;
 * - the backend (`BackendWasm`) is built on that module and registered as 'wasm' in place of
 *   the package's factory, so `tf.setBackend('wasm')` activates it.
 * The binary caps XNNPACK's pool at half of os.cpus() (assuming hyperthreads; 1 on a 2-core
 * machine, never more than 8), read once by its static initialisers: os.cpus answers with at
 * least 2 x threads entries from the module's preRun hook to its onRuntimeInitialized hook,
 * which Emscripten calls in one synchronous run, with the initialisers between them.
 * The parts of the package this relies on (the factory's config, `module.tfjs`, BackendWasm)
 * are checked against the tested version first (TESTED_TFJS_WASM_VERSION).
 */

export interface WasmThreadsOptions {
  /**
   * Threads XNNPACK uses, the calling thread included, 1 to 8 (the binary pre-creates 8
   * workers); 1 keeps the single-threaded binary. Work outside XNNPACK (most element-wise and
   * reshaping kernels, and the JavaScript around them) stays on the calling thread. (With
   * drover's oneDNN kernels on, src/model/backend.ts keeps this at 1: the threads are oneDNN's.)
   */
  threads: number;
  /** Where the two loader scripts are written; default: a drover folder in os.tmpdir(). */
  cacheDir?: string;
}

/** The tfjs-backend-wasm whose start this module replays (same major and minor accepted). */
export const TESTED_TFJS_WASM_VERSION = '4.22.0';

const require = createRequire(import.meta.url);
/** The threaded binary's pthread pool size (tfjs-backend-wasm's cc/BUILD). */
const MAX_THREADS = 8;
/** The package's priority for 'wasm' (its base.ts), kept by the backend registered in its place. */
const WASM_PRIORITY = 2;

/** The started Emscripten module, as the package's BackendWasm expects it. */
interface WasmModule {
  cwrap(name: string, returnType: string | null, argTypes: string[]): (...args: unknown[]) => unknown;
  tfjs?: Record<string, unknown>;
  PThread?: { runningWorkers?: { unref(): void }[] };
}

interface WasmPackage {
  version_wasm: string;
  setThreadsCount(n: number): void;
  getThreadsCount(): number;
  BackendWasm: new (module: WasmModule) => tf.KernelBackend;
}

interface FactoryConfig {
  locateFile(file: string, prefix: string): string;
  mainScriptUrlOrBlob: string;
  /** Called at the start of the module's run, which then runs its static initialisers and onRuntimeInitialized in the same call. */
  preRun(): void;
  onRuntimeInitialized(): void;
}

type ThreadedFactory = (config: FactoryConfig) => PromiseLike<WasmModule>;

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
  const wasm = (await import('@tensorflow/tfjs-backend-wasm')) as unknown as WasmPackage;
  if (threads === 1) {
    await start();
    return 1;
  }
  const alreadyStarted = 'wasm' in tf.engine().registry;
  if (alreadyStarted || !(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))) {
    // The package's own start, as before: the binary it chose stays (the threaded one needs SIMD).
    await start();
    return wasm.getThreadsCount();
  }
  checkTestedVersion(wasm.version_wasm);
  const loaders = writeLoaders(options.cacheDir ?? path.join(os.tmpdir(), `drover-tfjs-wasm-${tf.version.tfjs}`));
  const factory = require(loaders.packageMain) as ThreadedFactory;
  const cpuCount = cpuCountPatch(2 * threads);
  // Wrapped in an object: an Emscripten module must not be awaited itself (tfjs's init says why).
  const { module } = await new Promise<{ module: WasmModule }>((resolve, reject) => {
    factory({
      locateFile: (file, prefix) => (file.endsWith('.worker.js') ? loaders.worker : file.endsWith('.wasm') ? loaders.binary : prefix + file),
      mainScriptUrlOrBlob: loaders.main,
      preRun: cpuCount.apply,
      onRuntimeInitialized: cpuCount.restore,
    }).then((started) => resolve({ module: started }), reject);
  });
  // The same entry points the package's init gives its module.
  module.tfjs = {
    init: module.cwrap('init', null, []),
    initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
    getThreadsCount: module.cwrap('get_threads_count', 'number', []),
    registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
    disposeData: module.cwrap('dispose_data', null, ['number']),
    dispose: module.cwrap('dispose', null, []),
  };
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasm.setThreadsCount(threads);
  const backend = new wasm.BackendWasm(module);
  // XNNPACK's pool threads run (wait for work) for the life of the backend; Emscripten keeps
  // running workers referenced, which would keep the process alive after its work is done.
  for (const worker of module.PThread?.runningWorkers ?? []) worker.unref();
  if (tf.engine().registryFactory['wasm'] !== undefined) tf.removeBackend('wasm');
  tf.registerBackend('wasm', () => backend, WASM_PRIORITY);
  await start();
  return wasm.getThreadsCount();
}

/**
 * os.cpus() answering at least `count` entries between `apply` and `restore`. `apply` also
 * queues the restore as a microtask, so the patch ends with the synchronous run that applied it
 * even when that run throws before `restore`.
 */
function cpuCountPatch(count: number): { apply(): void; restore(): void } {
  const cpus = os.cpus;
  const patched = (): os.CpuInfo[] => {
    const real = cpus.call(os);
    return Array.from({ length: Math.max(real.length, count) }, (_, i) => real[i % real.length]!);
  };
  const restore = (): void => {
    if (os.cpus === patched) os.cpus = cpus;
  };
  return {
    apply() {
      os.cpus = patched;
      queueMicrotask(restore);
    },
    restore,
  };
}

function checkTestedVersion(version: string): void {
  const [major, minor] = version.split('.');
  const [testedMajor, testedMinor] = TESTED_TFJS_WASM_VERSION.split('.');
  if (major === testedMajor && minor === testedMinor) return;
  throw new BackendError(
    `@tensorflow/tfjs-backend-wasm ${version} is installed, but drover starts its threaded binary the way version ${TESTED_TFJS_WASM_VERSION} does ` +
      '(src/model/wasm-kernels/threads.ts): use --threads 1, install that version, or re-test threads.ts and update TESTED_TFJS_WASM_VERSION',
  );
}

/** Writes (if changed) the worker and main scripts; returns their paths, the package's factory's and its binary's. */
function writeLoaders(dir: string): { worker: string; main: string; packageMain: string; binary: string } {
  const packageDir = path.dirname(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')));
  const packageWorker = path.join(packageDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.worker.js');
  const packageMain = path.join(packageDir, 'wasm-out', 'tfjs-backend-wasm-threaded-simd.js');
  const binary = path.join(packageDir, 'dist', 'tfjs-backend-wasm-threaded-simd.wasm');
  const mainSource = fs.readFileSync(packageMain, 'utf8');
  // The factory, without the CommonJS export lines at its end: workers eval it in global scope.
  const cut = mainSource.indexOf("\nif (typeof exports === 'object'");
  if (cut < 0) throw new BackendError(`unexpected layout of ${packageMain}: cannot enable wasm threads with this tfjs version`);
  const main = path.join(dir, 'tfjs-wasm-threaded-main.js');
  // Not the name of the earlier loader, which patched URL.createObjectURL: a process of an older
  // drover sharing this folder keeps its own.
  const worker = path.join(dir, 'tfjs-wasm-pthread-worker.cjs');
  // The package ships the worker as a string export, its "\n" escapes turned into newlines by
  // the template literal that holds it: undo that, as the package does before making its Blob.
  const { wasmWorkerContents } = require(packageWorker) as { wasmWorkerContents: string };
  const workerSource = [
    '"use strict";',
    '// Written by drover (src/model/wasm-kernels/threads.ts): the tfjs wasm pthread worker, loadable by Node.',
    '// It loads the main script from the path it receives (importScripts: a file read).',
    wasmWorkerContents.replace(/\n/g, '\\n'),
    '',
  ].join('\n');
  fs.mkdirSync(dir, { recursive: true });
  writeIfChanged(main, mainSource.slice(0, cut) + '\n');
  writeIfChanged(worker, workerSource);
  return { worker, main, packageMain, binary };
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
