import type { Command } from 'commander';
import { DroverError } from '../errors.ts';
import type { GpuAdapterEntry } from '../model/webgpu.ts';
import { parseJob, type Job } from '../job/job-file.ts';
import { addJobOptions, inRunFolder, resolveJob, withRunFeed, type JobFlags } from './job-commands.ts';
import { positiveInt } from './flags.ts';

interface TrainFlags extends JobFlags {
  workers?: number;
  processes?: boolean;
  perWorkerBatch?: number;
  gpus?: string;
  resume?: boolean;
}

/** `drover train`: a job in this process, or with --workers / --gpus on worker processes this machine starts. */
export function addTrainCommand(program: Command): Command {
  return addJobOptions(
    program
      .command('train')
      .description('train a model (default: the reference CNN on Fashion-MNIST, or generated shapes) in this process, on N cores with --workers N, or on a local cluster with --processes'),
  )
    .option('--workers <n>', 'train N replicas in parallel on this machine, one per core: replica threads of this process that average their gradients in shared memory (with --processes: a coordinator and N worker processes)', positiveInt)
    .option('--processes', 'with --workers: run a coordinator and N worker processes over gRPC, as on a cluster (cluster.reduction, cluster.wire and the other cluster settings apply), instead of replica threads')
    .option('--per-worker-batch <n>', 'each worker adds N samples to a step (cluster.batch.perWorker): the global batch grows with the workers and the learning rate with it (square-root rule for adam and rmsprop, linear for sgd, with warm-up); default: --batch-size is the global batch, split', positiveInt)
    .option('--gpus <list>', 'start a coordinator and one webgpu worker per GPU: "all" (every hardware adapter) or indices of `drover gpus`, e.g. 0,2')
    .option('--resume', 'continue from the last checkpoint of the job (after Ctrl-C or a crash)')
    .action(train);
}

async function train(flags: TrainFlags): Promise<void> {
  const resolved = withPerWorkerBatch(await resolveJob(flags), flags.perWorkerBatch);
  if (flags.gpus !== undefined && flags.workers !== undefined) throw new DroverError('--gpus starts one worker per GPU: leave out --workers');
  if (flags.processes && flags.workers === undefined) throw new DroverError('--processes goes with --workers N (how many worker processes to start)');
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
    if (flags.workers !== undefined && !flags.processes) {
      const { runJob } = await import('../job/run-job.ts');
      const { threadReplicas } = await import('../launch/replica-threads/index.ts');
      return runJob(job, { log, signal, resume: flags.resume, engines: threadReplicas(flags.workers) });
    }
    const { runWithLocalWorkers } = await import('../launch/local-workers.ts');
    return runWithLocalWorkers({ job, workers: gpus?.length ?? flags.workers!, ...(gpus ? { gpus } : {}), log, signal, resume: flags.resume });
  }, { keepDashboard: true, run: runFolder });
}

/**
 * --per-worker-batch N: cluster.batch.perWorker = N, the job file's other batch settings kept.
 * Only when asked: `--workers` alone keeps train.batchSize as the global batch, so the same job
 * trains the same model (same batches, same rate) on one process or several; a per-worker batch
 * changes what is trained (global batch and learning rate grow with the workers).
 */
function withPerWorkerBatch(job: Job, perWorker: number | undefined): Job {
  if (perWorker === undefined) return job;
  return parseJob({ ...job, cluster: { ...job.cluster, batch: { ...job.cluster?.batch, perWorker } } }, 'command line (--per-worker-batch)');
}
