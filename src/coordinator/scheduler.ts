import { ClusterError } from '../errors.ts';
import { proportionalSizes, splitShards } from '../data/sampler.ts';

/** A worker as the scheduler sees it: an id and, once measured, its speed. */
export interface ScheduledWorker {
  id: string;
  /** Samples per millisecond of compute (EMA); undefined until its first result. */
  throughput: number | undefined;
}

/** Samples assigned to one worker. */
export interface ShardPlan {
  workerId: string;
  ids: Uint32Array;
}

export type Balance = 'throughput' | 'equal';

/**
 * Relative share of each worker: its measured throughput, or the mean of the measured ones
 * for a newcomer (1 when none is measured yet), or 1 each for `equal`.
 */
export function shareWeights(workers: readonly ScheduledWorker[], balance: Balance): number[] {
  if (balance === 'equal') return workers.map(() => 1);
  const known = workers.map((w) => w.throughput).filter((t): t is number => t !== undefined && Number.isFinite(t) && t > 0);
  const fallback = known.length > 0 ? known.reduce((a, b) => a + b, 0) / known.length : 1;
  return workers.map((w) => (w.throughput !== undefined && Number.isFinite(w.throughput) && w.throughput > 0 ? w.throughput : fallback));
}

/**
 * Splits a batch (or the orphaned samples of a failed worker) over workers, sizes following
 * their speed; always covers every sample exactly once. Workers whose share rounds to zero
 * get nothing this time.
 */
export function planShards(ids: Uint32Array, workers: readonly ScheduledWorker[], balance: Balance): ShardPlan[] {
  if (workers.length === 0) throw new ClusterError('no live worker to assign samples to');
  const sizes = proportionalSizes(ids.length, shareWeights(workers, balance));
  return splitShards(ids, sizes)
    .map((shard, i) => ({ workerId: workers[i]!.id, ids: shard }))
    .filter((plan) => plan.ids.length > 0);
}

/** Exponential moving average of a worker's throughput (samples per ms of compute). */
export function updateThroughput(previous: number | undefined, n: number, computeMs: number, alpha = 0.3): number | undefined {
  if (!(n > 0) || !(computeMs > 0) || !Number.isFinite(computeMs)) return previous;
  const sample = n / computeMs;
  return previous === undefined ? sample : previous + alpha * (sample - previous);
}
