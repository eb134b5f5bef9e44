/**
 * The transfer job on the compute backends: training img/s of nsfwjs' MobileNetV2 backbone (cut
 * at out_relu) under a new head (global average pooling, dense 10 softmax), Adam 1e-3, random
 * data, in two jobs:
 *   transfer-frozen     the backbone frozen: only the head trains (no backward pass through it)
 *   transfer-finetune   blocks 15, 16 and the last 1x1 conv (Conv_1) train too, from
 *                       block_15_expand up, batch norm frozen (what a fineTune phase does)
 * on the systems of bench/compute.ts that can train it:
 *   wasm+composed   drover's composed wasm kernels, native kernels off
 *   wasm+onednn     the same plus the oneDNN addon (native/), when it is built
 * Each (system, job) runs in its own process and prints a per-kernel table of one step (self
 * ms, see kernel-profile.ts). Default input 96x96x3, batch 16 (the whole run takes well under a minute).
 *
 *   npm run bench:transfer -- [--json] [--steps 10] [--threads 1] [--size 96] [--batch 16] [--systems ...] [--jobs ...]
 *
 * --json prints one line per run: {"system": "...", "job": "transfer-frozen", "img_per_s": N, ...}.
 * Figures are rough on a shared machine; compare within one run. Asserts nothing.
 */
import * as tf from '@tensorflow/tfjs';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { initBackend } from '../src/model/backend.ts';
import { registerNativeKernels } from '../src/model/native/index.ts';
import { buildTransferModel, unfreezeFrom } from '../src/model/transfer.ts';
import { formatKernelRows, profileKernels } from './kernel-profile.ts';
import type { KernelRow } from './kernel-profile.ts';

const SYSTEMS = ['wasm+composed', 'wasm+onednn'] as const;
const JOBS = ['transfer-frozen', 'transfer-finetune'] as const;
type System = (typeof SYSTEMS)[number];
type Job = (typeof JOBS)[number];
/** Where fine-tuning starts: the top two inverted-residual blocks and the last conv. */
const FINE_TUNE_FROM = 'block_15_expand';
const CLASSES = 10;

interface Result {
  system: string;
  job: string;
  img_per_s: number;
  ms_per_step?: number;
  input?: number[];
  batch?: number;
  threads?: number;
  top_kernels?: { name: string; self_ms: number; calls: number }[];
  note?: string;
}

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    steps: { type: 'string', default: '10' },
    threads: { type: 'string', default: '1' },
    size: { type: 'string', default: '96' },
    batch: { type: 'string', default: '16' },
    systems: { type: 'string', default: SYSTEMS.join(',') },
    jobs: { type: 'string', default: JOBS.join(',') },
    // Internal: run one (system, job) in this process and print its result as JSON.
    child: { type: 'string' },
  },
});
const steps = Number(values.steps);
const threads = Number(values.threads);
const size = Number(values.size);
const batch = Number(values.batch);
for (const [name, value] of [
  ['--steps', steps],
  ['--threads', threads],
  ['--size', size],
  ['--batch', batch],
] as const) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${String(value)}`);
}
const input = [size, size, 3];

if (values.child !== undefined) {
  const [system, job] = values.child.split('/') as [System, Job];
  console.log(JSON.stringify(await runJob(system, job)));
} else {
  const systems = pick(values.systems, SYSTEMS, '--systems');
  const jobs = pick(values.jobs, JOBS, '--jobs');
  if (!values.json) console.log(`transfer job: MobileNetV2 (nsfwjs) + avg pool + dense ${CLASSES}, input ${input.join('x')}, batch ${batch}, Adam, ${threads} thread(s), ${steps} timed steps`);
  for (const job of jobs) {
    for (const system of systems) {
      const result = await runChild(system, job);
      if (values.json) {
        console.log(JSON.stringify(result));
        continue;
      }
      const timing = result.ms_per_step ? `  ${result.ms_per_step} ms/step` : '';
      console.log(`${`${result.system} ${result.job}`.padEnd(46)} ${String(result.img_per_s).padStart(8)} img/s${timing}${result.note ? `  (${result.note})` : ''}`);
      if (result.top_kernels) console.log(`  top kernels, self ms per step (calls): ${result.top_kernels.map((k) => `${k.name} ${k.self_ms} (x${k.calls})`).join(', ')}`);
    }
  }
}

function pick<T extends string>(list: string, known: readonly T[], flag: string): T[] {
  const wanted = list.split(',').map((s) => s.trim());
  for (const item of wanted) {
    if (!(known as readonly string[]).includes(item)) throw new Error(`${flag}: unknown "${item}"; expected some of ${known.join(', ')}`);
  }
  return wanted as T[];
}

async function runChild(system: System, job: Job): Promise<Result> {
  const args = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', `${system}/${job}`];
  args.push('--steps', String(steps), '--threads', String(threads), '--size', String(size), '--batch', String(batch));
  // Only wasm+onednn may load the addon.
  const env = system === 'wasm+onednn' ? process.env : { ...process.env, DROVER_NATIVE: 'off' };
  try {
    const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 16 << 20, env });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Result;
  } catch (err) {
    return { system, job, img_per_s: 0, note: `failed: ${firstLine(err)}` };
  }
}

async function runJob(system: System, job: Job): Promise<Result> {
  await initBackend('wasm', undefined, { threads });
  const name = `${system} (${threads} thread${threads > 1 ? 's' : ''})`;
  if (system === 'wasm+onednn' && !registerNativeKernels({ threads }).enabled) {
    return { system: name, job, img_per_s: 0, note: 'native kernels off (addon not built)' };
  }
  const { model } = await buildTransferModel({ backbone: 'nsfwjs:mobilenet_v2', head: { classes: CLASSES } }, { inputShape: input as [number, number, number], seed: 1 });
  if (job === 'transfer-finetune') unfreezeFrom(model, FINE_TUNE_FROM);
  const optimizer = tf.train.adam(1e-3);
  const xs = tf.randomUniform([batch, ...input]);
  const ys = tf.oneHot(tf.randomUniform([batch], 0, CLASSES, 'int32'), CLASSES);
  const step = (): void => {
    const loss = optimizer.minimize(() => tf.mean(tf.metrics.categoricalCrossentropy(ys, model.apply(xs, { training: true }) as tf.Tensor)) as tf.Scalar, true) as tf.Scalar;
    loss.dataSync();
    loss.dispose();
  };
  for (let i = 0; i < 2; i++) step();
  const rows: KernelRow[] = await profileKernels('wasm', step);
  console.error(`${name} ${job}: top kernels of one step, self ms (calls): ${formatKernelRows(rows)}`);
  const start = performance.now();
  for (let i = 0; i < steps; i++) step();
  const seconds = (performance.now() - start) / 1000;
  return {
    system: name,
    job,
    img_per_s: Math.round((10 * steps * batch) / seconds) / 10,
    ms_per_step: Math.round((100000 * seconds) / steps) / 100,
    input,
    batch,
    threads,
    top_kernels: rows.slice(0, 10).map((r) => ({ name: r.name, self_ms: Math.round(r.selfMs * 100) / 100, calls: r.calls })),
  };
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.slice(0, 200);
}
