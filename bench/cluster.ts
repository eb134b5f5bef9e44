/**
 * Distributed training figures.
 *
 *   npm run bench:cluster -- [--mode real|simulated|netns|accuracy|all] [--steps 60] [--warmup 10] [--rounds 3]
 *        [--workers 1,2] [--sim-workers 2,4,8,16] [--sim-params 0.2,3.5,25] [--compute-ms 100]
 *        [--net-workers 1,2,4,8] [--rates 1000,10000] [--epochs 3] [--skip-single] [--split] [--wire fp32,bf16]
 *        [--reduction star,peer] [--engines threads,processes] [--accuracy-workers 2] [--per-worker-batch 64]
 *        [--scale-lr true|linear|sqrt|false] [--json]
 *
 * real:      img/s of the reference job (fmnist-cnn, Adam 1e-3, Fashion-MNIST, one compute thread
 *            per replica): `single` is `drover train` (batch 64) in one process; `workers-N` is
 *            `drover train --workers N --per-worker-batch 64` (global batch 64 x N): N replica
 *            threads in this process averaging gradients in shared memory; `workers-N-processes`
 *            (and `-processes-peer`, per --reduction) the same with `--processes`: a coordinator and
 *            N worker processes over gRPC, gradients combined at the coordinator (star) or among
 *            the workers (peer). --engines threads,processes picks which. With --split also
 *            `workers-N-split...`, N workers sharing a fixed global batch of 64. Each line has its
 *            img/s over single's (`vs_single`: issue #13 asks >= 1.7 for workers-2 on 2 cores) and
 *            the mean step split into data wait / compute / transfer / reduce from the step events.
 *            On a machine other work loads, `chrt -f 10 npm run bench:cluster ...` (root) keeps the
 *            load from taking the cores mid-run (every setup alike).
 * simulated: workers that compute nothing (they wait --compute-ms and return zero gradients of
 *            the right shapes), so a step's time beyond the wait is drover's own overhead:
 *            weights out, gradients in, checks, averaging, optimizer, snapshot. Measured for
 *            2..16 workers on loopback and dense models of ~0.2 M, 3.5 M and 25 M parameters,
 *            once per --reduction (star: through the coordinator; peer: among the workers).
 *
 * netns:     the simulated workers again, but the coordinator and each worker run in their own
 *            Linux network namespace behind a rate-limited link (bench/netns.ts; root only), so
 *            bytes move at --rates Mbit/s as between machines. Weak scaling: each worker gets 64
 *            samples a step (global batch 64 x workers). Each setup runs once per --reduction:
 *            the star (gradients to the coordinator, weights back) and the peer reduction (the
 *            simulated workers reduce-scatter and all-gather their zero gradients among
 *            themselves over the real Peer service). Per setup: step time, scaling efficiency
 *            against one worker of the same reduction (step time of 1 over step time of N), and
 *            the bytes through the busiest process per step over the model's bytes (from the
 *            links' counters).
 *
 * accuracy:  the reference job on all of Fashion-MNIST for --epochs, in one process and with
 *            --accuracy-workers (2) local workers: test accuracy of both (not part of `all`: it
 *            takes minutes). The workers run once per --wire (cluster.wire, default fp32) and,
 *            when --reduction is given, once per reduction (else the star only); with fp32 and
 *            bf16 a last line gives bf16's accuracy minus fp32's in points (issue #13: within
 *            0.5). --per-worker-batch N gives the workers cluster.batch.perWorker N (global batch
 *            N x workers, the rate scaled by --scale-lr, default the optimizer's rule) instead of
 *            sharing the fixed batch of 64 (issue #13: >= 90 % with 4 workers and 64 each).
 *
 * --json: one JSON line per setup as it finishes, with at least `setup` and `img_per_s`; the
 * simulated and netns lines add `workers`, `params`, `reduction`, `step_ms`, `efficiency` and
 * `busiest_bytes_per_model`: per step, over the model's bytes, the bytes of the busiest
 * direction (in or out) of the busiest process, the figure a full-duplex link limits: about
 * `workers` at the coordinator for the star (N gradients in, N weight copies out), 2(N-1)/N at
 * each worker for the peer reduction. From /proc/<pid>/io on loopback, from the link counters in
 * namespaces; netns lines add `busiest_in_out_bytes_per_model` (in + out of the busiest process).
 *
 * Both also add `busiest_cpu_ms_per_step`: the CPU time (user + sys, from /proc/<pid>/stat) per
 * step of the busiest process (the coordinator, which in simulated mode is this process, or a
 * worker), over the same steps as the bytes.
 *
 * All processes run on this machine: with fewer cores than processes they compete for CPU,
 * which the step times include (they are an upper bound of the overhead on dedicated nodes).
 * `busiest_cpu_ms_per_step` is what a step would cost where every process has its own cores: CPU
 * time does not grow while a process waits for a core, so on such a machine a step cannot take
 * less than it (plus the network's time), whatever the step time measured here.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { NamespaceNetwork } from './netns.ts';
import { runWithLocalWorkers } from '../src/launch/local-workers.ts';
import { threadReplicas } from '../src/launch/replica-threads/index.ts';
import { runJob } from '../src/job/run-job.ts';
import { parseJob, type JobInput } from '../src/job/job-file.ts';
import { runCoordinator } from '../src/coordinator/run-coordinator.ts';
import { FASHION_MNIST_DIR, InMemorySplit } from '../src/data/idx.ts';
import type { Dataset } from '../src/data/types.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel, countParams } from '../src/model/build.ts';
import type { LayerSpecInput } from '../src/model/layer-spec.ts';

const { values: args, tokens } = parseArgs({
  tokens: true,
  options: {
    mode: { type: 'string', default: 'all' },
    steps: { type: 'string', default: '60' },
    rounds: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '10' },
    workers: { type: 'string', default: '1,2' },
    'sim-workers': { type: 'string', default: '2,4,8,16' },
    'sim-params': { type: 'string', default: '0.2,3.5,25' },
    'sim-steps': { type: 'string', default: '8' },
    'compute-ms': { type: 'string', default: '100' },
    'net-workers': { type: 'string', default: '1,2,4,8' },
    rates: { type: 'string', default: '1000,10000' },
    epochs: { type: 'string', default: '3' },
    'skip-single': { type: 'boolean', default: false },
    split: { type: 'boolean', default: false },
    wire: { type: 'string', default: 'fp32' },
    reduction: { type: 'string', default: 'star,peer' },
    engines: { type: 'string', default: 'threads,processes' },
    'accuracy-workers': { type: 'string', default: '2' },
    'per-worker-batch': { type: 'string' },
    'scale-lr': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const steps = Number(args.steps);
const warmup = Number(args.warmup);
const BATCH = 64;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface StepLine {
  step: number;
  n: number;
  dataWaitMs: number;
  computeMs: number;
  transferMs: number;
  reduceMs: number;
  stepMs: number;
  at: number;
}

/** Collects the coordinator's step events (with the time each arrived). */
class StepSink extends Writable {
  readonly steps: StepLine[] = [];
  /** Called after each step event with the number seen so far. */
  onStep: ((count: number) => void) | undefined;
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    for (const line of String(chunk).split('\n')) {
      if (!line.includes('"event":"step"')) continue;
      const e = JSON.parse(line) as StepLine;
      this.steps.push({ ...e, at: performance.now() });
      this.onStep?.(this.steps.length);
    }
    done();
  }
}

