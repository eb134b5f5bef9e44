import { Command, InvalidArgumentError, Option } from 'commander';
import { DroverError } from './errors.ts';
import { loadJobFile, parseJob, type Job } from './config/job.ts';
import { BACKEND_CHOICES } from './model/backend.ts';
import { createLogger, type Logger } from './telemetry/logger.ts';
import { runJob } from './train/run-job.ts';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

interface TrainFlags {
  config?: string;
  backend?: string;
  epochs?: number;
  batchSize?: number;
}

/** Applies command-line overrides on top of the job file, then validates the result once. */
async function resolveJob(flags: TrainFlags): Promise<Job> {
  const base = flags.config ? await loadJobFile(flags.config) : parseJob({});
  const merged = {
    ...base,
    backend: flags.backend ?? base.backend,
    train: { ...base.train, epochs: flags.epochs ?? base.train.epochs, batchSize: flags.batchSize ?? base.train.batchSize },
  };
  return parseJob(merged, flags.config ? `${flags.config} (with command-line overrides)` : 'command line');
}

/** Aborts on the first Ctrl-C (finish the step, save), exits on the second. */
function interruptSignal(log: Logger): AbortSignal {
  const controller = new AbortController();
  process.on('SIGINT', () => {
    if (controller.signal.aborted) process.exit(130);
    log.warn({ event: 'interrupt' }, 'interrupted: stopping after the current step (Ctrl-C again to quit now)');
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
    .action(async (flags: TrainFlags) => {
      const log = createLogger();
      const job = await resolveJob(flags);
      await runJob(job, { log, signal: interruptSignal(log) });
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
