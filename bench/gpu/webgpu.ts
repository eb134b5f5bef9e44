/**
 * WebGPU for the GPU bench: installs `navigator.gpu` from the `webgpu` package (Dawn) and
 * activates tfjs-backend-webgpu, reporting the adapter it got. The backend package reads
 * `navigator.gpu` when it is imported, so the order matters. Until drover's own
 * `--backend webgpu` lands this is the bench's way in; the bundle runs the same code.
 */
import * as tf from '@tensorflow/tfjs';

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Dawn marks a software adapter (lavapipe, SwiftShader) as the fallback adapter. */
  fallback: boolean;
}

interface GpuLike {
  requestAdapter(options?: Record<string, unknown>): Promise<AdapterLike | null>;
}
interface AdapterLike {
  info: Record<string, unknown>;
}

let started: Promise<AdapterReport> | undefined;

/** Starts webgpu once per process; rejects with the reason when there is no adapter. */
export function startWebgpu(): Promise<AdapterReport> {
  started ??= start();
  return started;
}

async function start(): Promise<AdapterReport> {
  const dawn = (await import('webgpu')) as unknown as { create(flags: string[]): GpuLike; globals: Record<string, unknown> };
  Object.assign(globalThis, dawn.globals);
  // Dawn flags from the environment, e.g. DROVER_DAWN_FLAGS=backend=vulkan (comma-separated).
  const flags = (process.env.DROVER_DAWN_FLAGS ?? '').split(',').filter((f) => f.length > 0);
  const gpu = dawn.create(flags);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter (is a Vulkan driver installed? see VK_DRIVER_FILES)');
  const info = adapter.info;
  const text = (key: string): string => (typeof info[key] === 'string' ? (info[key] as string) : '');
  const report: AdapterReport = {
    vendor: text('vendor'),
    architecture: text('architecture'),
    device: text('device'),
    description: text('description'),
    fallback: info.isFallbackAdapter === true,
  };
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs-backend-webgpu did not initialise on this adapter');
  await tf.ready();
  return report;
}
