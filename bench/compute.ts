/**
 * Compute backends side by side on the reference training step: img/s of the fmnist-cnn preset's
 * network (conv3x3 32 valid relu, maxpool2, conv3x3 64 valid relu, maxpool2, flatten, dense 128
 * relu, dropout 0.25, dense 10; 28x28x1, batch 64, Adam 1e-3, fixed synthetic data) as `drover train`
 * runs it (drover's Trainer.trainStep and its own Adam), on
 *   wasm          stock tfjs-backend-wasm kernels
 *   wasm+composed drover's composed wasm kernels (src/model/wasm-kernels/), what --backend wasm runs
 *   wasm+onednn   the same plus the oneDNN addon (native/), when it is built
 *   pytorch       bench/torch_reference.py under /usr/bin/python3, when torch is installed
 * Each system runs in its own process (the wasm binary and kernel registry are per process).
 *
 *   npm run bench:compute -- [--json] [--steps 30] [--threads 1] [--systems wasm,wasm+composed,wasm+onednn,pytorch] [--profile]
 *
 * --json prints one line per system: {"system": "...", "img_per_s": N, ...}. Figures are rough on
 * a shared machine; compare within one run. Asserts nothing.
 */
import * as tf from '@tensorflow/tfjs';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import type { Batch } from '../src/data/types.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { PRESETS } from '../src/model/presets.ts';
import { optimizerSpecSchema } from '../src/train/optimizers.ts';
import { Trainer } from '../src/train/trainer.ts';
import { registerNativeKernels } from '../src/model/native/index.ts';
import { nativeKernelCalls } from '../src/model/native/kernels.ts';
import { startWasmWithThreads } from '../src/model/wasm-kernels/threads.ts';
import { formatKernelRows, profileKernels } from './kernel-profile.ts';

const SYSTEMS = ['wasm', 'wasm+composed', 'wasm+onednn', 'pytorch'] as const;
type System = (typeof SYSTEMS)[number];

interface Result {
  system: string;
  img_per_s: number;
  ms_per_step?: number;
  threads?: number;
  note?: string;
}

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    steps: { type: 'string', default: '30' },
    threads: { type: 'string', default: '1' },
    batch: { type: 'string', default: '64' },
    systems: { type: 'string', default: SYSTEMS.join(',') },
    profile: { type: 'boolean', default: false },
    // Internal: run one wasm system in this process and print its result as JSON.
    child: { type: 'string' },
  },
});
const steps = Number(values.steps);
const threads = Number(values.threads);
const batch = Number(values.batch);
for (const [name, value] of [
  ['--steps', steps],
  ['--threads', threads],
  ['--batch', batch],
] as const) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${String(value)}`);
}

const execFileAsync = promisify(execFile);
const benchDir = path.dirname(fileURLToPath(import.meta.url));

if (values.child !== undefined) {
  console.log(JSON.stringify(await runWasm(values.child as System)));
} else {
  const wanted = values.systems.split(',').map((s) => s.trim());
  for (const system of wanted) {
    if (!(SYSTEMS as readonly string[]).includes(system)) throw new Error(`--systems: unknown system "${system}"; expected some of ${SYSTEMS.join(', ')}`);
  }
  for (const system of wanted as System[]) {
    const result = system === 'pytorch' ? await runTorch() : await runChild(system);
    if (values.json) console.log(JSON.stringify(result));
    else console.log(`${result.system.padEnd(40)} ${String(result.img_per_s).padStart(8)} img/s${result.ms_per_step ? `  ${result.ms_per_step} ms/step` : ''}${result.note ? `  (${result.note})` : ''}`);
  }
}

async function runChild(system: System): Promise<Result> {
  const args = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', system, '--steps', String(steps), '--threads', String(threads), '--batch', String(batch)];
  if (values.profile) args.push('--profile');
  try {
    // Only wasm+onednn may load the addon: the other systems measure pure wasm.
    const env = system === 'wasm+onednn' ? process.env : { ...process.env, DROVER_NATIVE: 'off' };
    const { stdout, stderr } = await execFileAsync(process.execPath, args, { maxBuffer: 16 << 20, env });
    if (values.profile) process.stderr.write(stderr);
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Result;
  } catch (err) {
    return { system, img_per_s: 0, note: `failed: ${firstLine(err)}` };
  }
}

async function runTorch(): Promise<Result> {
  try {
    const { stdout } = await execFileAsync('/usr/bin/python3', [path.join(benchDir, 'torch_reference.py'), String(steps), String(threads), String(batch)]);
    return { ...(JSON.parse(stdout.trim().split('\n').at(-1)!) as Result), threads };
  } catch (err) {
    return { system: 'pytorch', img_per_s: 0, note: `unavailable: ${firstLine(err)}` };
  }
}

async function runWasm(system: System): Promise<Result> {
  let note: string | undefined;
  if (system === 'wasm') {
    // What initBackend('wasm') does, without drover's kernels.
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
    await startWasmWithThreads({ threads }, async () => {
      await tf.setBackend('wasm');
      await tf.ready();
    });
  } else {
    await initBackend('wasm', undefined, { threads });
  }
  let name: string = system;
  if (system === 'wasm+onednn') {
    const info = registerNativeKernels({ threads });
    if (!info.enabled) return { system, img_per_s: 0, note: `native kernels off: ${info.reason}` };
    note = info.detail;
  }
  name = `${name} (${threads} thread${threads > 1 ? 's' : ''})`;
  // What `drover train` runs: the preset through drover's Trainer and its Adam.
  const model = buildScratchModel({ layers: PRESETS['fmnist-cnn'].layers, inputShape: [28, 28, 1], classes: 10, seed: 1 });
  const trainer = new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 1e-3 }) });
  const data: Batch = {
    x: Float32Array.from({ length: batch * 28 * 28 }, (_, i) => ((i * 7919) % 256) / 255),
    y: Int32Array.from({ length: batch }, (_, i) => (i * 7) % 10),
    n: batch,
    shape: [28, 28, 1],
  };
  const step = async (): Promise<void> => {
    await trainer.trainStep(data, 1e-3);
  };
  try {
    for (let i = 0; i < 5; i++) await step();
  } catch (err) {
    // Stock tfjs-backend-wasm 4.22 lacks Conv2DBackpropFilter: it cannot train a CNN at all.
    return { system: name, img_per_s: 0, threads, note: `cannot train: ${firstLine(err)}` };
  }
  if (values.profile) {
    console.error(`${name}: top kernels of one step, self ms (calls): ${formatKernelRows(await profileKernels('wasm', step), 12)}`);
  }
  const start = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const seconds = (performance.now() - start) / 1000;
  if (system === 'wasm+onednn') note = `${note}; native calls: ${[...nativeKernelCalls()].map(([k, n]) => `${k} ${n}`).join(', ')}`;
  return { system: name, img_per_s: Math.round((10 * steps * batch) / seconds) / 10, ms_per_step: Math.round((100000 * seconds) / steps) / 100, threads, ...(note ? { note } : {}) };
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.slice(0, 200);
}
