import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateShapes } from '../../src/data/shapes.ts';
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

/**
 * Writes the small job the `--gpus` tests train (16 px generated shapes, a tiny CNN, one epoch)
 * into `dir` and returns its path; the workers bind GPUs, the job itself names wasm.
 */
export async function writeGpuTrainingJob(dir: string, name: string, cluster: { minWorkers: number; joinTimeoutMs: number }): Promise<string> {
  const images = await generateShapes(path.join(dir, 'shapes'), { perClass: 24, size: 16 });
  const job = path.join(dir, 'job.json');
  await writeFile(job, JSON.stringify({
    name,
    seed: 3,
    backend: 'wasm',
    data: { kind: 'folder', path: images, imageSize: [16, 16], validation: { fraction: 0.25, seed: 1 } },
    model: { layers: [{ type: 'conv2d', filters: 4, kernelSize: 3 }, { type: 'maxPool' }, { type: 'flatten' }, { type: 'dense', units: 8 }] },
    train: { epochs: 1, batchSize: 24, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.003 } },
    output: { dir: path.join(dir, 'out') },
    cluster,
  }));
  return job;
}
