import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BackendError } from '../errors.ts';

/**
 * One GPU per process on a host of identical GPUs, below Dawn: drover's own Vulkan layer
 * (native/vk-device-select/drover_device_select.c) answers vkEnumeratePhysicalDevices with the
 * one device a process is bound to. dawn.node selects adapters by device name only, and nothing
 * in the Vulkan loader (its filters match vendor/device ids, which identical GPUs share) or the
 * NVIDIA driver (CUDA_VISIBLE_DEVICES is CUDA's alone) tells 8 "NVIDIA H200" apart.
 *
 * The layer is built on first use with the machine's C compiler (`cc`, or $CC; one small file,
 * no headers needed) into native/build/vk-device-select/ (or the temp dir when the package is
 * read-only), keyed by the source's hash. DROVER_VK_LAYER_DIR names a directory that already
 * holds a built layer and its manifest (a prepared image or bundle).
 */

export const LAYER_NAME = 'VK_LAYER_DROVER_device_select';
const MANIFEST = 'drover_device_select.json';

/** Which device a process keeps: the `ordinal`-th (0-based, Vulkan loader order) named `name`. */
export interface VulkanDeviceChoice {
  name: string;
  ordinal: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const sourceFile = path.resolve(here, '..', '..', 'native', 'vk-device-select', 'drover_device_select.c');

let built: Promise<string> | undefined;

/** The directory holding the layer's manifest, building the layer once per process if needed. */
export function deviceSelectLayerDir(): Promise<string> {
  built ??= locateOrBuild().catch((err: unknown) => {
    built = undefined;
    throw err;
  });
  return built;
}

async function locateOrBuild(): Promise<string> {
  const given = process.env.DROVER_VK_LAYER_DIR;
  if (given) {
    if (!(await exists(path.join(given, MANIFEST)))) {
      throw new BackendError(`DROVER_VK_LAYER_DIR=${given} holds no ${MANIFEST} (drover's Vulkan device-select layer)`);
    }
    return given;
  }
  let source: Buffer;
  try {
    source = await readFile(sourceFile);
  } catch (err) {
    throw new BackendError(`drover's Vulkan device-select layer source is missing (${sourceFile}); set DROVER_VK_LAYER_DIR to a built one`, { cause: err });
  }
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const candidates = [
    path.resolve(here, '..', '..', 'native', 'build', 'vk-device-select', hash),
    path.join(os.tmpdir(), `drover-vk-device-select-${process.getuid?.() ?? 'user'}`, hash),
  ];
  const failures: string[] = [];
  for (const dir of candidates) {
    if (await exists(path.join(dir, MANIFEST))) return dir;
    try {
      await build(dir);
      return dir;
    } catch (err) {
      if (err instanceof BackendError) throw err;
      failures.push(`${dir}: ${(err as Error).message}`);
    }
  }
  throw new BackendError(`cannot write drover's Vulkan device-select layer anywhere (${failures.join('; ')})`);
}

/** Compiles the layer into `dir` and writes its manifest last (atomic renames: concurrent workers may race). */
async function build(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await access(dir, constants.W_OK);
  const library = path.join(dir, 'libVkLayer_drover_device_select.so');
  const partial = `${library}.${process.pid}.tmp`;
  const compiler = process.env.CC || 'cc';
  try {
    await promisify(execFile)(compiler, ['-shared', '-fPIC', '-O2', '-fvisibility=hidden', '-o', partial, sourceFile, '-lpthread']);
  } catch (err) {
    await rm(partial, { force: true });
    const detail = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
    throw new BackendError(
      `binding to one of several identical GPUs needs drover's Vulkan device-select layer, built with a C compiler (${compiler}), and that failed: ${detail.split('\n')[0]}. ` +
        'Install a C compiler (apt-get install gcc), or set DROVER_VK_LAYER_DIR to a built layer (README: GPU hosts).',
      { cause: err },
    );
  }
  await rename(partial, library);
  const manifest = {
    file_format_version: '1.1.2',
    layer: {
      name: LAYER_NAME,
      type: 'GLOBAL',
      library_path: library,
      api_version: '1.3.0',
      implementation_version: '1',
      description: 'drover: shows a process one GPU (DROVER_VK_DEVICE_NAME, DROVER_VK_DEVICE_ORDINAL)',
      functions: { vkNegotiateLoaderLayerInterfaceVersion: 'vkNegotiateLoaderLayerInterfaceVersion' },
    },
  };
  const manifestPath = path.join(dir, MANIFEST);
  await writeFile(`${manifestPath}.${process.pid}.tmp`, JSON.stringify(manifest, null, 2) + '\n');
  await rename(`${manifestPath}.${process.pid}.tmp`, manifestPath);
}

/**
 * The environment that shows a process (this one, before Dawn creates its Vulkan instance, or a
 * child) only the chosen device. The loader reads these at each vkCreateInstance.
 * VK_ADD_LAYER_PATH (loader 1.3.2xx on) adds the layer's directory to the standard search; the
 * loader ignores it while VK_LAYER_PATH is set, so the directory joins that too when it is,
 * and older loaders need `viaLayerPath` (VK_LAYER_PATH, which replaces the standard search for
 * explicit layers: those then load only from the paths it lists).
 */
export function deviceSelectEnv(
  layerDir: string,
  choice: VulkanDeviceChoice,
  env: NodeJS.ProcessEnv = process.env,
  options: { viaLayerPath?: boolean } = {},
): Record<string, string> {
  const withDir = (list: string | undefined) => [layerDir, ...(list ?? '').split(':').filter((p) => p && p !== layerDir)].join(':');
  const layers = (env.VK_INSTANCE_LAYERS ?? '').split(':').filter(Boolean);
  return {
    VK_ADD_LAYER_PATH: withDir(env.VK_ADD_LAYER_PATH),
    ...(env.VK_LAYER_PATH || options.viaLayerPath ? { VK_LAYER_PATH: withDir(env.VK_LAYER_PATH) } : {}),
    VK_INSTANCE_LAYERS: [LAYER_NAME, ...layers.filter((l) => l !== LAYER_NAME)].join(':'),
    DROVER_VK_DEVICE_NAME: choice.name,
    DROVER_VK_DEVICE_ORDINAL: String(choice.ordinal),
    // Mesa's implicit device-select layer reorders devices (pointless with one) and crashes on
    // an instance with none.
    NODEVICE_SELECT: '1',
  };
}

/** Binds this process to one Vulkan device: every Dawn instance created afterwards sees only it. */
export async function bindProcessToVulkanDevice(choice: VulkanDeviceChoice, options: { viaLayerPath?: boolean } = {}): Promise<void> {
  Object.assign(process.env, deviceSelectEnv(await deviceSelectLayerDir(), choice, process.env, options));
}

async function exists(file: string): Promise<boolean> {
  return access(file, constants.R_OK).then(
    () => true,
    () => false,
  );
}
