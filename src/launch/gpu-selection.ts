import { ConfigError, NoGpuError } from '../errors.ts';
import { deviceSelectLayerDir } from '../model/vulkan-device-select.ts';
import { describeList, listGpuAdapters, needsDeviceSelectLayer, type GpuAdapterEntry } from '../model/webgpu.ts';

/** `--gpus all` or `--gpus 0,2`: which adapters of `drover gpus` get a worker each. */
export type GpuSelection = 'all' | number[];

/** Parses the `--gpus` flag: `all`, or distinct adapter indices separated by commas. */
export function parseGpuSelection(value: string): GpuSelection {
  const text = value.trim();
  if (text === 'all') return 'all';
  const parts = text.split(',').map((p) => p.trim());
  const indices = parts.map(Number);
  if (parts.some((p) => p === '') || indices.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new ConfigError(`--gpus takes "all" or adapter indices like 0,2 (see drover gpus), got "${value}"`, 'gpus');
  }
  if (new Set(indices).size !== indices.length) throw new ConfigError(`--gpus lists an adapter twice: "${value}"`, 'gpus');
  return indices;
}

/**
 * The adapters a selection names. `all` is every hardware adapter (never a software one such as
 * lavapipe); explicit indices may name a software adapter (a check of the setup without a GPU).
 * A NoGpuError, saying what Dawn sees, when `all` finds no GPU or an index does not exist.
 */
export async function resolveGpus(selection: GpuSelection): Promise<GpuAdapterEntry[]> {
  const adapters = await listGpuAdapters();
  if (selection === 'all') {
    const gpus = adapters.filter((a) => !a.software);
    if (gpus.length === 0) {
      throw new NoGpuError(
        adapters.length === 0
          ? '--gpus all: this machine has no GPU that Vulkan can see (no adapter at all; a GPU host needs its vendor\'s Vulkan driver, see README: GPU hosts)'
          : `--gpus all: this machine has no GPU; Dawn sees only software adapters (${describeList(adapters)})`,
      );
    }
    return readyForTwins(gpus, adapters);
  }
  return readyForTwins(
    selection.map((index) => {
      const adapter = adapters[index];
      if (!adapter) {
        throw new NoGpuError(`--gpus: there is no adapter ${index}; Dawn sees ${adapters.length === 0 ? 'none' : describeList(adapters)}`);
      }
      return adapter;
    }),
    adapters,
  );
}

/**
 * Identically named GPUs are fine: each worker binds to its own through drover's Vulkan layer
 * (src/model/vulkan-device-select.ts). The layer is built here, once, before the workers start:
 * a host without a C compiler hears it now rather than from every worker.
 */
async function readyForTwins(gpus: GpuAdapterEntry[], adapters: GpuAdapterEntry[]): Promise<GpuAdapterEntry[]> {
  if (gpus.some((gpu) => needsDeviceSelectLayer(gpu, adapters))) await deviceSelectLayerDir();
  return gpus;
}