interface Split {
  imgPerSec: number;
  stepMs: number;
  dataWaitMs: number;
  computeMs: number;
  transferMs: number;
  reduceMs: number;
}

/** Means over the steps after the warm-up; img/s over their wall time. */
function summarise(lines: StepLine[], skip: number): Split {
  const kept = lines.slice(skip);
  const mean = (pick: (l: StepLine) => number): number => kept.reduce((s, l) => s + pick(l), 0) / kept.length;
  const images = kept.slice(1).reduce((s, l) => s + l.n, 0);
  const seconds = (kept.at(-1)!.at - kept[0]!.at) / 1000;
  return { imgPerSec: images / seconds, stepMs: mean((l) => l.stepMs), dataWaitMs: mean((l) => l.dataWaitMs), computeMs: mean((l) => l.computeMs), transferMs: mean((l) => l.transferMs), reduceMs: mean((l) => l.reduceMs) };
}

const fmt = (x: number, digits = 1): string => x.toFixed(digits);

/**
 * A setup of the real mode: `drover train` in this process (workers 0), or a coordinator here with
 * local worker processes, each adding --per-worker samples to a step (or, `split`, today's fixed
 * global batch of 64 cut among them). One compute thread per process, the reference job.
 */
interface RealSetup {
  setup: string;
  workers: number;
  split: boolean;
  /** Where the workers run: replica threads of this process (`--workers N`), or worker processes (`--workers N --processes`). */
  engine: 'threads' | 'processes';
  /** How worker processes combine gradients (cluster.reduction): at the coordinator, or among themselves. */
  reduction: 'star' | 'peer';
}

