/**
 * What the commands that run a job (train, coordinator) share: their flags, the job those
 * flags resolve to, the run folder it writes into, and the feed (progress, log file,
 * dashboard, signals) it runs under.
 */
import { once } from 'node:events';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { loadJobFile, parseJob, type Job } from '../job/job-file.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { RunFolder } from '../job/run-folder.ts';
import { DEFAULT_DASHBOARD_PORT, type Dashboard } from '../telemetry/dashboard.ts';
import { startDashboardThread } from '../telemetry/dashboard-thread.ts';
import { backendOption, port, positiveInt } from './flags.ts';
import { interruptSignal, signalExitCode, type StopSignal } from './signals.ts';

/** Flags shared by the commands that run a job (train, coordinator). */
export interface JobFlags {
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

/** Adds the options of the commands that run a job. */
export function addJobOptions(command: Command): Command {
  return command
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
}

/** Applies command-line overrides on top of the job file, then validates the result once. */
export async function resolveJob(flags: JobFlags): Promise<Job> {
  const base = flags.config ? await loadJobFile(flags.config) : parseJob({});
  const { resolveDataArgument } = await import('../data/data-argument.ts');
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
export async function inRunFolder(job: Job, resume: boolean | 'auto' | undefined): Promise<{ job: Job; run: RunFolder }> {
  const { openRunFolder } = await import('../job/run-folder.ts');
  const run = await openRunFolder(job.output.dir ?? path.join('runs', job.name), { resume });
  return { job: { ...job, output: { ...job.output, dir: run.dir } }, run };
}

/**
 * Runs a job with its feed: progress bar or JSON on stdout, the JSON log file (default:
 * <run folder>/run.jsonl; appended to only when the run folder was resumed, so a fresh run
 * never mixes into another's log) and the live dashboard on it. Everything started here is
 * closed however the job ends.
 */
export async function withRunFeed(
  job: Job,
  flags: JobFlags,
  run: (log: Logger, signal: AbortSignal) => Promise<unknown>,
  extras: { tap?: Writable; keepDashboard?: boolean; run?: RunFolder } = {},
): Promise<void> {
  const { tap } = extras;
  const { createRunFeed } = await import('../telemetry/feed.ts');
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
    let stoppedBy: StopSignal | undefined;
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
