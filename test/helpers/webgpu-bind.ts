// Child process for test/gpu-twins.test.ts: binds this process to adapter N (`--gpu N`), runs one
// op on it, and prints what the process then sees as one JSON line (or the error's code and message).
import * as tf from '@tensorflow/tfjs';
import { listGpuAdapters, registerWebGpuBackend } from '../../src/model/webgpu.ts';

const gpu = Number(process.argv[2]);
try {
  const adapter = await registerWebGpuBackend({ gpu, allowSoftware: true });
  await tf.setBackend('webgpu');
  const sum = Array.from(await tf.add(tf.tensor([1, 2]), tf.tensor([3, 4])).data());
  const seen = await listGpuAdapters();
  console.log(JSON.stringify({ adapter, sum, seen, ordinal: process.env.DROVER_VK_DEVICE_ORDINAL ?? null }));
} catch (err) {
  console.log(JSON.stringify({ error: { code: (err as { code?: string }).code, message: (err as Error).message } }));
}
// dawn.node keeps the event loop alive while a device exists.
process.exit(0);
