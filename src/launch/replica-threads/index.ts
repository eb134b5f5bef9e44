import type { Dataset } from '../../data/types.ts';
import { defaultClusterSpec } from '../../job/cluster-spec.ts';
import type { Job } from '../../job/job-file.ts';
import type { PhaseEngines } from '../../job/phase-engines.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { ThreadReplicas } from './thread-replicas.ts';

/**
 * runJob's `engines` for `drover train --workers N`: N replica threads. Cluster settings other
 * than the batch are for worker processes; a job that sets them is told so once.
 */
export function threadReplicas(replicas: number): (context: { job: Job; dataset: Dataset; log: Logger; backend: string }) => PhaseEngines {
  return (context) => {
    const defaults = defaultClusterSpec() as Record<string, unknown>;
    const set = (context.job.cluster ?? {}) as Record<string, unknown>;
    // Compared with the defaults: parsing fills every field in, and --per-worker-batch adds a cluster section.
    const processOnly = Object.keys(set).filter((key) => key !== 'batch' && key !== 'checkpointEvery' && JSON.stringify(set[key]) !== JSON.stringify(defaults[key]));
    if (processOnly.length > 0) {
      context.log.warn({ ignored: processOnly.map((key) => `cluster.${key}`) }, `--workers ${replicas} trains on replica threads of this process: ${processOnly.map((key) => `cluster.${key}`).join(', ')} apply to worker processes (add --processes)`);
    }
    if ((context.job.threads ?? 1) > 1) {
      context.log.warn({ threads: context.job.threads }, `--workers ${replicas}: each replica computes on one thread (threads: ${context.job.threads} is for a single process); use one replica per core`);
    }
    return ThreadReplicas.start({ replicas, ...context });
  };
}
