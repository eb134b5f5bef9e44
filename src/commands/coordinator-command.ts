import { InvalidArgumentError, Option, type Command } from 'commander';
import { addJobOptions, inRunFolder, resolveJob, withRunFeed, type JobFlags } from './job-commands.ts';
import { port, positiveInt } from './flags.ts';

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

/** `drover coordinator`: serves a job to `drover worker` processes and trains it with them. */
export function addCoordinatorCommand(program: Command): Command {
  return addJobOptions(
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
    .action(coordinate);
}

async function coordinate(flags: CoordinatorFlags): Promise<void> {
  const { job, run: runFolder } = await inRunFolder(await resolveJob(flags), flags.resume);
  // Metrics read the run's own event feed (docs/events.md), on a port of their own.
  const metrics = flags.metricsPort === undefined
    ? undefined
    : await (await import('../telemetry/metrics.ts')).startMetricsServer({ port: flags.metricsPort, host: flags.metricsHost ?? '0.0.0.0' });
  try {
    await withRunFeed(job, flags, async (log, signal) => {
      if (metrics) log.info({ metricsUrl: metrics.url, metricsPort: metrics.port }, `metrics: ${metrics.url}`);
      const { runCoordinator } = await import('../coordinator/run-coordinator.ts');
      return runCoordinator({ job, port: flags.port, host: flags.host, minWorkers: flags.minWorkers, token: flags.token, resume: flags.resume, log, signal });
    }, { run: runFolder, ...(metrics ? { tap: metrics.stream } : {}) });
  } finally {
    await metrics?.close();
  }
}
