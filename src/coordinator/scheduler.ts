import { ClusterError } from '../errors.ts';
import { proportionalSizes, splitShards } from '../data/sampler.ts';

/** A worker as the scheduler sees it: an id and, once measured, its speed. */
export interface ScheduledWorker {
  id: string;
  /** Samples per millisecond from assignment to result, as the coordinator measures it (EMA); undefined until its first result. */
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

/** A measurement counts at most this many times above or below the current estimate. */
export const MAX_THROUGHPUT_JUMP = 2;

/**
 * Exponential moving average of a worker's throughput (samples per ms, as the coordinator
 * measured it). One measurement moves the estimate by a bounded factor (at most
 * 1 + alpha x (MAX_THROUGHPUT_JUMP - 1) up, 1 - alpha x (1 - 1 / MAX_THROUGHPUT_JUMP) down), so
 * a worker's share of the batch changes by a bounded step per step whatever one step measured.
 */
export function updateThroughput(previous: number | undefined, n: number, ms: number, alpha = 0.3): number | undefined {
  if (!(n > 0) || !(ms > 0) || !Number.isFinite(ms)) return previous;
  if (previous === undefined) return n / ms;
  const sample = Math.min(previous * MAX_THROUGHPUT_JUMP, Math.max(previous / MAX_THROUGHPUT_JUMP, n / ms));
  return previous + alpha * (sample - previous);
}
