import type { Command } from 'commander';
import { DroverError } from '../errors.ts';
import type { GpuAdapterEntry } from '../model/webgpu.ts';
import { addJobOptions, inRunFolder, resolveJob, withRunFeed, type JobFlags } from './job-commands.ts';
import { positiveInt } from './flags.ts';

interface TrainFlags extends JobFlags {
  workers?: number;
  gpus?: string;
  resume?: boolean;
}

/** `drover train`: a job in this process, or with --workers / --gpus on worker processes this machine starts. */
export function addTrainCommand(program: Command): Command {
  return addJobOptions(
    program
      .command('train')
      .description('train a model (default: the reference CNN on Fashion-MNIST, or generated shapes) in this process, or with --workers N on a local cluster'),
  )
    .option('--workers <n>', 'start a coordinator and N worker processes on this machine', positiveInt)
    .option('--gpus <list>', 'start a coordinator and one webgpu worker per GPU: "all" (every hardware adapter) or indices of `drover gpus`, e.g. 0,2')
    .option('--resume', 'continue from the last checkpoint of the job (after Ctrl-C or a crash)')
    .action(train);
}

async function train(flags: TrainFlags): Promise<void> {
  const resolved = await resolveJob(flags);
  if (flags.gpus !== undefined && flags.workers !== undefined) throw new DroverError('--gpus starts one worker per GPU: leave out --workers');
  // Resolved before anything starts: no GPU is a clear error, not a cluster without workers.
  let gpus: GpuAdapterEntry[] | undefined;
  if (flags.gpus !== undefined) {
    const { parseGpuSelection, resolveGpus } = await import('../launch/gpu-selection.ts');
    gpus = await resolveGpus(parseGpuSelection(flags.gpus));
  }
  const { job, run: runFolder } = await inRunFolder(resolved, flags.resume);
  await withRunFeed(job, flags, async (log, signal) => {
    if (flags.workers === undefined && gpus === undefined) {
      const { runJob } = await import('../job/run-job.ts');
      return runJob(job, { log, signal, resume: flags.resume });
    }
    const { runWithLocalWorkers } = await import('../launch/local-workers.ts');
    return runWithLocalWorkers({ job, workers: gpus?.length ?? flags.workers!, ...(gpus ? { gpus } : {}), log, signal, resume: flags.resume });
  }, { keepDashboard: true, run: runFolder });
}
