import * as tf from '@tensorflow/tfjs';
import { BackendError, NoGpuError } from '../errors.ts';
import { bindProcessToVulkanDevice } from './vulkan-device-select.ts';
import { registerWebGpuKernelFixes } from './webgpu-kernels.ts';

/**
 * The WebGPU backend on Dawn (the `webgpu` npm package, dawn.node) for tfjs. Both packages are
 * optional dependencies, loaded here on demand; an install without them trains on wasm.
 *
 * How dawn.node picks an adapter (src/dawn/node/binding/GPU.cpp): it enumerates the adapters of
 * one Dawn backend (Vulkan on Linux, or the one named by the `backend=` create flag), ordered by
 * the request's powerPreference, and returns the first whose device name contains the
 * `adapter=` flag; with a name matching none it rejects with the list of every adapter, which
 * is the only enumeration it offers. There is no index: identical GPUs share one name. For
 * those, `--gpu N` binds the process below Dawn with drover's Vulkan layer, which hides every
 * other device (bindToAdapter, src/model/vulkan-device-select.ts).
 */

/** One adapter dawn.node can see, in its enumeration order. */
export interface GpuAdapterEntry {
  /** Position in dawn.node's list: what `--gpu N` means. */
  index: number;
  /** Dawn backend: 'vulkan', 'opengl', ... */
  backend: string;
  /** Device name as the driver reports it (e.g. 'NVIDIA H200', 'llvmpipe (LLVM 15.0.6, 256 bits)'). */
  name: string;
  /** A CPU adapter (lavapipe, SwiftShader): Dawn reports it as a fallback adapter. */
  software: boolean;
}

/** The adapter a backend runs on. */
export interface WebGpuAdapterInfo {
  /** Device name, e.g. 'NVIDIA H200'. */
  name: string;
  vendor: string;
  architecture: string;
  description: string;
  /** Dawn backend: 'vulkan' or 'opengl'. */
  backend: string;
  /** A CPU (software) adapter such as lavapipe or SwiftShader: Dawn reports it as a fallback adapter. */
  software: boolean;
  /** Index in dawn.node's list when one was asked for (`--gpu N`). */
  index?: number;
}

export interface WebGpuOptions {
  /** Bind to the adapter at this index of `listGpuAdapters()` (`--gpu N`). */
  gpu?: number;
  /** Accept a software adapter (tests, CI). Default false: `auto` never takes one. */
  allowSoftware?: boolean;
  /**
   * Dawn backend: 'vulkan' (default on Linux) or 'opengl' (compatibility mode; the route for an
   * old Mesa whose lavapipe Dawn refuses). Also read from DROVER_WEBGPU_BACKEND.
   */
  dawnBackend?: 'vulkan' | 'opengl';
}

/** The GPU object of dawn.node (the part of the WebGPU API drover uses). */
interface DawnGpu {
  requestAdapter(options?: Record<string, unknown>): Promise<DawnAdapter | null>;
}
interface DawnAdapter {
  info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter?: boolean };
  features: { has(name: string): boolean };
  limits: Record<string, number>;
  requestDevice(descriptor?: Record<string, unknown>): Promise<unknown>;
}
interface DawnModule {
  create(flags: string[]): DawnGpu;
  globals: object;
}

let dawn: Promise<DawnModule> | undefined;

/** Loads dawn.node once; a BackendError naming the cause when the optional package is missing or cannot load. */
function loadDawn(): Promise<DawnModule> {
  dawn ??= (async () => {
    try {
      const mod = (await import('webgpu')) as unknown as DawnModule;
      // GPUBufferUsage, GPUMapMode, ...: the tfjs backend reads them as globals.
      Object.assign(globalThis, mod.globals);
      return mod;
    } catch (err) {
      dawn = undefined;
      throw new BackendError(`the optional package "webgpu" (Dawn) does not load: ${firstLine(err)}. Reinstall with optional dependencies (npm ci), on glibc >= 2.34.`, { cause: err });
    }
  })();
  return dawn;
}

function dawnBackendOf(options: WebGpuOptions): 'vulkan' | 'opengl' {
  const fromEnv = process.env.DROVER_WEBGPU_BACKEND;
  const value = options.dawnBackend ?? (fromEnv === 'opengl' || fromEnv === 'vulkan' ? fromEnv : 'vulkan');
  return value;
}

function createFlags(backend: 'vulkan' | 'opengl', adapterName?: string): string[] {
  const flags = [`backend=${backend}`];
  if (adapterName !== undefined) flags.push(`adapter=${adapterName}`);
  return flags;
}

function requestOptions(backend: 'vulkan' | 'opengl'): Record<string, unknown> {
  // Dawn's OpenGL backend offers only compatibility-mode adapters.
  return backend === 'opengl' ? { powerPreference: 'high-performance', featureLevel: 'compatibility', compatibilityMode: true } : { powerPreference: 'high-performance' };
}

