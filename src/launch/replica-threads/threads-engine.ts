import type { SampledBatch } from '../../data/sampler.ts';
import type { Batch, DataSplit } from '../../data/types.ts';
import { ReplicaThreadError } from '../../errors.ts';
import { BatchPrefetch } from '../../job/batch-prefetch.ts';
import type { PhaseEngine } from '../../job/phase-engines.ts';
import { evaluateSplit, type BatchEvaluator } from '../../job/split-evaluation.ts';
import type { EvaluationMetrics, StepContext, StepOutcome } from '../../job/step-engine.ts';
import type { WeightEntry, WeightSet } from '../../model/weights.ts';
import { logEvent } from '../../telemetry/events.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { PredictionResult } from '../../train/gradient-model.ts';
import type { OptimizerSlot } from '../../train/optimizers.ts';
import type { ReplicaThread } from './replica-thread-handle.ts';
import { SharedInput } from './shared-input.ts';
import type { ThreadBatch, ThreadReplies } from './thread-messages.ts';

export interface ThreadsEngineOptions {
  threads: readonly ReplicaThread[];
  /** The phase's weight manifest, as the threads built it. */
  manifest: WeightEntry[];
  train: DataSplit;
  classes: number;
  log: Logger;
  /** Writes the replicas' weights and optimizer state into the phase's trainer. */
  settle(weights: WeightSet, optimizer: { iterations: number; slots: OptimizerSlot[] }): Promise<void>;
}

/**
 * Steps taken by N replica threads of this process (`drover train --workers N`): the step's batch
 * is loaded here (the next one while this one computes) and cut into N contiguous parts; each
 * thread computes its part's gradient into shared memory, sums its range of all of them, and
 * applies the same sum with its own optimizer, so every replica holds the same weights. A step is
 * one request per thread: the threads meet at a shared-memory barrier, not through this thread.
 */
export class ThreadsEngine implements PhaseEngine {
  private readonly batches: BatchPrefetch;
  private version = 0;
  private readonly input = new SharedInput();
  /** Thread 0's state as of a version: a checkpoint asks for the weights, then the optimizer's state. */
  private stateRead: { version: number; state: Promise<ThreadReplies['state']> } | undefined;

  constructor(private readonly options: ThreadsEngineOptions) {
    this.batches = new BatchPrefetch(options.train);
  }

  async ready(): Promise<boolean> {
    return true;
  }

  replicas(): number {
    return this.options.threads.length;
  }

  async step(batch: SampledBatch, context: StepContext, next?: SampledBatch): Promise<StepOutcome> {
    const { threads } = this.options;
    const started = performance.now();
    const loaded = await this.batches.take(batch, next);
    const computeStart = performance.now();
    if (loaded.n === 0) {
      loaded.release?.();
      return { kind: 'empty' };
    }
    const parts = splitRows(this.input.hold(cpuBatch(loaded)), threads.length);
    loaded.release?.();
    const version = ++this.version;
    // The parts are views of shared memory: posting them shares, not copies.
    const trained = await firstCause(threads.map((thread, r) => thread.call({ kind: 'step', batch: parts[r]!, scale: parts[r]!.n / loaded.n, lr: context.lr, version })));
    const done = performance.now();
    if (trained.some((t) => t.applied !== trained[0]!.applied)) {
      // Same sum, same weights, same optimizer: a split decision means the replicas diverged.
      throw new ReplicaThreadError(`step ${context.step}: replicas disagree on applying the update (applied: ${trained.map((t) => t.applied).join(', ')})`, trained.findIndex((t) => !t.applied));
    }
    if (!trained[0]!.applied) {
      const nonFinite = trained[0]!.nonFinite;
      const reason = nonFinite >= 0 ? `the reduced gradient (then batch-norm statistics) holds a non-finite value at index ${nonFinite}` : 'a weight or optimizer slot would turn non-finite';
      logEvent(this.options.log, 'update_refused', { step: context.step, epoch: context.epoch, target: nonFinite >= 0 ? 'gradient' : 'weights', code: 'DROVER_ERR_NON_FINITE_UPDATE', workers: threads.map((t) => replicaName(t.rank)), reason },
        `step ${context.step}: update refused on every replica: ${reason}; weights unchanged`);
      return { kind: 'refused' };
    }
    const n = trained.reduce((sum, t) => sum + t.n, 0);
    const loss = trained.reduce((sum, t) => sum + t.loss * t.n, 0) / n;
    const correct = trained.reduce((sum, t) => sum + t.correct, 0);
    const timing = {
      dataWaitMs: computeStart - started,
      computeMs: Math.max(...trained.map((t) => t.computeMs)),
      transferMs: 0,
      // From the slowest replica's gradient to the update applied everywhere.
      reduceMs: Math.max(0, done - computeStart - Math.max(...trained.map((t) => t.computeMs))),
      stepMs: done - started,
      workers: trained.map((t, r) => ({ worker: replicaName(r), n: t.n, computeMs: t.computeMs, dataWaitMs: 0 })),
    };
    return { kind: 'applied', loss, correct, n, timing };
  }

