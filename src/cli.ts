import { once } from 'node:events';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DroverError } from './errors.ts';
import { loadJobFile, parseJob, type Job } from './job/job-file.ts';
import { BACKEND_CHOICES, type BackendChoice } from './model/backend.ts';
import type { Logger } from './telemetry/logger.ts';
import type { RunFolder } from './train/run-folder.ts';
import { DEFAULT_DASHBOARD_PORT, startDashboard, type Dashboard } from './telemetry/dashboard.ts';
import { startDashboardThread } from './telemetry/dashboard-thread.ts';
import { exitAfterWrites, writesInFlight } from './io/write-guard.ts';

// Command modules are imported when their command runs: a worker process need not load the
// dashboard, the plotting library or the trainer's data pipeline just to start.

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`expected a port number 0-65535, got "${value}"`);
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected an integer >= 0, got "${value}"`);
  return n;
}

/** Flags shared by the commands that run a job (train, coordinator). */
interface JobFlags {
  config?: string;
  name?: string;
  output?: string;
  data?: string;
  backend?: string;
  epochs?: number;
  batchSize?: number;
  threads?: number;
  log?: string;
  dashboard?: boolean | number;
}

interface TrainFlags extends JobFlags {
  workers?: number;
  gpus?: string;
  resume?: boolean;
}

interface CoordinatorFlags extends JobFlags {
  port?: number;
  host?: string;
  minWorkers?: number;
  token?: string;
  resume?: boolean | 'auto';
  metricsPort?: number;
  metricsHost?: string;
}

function resumeMode(value: string): 'auto' {
  if (value !== 'auto') throw new InvalidArgumentError(`expected nothing or "auto", got "${value}"`);
  return value;
}

interface WorkerFlags {
  coordinator?: string;
  token?: string;
  tlsCa?: string;
  tls?: boolean;
  backend?: BackendChoice;
  threads?: number;
  gpu?: number;
  name?: string;
  job?: string;
  reconnectMs?: number;
  waitForResume?: boolean;
  log?: string;
  simulateComputeMs?: number;
  simulateMsPerSample?: number;
}

/** Applies command-line overrides on top of the job file, then validates the result once. */
async function resolveJob(flags: JobFlags): Promise<Job> {
  const base = flags.config ? await loadJobFile(flags.config) : parseJob({});
  const { resolveDataArgument } = await import('./data/data-argument.ts');
  const merged = {
    ...base,
    name: flags.name ?? base.name,
    output: { ...base.output, dir: flags.output ?? base.output.dir },
    data: flags.data !== undefined ? await resolveDataArgument(flags.data) : base.data,
    backend: flags.backend ?? base.backend,
    threads: flags.threads ?? base.threads,
    train: { ...base.train, epochs: flags.epochs ?? base.train.epochs, batchSize: flags.batchSize ?? base.train.batchSize },
  };
  return parseJob(merged, flags.config ? `${flags.config} (with command-line overrides)` : 'command line');
}

/**
 * The job with output.dir set to this run's own folder (<job folder>/<run id>, `latest` moved
 * to it), or with --resume to the latest run's: a run never overwrites another's model.
 */
async function inRunFolder(job: Job, resume: boolean | 'auto' | undefined): Promise<{ job: Job; run: RunFolder }> {
  const { openRunFolder } = await import('./train/run-folder.ts');
  const run = await openRunFolder(job.output.dir ?? path.join('runs', job.name), { resume });
  return { job: { ...job, output: { ...job.output, dir: run.dir } }, run };
}

/**
 * The exit code of a command a signal stopped: 128 + the signal's number, as a shell reports an
 * unhandled one (130 for Ctrl-C, 143 for SIGTERM). A Kubernetes Job counts such a pod failed
 * and starts another, which resumes; 0 would end the Job as succeeded.
 */
function signalExitCode(name: 'SIGINT' | 'SIGTERM'): number {
  return 128 + osConstants.signals[name];
}

/**
 * Aborts on the first Ctrl-C or SIGTERM (finish the step, checkpoint, dismiss workers), exits
 * on the second: at once, or when the checkpoint or model being written is complete.
 */
function interruptSignal(log: Logger, onSignal?: (name: 'SIGINT' | 'SIGTERM') => void): AbortSignal {
  const controller = new AbortController();
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.on(name, () => {
      if (controller.signal.aborted) {
        if (writesInFlight()) log.warn({ signal: name }, 'finishing the checkpoint or model being written, then exiting');
        exitAfterWrites(signalExitCode(name));
        return;
      }
      onSignal?.(name);
      log.warn({ signal: name }, 'interrupted: stopping after the current step (Ctrl-C again to quit now)');
      controller.abort();
    });
  }
  return controller.signal;
}

/**
 * Runs a job with its feed: progress bar or JSON on stdout, the JSON log file (default:
 * <run folder>/run.jsonl; appended to only when the run folder was resumed, so a fresh run
 * never mixes into another's log) and the live dashboard on it. Everything started here is
 * closed however the job ends.
 */
async function withRunFeed(
  job: Job,
  flags: JobFlags,
  run: (log: Logger, signal: AbortSignal) => Promise<unknown>,
  extras: { tap?: Writable; keepDashboard?: boolean; run?: RunFolder } = {},
): Promise<void> {
  const { tap } = extras;
  const { createRunFeed } = await import('./telemetry/feed.ts');
  const logFile = flags.log ?? path.join(job.output.dir ?? path.join('runs', job.name), 'run.jsonl');
  const feed = await createRunFeed({ logFile, appendLog: extras.run?.resumed ?? false, ...(tap ? { tap } : {}) });
  let dashboard: Dashboard | undefined;
  try {
    if (flags.dashboard !== undefined && logFile) {
      // On its own thread: the training loop holds this one for a step at a time.
      dashboard = await startDashboardThread({ logPath: logFile, port: typeof flags.dashboard === 'number' ? flags.dashboard : DEFAULT_DASHBOARD_PORT });
      feed.logger.info({ url: dashboard.url }, `dashboard: ${dashboard.url}`);
    }
    feed.logger.info({ outputDir: job.output.dir }, `run folder: ${job.output.dir}`);
    for (const file of extras.run?.removedTemporaries ?? []) feed.logger.warn({ path: file }, `removed ${file}: a checkpoint half-written when an earlier run stopped`);
    let stoppedBy: 'SIGINT' | 'SIGTERM' | undefined;
    const signal = interruptSignal(feed.logger, (name) => {
      stoppedBy = name;
    });
    const result = (await run(feed.logger, signal)) as { status?: string; fit?: { status: string } } | undefined;
    // Stopped before the job was done (checkpointed): the signal's exit code. A signal that
    // came once the job had completed (during the export, say) changes nothing.
    if (stoppedBy && (result?.status ?? result?.fit?.status) === 'stopped') process.exitCode = signalExitCode(stoppedBy);
    else if (dashboard && extras.keepDashboard && !signal.aborted) {
      // The finished run's page stays up: the charts are what one came to see.
      feed.logger.info({ url: dashboard.url }, `the job has ended; the dashboard keeps serving ${dashboard.url} until Ctrl-C`);
      if (!signal.aborted) await once(signal, 'abort');
    }
  } finally {
    await dashboard?.close();
    await feed.close();
  }
}

export function buildProgram(): Command {
  const program = new Command('drover')
    .description('Train image classifiers with synchronous data-parallel SGD on Node.js')
    .showHelpAfterError();

  const backendOption = (): Option =>
    new Option('--backend <name>', 'compute backend (auto: tfjs-node-gpu on a CUDA GPU, else a hardware WebGPU adapter, else tfjs-node, else wasm with the oneDNN kernels where built; cpu: pure JS, ~1 img/s, checks only)')
      .choices(BACKEND_CHOICES as unknown as string[]);
  /** Options of the commands that run a job. */
  const jobOptions = (command: Command): Command =>
    command
      .option('-c, --config <file>', 'job file (YAML or JSON); default: the reference job')
      .option('--name <name>', 'job name (default: the job file\'s, else drover-job); runs go to <output>/<run id>/')
      .option('--output <dir>', 'folder of this job\'s runs (default: output.dir, else runs/<name>); each run gets <dir>/<run id>/, and <dir>/latest points at the newest')
      .option('--data <path>', 'training data: an image folder (one sub-folder per class), a .csv / .jsonl manifest, an IDX folder (MNIST, Fashion-MNIST), a CIFAR folder, or a dataset spec file')
      .addOption(backendOption())
      .option('--epochs <n>', 'number of epochs', positiveInt)
      .option('--batch-size <n>', 'global batch size', positiveInt)
      .option('--threads <n>', 'compute threads (1-8): oneDNN\'s when its kernels are on, else the wasm backend\'s', positiveInt)
      .option('--log <file>', 'write the JSON event log here instead of <run folder>/run.jsonl (appended to when the run resumes)')
      .option('--dashboard [port]', `serve the live dashboard (default port ${DEFAULT_DASHBOARD_PORT})`, port);

  jobOptions(
    program
      .command('train')
      .description('train a model (default: the reference CNN on Fashion-MNIST, or generated shapes) in this process, or with --workers N on a local cluster'),
  )
    .option('--workers <n>', 'start a coordinator and N worker processes on this machine', positiveInt)
    .option('--gpus <list>', 'start a coordinator and one webgpu worker per GPU: "all" (every hardware adapter) or indices of `drover gpus`, e.g. 0,2')
    .option('--resume', 'continue from the last checkpoint of the job (after Ctrl-C or a crash)')
    .action(async (flags: TrainFlags) => {
      const resolved = await resolveJob(flags);
      if (flags.gpus !== undefined && flags.workers !== undefined) throw new DroverError('--gpus starts one worker per GPU: leave out --workers');
      // Resolved before anything starts: no GPU is a clear error, not a cluster without workers.
      let gpus: import('./model/webgpu.ts').GpuAdapterEntry[] | undefined;
      if (flags.gpus !== undefined) {
        const { parseGpuSelection, resolveGpus } = await import('./launch/gpu-selection.ts');
        gpus = await resolveGpus(parseGpuSelection(flags.gpus));
      }
      const { job, run: runFolder } = await inRunFolder(resolved, flags.resume);
      await withRunFeed(job, flags, async (log, signal) => {
        if (flags.workers === undefined && gpus === undefined) {
          const { runJob } = await import('./job/run-job.ts');
          return runJob(job, { log, signal, resume: flags.resume });
        }
        const { runLocalCluster } = await import('./launch/local-workers.ts');
        return runLocalCluster({ job, workers: gpus?.length ?? flags.workers!, ...(gpus ? { gpus } : {}), log, signal, resume: flags.resume });
      }, { keepDashboard: true, run: runFolder });
    });

  program
    .command('gpus')
    .description('list the WebGPU adapters (Dawn) this machine offers, in the order --gpu and --gpus count')
    .option('--json', 'print JSON instead of text')
    .action(async (flags: { json?: boolean }) => {
      const { listGpuAdapters } = await import('./model/webgpu.ts');
      const adapters = await listGpuAdapters();
      if (flags.json) process.stdout.write(`${JSON.stringify(adapters)}\n`);
      else if (adapters.length === 0) process.stdout.write('no WebGPU adapter (no Vulkan driver sees a device; see README: GPU hosts)\n');
      else for (const a of adapters) process.stdout.write(`${a.index}: ${a.name} (${a.backend}${a.software ? ', software: not a GPU' : ''})\n`);
    });

  jobOptions(
    program
      .command('coordinator')
      .description('serve a job to workers (drover worker) and train it with them; the job file\'s cluster section sets the rest'),
  )
    .option('--port <n>', 'port to listen on (default: cluster.port, 7070; 0 = any free port)', port)
    .option('--host <address>', 'interface to listen on (default: cluster.host, 0.0.0.0)')
    .option('--min-workers <n>', 'workers to wait for before training (default: cluster.minWorkers, 1)', positiveInt)
    .addOption(new Option('--token <secret>', 'shared secret workers must present (default: DROVER_TOKEN, then cluster.token)').env('DROVER_TOKEN'))
    .option('--resume [auto]', 'continue from the last checkpoint of the job (after a crash or Ctrl-C); "auto": resume if a checkpoint exists, else start fresh (a restarted pod)', resumeMode)
    .option('--metrics-port <n>', 'serve Prometheus metrics on http://<metrics host>:<n>/metrics (default: off; 0 = any free port)', port)
    .option('--metrics-host <address>', 'interface of the metrics endpoint', '0.0.0.0')
    .action(async (flags: CoordinatorFlags) => {
      const { job, run: runFolder } = await inRunFolder(await resolveJob(flags), flags.resume);
      // Metrics read the run's own event feed (docs/events.md), on a port of their own.
      const metrics = flags.metricsPort === undefined
        ? undefined
        : await (await import('./telemetry/metrics.ts')).startMetricsServer({ port: flags.metricsPort, host: flags.metricsHost ?? '0.0.0.0' });
      try {
        await withRunFeed(job, flags, async (log, signal) => {
          if (metrics) log.info({ metricsUrl: metrics.url, metricsPort: metrics.port }, `metrics: ${metrics.url}`);
          const { runCoordinator } = await import('./coordinator/run-coordinator.ts');
          return runCoordinator({ job, port: flags.port, host: flags.host, minWorkers: flags.minWorkers, token: flags.token, resume: flags.resume, log, signal });
        }, { run: runFolder, ...(metrics ? { tap: metrics.stream } : {}) });
      } finally {
        await metrics?.close();
      }
    });

  program
    .command('worker')
    .description('join a coordinator and compute gradients on the shards it assigns, until the job ends')
    .option('--coordinator <host:port>', 'address of the coordinator (default: DROVER_COORDINATOR, then MASTER_ADDR:MASTER_PORT, then PET_MASTER_ADDR:PET_MASTER_PORT)')
    .addOption(new Option('--token <secret>', 'shared secret of the job').env('DROVER_TOKEN'))
    .option('--tls-ca <file>', 'connect with TLS, trusting this CA certificate (PEM)')
    .option('--tls', 'connect with TLS, trusting the system roots')
    .addOption(backendOption())
    .option('--threads <n>', 'compute threads (1-8): oneDNN\'s when its kernels are on, else the wasm backend\'s', positiveInt)
    .option('--gpu <n>', 'compute on this WebGPU adapter (index of `drover gpus`; implies --backend webgpu)', nonNegativeInt)
    .option('--name <name>', 'name shown in the coordinator\'s log (default: the id it assigns)')
    .option('--job <id>', 'join only this job id')
    .option('--reconnect-ms <ms>', 'keep trying to reach or rejoin the coordinator this long', nonNegativeInt)
    .option('--wait-for-resume', 'when the coordinator stops the job before it completed, keep rejoining (for --reconnect-ms) until a restarted coordinator resumes it (Kubernetes)')
    .option('--log <file>', 'also write the JSON log here')
    // Benchmarks and scheduling tests: no tfjs, a fixed wait per task and zero gradients.
    .addOption(new Option('--simulate-compute-ms <ms>').argParser(nonNegativeInt).hideHelp())
    .addOption(new Option('--simulate-ms-per-sample <ms>').argParser(Number).hideHelp())
    .action(async (flags: WorkerFlags) => {
      const [{ createRunFeed }, { runWorker }, { resolveCoordinatorAddress }] = await Promise.all([
        import('./telemetry/feed.ts'), import('./worker/run-worker.ts'), import('./worker/coordinator-address.ts'),
      ]);
      const coordinator = resolveCoordinatorAddress(flags.coordinator);
      let stoppedBy: 'SIGINT' | 'SIGTERM' | undefined;
      // A worker has no progress of its own to draw: JSON lines, always.
      const feed = await createRunFeed({ logFile: flags.log, progress: 'never' });
      try {
        feed.logger.info({ coordinator: coordinator.address, source: coordinator.source }, `coordinator ${coordinator.address} (from ${coordinator.source})`);
        const result = await runWorker({
          coordinator: coordinator.address,
          token: flags.token,
          tls: flags.tlsCa ? { ca: flags.tlsCa } : flags.tls ? {} : undefined,
          backend: flags.backend,
          threads: flags.threads,
          gpu: flags.gpu,
          name: flags.name,
          jobId: flags.job,
          reconnectMs: flags.reconnectMs,
          waitForResume: flags.waitForResume,
          simulateComputeMs: flags.simulateComputeMs,
          simulateMsPerSample: flags.simulateMsPerSample,
          log: feed.logger,
          signal: interruptSignal(feed.logger, (name) => {
            stoppedBy = name;
          }),
        });
        feed.logger.info({ status: result.status, sessions: result.sessions, tasks: result.tasks }, `worker finished: ${result.status}`);
        // Stopped by a signal, the job is not done: the pod is to run again.
        if (result.status === 'stopped' && stoppedBy) process.exitCode = signalExitCode(stoppedBy);
      } finally {
        await feed.close();
      }
    });

  program
    .command('dashboard')
    .description('serve a web page that follows a run log live (or shows a finished one)')
    .requiredOption('--log <file>', 'the JSON event log of a run')
    .option('--port <n>', 'port (0 = any free port)', port, DEFAULT_DASHBOARD_PORT)
    .option('--host <address>', 'interface to listen on', '127.0.0.1')
    .action(async (flags: { log: string; port: number; host: string }) => {
      const dashboard = await startDashboard({ logPath: flags.log, port: flags.port, host: flags.host });
      process.stdout.write(`dashboard: ${dashboard.url} (Ctrl-C to stop)\n`);
      await once(process, 'SIGINT');
      await dashboard.close();
    });

  program
    .command('report <log>')
    .description('write learning curves and the confusion matrix of a run as PNG and SVG')
    .requiredOption('--out <dir>', 'output folder')
    .action(async (log: string, flags: { out: string }) => {
      const { writeReport } = await import('./telemetry/report.ts');
      const report = await writeReport({ logPath: log, outDir: flags.out });
      for (const file of report.files) process.stdout.write(`${file}\n`);
      for (const skip of report.skipped) process.stderr.write(`skipped ${skip.figure}: ${skip.reason}\n`);
    });

  program
    .command('predict <modelDir> <images...>')
    .description('print the most likely classes of each image')
    .option('--top <k>', 'classes listed per image', positiveInt, 3)
    .option('--batch-size <n>', 'images per forward pass', positiveInt, 32)
    .option('--json', 'print JSON instead of text')
    .addOption(backendOption())
    .action(async (modelDir: string, images: string[], flags: { top: number; batchSize: number; json?: boolean; backend?: BackendChoice }) => {
      const { formatPredictions, predictImages } = await import('./commands/predict.ts');
      const report = await predictImages({ modelDir, images, topK: flags.top, batchSize: flags.batchSize, backend: flags.backend });
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatPredictions(report));
      if (report.failed > 0) process.exitCode = 1;
    });

  program
    .command('evaluate <modelDir>')
    .description('accuracy, loss and confusion matrix of a saved model on a dataset')
    .requiredOption('--data <path|spec>', 'as train --data: an image folder, a .csv / .jsonl manifest, an IDX or CIFAR folder, a dataset spec or job file (YAML or JSON), or inline JSON')
    .addOption(new Option('--split <name>', 'split of a spec (default: test, else validation, else train)').choices(['train', 'validation', 'test']))
    .option('--batch-size <n>', 'evaluation batch size', positiveInt, 64)
    .option('--json', 'print JSON instead of text')
    .addOption(backendOption())
    .action(async (modelDir: string, flags: { data: string; split?: 'train' | 'validation' | 'test'; batchSize: number; json?: boolean; backend?: BackendChoice }) => {
      const [{ evaluateModel, formatEvaluation }, { resolveDataArgument }] = await Promise.all([import('./commands/evaluate.ts'), import('./data/data-argument.ts')]);
      const data = await resolveDataArgument(flags.data);
      const result = await evaluateModel({ modelDir, data, split: flags.split, batchSize: flags.batchSize, backend: flags.backend });
      process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : formatEvaluation(result));
    });

  return program;
}

/** Entry point: runs the program and turns drover errors into one clear line and exit code 1. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof DroverError) {
      process.stderr.write(`drover: ${err.message} [${err.code}]\n`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

// Run directly (`node --import tsx src/cli.ts`), not when imported by bin/drover.js or tests.
if (process.argv[1]?.endsWith('/src/cli.ts')) {
  await main(process.argv);
}