async function realRun({ workers, split, engine, reduction }: RealSetup): Promise<Split> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-bench-'));
  const sink = new StepSink();
  const perStep = split || workers === 0 ? BATCH : BATCH * workers;
  const job = parseJob({
    name: 'bench-cluster',
    seed: 1,
    backend: 'wasm',
    threads: 1,
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: perStep * (steps + warmup), validationSize: 0, limitTest: 64 },
    model: { preset: 'fmnist-cnn' },
    train: { epochs: 1, batchSize: BATCH, logEvery: 1, optimizer: { name: 'adam', learningRate: 1e-3 } },
    ...(workers === 0 ? {} : { cluster: { ...(engine === 'processes' ? { reduction } : {}), ...(split ? {} : { batch: { perWorker: BATCH } }) } }),
    output: { dir },
  });
  try {
    const log = pino({ level: 'info' }, sink);
    if (workers === 0) await runJob(job, { log });
    else if (engine === 'threads') await runJob(job, { log, engines: threadReplicas(workers) });
    else await runWithLocalWorkers({ job, workers, log });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return summarise(sink.steps, warmup);
}

/**
 * Medians over rounds that interleave the setups, so a burst of load on a shared machine hits all
 * of them alike. `single` and `workers-2` (per-worker batch 64) give issue #13's ratio in one run.
 */
