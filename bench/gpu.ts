/**
 * Training img/s on a GPU: drover on webgpu (tfjs-backend-webgpu on Dawn) against PyTorch on
 * CUDA on the same GPU (bench/gpu/torch_cuda.py, when torch.cuda.is_available()), fp32, models:
 *   fmnist-cnn            the reference CNN (28x28x1, drover's Adam), batch 64, 256, 1024
 *   mobilenetv2-frozen    the transfer job: nsfwjs' MobileNetV2 cut at out_relu + avg pool +
 *                         dense 10, backbone frozen, 224x224x3 (bench/compute-transfer.ts)
 *   mobilenetv2-finetune  the same, blocks 15, 16 and Conv_1 training too
 * and, as system "webgpu-trainer", fmnist-cnn (first --cnn-batches) and mobilenetv2-frozen through
 * drover's Trainer.trainStep: per-step upload of the batch and awaited loss reads, as `drover train`.
 *   gpu-augment           (webgpu only, not training) the device augmentation path: decoded
 *                         256 px images uploaded, warped, coloured, normalised to 224 (gpu-augment.ts)
 * Input is synthetic and resident on the device; warm-up steps are excluded; the timed steps
 * end with an awaited read of the last loss. Each webgpu setting runs in its own process (a
 * fresh device) under its own timeout, so one hang costs one line, not the run.
 *
 *   npm run bench:gpu -- [--json] [--steps 30] [--transfer-steps 10] [--warmup 5] [--size 224]
 *        [--cnn-batches 64,256,1024] [--transfer-batch 32] [--systems webgpu,pytorch]
 *        [--timeout 90] [--torch-device cuda] [--backbone nsfwjs:mobilenet_v2] [--hardware-only]
 *
 * --json prints one line per system and setting:
 *   {"system": "webgpu", "model": "fmnist-cnn", "batch": 64, "img_per_s": N, "ms_per_step": ..., "adapter": ...}
 * A setting that fails or times out prints img_per_s 0 and a note. Asserts nothing.
 * `npm run bench:gpu:bundle` packs this for a GPU machine without Node (bench/gpu/bundle.ts).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MODELS, buildJob, timeJob, timeTrainerJob, type ModelName } from './gpu/jobs.ts';
import { initBackend } from '../src/model/backend.ts';
import type { WebGpuAdapterInfo } from '../src/model/webgpu.ts';

const SYSTEMS = ['webgpu', 'pytorch'] as const;

export interface BenchLine {
  system: string;
  model: string;
  batch: number;
  img_per_s: number;
  ms_per_step?: number;
  steps?: number;
  warmup?: number;
  input?: number[];
  adapter?: string;
  note?: string;
  [key: string]: unknown;
}

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    steps: { type: 'string', default: '30' },
    'transfer-steps': { type: 'string', default: '10' },
    warmup: { type: 'string', default: '5' },
    size: { type: 'string', default: '224' },
    'cnn-batches': { type: 'string', default: '64,256,1024' },
    'transfer-batch': { type: 'string', default: '32' },
    systems: { type: 'string', default: SYSTEMS.join(',') },
    timeout: { type: 'string', default: '90' },
    'torch-device': { type: 'string', default: 'cuda' },
    python: { type: 'string', default: process.env.DROVER_PYTHON ?? 'python3' },
    'torch-script': { type: 'string' },
    backbone: { type: 'string', default: 'nsfwjs:mobilenet_v2' },
    // Refuse a software adapter (lavapipe): on a GPU machine it means the GPU's driver was not found.
    'hardware-only': { type: 'boolean', default: false },
    // Only start webgpu and print the adapter (run.sh uses it to pick a Vulkan driver).
    probe: { type: 'boolean', default: false },
    // Internal: one webgpu setting in this process, "model/batch".
    child: { type: 'string' },
  },
});

/** Process groups of the running children: a parent stopped from outside (run.sh's timeout) takes them along. */
const running = new Set<number>();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    for (const pid of running) killGroup(pid);
    process.exit(128 + (signal === 'SIGTERM' ? 15 : 2));
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

