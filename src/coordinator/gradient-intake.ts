import { WeightsError } from '../errors.ts';
import { SkipLog } from '../data/skips.ts';
import type { DataSplit } from '../data/types.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { EvaluationResult__Output } from '../wire/generated/drover/v1/EvaluationResult.ts';
import type { GradientResult__Output } from '../wire/generated/drover/v1/GradientResult.ts';
import type { SkippedSample__Output } from '../wire/generated/drover/v1/SkippedSample.ts';
import type { ReceivedTransfer } from '../wire/transfer.ts';
import type { Task } from './round.ts';
import type { RoundState, TaskDispatch } from './task-dispatch.ts';
import { sourceSplit } from './task-messages.ts';

/** What gradient intake needs from the coordinator around it. */
export interface IntakeHost {
  readonly dispatch: TaskDispatch;
  readonly datasetName: string;
  readonly log: Logger;
  /** Whether a worker is in session. */
  inSession(workerId: string): boolean;
  /** The weights version workers in session hold (undefined before the first broadcast). */
  published(): number | undefined;
  /** A worker broke the contract: evict it and reassign its tasks. */
  refuse(workerId: string, error: unknown): void;
}

/** A gradient result whose bytes are all in, waiting to be checked with the others that arrived with it. */
interface ArrivedGradient {
  workerId: string;
  state: RoundState | undefined;
  result: GradientResult__Output;
  gradients: ReceivedTransfer | undefined;
  buffers: ReceivedTransfer | undefined;
  receivedAt: number;
}

/** Longest skip reason and detail a worker may report (longer ones are cut). */
const MAX_SKIP_REASON = 64;
const MAX_SKIP_DETAIL = 300;

/**
 * Results as they arrive from workers: checks each against the task it answers (held by that
 * worker, right weights version, skipped samples from its shard), hands training results to
 * their step's reduction and evaluation results to their accumulator, logs the samples workers
 * could not decode, and refuses the worker behind a bad result.
 */
export class GradientIntake {
  /** Gradient results complete on the wire and not yet checked (see takeArrived). */
  private arrived: ArrivedGradient[] = [];
  /** Samples workers could not decode, logged with their paths. */
  private readonly remoteSkips: SkipLog;

  constructor(private readonly host: IntakeHost) {
    this.remoteSkips = new SkipLog(host.log);
  }

  async gradient(
    workerId: string,
    result: GradientResult__Output,
    gradientsDone: Promise<ReceivedTransfer> | undefined,
    buffersDone: Promise<ReceivedTransfer> | undefined,
  ): Promise<void> {
    // Checked at the header: bytes for a task the worker does not hold are read and dropped.
    const state = this.host.dispatch.heldRound(workerId, result.taskId, 'gradients');
    let gradients: ReceivedTransfer | undefined;
    let buffers: ReceivedTransfer | undefined;
    try {
      [gradients, buffers] = await Promise.all([gradientsDone, buffersDone]);
    } catch {
      return; // the session broke mid-transfer: its close handler reassigns the task
    }
    if (!state) {
      gradients?.release();
      buffers?.release();
      return;
    }
    // Workers' transfers share the connection fairly, so a step's gradients tend to complete
    // together: they are checked in one batch, once the I/O at hand is read.
    this.arrived.push({ workerId, state, result, gradients, buffers, receivedAt: performance.now() });
    if (this.arrived.length === 1) setImmediate(() => this.takeArrived());
  }

  evaluation(workerId: string, result: EvaluationResult__Output): void {
    const { dispatch } = this.host;
    const state = dispatch.heldRound(workerId, result.taskId, 'an evaluation result');
    if (!state) return;
    const from = `worker ${workerId}, evaluation task ${result.taskId}`;
    try {
      const task = state.round.find(result.taskId, workerId);
      checkSkipped(result.skipped, result.n, task, from);
      const skipped = new Set(result.skipped);
      const all = state.labels.get(task.id)!;
      const labels = skipped.size === 0 ? all : all.filter((_, i) => !skipped.has(task.ids[i]!));
      state.evaluation!.add(result, labels, from);
      this.recordRemoteSkips(workerId, state, result.skipped, result.skipReasons);
      dispatch.completeTask(state, task, workerId, result.timings, performance.now(), result.n);
    } catch (error) {
      this.host.refuse(workerId, error);
    }
  }

