/**
 * What synchronous data parallelism over this machine's cores can reach at best, whatever the
 * exchange costs: the reference CNN's training step (batch 64, one compute thread each) in
 * worker threads that never exchange a byte, three ways, side by side:
 *   one:      one thread alone;
 *   free:     N threads, each stepping at its own pace (what N independent jobs get);
 *   lockstep: N threads that meet at a barrier before every step, as synchronous SGD must.
 * lockstep / one is the ceiling of `drover train --workers N` (which adds the gradient exchange
 * and the update); free / lockstep is what waiting for the slowest replica each step costs.
 *
 *   node --import tsx bench/replica-ceiling.ts [--threads 2] [--steps 300] [--rounds 3] [--json]
 */
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

interface ThreadData {
  steps: number;
  rank: number;
  replicas: number;
  barrier: SharedArrayBuffer;
  lockstep: boolean;
}

if (isMainThread) {
  const { values: args } = parseArgs({
    options: {
      threads: { type: 'string', default: '2' },
      steps: { type: 'string', default: '300' },
      rounds: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
    },
  });
  const replicas = Number(args.threads);
  const steps = Number(args.steps);
  const self = import.meta.url;
  const tsx = import.meta.resolve('tsx/esm/api');
  /** img/s of all threads together. */
  const run = async (count: number, lockstep: boolean): Promise<number> => {
    const { StepBarrier } = await import('../src/launch/replica-threads/step-barrier.ts');
    const barrier = StepBarrier.allocate(count).buffer;
    const entry = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(self)}); })`;
    const threads = Array.from({ length: count }, (_, rank) => new Worker(entry, { eval: true, workerData: { steps, rank, replicas: count, barrier, lockstep } satisfies ThreadData }));
    const rates = await Promise.all(threads.map((w) => new Promise<number>((resolve, reject) => { w.once('message', resolve); w.once('error', reject); })));
    await Promise.all(threads.map((w) => w.terminate()));
    return rates.reduce((a, b) => a + b, 0);
  };
  const setups = [['one', 1, false], ['free', replicas, false], ['lockstep', replicas, true]] as const;
  const results = new Map<string, number[]>(setups.map(([name]) => [name, []]));
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const [name, count, lockstep] of setups) results.get(name)!.push(await run(count, lockstep));
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1]!;
  const one = median(results.get('one')!);
  for (const [name, count] of setups) {
    const rate = median(results.get(name)!);
    const rounds = results.get(name)!.map(Math.round);
    if (args.json) console.log(JSON.stringify({ setup: name, threads: count, img_per_s: rate, vs_one: rate / one, rounds }));
    else console.log(`${name.padEnd(9)} ${String(count).padStart(2)} thread(s) ${rate.toFixed(0).padStart(6)} img/s  ${(rate / one).toFixed(2)}x one   rounds ${rounds.join(' ')}`);
  }
} else {
  const data = workerData as ThreadData;
  const { initBackend } = await import('../src/model/backend.ts');
  const { buildScratchModel } = await import('../src/model/build.ts');
  const { PRESETS } = await import('../src/model/presets.ts');
  const { Trainer } = await import('../src/train/trainer.ts');
  const { optimizerSpecSchema } = await import('../src/train/optimizers.ts');
  const { StepBarrier } = await import('../src/launch/replica-threads/step-barrier.ts');
  await initBackend('wasm', undefined, { threads: 1 });
  const batchSize = 64;
  const batch = { x: Float32Array.from({ length: batchSize * 784 }, Math.random), y: Int32Array.from({ length: batchSize }, (_, i) => i % 10), n: batchSize, shape: [28, 28, 1] as [number, number, number] };
  const model = buildScratchModel({ layers: PRESETS['fmnist-cnn'].layers, inputShape: [28, 28, 1], classes: 10, seed: 1 + data.rank });
  const trainer = new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: 1e-3 }), dropoutSeed: 7 + data.rank });
  const barrier = new StepBarrier(data.barrier, data.replicas);
  for (let i = 0; i < 10; i++) await trainer.trainStep(batch, 1e-3);
  const started = performance.now();
  for (let i = 0; i < data.steps; i++) {
    if (data.lockstep) barrier.arrive(data.rank);
    await trainer.trainStep(batch, 1e-3);
  }
  parentPort!.postMessage((data.steps * batchSize) / ((performance.now() - started) / 1000));
}