const positive = (name: string): number => {
  const value = Number(values[name as keyof typeof values]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got ${String(values[name as keyof typeof values])}`);
  return value;
};
const steps = positive('steps');
const transferSteps = positive('transfer-steps');
const warmup = positive('warmup');
const size = positive('size');
const transferBatch = positive('transfer-batch');
const timeoutS = positive('timeout');
const cnnBatches = values['cnn-batches'].split(',').map((b) => {
  const n = Number(b);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--cnn-batches: "${b}" is not a positive integer`);
  return n;
});
const settings: { model: ModelName; batch: number }[] = [
  ...cnnBatches.map((batch) => ({ model: 'fmnist-cnn' as const, batch })),
  { model: 'mobilenetv2-frozen', batch: transferBatch },
  { model: 'mobilenetv2-finetune', batch: transferBatch },
];
/** webgpu only: the device augmentation path's img/s at the transfer job's size (issue 14 item 4). */
const webgpuOnly: { model: ModelName; batch: number }[] = [{ model: 'gpu-augment', batch: transferBatch }];
/** webgpu through drover's Trainer.trainStep (per-step upload and reads), last: the loop as `drover train` runs it. */
const trainerSettings: { model: ModelName; batch: number }[] = [
  { model: 'fmnist-cnn', batch: cnnBatches[0]! },
  { model: 'mobilenetv2-frozen', batch: transferBatch },
];

