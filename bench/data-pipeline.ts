/**
 * Data pipeline throughput: 256 px JPEGs -> random rotation +-20 deg, horizontal flip,
 * resize / centre crop 224 -> float32 [0, 1], in batches of 32, for drover (sharp + piscina)
 * at 1 and 2 threads and, where Debian's python3-torchvision is installed, torchvision + PIL
 * DataLoader at 1 and 2 workers. One line per system and setting: img/s and CPU ms per image
 * (all threads / processes of the run), so both speed and cost per image compare.
 *
 *   node --import tsx bench/data-pipeline.ts [--images 1024] [--files 512] [--interp bilinear,nearest] [--threads 1,2] [--rounds 1]
 *
 * With --rounds N the two systems alternate N times per setting (so a noisy neighbour hits
 * both alike) and each line shows the median, with the range in brackets.
 *
 * Each setting runs in its own process: UV_THREADPOOL_SIZE (sharp's threads) is read once at
 * start, and is set to the thread count so "1 thread" means one piscina thread plus one libuv
 * thread for sharp.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { openDataset } from '../src/data/open.ts';
import { prefetch } from '../src/data/prefetch.ts';
import { Sampler } from '../src/data/sampler.ts';
import { Rng } from '../src/data/rng.ts';

const SYSTEM_PYTHON = '/usr/bin/python3';
const here = path.dirname(fileURLToPath(import.meta.url));

interface Result {
  images: number;
  seconds: number;
  imgPerSec: number;
  cpuMsPerImg: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/** Photo-like 256 px JPEGs: smooth random colour fields plus grain, quality 90. */
async function makeImages(dir: string, count: number): Promise<void> {
  const rng = new Rng(12345);
  for (let i = 0; i < count; i++) {
    const small = Buffer.alloc(16 * 16 * 3);
    for (let j = 0; j < small.length; j++) small[j] = rng.int(256);
    const big = await sharp(small, { raw: { width: 16, height: 16, channels: 3 } }).resize(256, 256, { kernel: 'cubic' }).raw().toBuffer();
    for (let j = 0; j < big.length; j++) big[j] = Math.max(0, Math.min(255, big[j]! + rng.int(31) - 15));
    await sharp(big, { raw: { width: 256, height: 256, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(dir, `${String(i).padStart(4, '0')}.jpg`));
  }
}

/** Child: one drover setting, prints a Result as JSON. */
async function runDrover(root: string, threads: number, images: number, interpolation: 'bilinear' | 'nearest'): Promise<Result> {
  const dataset = await openDataset(
    {
      kind: 'folder',
      path: root,
      imageSize: [224, 224],
      resize: 'cover',
      augment: { rotationRange: 20, horizontalFlip: true, fillMode: 'constant', fillValue: 0, interpolation },
      preprocess: 'rescale',
    },
    { threads },
  );
  try {
    const batchSize = 32;
    const sampler = new Sampler({ length: dataset.train.length, batchSize, seed: 1, dropLast: true });
    const requests = function* () {
      for (;;) yield sampler.next();
    };
    let n = 0;
    let started = 0;
    let cpu0 = process.cpuUsage();
    let seconds = 0;
    let warm = false;
    for await (const batch of prefetch(requests(), (b) => dataset.train.loadBatch(b.indices, { augment: true, epoch: b.epoch }), { depth: 2 })) {
      if (batch.n !== batchSize || batch.x.length !== batchSize * 224 * 224 * 3) throw new Error(`bad batch: n=${batch.n}`);
      // as the trainer does once the batch is in a tensor
      batch.release?.();
      if (!warm) {
        // first batch: threads started and warmed; the clock starts now
        warm = true;
        started = performance.now();
        cpu0 = process.cpuUsage();
        continue;
      }
      n += batch.n;
      if (n >= images) {
        seconds = (performance.now() - started) / 1000;
        break;
      }
    }
    const cpu = process.cpuUsage(cpu0);
    return { images: n, seconds, imgPerSec: n / seconds, cpuMsPerImg: (cpu.user + cpu.system) / 1000 / n };
  } finally {
    await dataset.close();
  }
}

function hasTorchvision(): boolean {
  if (!existsSync(SYSTEM_PYTHON)) return false;
  return spawnSync(SYSTEM_PYTHON, ['-c', 'import torch, torchvision, PIL'], { stdio: 'ignore' }).status === 0;
}

function runChild(command: string, args: string[], env: NodeJS.ProcessEnv): Result {
  const out = execFileSync(command, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const line = out.trim().split('\n').pop()!;
  return JSON.parse(line) as Result;
}

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    const result = await runDrover(arg('root', ''), Number(arg('threads', '1')), Number(arg('images', '1024')), arg('interp', 'bilinear') as 'bilinear' | 'nearest');
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const images = Number(arg('images', '1024'));
  const files = Number(arg('files', '512'));
  const interps = arg('interp', 'bilinear,nearest').split(',');
  const threadCounts = arg('threads', '1,2').split(',').map(Number);
  const rounds = Math.max(1, Number(arg('rounds', '1')));
  const root = mkdtempSync(path.join(os.tmpdir(), 'drover-bench-'));
  const classDir = path.join(root, 'images');
  mkdirSync(classDir);
  try {
    await makeImages(classDir, files);
    const torch = hasTorchvision();
    console.log(`data pipeline: ${files} JPEGs 256x256 -> rotate +-20 deg, h-flip, resize/crop 224, float32; ${images} images per run after a warm-up batch, ${rounds} round(s); ${os.availableParallelism()} cores (${os.loadavg()[0]!.toFixed(2)} load)`);
    console.log(`${'system'.padEnd(34)}${'rotation'.padEnd(10)}${'threads'.padStart(8)}${'img/s'.padStart(9)}${'cpu ms/img'.padStart(12)}${rounds > 1 ? '  [img/s range]' : ''}`);
    const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const print = (system: string, interp: string, threads: number, results: Result[]): void => {
      const rates = results.map((r) => r.imgPerSec);
      const range = results.length > 1 ? ` [${Math.min(...rates).toFixed(0)}-${Math.max(...rates).toFixed(0)}]` : '';
      console.log(
        `${system.padEnd(34)}${interp.padEnd(10)}${String(threads).padStart(8)}${median(rates).toFixed(0).padStart(9)}` +
          `${median(results.map((r) => r.cpuMsPerImg)).toFixed(2).padStart(12)}${range}`,
      );
    };
    for (const interp of interps) {
      for (const threads of threadCounts) {
        const drover: Result[] = [];
        const tv: Result[] = [];
        for (let round = 0; round < rounds; round++) {
          drover.push(runChild(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', '--root', root, '--threads', String(threads), '--images', String(images), '--interp', interp], {
            ...process.env,
            UV_THREADPOOL_SIZE: String(threads),
          }));
          if (torch) {
            tv.push(runChild(SYSTEM_PYTHON, [path.join(here, 'torchvision_pipeline.py'), '--dir', classDir, '--workers', String(threads), '--images', String(images), '--interp', interp], {
              ...process.env,
              OMP_NUM_THREADS: '1',
            }));
          }
        }
        print('drover (sharp + piscina)', interp, threads, drover);
        if (torch) print('torchvision + PIL DataLoader', interp, threads, tv);
      }
    }
    if (!torch) console.log(`(torchvision side skipped: ${SYSTEM_PYTHON} cannot import torch, torchvision and PIL; apt install python3-torchvision)`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