/** Never a device name: makes dawn.node reject with its list of adapters. */
const NO_SUCH_ADAPTER = '\u0001drover-list-adapters';

/**
 * Every adapter dawn.node sees on the Dawn backend (Vulkan unless DROVER_WEBGPU_BACKEND says
 * otherwise), software ones included, in the order `--gpu N` counts. Empty when there is none
 * (no Vulkan driver, or no GPU); rejects only when the `webgpu` package cannot load.
 */
export async function listGpuAdapters(options: Pick<WebGpuOptions, 'dawnBackend'> = {}): Promise<GpuAdapterEntry[]> {
  const mod = await loadDawn();
  const backend = dawnBackendOf(options);
  let message: string;
  try {
    const adapter = await mod.create(createFlags(backend, NO_SUCH_ADAPTER)).requestAdapter(requestOptions(backend));
    // null: no adapter at all on this backend.
    if (adapter === null) return [];
    return [];
  } catch (err) {
    message = err instanceof Error ? err.message : String(err);
  }
  const entries: GpuAdapterEntry[] = [];
  const softwareByName = new Map<string, boolean>();
  for (const match of message.matchAll(/^ \* backend: '([^']*)', name: '(.*)'$/gm)) {
    const name = match[2]!;
    if (!softwareByName.has(name)) {
      // The list names adapters only: ask for each by name to learn its type.
      const adapter = await mod.create(createFlags(backend, name)).requestAdapter(requestOptions(backend)).catch(() => null);
      softwareByName.set(name, adapter === null || isSoftware(adapter));
    }
    entries.push({ index: entries.length, backend: match[1]!, name, software: softwareByName.get(name)! });
  }
  return entries;
}

/** The adapter chosen, and the dawn.node instance that owns it. */
interface ChosenAdapter {
  gpu: DawnGpu;
  adapter: DawnAdapter;
  info: WebGpuAdapterInfo;
}

async function chooseAdapter(options: WebGpuOptions): Promise<ChosenAdapter> {
  const mod = await loadDawn();
  const backend = dawnBackendOf(options);
  const list = await listGpuAdapters({ dawnBackend: backend });
  // Without --gpu dawn.node takes the first adapter of its list.
  const wanted = list[options.gpu ?? 0];
  if (!wanted) {
    throw new NoGpuError(
      list.length === 0
        ? noAdapterMessage(backend)
        : `--gpu ${options.gpu}: there ${list.length === 1 ? 'is only 1 adapter' : `are only ${list.length} adapters`} (${describeList(list)})`,
    );
  }
  let adapterName: string | undefined;
  if (options.gpu !== undefined) {
    adapterName = await bindToAdapter(wanted, list, backend);
  }
  const gpu = mod.create(createFlags(backend, adapterName));
  let adapter: DawnAdapter | null;
  try {
    adapter = await gpu.requestAdapter(requestOptions(backend));
  } catch (err) {
    throw new NoGpuError(`no WebGPU adapter on Dawn's ${backend} backend: ${firstLine(err)}`, { cause: err });
  }
  if (adapter === null) {
    throw new NoGpuError(noAdapterMessage(backend));
  }
  const raw = adapter.info;
  const info: WebGpuAdapterInfo = {
    // The list's name: dawn.node's info.device is a lower-cased, dashed form of it.
    name: wanted.name,
    vendor: raw.vendor,
    architecture: raw.architecture,
    description: raw.description,
    backend,
    software: isSoftware(adapter),
    ...(options.gpu !== undefined ? { index: options.gpu } : {}),
  };
  if (info.software && !options.allowSoftware) {
    throw new NoGpuError(`only a software adapter (${info.name}), which auto never takes`);
  }
  return { gpu, adapter, info };
}

/**
 * Makes `wanted` the adapter this process's Dawn takes; returns the `adapter=` flag for it.
 * A unique name is enough for dawn.node. Identically named GPUs (8x "NVIDIA H200") are told
 * apart below Dawn: drover's Vulkan layer hides every device but the k-th of that name, k being
 * `wanted`'s rank among its twins (src/model/vulkan-device-select.ts). Twins are
 * interchangeable, so `--gpu 0..7` bind to 8 distinct GPUs, which is what counts; which PCI slot
 * is "3" follows the Vulkan loader's order.
 */
