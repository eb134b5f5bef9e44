import { once } from 'node:events';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DroverError } from './errors.ts';
import { loadJobFile, parseJob, type Job } from './config/job.ts';
import { BACKEND_CHOICES } from './model/backend.ts';
import type { Logger } from './telemetry/logger.ts';
import { createRunFeed } from './telemetry/feed.ts';
import { DEFAULT_DASHBOARD_PORT, startDashboard, type Dashboard } from './telemetry/dashboard.ts';
import { writeReport } from './telemetry/report.ts';
import { evaluateModel, formatEvaluation, resolveDataArgument } from './commands/evaluate.ts';
import { formatPredictions, predictImages } from './commands/predict.ts';
import type { BackendChoice } from './model/backend.ts';
import { runJob } from './train/run-job.ts';

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

interface TrainFlags {
  config?: string;
  backend?: string;
  epochs?: number;
  batchSize?: number;
  threads?: number;
  log?: string;
  dashboard?: boolean | number;
}

/** Applies command-line overrides on top of the job file, then validates the result once. */
async function resolveJob(flags: TrainFlags): Promise<Job> {
  const base = flags.config ? await loadJobFile(flags.config) : parseJob({});
  const merged = {
    ...base,
    backend: flags.backend ?? base.backend,
    threads: flags.threads ?? base.threads,
    train: { ...base.train, epochs: flags.epochs ?? base.train.epochs, batchSize: flags.batchSize ?? base.train.batchSize },
  };
  return parseJob(merged, flags.config ? `${flags.config} (with command-line overrides)` : 'command line');
}

/** Aborts on the first Ctrl-C (finish the step, save), exits on the second. */
function interruptSignal(log: Logger): AbortSignal {
  const controller = new AbortController();
  process.on('SIGINT', () => {
    if (controller.signal.aborted) process.exit(130);
    log.warn('interrupted: stopping after the current step (Ctrl-C again to quit now)');
    controller.abort();
  });
  return controller.signal;
}

export function buildProgram(): Command {
  const program = new Command('drover')
    .description('Train image classifiers with synchronous data-parallel SGD on Node.js')
    .showHelpAfterError();

  program
    .command('train')
    .description('train a model in this process (default: the reference CNN on Fashion-MNIST, or generated shapes)')
    .option('-c, --config <file>', 'job file (YAML or JSON)')
    .addOption(new Option('--backend <name>', 'compute backend').choices(BACKEND_CHOICES as unknown as string[]))
    .option('--epochs <n>', 'number of epochs', positiveInt)
    .option('--batch-size <n>', 'global batch size', positiveInt)
    .option('--threads <n>', 'compute threads of the wasm backend (1-8)', positiveInt)
    .option('--log <file>', 'also write the JSON event log here (default with --dashboard: runs/<job>/run.jsonl)')
    .option('--dashboard [port]', `serve the live dashboard (default port ${DEFAULT_DASHBOARD_PORT})`, port)
    .action(async (flags: TrainFlags) => {
      const job = await resolveJob(flags);
      const logFile = flags.log ?? (flags.dashboard !== undefined ? path.join(job.output.dir ?? path.join('runs', job.name), 'run.jsonl') : undefined);
      const feed = await createRunFeed({ logFile });
      let dashboard: Dashboard | undefined;
      try {
        if (flags.dashboard !== undefined && logFile) {
          dashboard = await startDashboard({ logPath: logFile, port: typeof flags.dashboard === 'number' ? flags.dashboard : DEFAULT_DASHBOARD_PORT });
          feed.logger.info({ url: dashboard.url }, `dashboard: ${dashboard.url}`);
        }
        await runJob(job, { log: feed.logger, signal: interruptSignal(feed.logger) });
      } finally {
        await dashboard?.close();
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
      const report = await writeReport({ logPath: log, outDir: flags.out });
      for (const file of report.files) process.stdout.write(`${file}\n`);
      for (const skip of report.skipped) process.stderr.write(`skipped ${skip.figure}: ${skip.reason}\n`);
    });

  const backendOption = (): Option => new Option('--backend <name>', 'compute backend').choices(BACKEND_CHOICES as unknown as string[]);

  program
    .command('predict <modelDir> <images...>')
    .description('print the most likely classes of each image')
    .option('--top <k>', 'classes listed per image', positiveInt, 3)
    .option('--batch-size <n>', 'images per forward pass', positiveInt, 32)
    .option('--json', 'print JSON instead of text')
    .addOption(backendOption())
    .action(async (modelDir: string, images: string[], flags: { top: number; batchSize: number; json?: boolean; backend?: BackendChoice }) => {
      const report = await predictImages({ modelDir, images, topK: flags.top, batchSize: flags.batchSize, backend: flags.backend });
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatPredictions(report));
      if (report.failed > 0) process.exitCode = 1;
    });

  program
    .command('evaluate <modelDir>')
    .description('accuracy, loss and confusion matrix of a saved model on a dataset')
    .requiredOption('--data <folder|spec>', 'image folder (one sub-folder per class), a dataset spec or job file (YAML or JSON), or inline JSON')
    .addOption(new Option('--split <name>', 'split of a spec (default: test, else validation, else train)').choices(['train', 'validation', 'test']))
    .option('--batch-size <n>', 'evaluation batch size', positiveInt, 64)
    .option('--json', 'print JSON instead of text')
    .addOption(backendOption())
    .action(async (modelDir: string, flags: { data: string; split?: 'train' | 'validation' | 'test'; batchSize: number; json?: boolean; backend?: BackendChoice }) => {
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