async function realMode(): Promise<Record<string, unknown>[]> {
  const backend = await initBackend('wasm', undefined, { threads: 1 });
  const rounds = Number(args.rounds);
  const setups: RealSetup[] = [{ setup: 'single', workers: 0, split: false, engine: 'threads', reduction: 'star' }];
  const engines = args.engines!.split(',') as RealSetup['engine'][];
  for (const workers of args.workers!.split(',').map(Number)) {
    const variants: { suffix: string; engine: RealSetup['engine']; reduction: RealSetup['reduction'] }[] = [];
    if (engines.includes('threads')) variants.push({ suffix: '', engine: 'threads', reduction: 'star' });
    if (engines.includes('processes')) {
      for (const reduction of args.reduction!.split(',') as RealSetup['reduction'][]) variants.push({ suffix: `-processes${reduction === 'star' ? '' : `-${reduction}`}`, engine: 'processes', reduction });
    }
    for (const { suffix, engine, reduction } of variants) {
      setups.push({ setup: `workers-${workers}${suffix}`, workers, split: false, engine, reduction });
      if (args.split && workers > 1) setups.push({ setup: `workers-${workers}-split${suffix}`, workers, split: true, engine, reduction });
    }
  }
  const runs = new Map<RealSetup, Split[]>(setups.map((s) => [s, []]));
  for (let round = 0; round < rounds; round++) {
    for (const setup of setups) runs.get(setup)!.push(await realRun(setup));
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const rows = setups.map((setup) => {
    const splits = runs.get(setup)!;
    const pick = (key: keyof Split): number => median(splits.map((s) => s[key]));
    return {
      ...setup,
      imgPerSec: pick('imgPerSec'),
      stepMs: pick('stepMs'),
      dataWaitMs: pick('dataWaitMs'),
      computeMs: pick('computeMs'),
      transferMs: pick('transferMs'),
      reduceMs: pick('reduceMs'),
      rounds: splits.map((s) => Math.round(s.imgPerSec)),
    };
  });
  const single = rows.find((r) => r.setup === 'single')!.imgPerSec;
  if (args.json) {
    for (const r of rows) {
      console.log(JSON.stringify({
        setup: r.setup,
        mode: 'real',
        workers: r.workers,
        batch: r.workers === 0 ? 'global' : r.split ? 'split' : 'per-worker',
        engine: r.workers === 0 ? null : r.engine,
        reduction: r.workers === 0 || r.engine === 'threads' ? null : r.reduction,
        global_batch: r.split || r.workers === 0 ? BATCH : BATCH * r.workers,
        img_per_s: r.imgPerSec,
        vs_single: r.imgPerSec / single,
        step_ms: r.stepMs,
        data_wait_ms: r.dataWaitMs,
        compute_ms: r.computeMs,
        transfer_ms: r.transferMs,
        reduce_ms: r.reduceMs,
        rounds: r.rounds,
      }));
    }
  } else {
    console.log(`\nreference job: fmnist-cnn, Adam 1e-3, one thread per process, batch ${BATCH} (per worker unless -split: ${BATCH} split), ${steps} steps after ${warmup} warm-up, median of ${rounds} interleaved rounds; ${backend.description}; ${os.availableParallelism()} cores`);
    console.log('setup               img/s  x single  step ms  data wait  compute  transfer  reduce   img/s per round');
    const cell = (x: number, width: number): string => (Number.isNaN(x) ? '-' : fmt(x)).padStart(width);
    for (const r of rows) {
      console.log(`${r.setup.padEnd(18)} ${fmt(r.imgPerSec, 0).padStart(6)}  ${fmt(r.imgPerSec / single, 2).padStart(8)}  ${cell(r.stepMs, 7)}  ${cell(r.dataWaitMs, 9)}  ${cell(r.computeMs, 7)}  ${cell(r.transferMs, 8)}  ${cell(r.reduceMs, 6)}   ${r.rounds.join(' ')}`);
    }
  }
  return rows;
}

function denseLayers(millions: number): LayerSpecInput[] {
  const target = millions * 1e6;
  if (target < 1e6) {
    // flatten -> dense(h) -> classifier: 785h + 10(h + 1) parameters.
    return [{ type: 'flatten' }, { type: 'dense', units: Math.round((target - 10) / 795) }];
  }
  // flatten -> dense(h) -> dense(h) -> classifier: h^2 + 796h + 10(h+1) parameters.
  const h = Math.round((-806 + Math.sqrt(806 * 806 + 4 * (target - 10))) / 2);
  return [{ type: 'flatten' }, { type: 'dense', units: h }, { type: 'dense', units: h }];
}

/** Random 28x28 images, enough for the steps (simulated workers never look at them). */
function syntheticDataset(samples: number): Dataset {
  const images = new Uint8Array(samples * 784);
  for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
  const labels = Uint8Array.from({ length: samples }, (_, i) => i % 10);
  return { name: 'synthetic', classNames: Array.from({ length: 10 }, (_, i) => `c${i}`), inputShape: [28, 28, 1], train: new InMemorySplit(images, labels, [28, 28, 1]), close: async () => {} };
}

async function simulatedMode(): Promise<Record<string, unknown>[]> {
  await initBackend('wasm');
  const computeMs = Number(args['compute-ms']);
  const rows: Record<string, unknown>[] = [];
  for (const millions of args['sim-params']!.split(',').map(Number)) {
    const layers = denseLayers(millions);
    const probe = buildScratchModel({ layers, inputShape: [28, 28, 1], classes: 10 });
    const params = countParams(probe);
    probe.dispose();
    for (const workers of args['sim-workers']!.split(',').map(Number)) {
      for (const reduction of reductionsArg()) {
        const run = await simulatedRun(layers, workers, reduction);
        const { split } = run;
        const overheadMs = split.stepMs - computeMs;
        const row = {
          setup: `sim-${reduction}-${workers}w-${millions}m`,
          mode: 'simulated',
          reduction,
          workers,
          params,
          img_per_s: split.imgPerSec,
          step_ms: split.stepMs,
          // Fixed global batch: more workers share the same 64 samples, so the ideal step time stays that of one worker.
          efficiency: null,
          busiest_bytes_per_model: run.busiestBytes / (4 * params),
          busiest_cpu_ms_per_step: run.busiestCpuMs,
          simulated_compute_ms: computeMs,
          overhead_ms: overheadMs,
          overhead_share: overheadMs / split.stepMs,
          transfer_ms: split.transferMs,
          reduce_ms: split.reduceMs,
        };
        rows.push(row);
        if (args.json) console.log(JSON.stringify(row));
        else {
          console.log(`${(params / 1e6).toFixed(2).padStart(6)} M params, ${reduction}, ${String(workers).padStart(2)} workers: step ${fmt(split.stepMs).padStart(7)} ms = ${computeMs} ms compute + ${fmt(overheadMs).padStart(7)} ms overhead (${fmt(100 * overheadMs / split.stepMs, 0)} %: transfer ${fmt(split.transferMs)}, reduce ${fmt(split.reduceMs)}); busiest process moves ${fmt(row.busiest_bytes_per_model, 2)} x model bytes and uses ${fmt(run.busiestCpuMs)} ms CPU per step`);
        }
      }
    }
  }
  return rows;
}

/** One simulated job on loopback: the coordinator in this process, `workers` worker processes. */
async function simulatedRun(layers: LayerSpecInput[], workers: number, reduction: Reduction): Promise<{ split: Split; busiestBytes: number; busiestCpuMs: number }> {
  const computeMs = Number(args['compute-ms']);
  const simSteps = Number(args['sim-steps']);
  const simWarmup = 2;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-bench-'));
  const sink = new StepSink();
  const input: JobInput = {
    name: 'bench-overhead',
    backend: 'wasm',
    model: { layers },
    train: { epochs: 1, batchSize: BATCH, logEvery: 1, optimizer: { name: 'adam', learningRate: 1e-3 } },
    output: { dir },
    cluster: { host: '127.0.0.1', port: 0, minWorkers: workers, stepDeadlineMs: 600_000, balance: 'equal', reduction },
  };
  const children: ChildProcess[] = [];
  // Bytes each process passed through read()/write() (sockets, here) and its CPU time, after the warm-up.
  let before: { io: { in: number; out: number }; cpuMs: number }[] | undefined;
  let after: { io: { in: number; out: number }; cpuMs: number }[] | undefined;
  const sample = (): { io: { in: number; out: number }; cpuMs: number }[] => [process.pid, ...children.map((c) => c.pid!)].map((pid) => ({ io: processIoBytes(pid), cpuMs: processCpuMs(pid) }));
  sink.onStep = (count) => {
    if (count === simWarmup) before = sample();
    if (count === simWarmup + simSteps) after = sample();
  };
  const result = runCoordinator({
    job: parseJob(input),
    dataset: syntheticDataset(BATCH * (simSteps + simWarmup)),
    log: pino({ level: 'info' }, sink),
    onListening: ({ port }) => {
      for (let i = 0; i < workers; i++) {
        children.push(spawn(process.execPath, [...workerNodeArgs, 'bin/drover.js', 'worker', '--coordinator', `127.0.0.1:${port}`, '--name', `sim${i}`, '--simulate-compute-ms', String(computeMs)], { cwd: root, stdio: 'ignore' }));
      }
    },
  });
  try {
    await result;
  } finally {
    // SIGTERM first, so a worker run with a handler for it (a profiler's) can finish its files.
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.race([Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve(null) : c.once('exit', resolve))))), new Promise((resolve) => setTimeout(resolve, 3000))]);
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
  const busiestBytes = before && after ? Math.max(...after.flatMap((b, i) => [b.io.in - before![i]!.io.in, b.io.out - before![i]!.io.out])) / simSteps : NaN;
  const busiestCpuMs = before && after ? Math.max(...after.map((b, i) => b.cpuMs - before![i]!.cpuMs)) / simSteps : NaN;
  return { split: summarise(sink.steps, simWarmup), busiestBytes, busiestCpuMs };
}

