import test from 'ava';
import { initBackend, type BackendInfo } from '../../src/model/backend.ts';

export type WebGpuSetup = { info: BackendInfo } | { reason: string };

/** Sets webgpu up, on Vulkan and else on Dawn's OpenGL backend; the reason when neither works. */
export async function setUpWebGpu(): Promise<WebGpuSetup> {
  const reasons: string[] = [];
  for (const dawnBackend of [process.env.DROVER_WEBGPU_BACKEND ?? 'vulkan', 'opengl']) {
    process.env.DROVER_WEBGPU_BACKEND = dawnBackend;
    try {
      return { info: await initBackend('webgpu') };
    } catch (err) {
      reasons.push(`${dawnBackend}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  }
  return { reason: reasons.join('; ') };
}

/**
 * Sets webgpu up and says on the console which adapter `what` (e.g. "webgpu tests") run on, or
 * why they are skipped; `gpuTest` is test.serial, or test.serial.skip when no adapter works.
 */
export async function webGpuTests(what: string) {
  const setup = await setUpWebGpu();
  const gpuTest = 'info' in setup ? test.serial : test.serial.skip;
  if ('reason' in setup) console.log(`${what} skipped: no WebGPU adapter could be set up (${setup.reason})`);
  else console.log(`${what} on ${setup.info.description}`);
  return { setup, gpuTest };
}