async function bindToAdapter(wanted: GpuAdapterEntry, list: GpuAdapterEntry[], backend: 'vulkan' | 'opengl'): Promise<string | undefined> {
  if (!needsDeviceSelectLayer(wanted, list)) return wanted.name;
  if (backend !== 'vulkan') {
    throw new NoGpuError(`--gpu ${wanted.index}: another adapter is also named "${wanted.name}", and dawn.node selects by name only; the one-GPU-per-process layer works on Dawn's vulkan backend only`);
  }
  const ordinal = list.filter((entry) => entry.name === wanted.name).indexOf(wanted);
  // Proof that the layer took effect: this process now sees that one device and nothing else.
  // A loader older than VK_ADD_LAYER_PATH (2022) finds the layer through VK_LAYER_PATH only.
  let seen: GpuAdapterEntry[] = [];
  for (const viaLayerPath of [false, true]) {
    await bindProcessToVulkanDevice({ name: wanted.name, ordinal }, { viaLayerPath });
    seen = await listGpuAdapters({ dawnBackend: backend });
    if (seen.length === 1 && seen[0]!.name === wanted.name) return undefined;
  }
  throw new NoGpuError(
    `--gpu ${wanted.index}: drover's Vulkan device-select layer did not take effect (this process still sees ${seen.length === 0 ? 'no adapter' : describeList(seen)}); ` +
      'run with VK_LOADER_DEBUG=layer to see why the Vulkan loader did not load it (README: GPU hosts)',
  );
}

/**
 * True when dawn.node's `adapter=<name>` cannot single out `entry`: another adapter has the same
 * name, or an earlier one's name contains it (dawn.node takes the first whose name contains the flag).
 */
export function needsDeviceSelectLayer(entry: GpuAdapterEntry, list: readonly GpuAdapterEntry[]): boolean {
  return list.find((other) => other.name.includes(entry.name))!.index !== entry.index || list.some((other) => other.index !== entry.index && other.name === entry.name);
}

let activeAdapter: WebGpuAdapterInfo | undefined;

/**
 * Sets up Dawn, picks an adapter and registers tfjs' 'webgpu' backend on it (without activating
 * it). `navigator.gpu` is installed before @tensorflow/tfjs-backend-webgpu is imported: the
 * package checks it at import. Rejects with a NoGpuError when no suitable adapter exists, or a
 * BackendError when the optional packages are missing. One adapter per process.
 */
export async function registerWebGpuBackend(options: WebGpuOptions = {}): Promise<WebGpuAdapterInfo> {
  if (activeAdapter) {
    // Dawn's adapter is chosen once per process.
    if (options.gpu !== undefined && options.gpu !== activeAdapter.index) {
      throw new BackendError(`webgpu is already set up on ${activeAdapter.name}; one adapter per process (asked for --gpu ${options.gpu})`);
    }
    if (activeAdapter.software && !options.allowSoftware) throw new NoGpuError(`only a software adapter (${activeAdapter.name}), which auto never takes`);
    return activeAdapter;
  }
  const chosen = await chooseAdapter(options);
  const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
  if (nav === undefined) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: chosen.gpu }, configurable: true, writable: true });
  } else {
    // Node >= 21 has a navigator object without gpu.
    Object.defineProperty(nav, 'gpu', { value: chosen.gpu, configurable: true, writable: true });
  }
  let webgpu: typeof import('@tensorflow/tfjs-backend-webgpu');
  try {
    webgpu = await import('@tensorflow/tfjs-backend-webgpu');
  } catch (err) {
    throw new BackendError(`the optional package "@tensorflow/tfjs-backend-webgpu" does not load: ${firstLine(err)}. Reinstall with optional dependencies (npm ci).`, { cause: err });
  }
  registerWebGpuKernelFixes();
  const adapter = chosen.adapter;
  // Our own factory on the adapter chosen above (the package's own would request the default one).
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    async () => {
      const limits = adapter.limits;
      const requiredFeatures = ['timestamp-query'].filter((f) => adapter.features.has(f));
      const device = await adapter.requestDevice({
        requiredFeatures,
        requiredLimits: {
          maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
          maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
          maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
          maxBufferSize: limits.maxBufferSize,
          maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
          maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
        },
      });
      return new webgpu.WebGPUBackend(device as ConstructorParameters<typeof webgpu.WebGPUBackend>[0], adapter.info as ConstructorParameters<typeof webgpu.WebGPUBackend>[1]);
    },
    3,
  );
  activeAdapter = chosen.info;
  return chosen.info;
}

/** The adapter of the registered webgpu backend, if any. */
export function webGpuAdapter(): WebGpuAdapterInfo | undefined {
  return activeAdapter;
}

function noAdapterMessage(backend: 'vulkan' | 'opengl'): string {
  return backend === 'vulkan'
    ? "no WebGPU adapter on Dawn's vulkan backend (no Vulkan driver sees a device; on an NVIDIA host install its Vulkan ICD, see README: GPU hosts)"
    : "no WebGPU adapter on Dawn's opengl backend (no OpenGL ES / EGL driver sees a device)";
}

function isSoftware(adapter: DawnAdapter): boolean {
  return adapter.info.isFallbackAdapter === true || adapter.info.architecture === 'software';
}

/** "0: NVIDIA H200 (vulkan), 1: ..." */
export function describeList(list: readonly GpuAdapterEntry[]): string {
  return list.map((e) => `${e.index}: ${e.name} (${e.backend})`).join(', ');
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.slice(0, 200);
}