/**
 * Node options for the simulated worker processes, from DROVER_BENCH_WORKER_NODE_ARGS (space
 * separated), e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them (NODE_OPTIONS refuses --cpu-prof).
 */
const workerNodeArgs = (process.env.DROVER_BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);

/** --reduction, checked. */
function reductionsArg(): Reduction[] {
  const reductions = args.reduction!.split(',').map((r) => r.trim());
  for (const r of reductions) if (r !== 'star' && r !== 'peer') throw new Error(`--reduction takes star and/or peer, got ${r}`);
  return reductions as Reduction[];
}

let clockTicks: number | undefined;

/**
 * CPU time (user + sys) a process used so far, in ms, from /proc/<pid>/stat (its threads
 * included: gRPC's, libuv's, the garbage collector's).
 */
function processCpuMs(pid: number): number {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return NaN;
  }
}

/** Bytes a process read() (in) and write() (out) so far (sockets included), from /proc. */
function processIoBytes(pid: number): { in: number; out: number } {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(io)?.[1] ?? NaN);
    return { in: field('rchar'), out: field('wchar') };
  } catch {
    return { in: NaN, out: NaN };
  }
}

/** Bytes in and out of each node's link, from the kernel's counters. */
function linkBytes(net: NamespaceNetwork): { in: number; out: number }[] {
  return net.nodes.map((node) => {
    const [link] = JSON.parse(execFileSync('ip', ['-n', node.ns, '-s', '-j', 'link', 'show', 'eth0'], { encoding: 'utf8' })) as { stats64: { rx: { bytes: number }; tx: { bytes: number } } }[];
    return { in: link!.stats64.rx.bytes, out: link!.stats64.tx.bytes };
  });
}

type Reduction = 'star' | 'peer';

/**
 * One job on a fresh namespace network: node 0 runs the coordinator, nodes 1..N one simulated
 * worker each. With the peer reduction the workers reach each other at their own addresses.
 */