if (values.probe || values.child !== undefined) {
  try {
    console.log(JSON.stringify(values.probe ? await startWebgpu() : await runSetting(values.child!)));
  } catch (err) {
    // One line the parent quotes in its note (the stack would end with Node's version line).
    const code = (err as { code?: unknown }).code;
    console.error(`${typeof code === 'string' ? `${code}: ` : ''}${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    process.exit(1);
  }
  // dawn.node keeps the event loop alive while its GPU object lives.
  process.exit(0);
} else {
  const systems = values.systems.split(',').map((s) => s.trim());
  for (const system of systems) {
    if (!(SYSTEMS as readonly string[]).includes(system)) throw new Error(`--systems: unknown "${system}"; expected some of ${SYSTEMS.join(', ')}`);
  }
  if (!values.json) console.log(`GPU bench: ${systems.join(' vs ')}; steps ${steps} (cnn) / ${transferSteps} (transfer) after ${warmup} warm-up; transfer input ${size}x${size}x3`);
  if (systems.includes('webgpu')) {
    // The quick settings first: the augmentation path before the transfer jobs.
    const cnn = settings.filter((s) => s.model === 'fmnist-cnn');
    const transfer = settings.filter((s) => s.model !== 'fmnist-cnn');
    for (const setting of [...cnn, ...webgpuOnly, ...transfer]) print(await runChild(`${setting.model}/${setting.batch}`));
    for (const setting of trainerSettings) print(await runChild(`trainer:${setting.model}/${setting.batch}`));
  }
  if (systems.includes('pytorch')) {
    for (const line of await runTorch()) print(line);
  }
}

function print(line: BenchLine): void {
  if (values.json) {
    console.log(JSON.stringify(line));
    return;
  }
  const timing = line.ms_per_step === undefined ? '' : `  ${line.ms_per_step} ms/step`;
  console.log(`${line.system.padEnd(14)} ${line.model.padEnd(22)} batch ${String(line.batch).padStart(5)} ${String(line.img_per_s).padStart(10)} img/s${timing}${line.note ? `  (${line.note})` : ''}`);
}

async function runSetting(child: string): Promise<BenchLine> {
  const viaTrainer = child.startsWith('trainer:');
  const [model, batchText] = child.replace(/^trainer:/, '').split('/');
  if (!(MODELS as readonly string[]).includes(model!)) throw new Error(`--child: unknown model "${model}"`);
  const batch = Number(batchText);
  const adapter = await startWebgpu();
  const device = {
    adapter: adapter.name,
    adapter_description: adapter.description,
    dawn_backend: adapter.backend,
    software_adapter: adapter.software,
  };
  if (viaTrainer) {
    const timedSteps = model === 'fmnist-cnn' ? steps : transferSteps;
    const run = await timeTrainerJob({ model: model as ModelName, batch, size, backbone: values.backbone }, warmup, timedSteps);
    return {
      system: 'webgpu-trainer',
      model: model!,
      batch,
      img_per_s: Math.round((10 * timedSteps * batch) / run.seconds) / 10,
      ms_per_step: Math.round((1000 * 1000 * run.seconds) / timedSteps) / 1000,
      steps: timedSteps,
      warmup,
      input: run.input,
      trainable_params: run.trainableParams,
      loss: Math.round(run.loss * 10000) / 10000,
      ...device,
    };
  }
  const job = await buildJob({ model: model as ModelName, batch, size, backbone: values.backbone });
  const timedSteps = model === 'fmnist-cnn' || model === 'gpu-augment' ? steps : transferSteps;
  const { seconds, loss } = await timeJob(job, warmup, timedSteps);
  job.dispose();
  return {
    system: 'webgpu',
    model: model!,
    batch,
    img_per_s: Math.round((10 * timedSteps * batch) / seconds) / 10,
    ms_per_step: Math.round((1000 * 1000 * seconds) / timedSteps) / 1000,
    steps: timedSteps,
    warmup,
    input: job.input,
    trainable_params: job.trainableParams,
    ...(model === 'gpu-augment' ? {} : { loss: Math.round(loss * 10000) / 10000 }),
    ...device,
  };
}

/** drover's own `--backend webgpu`; a software adapter only without --hardware-only (each line says which it ran on). */
async function startWebgpu(): Promise<WebGpuAdapterInfo> {
  const info = await initBackend('webgpu', undefined, { allowSoftware: !values['hardware-only'] });
  if (!info.adapter) throw new Error(`backend ${info.name} has no adapter`);
  return info.adapter;
}

/** argv to start this script again: tsx in development, the bundle as is. */
function selfArgs(): string[] {
  return [...process.execArgv, process.argv[1]!];
}

function forwardedArgs(): string[] {
  return [...(values['hardware-only'] ? ['--hardware-only'] : []), '--steps', String(steps), '--transfer-steps', String(transferSteps), '--warmup', String(warmup), '--size', String(size), '--backbone', values.backbone];
}

async function runChild(setting: string): Promise<BenchLine> {
  const [model, batch] = setting.replace(/^trainer:/, '').split('/') as [string, string];
  const system = setting.startsWith('trainer:') ? 'webgpu-trainer' : 'webgpu';
  const failed = (note: string): BenchLine => ({ system, model, batch: Number(batch), img_per_s: 0, note });
  const result = await run(process.execPath, [...selfArgs(), '--child', setting, ...forwardedArgs()], timeoutS);
  if (result.timedOut) return failed(`timed out after ${timeoutS} s`);
  const last = result.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last) as BenchLine;
  } catch {
    return failed(`failed (exit ${result.code}): ${lastLine(result.stderr)}`);
  }
}

async function runTorch(): Promise<BenchLine[]> {
  const script = values['torch-script'] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'gpu', 'torch_cuda.py');
  const list = settings.map((s) => `${s.model}/${s.batch}`);
  const args = [script, '--device', values['torch-device'], '--settings', list.join(','), '--steps', String(steps), '--transfer-steps', String(transferSteps), '--warmup', String(warmup), '--size', String(size)];
  const result = await run(values.python, args, timeoutS * list.length);
  const lines: BenchLine[] = [];
  for (const text of result.stdout.split('\n')) {
    if (text.trim().startsWith('{')) lines.push(JSON.parse(text) as BenchLine);
  }
  if (result.code === 3) {
    console.error(`pytorch: skipped, ${lastLine(result.stderr)}`);
    return lines;
  }
  const system = `pytorch-${values['torch-device']}`;
  const why = result.timedOut ? `timed out after ${timeoutS * list.length} s` : `failed (exit ${result.code}): ${lastLine(result.stderr)}`;
  for (const setting of list.slice(lines.length)) {
    const [model, batch] = setting.split('/') as [string, string];
    lines.push({ system, model, batch: Number(batch), img_per_s: 0, note: why });
  }
  return lines;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command, its stderr passed through (the log), killed with its group after timeout. */
function run(command: string, args: string[], timeoutSeconds: number): Promise<RunResult> {
  return new Promise((resolve) => {
    // Its own process group, so a timeout also ends what it started (python's CUDA workers, Dawn's threads).
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid !== undefined) running.add(child.pid);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid);
    }, timeoutSeconds * 1000);
    child.on('error', (err) => {
      clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      resolve({ code: null, stdout, stderr: stderr + String(err), timedOut });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

function lastLine(text: string): string {
  const lines = text
    .trim()
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('Warning: maxDynamic'));
  return (lines.at(-1) ?? '').slice(0, 300);
}