  /**
   * Checks the gradients that arrived and offers the good ones to their step's reduction (the
   * star sums them in task order, four per pass, whatever order they came in); refuses the bad
   * ones' workers.
   */
  private takeArrived(): void {
    const { dispatch } = this.host;
    const batch = this.arrived;
    this.arrived = [];
    for (const item of batch) {
      const { workerId, state, result, gradients, buffers } = item;
      let offered = false;
      try {
        // Checked after the transfer: the task may have been reassigned while its bytes arrived.
        if (!state || !dispatch.isOpen(state) || !this.host.inSession(workerId) || !state.round.isOpen(result.taskId)) continue;
        const from = `worker ${workerId}, task ${result.taskId}, step ${result.step}`;
        try {
          const task = state.round.find(result.taskId, workerId);
          if (result.weightsVersion !== task.weightsVersion) {
            throw new WeightsError(`${from}: computed on weights v${result.weightsVersion}, the task needs v${task.weightsVersion}`);
          }
          // A prefetched task answered before its weights went out was not computed on them.
          const published = this.host.published();
          if (published === undefined || task.weightsVersion > published) {
            throw new WeightsError(`${from}: a result for weights v${task.weightsVersion}, which were not sent yet`);
          }
          checkSkipped(result.skipped, result.n, task, from);
          if (result.n > 0) {
            if (!gradients) throw new WeightsError(`${from}: ${result.n} samples but no gradients`);
            const shard = { loss: result.loss, correct: result.correct, n: result.n, grads: gradients.tensors, buffers: buffers?.tensors ?? [] };
            state.reduction!.offer(task.rank, { shard, from, maxN: task.ids.length }, () => {
              gradients.release();
              buffers?.release();
            });
            offered = true;
          }
          this.recordRemoteSkips(workerId, state, result.skipped, result.skipReasons);
          dispatch.completeTask(state, task, workerId, result.timings, item.receivedAt, result.n);
        } catch (error) {
          this.host.refuse(workerId, error);
        }
      } finally {
        // Not kept by the reduction: the receive buffers can take the next transfers.
        if (!offered) {
          gradients?.release();
          buffers?.release();
        }
      }
    }
  }

  /** Logs the samples a worker could not decode with their paths, as the coordinator's own skips are. */
  private recordRemoteSkips(workerId: string, state: RoundState, skipped: readonly number[], reasons: readonly SkippedSample__Output[]): void {
    if (skipped.length === 0) return;
    const why = new Map(reasons.map((r) => [r.sampleId, r]));
    const split = sourceSplit(state.source);
    const source = `${this.host.datasetName}/${state.round.split}`;
    for (const id of skipped) {
      const reason = why.get(id);
      this.remoteSkips.record({
        source,
        path: describeSample(split, id) ?? `${source} #${id}`,
        reason: clean(reason?.reason, MAX_SKIP_REASON) || 'undecodable',
        detail: clean(reason?.detail, MAX_SKIP_DETAIL) || undefined,
        id,
        worker: workerId,
      });
    }
  }
}

/** A result's skipped ids must be ids of its shard, and account for the samples it did not use. */
function checkSkipped(skipped: readonly number[], n: number, task: Task, from: string): void {
  if (n + skipped.length !== task.ids.length) {
    throw new WeightsError(`${from}: ${n} samples used and ${skipped.length} skipped, the shard holds ${task.ids.length}`);
  }
  if (skipped.length === 0) return;
  const ids = new Set(task.ids);
  for (const id of skipped) if (!ids.has(id)) throw new WeightsError(`${from}: skipped sample ${id} is not in its shard`);
}

/** How a split names sample `id` in logs (its file path where it has one). */
function describeSample(split: DataSplit, id: number): string | undefined {
  const samples = (split as { samples?: { describe?(index: number): string } }).samples;
  try {
    return samples?.describe?.(id);
  } catch {
    return undefined;
  }
}

/** A peer's string, printable and bounded. */
function clean(text: string | undefined, max: number): string {
  return (text ?? '').replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}
