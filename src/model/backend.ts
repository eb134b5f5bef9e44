import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { BackendError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import { silentLogger } from '../telemetry/logger.ts';
import { logEvent } from '../telemetry/events.ts';
import { registerWasmKernels, startWasmWithThreads } from './wasm-kernels/index.ts';
import { registerNativeKernels } from './native/index.ts';
import { hasGpuDevice } from './gpu-devices.ts';
import { registerWebGpuBackend, type WebGpuAdapterInfo } from './webgpu.ts';

export type BackendChoice = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'];

export interface BackendInfo {
  /** tfjs backend name now active: 'tensorflow' | 'webgpu' | 'wasm' | 'cpu'. */
  name: string;
  /** What drover reports, e.g. 'tensorflow (tfjs-node-gpu, CUDA)' or 'wasm (simd, 1 thread)'. */
  description: string;
  /** Why this one was chosen (the fallbacks tried, and why they failed). */
  reason: string;
  /** The GPU it computes on (webgpu), for the join line and the logs. */
  adapter?: WebGpuAdapterInfo;
}

const require = createRequire(import.meta.url);

let active: BackendInfo | undefined;

/** The backend chosen by the last `initBackend`, if any. */
export function activeBackend(): BackendInfo | undefined {
  return active;
}

export interface BackendOptions {
  /**
   * Compute threads of the wasm backend, default 1. With drover's oneDNN kernels on, they are
   * oneDNN's (OpenMP) threads and wasm stays single-threaded; without, XNNPACK's pool (1 = the
   * single-threaded binary). tfjs-node threads on its own.
   */
  threads?: number;
  /** webgpu: the adapter index (`--gpu N`, the order of `drover gpus`). Default: Dawn's first. */
  gpu?: number;
  /**
   * webgpu: accept a software adapter (lavapipe, SwiftShader) when asked for explicitly with
   * `--backend webgpu`. Default true for an explicit request (tests and CI run on one);
   * `auto` never takes one.
   */
  allowSoftware?: boolean;
}

/**
 * Selects and initialises the compute backend. `auto` tries tfjs-node-gpu where it loads and
 * sees a CUDA GPU, then a hardware WebGPU adapter (Dawn; never a software one), then tfjs-node,
 * then wasm (with oneDNN kernels when built), and logs which one it took and why. Never falls
 * back to cpu on its own: the pure-JS backend is ~100x too slow for convolution training.
 */
export async function initBackend(choice: BackendChoice = 'auto', log: Logger = silentLogger(), options: BackendOptions = {}): Promise<BackendInfo> {
  // One initialisation per request: concurrent or repeated calls (two jobs in one process)
  // share it instead of racing tf.setBackend against a backend still starting.
  const key = `${choice}/${options.threads ?? 1}/${options.gpu ?? '-'}`;
  const existing = started.get(key);
  if (existing) {
    const info = await existing;
    // Someone may have switched backends since (tests compare against cpu): switch back.
    if (tf.getBackend() !== info.name) await activate(info.name);
    return info;
  }
  const starting = startBackend(choice, log, options);
  started.set(key, starting);
  starting.catch(() => started.delete(key));
  return starting;
}

const started = new Map<string, Promise<BackendInfo>>();

async function startBackend(choice: BackendChoice, log: Logger, options: BackendOptions): Promise<BackendInfo> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new BackendError(`unknown backend "${String(choice)}": expected one of ${BACKEND_CHOICES.join(', ')}`);
  }
  const tried: string[] = [];
  // Whether a native TensorFlow package is installed at all (its absence is the normal case).
  let tensorflowInstalled = false;
  if (choice === 'webgpu') {
    const adapter = await registerWebGpuBackend({ ...(options.gpu !== undefined ? { gpu: options.gpu } : {}), allowSoftware: options.allowSoftware ?? true });
    await activate('webgpu');
    return announce(webGpuInfo(adapter, adapter.index !== undefined ? `requested with --backend webgpu --gpu ${adapter.index}` : 'requested with --backend webgpu'), log);
  }
  // tfjs-node-gpu loads without a GPU too (it then computes on the CPU): take it as a GPU
  // backend only when it sees one, and keep it as the CPU tensorflow backend otherwise.
  let cpuTensorflow: string | undefined;
  if (choice === 'auto' || choice === 'tensorflow') {
    // auto tries tfjs-node only after webgpu (below).
    for (const pkg of choice === 'auto' ? ['@tensorflow/tfjs-node-gpu'] : ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        await import(pkg);
        await activate('tensorflow');
        const onGpu = pkg.endsWith('gpu') && usesCudaDevice();
        if (pkg.endsWith('gpu') && !onGpu && choice === 'auto') {
          cpuTensorflow = pkg;
          tried.push('tfjs-node-gpu: sees no CUDA GPU');
          break;
        }
        const info: BackendInfo = {
          name: 'tensorflow',
          description: `tensorflow (${pkg.replace('@tensorflow/', '')}${onGpu ? ', CUDA' : ''})`,
          reason: tried.length ? `${tried.join('; ')}; loaded ${pkg}` : `loaded ${pkg}`,
        };
        return announce(info, log);
      } catch (err) {
        tried.push(`${pkg.replace('@tensorflow/', '')}: ${firstLine(err)}`);
        if (!isModuleNotFound(err, pkg)) tensorflowInstalled = true;
      }
    }
    if (choice === 'tensorflow') {
      throw new BackendError(
        `backend "tensorflow" requested but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node loads: ${tried.join('; ')}. ` +
          'Install one of them (their install downloads libtensorflow) or use --backend wasm.',
      );
    }
  }
  // Why auto passed over webgpu, for the calm line: a GPU host without a usable driver should see it.
  let webgpuNote: string | undefined;
  if (choice === 'auto') {
    if (!hasGpuDevice()) {
      tried.push('webgpu: no GPU device on this machine (/dev/dri/renderD*, /dev/nvidia*)');
    } else {
      try {
        const adapter = await registerWebGpuBackend({ allowSoftware: false });
        await activate('webgpu');
        return announce(webGpuInfo(adapter, tried.length ? `${tried.join('; ')}; hardware WebGPU adapter found` : 'hardware WebGPU adapter found'), log);
      } catch (err) {
        tried.push(`webgpu: ${firstLine(err)}`);
        // The optional packages absent is the ordinary case and stays quiet.
        if (!(err instanceof BackendError)) webgpuNote = `webgpu: ${firstLine(err)}`;
      }
    }
    if (cpuTensorflow) {
      await activate('tensorflow');
      return announce({ name: 'tensorflow', description: `tensorflow (${cpuTensorflow.replace('@tensorflow/', '')}, CPU)`, reason: tried.join('; ') }, log);
    }
    try {
      const cpuPackage = '@tensorflow/tfjs-node';
      await import(cpuPackage);
      await activate('tensorflow');
      return announce({ name: 'tensorflow', description: 'tensorflow (tfjs-node)', reason: `${tried.join('; ')}; loaded @tensorflow/tfjs-node` }, log);
    } catch (err) {
      tried.push(`tfjs-node: ${firstLine(err)}`);
      if (!isModuleNotFound(err, '@tensorflow/tfjs-node')) tensorflowInstalled = true;
    }
  }
  if (choice === 'cpu') {
    await import('@tensorflow/tfjs-backend-cpu');
    await activate('cpu');
    log.warn({ backend: 'cpu' }, CPU_BACKEND_WARNING);
    return announce({ name: 'cpu', description: 'cpu (pure JS, slow)', reason: 'requested with --backend cpu' }, log);
  }
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // Node reads the .wasm binaries from the package's own dist folder.
  const distDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
  wasm.setWasmPaths(distDir + path.sep);
  registerWasmKernels();
  const wanted = options.threads ?? 1;
  // oneDNN kernels on the wasm heap, when the optional addon was built at install.
  const native = registerNativeKernels({ threads: wanted });
  // With oneDNN, its OpenMP threads get the cores and wasm stays single-threaded: the heavy
  // kernels are oneDNN's, and two spinning thread pools slow each other down (reference job on
  // 2 cores: wasm 2 + oneDNN 2 threads 3240 img/s; wasm 1 + oneDNN 2: 4000; 1 + 1: 3700).
  const wasmThreads = native.enabled ? 1 : wanted;
  // The threaded binary is chosen once per process, at the first activation.
  const threads = wasmThreads > 1 ? await startWasmWithThreads({ threads: wasmThreads }, () => activate('wasm')) : (await activate('wasm'), 1);
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
  // One calm line on a normal run; what was tried and why is at debug level. Only a missing
  // or broken addon where it could be built is loud: that run is ~3x slower than it should be.
  const kernels = native.enabled ? 'wasm + oneDNN kernels' : `wasm without oneDNN kernels (${nativeOffShort(native)})`;
  const tensorflow =
    choice === 'wasm' ? 'requested with --backend wasm'
    : tensorflowInstalled ? 'native TensorFlow is installed but failed to load (details at debug level)'
    : 'native TensorFlow not installed (optional)';
  const info: BackendInfo = {
    name: 'wasm',
    description: `wasm${native.enabled ? '+onednn' : ''} (${simd ? 'simd' : 'no simd'}, ${threads} thread${threads > 1 ? 's' : ''}${native.enabled ? `, ${native.detail}` : ''})`,
    reason: [kernels, tensorflow, webgpuNote].filter(Boolean).join('; '),
  };
  log.debug({ tried, native: native.enabled ? native.detail : native.reason }, 'compute backend selection details');
  if (!native.enabled && native.broken) {
    log.warn({ code: new BackendError('').code, reason: native.reason }, `oneDNN kernels are missing although a C++ compiler and oneDNN are installed: this run trains on pure wasm, about 3x slower. ${native.reason}`);
  }
  if (tensorflowInstalled && choice === 'auto') log.warn({ tried }, `a native TensorFlow package is installed but does not load: ${tried.join('; ')}`);
  return announce(info, log);
}