async function netnsRun(layers: LayerSpecInput[], workers: number, rateMbit: number, reduction: Reduction): Promise<Split & { bytesPerStep: { in: number; out: number }[]; busiestCpuMs: number }> {
  const simSteps = Number(args['sim-steps']);
  const simWarmup = 2;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-bench-'));
  const net = NamespaceNetwork.create({ count: workers + 1, rateMbit });
  const coordinatorAddress = net.nodes[0]!.address;
  const logFile = path.join(dir, 'run.jsonl');
  const job: JobInput = {
    name: 'bench-netns',
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: BATCH * workers * (simSteps + simWarmup), validationSize: 0, limitTest: 64 },
    model: { layers },
    train: { epochs: 1, batchSize: BATCH * workers, logEvery: 1, optimizer: { name: 'adam', learningRate: 1e-3 } },
    output: { dir },
    cluster: { host: coordinatorAddress, port: 7070, minWorkers: workers, stepDeadlineMs: 600_000, balance: 'equal', reduction },
  };
  await writeFile(path.join(dir, 'job.json'), JSON.stringify(job));
  const children: ChildProcess[] = [];
  const exited = (child: ChildProcess): Promise<number | null> => new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  try {
    const coordinator = net.spawn(0, process.execPath, ['bin/drover.js', 'coordinator', '--config', path.join(dir, 'job.json'), '--log', logFile], { cwd: root, stdio: 'ignore' });
    children.push(coordinator);
    for (let i = 0; i < workers; i++) {
      children.push(net.spawn(i + 1, process.execPath, ['bin/drover.js', 'worker', '--coordinator', `${coordinatorAddress}:7070`, '--name', `sim${i}`, '--reconnect-ms', '30000', '--simulate-compute-ms', args['compute-ms']!], { cwd: root, stdio: 'ignore' }));
    }
    // The link counters are read when the warm-up's last step is logged and when the job ends.
    let before: { in: number; out: number }[] | undefined;
    let after: { in: number; out: number }[] | undefined;
    // CPU time of each process (coordinator first) at the same two moments.
    const cpu = (): number[] => children.map((c) => processCpuMs(c.pid!));
    let cpuBefore: number[] | undefined;
    let cpuAfter: number[] | undefined;
    let stepsAtAfter = 0;
    let stepsSeen = 0;
    let stepsAtBefore = 0;
    const done = exited(coordinator);
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const text = await readFile(logFile, 'utf8').catch(() => '');
      const seen = text.split('\n').filter((l) => l.includes('"event":"step"')).length;
      if (seen > stepsSeen) {
        stepsSeen = seen;
        if (!before && seen >= simWarmup) {
          before = linkBytes(net);
          cpuBefore = cpu();
          stepsAtBefore = seen;
        }
        if (seen >= simSteps + simWarmup && !after) {
          after = linkBytes(net);
          cpuAfter = cpu();
          stepsAtAfter = seen;
        }
      }
    }
    const code = await done;
    if (code !== 0) throw new Error(`coordinator exited with ${code} (log: ${logFile})`);
    const lines = (await readFile(logFile, 'utf8')).split('\n').filter((l) => l.includes('"event":"step"')).map((l) => {
      const e = JSON.parse(l) as StepLine & { time: string };
      return { ...e, at: Date.parse(e.time) };
    });
    const counted = stepsSeen - stepsAtBefore;
    const bytesPerStep = before && after && counted > 0 ? after.map((b, i) => ({ in: (b.in - before![i]!.in) / counted, out: (b.out - before![i]!.out) / counted })) : [];
    const cpuSteps = stepsAtAfter - stepsAtBefore;
    const busiestCpuMs = cpuBefore && cpuAfter && cpuSteps > 0 ? Math.max(...cpuAfter.map((c, i) => c - cpuBefore![i]!)) / cpuSteps : NaN;
    return { ...summarise(lines, simWarmup), bytesPerStep, busiestCpuMs };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await Promise.all(children.map(exited));
    net.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function netnsMode(): Promise<Record<string, unknown>[]> {
  await initBackend('wasm');
  const reductions = reductionsArg();
  const rows: Record<string, unknown>[] = [];
  for (const rateMbit of args.rates!.split(',').map(Number)) {
    for (const millions of args['sim-params']!.split(',').map(Number)) {
      const layers = denseLayers(millions);
      const probe = buildScratchModel({ layers, inputShape: [28, 28, 1], classes: 10 });
      const params = countParams(probe);
      probe.dispose();
      // Efficiency is against one worker of the same reduction.
      const oneWorkerStepMs = new Map<Reduction, number>();
      for (const workers of args['net-workers']!.split(',').map(Number)) {
        for (const reduction of reductions) {
          const run = await netnsRun(layers, workers, rateMbit, reduction);
          if (workers === 1) oneWorkerStepMs.set(reduction, run.stepMs);
          const one = oneWorkerStepMs.get(reduction);
          const modelBytes = 4 * params;
          const row = {
            setup: `netns-${rateMbit >= 1000 ? `${rateMbit / 1000}g` : `${rateMbit}m`}-${reduction}-${workers}w-${millions}m`,
            mode: 'netns',
            reduction,
            rate_mbit: rateMbit,
            workers,
            params,
            img_per_s: run.imgPerSec,
            step_ms: run.stepMs,
            efficiency: one === undefined ? null : one / run.stepMs,
            busiest_bytes_per_model: Math.max(...run.bytesPerStep.flatMap((b) => [b.in, b.out])) / modelBytes,
            busiest_in_out_bytes_per_model: Math.max(...run.bytesPerStep.map((b) => b.in + b.out)) / modelBytes,
            // Node 0 is the coordinator.
            busiest_cpu_ms_per_step: run.busiestCpuMs,
            coordinator_bytes_per_model: run.bytesPerStep[0] ? (run.bytesPerStep[0].in + run.bytesPerStep[0].out) / modelBytes : null,
            transfer_ms: run.transferMs,
            reduce_ms: run.reduceMs,
          };
          rows.push(row);
          if (args.json) console.log(JSON.stringify(row));
          else {
            console.log(`${String(rateMbit).padStart(6)} Mbit/s ${(params / 1e6).toFixed(2).padStart(6)} M params, ${reduction}, ${String(workers).padStart(2)} workers: step ${fmt(run.stepMs).padStart(8)} ms, ${fmt(run.imgPerSec, 0).padStart(6)} img/s, efficiency ${row.efficiency === null ? '-' : fmt(100 * row.efficiency, 0) + ' %'}, busiest process moves ${fmt(row.busiest_bytes_per_model, 2)} x model bytes per step each way (${fmt(row.busiest_in_out_bytes_per_model, 2)} in + out), busiest process uses ${fmt(run.busiestCpuMs)} ms CPU per step`);
          }
        }
      }
    }
  }
  return rows;
}