  evaluate(_split: 'validation' | 'test', data: DataSplit, _epoch: number, signal?: AbortSignal): Promise<EvaluationMetrics> {
    const evaluators: BatchEvaluator[] = this.options.threads.map((thread) => ({
      evaluate: async (batch: Batch): Promise<PredictionResult> => {
        // Copies moved to the thread: evaluation batches are in flight on several threads at once.
        const { x, y, n, shape } = cpuBatch(batch);
        const rows = { x: x.slice(0, n * shape[0] * shape[1] * shape[2]), y: y.slice(0, n), n, shape };
        return thread.call({ kind: 'evaluate', batch: rows }, [rows.x.buffer, rows.y.buffer]);
      },
    }));
    return evaluateSplit(evaluators, data, this.options.classes, { signal });
  }

  async weights(): Promise<WeightSet> {
    return { manifest: this.options.manifest, values: (await this.state()).weights };
  }

  async setWeights(weights: WeightSet): Promise<void> {
    this.stateRead = undefined;
    await Promise.all(this.options.threads.map((thread) => thread.call({ kind: 'set-weights', weights: weights.values })));
  }

  /** Replica `rank`'s weights (every replica holds the same after each step; tests check it). */
  async replicaWeights(rank: number): Promise<Float32Array[]> {
    return (await this.options.threads[rank]!.call({ kind: 'state' })).weights;
  }

  /** Ends replica `rank`'s thread as a crash would (fault tests). */
  killReplica(rank: number): void {
    this.options.threads[rank]!.kill();
  }

  /** Tensors alive in each replica's tfjs (leak checks). */
  async tensorCounts(): Promise<number[]> {
    return Promise.all(this.options.threads.map(async (thread) => (await thread.call({ kind: 'tensors' })).count));
  }

  async optimizerState(): Promise<{ iterations: number; slots: OptimizerSlot[] }> {
    return (await this.state()).optimizer;
  }

  discardPrefetched(): void {
    this.batches.discard();
  }

  async settle(): Promise<void> {
    const state = await this.state();
    await this.options.settle({ manifest: this.options.manifest, values: state.weights }, state.optimizer);
  }

  /** Replica 0's weights and optimizer state (every replica holds the same), read once per version. */
  private state(): Promise<ThreadReplies['state']> {
    if (this.stateRead?.version !== this.version) this.stateRead = { version: this.version, state: this.options.threads[0]!.call({ kind: 'state' }) };
    return this.stateRead.state;
  }
}

/**
 * All the replies, or the failure that caused the others: a replica that throws aborts the
 * barrier, and the rest then fail with "abandoned", which may arrive first.
 */
async function firstCause<T>(replies: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(replies);
  const failures = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as Error & { threadCode?: string }] : []));
  if (failures.length === 0) return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
  throw failures.find((e) => !/the step was abandoned/.test(e.message)) ?? failures[0];
}

/** How replica r is named in step and update_refused events. */
export function replicaName(rank: number): string {
  return `replica-${rank}`;
}

/** Cuts a batch into `parts` contiguous runs of rows (views), sizes differing by at most one. */
export function splitRows(batch: Batch, parts: number): ThreadBatch[] {
  const row = batch.shape[0] * batch.shape[1] * batch.shape[2];
  const per = Math.floor(batch.n / parts);
  const extra = batch.n % parts;
  const runs: ThreadBatch[] = [];
  let start = 0;
  for (let r = 0; r < parts; r++) {
    const n = per + (r < extra ? 1 : 0);
    runs.push({ x: batch.x.subarray(start * row, (start + n) * row), y: batch.y.subarray(start, start + n), n, shape: batch.shape });
    start += n;
  }
  return runs;
}

/** The batch, refused when its input is built on a device rather than decoded into `x`. */
function cpuBatch(batch: Batch): Batch {
  if (batch.input) throw new ReplicaThreadError('replica threads take batches decoded on the CPU (device-side augmentation is for GPU workers: --gpus)', 0);
  return batch;
}