function webGpuInfo(adapter: WebGpuAdapterInfo, reason: string): BackendInfo {
  const kind = adapter.software ? 'software adapter' : 'GPU';
  const which = adapter.index !== undefined ? `${kind} ${adapter.index}` : kind;
  return { name: 'webgpu', description: `webgpu (${which}: ${adapter.name}, Dawn ${adapter.backend})`, reason, adapter };
}

/** True when the tensorflow backend (tfjs-node-gpu) computes on a CUDA device. */
function usesCudaDevice(): boolean {
  return (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
}

async function activate(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  await tf.ready();
  if (!ok || tf.getBackend() !== name) {
    throw new BackendError(`tfjs backend "${name}" failed to initialise`);
  }
}

function announce(info: BackendInfo, log: Logger): BackendInfo {
  active = info;
  logEvent(log, 'backend', { backend: info.name, description: info.description, reason: info.reason }, `compute backend: ${info.description}`);
  return info;
}

/** Logged whenever the cpu backend starts: it is far too slow to train with. */
export const CPU_BACKEND_WARNING =
  'the cpu backend is pure JavaScript, for checks only: it trains a CNN at about 1 img/s. ' +
  'Train with --backend wasm (the default under auto; with the oneDNN kernels where built, see README) or --backend tensorflow (tfjs-node, tfjs-node-gpu).';

function nativeOffShort(native: { reason: string; broken: boolean }): string {
  if (native.broken) return 'missing or broken: see the warning';
  if (native.reason.includes('DROVER_NATIVE=off')) return 'DROVER_NATIVE=off';
  return 'optional, not built here';
}

/** True when `pkg` itself is not installed (as opposed to installed but failing to load). */
function isModuleNotFound(err: unknown, pkg: string): boolean {
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(pkg);
}

function firstLine(err: unknown): string {
  if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return 'not installed';
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.slice(0, 200);
}