/** Whether an option was on the command line (not only its default). */
const given = (name: string): boolean => tokens.some((token) => token.kind === 'option' && token.name === name);

async function accuracyMode(): Promise<Record<string, unknown>[]> {
  const { runJob } = await import('../src/job/run-job.ts');
  const rows: Record<string, unknown>[] = [];
  const wires = args.wire!.split(',').map((w) => w.trim());
  for (const wire of wires) if (wire !== 'fp32' && wire !== 'bf16') throw new Error(`--wire takes fp32 and/or bf16, got ${wire}`);
  // The star alone unless --reduction says otherwise (its default of both is for the speed modes).
  const reductions = (given('reduction') ? args.reduction! : 'star').split(',').map((r) => r.trim());
  for (const r of reductions) if (r !== 'star' && r !== 'peer') throw new Error(`--reduction takes star and/or peer, got ${r}`);
  const workerCount = Number(args['accuracy-workers']);
  if (!Number.isInteger(workerCount) || workerCount < 1) throw new Error(`--accuracy-workers takes a whole number >= 1, got ${args['accuracy-workers']}`);
  const perWorker = args['per-worker-batch'] === undefined ? undefined : Number(args['per-worker-batch']);
  if (perWorker !== undefined && !(Number.isInteger(perWorker) && perWorker > 0)) throw new Error(`--per-worker-batch takes a whole number > 0, got ${args['per-worker-batch']}`);
  const scaleOptions: Record<string, boolean | 'linear' | 'sqrt'> = { true: true, false: false, linear: 'linear', sqrt: 'sqrt' };
  const scale = args['scale-lr'] === undefined ? undefined : scaleOptions[args['scale-lr']];
  if (args['scale-lr'] !== undefined && scale === undefined) throw new Error(`--scale-lr takes true, false, linear or sqrt, got ${args['scale-lr']}`);
  const reference = (dir: string, wire: string, reduction: string) =>
    parseJob({
      name: 'bench-accuracy',
      seed: 42,
      backend: 'wasm',
      data: { kind: 'idx', dir: FASHION_MNIST_DIR },
      model: { preset: 'fmnist-cnn' },
      // batchSize 64 is also the reference batch Adam's 1e-3 was tuned for when the batch is per worker.
      train: { epochs: Number(args.epochs), batchSize: BATCH, logEvery: 50, optimizer: { name: 'adam', learningRate: 1e-3 } },
      cluster: { wire, reduction, ...(perWorker ? { batch: { perWorker, ...(scale === undefined ? {} : { scaleLearningRate: scale }) } } : {}) },
      output: { dir },
    });
  const accuracyByWire = new Map<string, number>();
  const runs = [
    ...(args['skip-single'] ? [] : [{ workers: 0, wire: 'fp32', reduction: 'star' }]),
    ...wires.flatMap((wire) => reductions.map((reduction) => ({ workers: workerCount, wire, reduction }))),
  ];
  for (const { workers, wire, reduction } of runs) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-bench-'));
    const started = performance.now();
    const quiet = pino({ level: 'warn' });
    const job = reference(dir, wire, reduction);
    const test = workers === 0
      ? (await runJob({ ...job, cluster: undefined }, { log: quiet })).test
      : (await runWithLocalWorkers({ job, workers, log: quiet })).test;
    const minutes = (performance.now() - started) / 60_000;
    await rm(dir, { recursive: true, force: true });
    // The default setups (fp32, star, the shared batch) keep their names; others say what differs.
    const variant = [wire === 'fp32' ? '' : wire, reduction === 'star' ? '' : reduction, perWorker ? `${perWorker} per worker${scale === undefined ? '' : `, scale ${scale}`}` : ''].filter(Boolean);
    const suffix = variant.map((v) => `-${v.replaceAll(/[ ,]+/g, '-')}`).join('');
    if (workers > 0 && test && reduction === reductions[0]) accuracyByWire.set(wire, test.accuracy);
    const setup = workers === 0 ? 'single process' : `${workers} local workers${variant.map((v) => `, ${v}`).join('')}`;
    rows.push({ setup, epochs: Number(args.epochs), testAccuracy: test?.accuracy, minutes });
    if (args.json) console.log(JSON.stringify({ setup: workers === 0 ? 'accuracy-single' : `accuracy-workers-${workers}${suffix}`, mode: 'accuracy', workers, wire, reduction: workers === 0 ? null : reduction, per_worker_batch: workers === 0 ? null : (perWorker ?? null), epochs: Number(args.epochs), test_accuracy: test?.accuracy, minutes }));
    else console.log(`${setup.padEnd(22)} test accuracy ${((test?.accuracy ?? NaN) * 100).toFixed(2)} % after ${args.epochs} epochs (${minutes.toFixed(1)} min)`);
  }
  const [fp32, bf16] = [accuracyByWire.get('fp32'), accuracyByWire.get('bf16')];
  if (fp32 !== undefined && bf16 !== undefined) {
    // Issue #13: gradients as bf16 must keep the reference job within 0.5 points of fp32.
    const points = (bf16 - fp32) * 100;
    const within = Math.abs(points) <= 0.5;
    rows.push({ setup: 'bf16 vs fp32', points, within });
    if (args.json) console.log(JSON.stringify({ setup: 'accuracy-bf16-vs-fp32', mode: 'accuracy', workers: workerCount, epochs: Number(args.epochs), bf16_minus_fp32_points: points, within_half_point: within }));
    else console.log(`${'bf16 vs fp32'.padEnd(22)} ${points >= 0 ? '+' : ''}${points.toFixed(2)} points of test accuracy (${within ? 'within' : 'NOT within'} the 0.5 the issue allows)`);
  }
  return rows;
}

const out: Record<string, unknown> = {};
if (args.mode === 'accuracy') {
  if (!args.json) console.log(`\nreference job on Fashion-MNIST (55 000 training, 10 000 test images), ${args.epochs} epochs:`);
  out.accuracy = await accuracyMode();
}
if (args.mode === 'real' || args.mode === 'all') out.real = await realMode();
if (args.mode === 'simulated' || args.mode === 'all') {
  if (!args.json) console.log(`\ncoordinator overhead per step, simulated compute of ${args['compute-ms']} ms, global batch ${BATCH}, loopback, ${os.availableParallelism()} cores:`);
  out.simulated = await simulatedMode();
}
if (args.mode === 'netns' || args.mode === 'all') {
  if (process.getuid?.() !== 0) {
    if (args.mode === 'netns') throw new Error('--mode netns needs root (ip netns, tc)');
  } else {
    if (!args.json) console.log(`\nnamespace network (tc tbf per link), simulated compute of ${args['compute-ms']} ms, ${BATCH} samples per worker, ${os.availableParallelism()} cores:`);
    out.netns = await netnsMode();
  }
}
// With --json every setup was printed as one JSON line as it finished.
void out;
