/**
 * Training throughput of the reference job (fmnist-cnn, Adam 1e-3, batch 64) on a backend,
 * side by side with the same model in PyTorch when Debian's python3-torch is installed.
 *
 *   npm run bench:train -- [--backend wasm] [--steps 100] [--batch 64] [--profile] [--json] [--skip-torch]
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendChoice } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { PRESETS } from '../src/model/presets.ts';
import { Trainer } from '../src/train/trainer.ts';
import { optimizerSpecSchema } from '../src/train/optimizers.ts';
import { FASHION_MNIST_DIR, openIdxDataset } from '../src/data/idx.ts';
import type { Batch } from '../src/data/types.ts';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    steps: { type: 'string', default: '100' },
    batch: { type: 'string', default: '64' },
    profile: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'skip-torch': { type: 'boolean', default: false },
  },
});
const steps = Number(args.steps);
const batchSize = Number(args.batch);

interface Row {
  system: string;
  img_per_s: number;
  ms_per_step: number;
}
const rows: Row[] = [];

const backend = await initBackend(args.backend as BackendChoice);
const shape = [28, 28, 1] as [number, number, number];
const batches: Batch[] = [];
if (existsSync(FASHION_MNIST_DIR)) {
  const ds = await openIdxDataset({ dir: FASHION_MNIST_DIR });
  for (let b = 0; b < 8; b++) batches.push(await ds.train.loadBatch(Array.from({ length: batchSize }, (_, i) => b * batchSize + i)));
} else {
  for (let b = 0; b < 8; b++) {
    batches.push({ x: Float32Array.from({ length: batchSize * 784 }, Math.random), y: Int32Array.from({ length: batchSize }, (_, i) => i % 10), n: batchSize, shape });
  }
}
const model = buildScratchModel({ layers: PRESETS['fmnist-cnn'].layers, inputShape: shape, classes: 10 });
const trainer = new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 1e-3 }) });
for (let i = 0; i < 5; i++) await trainer.trainStep(batches[i % batches.length]!, 1e-3);
const start = performance.now();
for (let i = 0; i < steps; i++) await trainer.trainStep(batches[i % batches.length]!, 1e-3);
const seconds = (performance.now() - start) / 1000;
rows.push({ system: `drover ${backend.description}`, img_per_s: (steps * batchSize) / seconds, ms_per_step: (1000 * seconds) / steps });

if (args.profile) {
  const profile = await tf.profile(async () => {
    await trainer.trainStep(batches[0]!, 1e-3);
  });
  const byKernel = new Map<string, number>();
  for (const k of profile.kernels) byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + (typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0));
  const top = [...byKernel.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  console.log(`per-kernel time of one step (${backend.description}):`);
  for (const [name, ms] of top) console.log(`  ${name.padEnd(32)} ${ms.toFixed(2).padStart(8)} ms`);
}

const python = '/usr/bin/python3';
if (!args['skip-torch'] && existsSync(python)) {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'torch_reference.py');
  for (const threads of [1, 2]) {
    try {
      const out = execFileSync(python, [script, String(steps), String(threads), String(batchSize)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      rows.push(JSON.parse(out.trim().split('\n').pop()!) as Row);
    } catch (err) {
      console.error(`PyTorch anchor skipped: ${(err as Error).message.split('\n')[0]} (apt-get install python3-torch)`);
      break;
    }
  }
}

if (args.json) {
  for (const row of rows) console.log(JSON.stringify({ system: row.system, img_per_s: Math.round(row.img_per_s * 10) / 10 }));
} else {
  console.log(`reference job training step, batch ${batchSize}, ${steps} steps`);
  for (const row of rows) console.log(`  ${row.system.padEnd(40)} ${row.img_per_s.toFixed(0).padStart(6)} img/s  ${row.ms_per_step.toFixed(1).padStart(7)} ms/step`);
}
