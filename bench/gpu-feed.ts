/**
 * Feeding a GPU (issue 14 item 4): img/s of the data pipeline for the MobileNetV2 transfer job
 * at 224 px, to set against the GPU's training step rate (bench:gpu's mobilenetv2 lines):
 *   pool decode+augment   the CPU path: piscina + sharp decode, warp.ts warp + normalisation
 *                         (batch-task.ts), what `drover train` runs off webgpu (data.augmentOn cpu)
 *   pool decode only      gpu-decode.ts through DecodePool.runForDevice: the same decode and draws,
 *                         no warp (the GPU path's CPU part, what data.augmentOn device runs on the pool)
 *   device augment        gpu-augment.ts on the active backend: upload, warp, colour,
 *                         normalise (the GPU path's device part; meaningful on a real GPU only)
 * Input: 256 px photo-like JPEGs (as bench/data-pipeline.ts), rotation +-20 deg, shifts, zoom,
 * horizontal flip, brightness, reflect fill, bilinear, cover to 224, 'mobilenet' scaling; batches of 32.
 *
 *   node --import tsx bench/gpu-feed.ts [--json] [--threads 2] [--images 512] [--backend webgpu|wasm|cpu] [--gpu-img-per-s N]
 *
 * --gpu-img-per-s: a training rate to compare with (e.g. bench:gpu's mobilenetv2-frozen figure
 * on the H200); each line then says how many GPUs' worth of steps the stage feeds.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    threads: { type: 'string', default: '2' },
    images: { type: 'string', default: '512' },
    backend: { type: 'string', default: 'webgpu' },
    'gpu-img-per-s': { type: 'string' },
  },
});
const threads = Number(values.threads);
const images = Number(values.images);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads must be a positive integer, got ${values.threads}`);
if (!Number.isInteger(images) || images < 64) throw new Error(`--images must be an integer >= 64, got ${values.images}`);
// sharp decodes on libuv's pool, sized once at its first use (after the imports below, which
// start no work): one libuv thread per pool thread.
process.env.UV_THREADPOOL_SIZE = String(threads);

const sharp = (await import('sharp')).default;
const { DecodePool } = await import('../src/data/pool.ts');
const { resolveNormalisation } = await import('../src/data/pipeline-config.ts');
const { Rng } = await import('../src/data/rng.ts');
const { warpOnDevice } = await import('../src/data/gpu-augment.ts');
const { initBackend } = await import('../src/model/backend.ts');
type PipelineConfig = import('../src/data/pipeline-config.ts').PipelineConfig;
type DeviceSample = import('../src/data/gpu-augment.ts').DeviceSample;

const BATCH = 32;
const SIZE = 224;
const FILES = 256;
const pipeline: PipelineConfig = {
  geometry: { width: SIZE, height: SIZE, resize: 'cover', fill: 'reflect', fillValue: 0, interpolation: 'bilinear' },
  channels: 3,
  augment: { rotation: 20, widthShift: 0.1, heightShift: 0.1, shear: 0, zoom: [0.9, 1.1], horizontalFlip: true, verticalFlip: false, brightness: [0.8, 1.2], channelShift: 0 },
  normalisation: resolveNormalisation('mobilenet', 3),
  maxInputPixels: 1e8,
  maxFileBytes: 1e8,
};

interface Line {
  stage: string;
  threads?: number;
  backend?: string;
  batch: number;
  img_per_s: number;
  cpu_ms_per_img?: number;
  gpus_fed?: number;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'drover-gpu-feed-'));
try {
  const files = await makeImages(dir, FILES);
  const batches = images / BATCH;
  const tasks = (b: number) => {
    const samples = Array.from({ length: BATCH }, (_, i) => ({ path: files[(b * BATCH + i) % files.length]! }));
    return { samples, seeds: samples.map((_, i) => b * BATCH + i + 1), pipeline };
  };

  // The CPU path: decode + warp + normalise on the pool.
  const pool = new DecodePool({ threads });
  const cpuPath = await timed(async () => {
    await inFlight(batches, threads + 1, (b) => pool.run(tasks(b)));
  });
  await pool.close();
  report({ stage: 'pool decode+augment (CPU path)', threads, batch: BATCH, img_per_s: rate(cpuPath.seconds), cpu_ms_per_img: (1000 * cpuPath.cpuSeconds) / images });

  // The GPU path's CPU part: decode only, through the pool's decode-only tasks (what
  // `drover train` runs with data.augmentOn device: same queue, backpressure and deadline).
  const decoder = new DecodePool({ threads });
  let lastDecoded: DeviceSample[] = [];
  const decodeOnly = await timed(async () => {
    await inFlight(batches, threads + 1, async (b) => {
      const result = await decoder.runForDevice(tasks(b));
      lastDecoded = result.samples.filter((s): s is DeviceSample => s !== null);
    });
  });
  await decoder.close();
  report({ stage: 'pool decode only (GPU path, CPU part)', threads, batch: BATCH, img_per_s: rate(decodeOnly.seconds), cpu_ms_per_img: (1000 * decodeOnly.cpuSeconds) / images });

  // The GPU path's device part on this machine's backend.
  const info = await initBackend(values.backend as 'webgpu' | 'wasm' | 'cpu', undefined, { allowSoftware: true });
  const config = { width: SIZE, height: SIZE, channels: 3 as const, fill: pipeline.geometry.fill, fillValue: 0, interpolation: pipeline.geometry.interpolation, normalisation: pipeline.normalisation };
  const step = (keep: boolean): tf.Scalar | undefined => tf.tidy(() => {
    const out = warpOnDevice(lastDecoded, config);
    return keep ? (tf.mean(out) as tf.Scalar) : undefined;
  });
  await step(true)!.data();
  const deviceSteps = Math.max(2, Math.min(batches, 8));
  const device = await timed(async () => {
    let last: tf.Scalar | undefined;
    for (let i = 0; i < deviceSteps; i++) last = step(i === deviceSteps - 1);
    await last!.data();
    last!.dispose();
  });
  report({ stage: 'device augment (GPU path, device part)', backend: info.description, batch: lastDecoded.length, img_per_s: Math.round((10 * deviceSteps * lastDecoded.length) / device.seconds) / 10 });
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function rate(seconds: number): number {
  return Math.round((10 * images) / seconds) / 10;
}

function report(line: Line): void {
  const gpu = Number(values['gpu-img-per-s']);
  if (values['gpu-img-per-s'] !== undefined && gpu > 0) line.gpus_fed = Math.round((100 * line.img_per_s) / gpu) / 100;
  if (line.cpu_ms_per_img !== undefined) line.cpu_ms_per_img = Math.round(100 * line.cpu_ms_per_img) / 100;
  if (values.json) {
    console.log(JSON.stringify(line));
    return;
  }
  const where = line.threads !== undefined ? `${line.threads} thread${line.threads > 1 ? 's' : ''}` : line.backend;
  const cpu = line.cpu_ms_per_img !== undefined ? `  ${line.cpu_ms_per_img} CPU ms/img` : '';
  const fed = line.gpus_fed !== undefined ? `  = ${line.gpus_fed}x the GPU's step rate` : '';
  console.log(`${line.stage.padEnd(42)} ${String(where).padEnd(40)} ${String(line.img_per_s).padStart(9)} img/s${cpu}${fed}`);
}

/** Runs `count` jobs with at most `depth` at once. */
async function inFlight(count: number, depth: number, job: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: depth }, async () => {
    while (next < count) await job(next++);
  }));
}

/** Wall and CPU seconds of `fn` (CPU: this process, its threads included). */
async function timed(fn: () => Promise<void>): Promise<{ seconds: number; cpuSeconds: number }> {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  await fn();
  const cpu = process.cpuUsage(cpu0);
  return { seconds: (performance.now() - start) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** Photo-like 256 px JPEGs: smooth random colour fields plus grain, quality 90. */
async function makeImages(target: string, count: number): Promise<string[]> {
  const rng = new Rng(12345);
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const small = Buffer.alloc(16 * 16 * 3);
    for (let j = 0; j < small.length; j++) small[j] = rng.int(256);
    const big = await sharp(small, { raw: { width: 16, height: 16, channels: 3 } }).resize(256, 256, { kernel: 'cubic' }).raw().toBuffer();
    for (let j = 0; j < big.length; j++) big[j] = Math.max(0, Math.min(255, big[j]! + rng.int(31) - 15));
    const file = path.join(target, `${String(i).padStart(4, '0')}.jpg`);
    await sharp(big, { raw: { width: 256, height: 256, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
    paths.push(file);
  }
  return paths;
}
