import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Batch, DataSplit } from '../data/types.ts';
import type { PredictionResult } from '../train/gradient-model.ts';
import type { EvaluationMetrics } from './step-engine.ts';

export interface EvaluateOptions {
  /** Samples per forward pass. Default 256. */
  batchSize?: number;
  /** Stops between batches when aborted; the result then covers only the batches evaluated. */
  signal?: AbortSignal;
}

/** What evaluates a batch in inference mode (a GradientModel, a Trainer). */
export interface BatchEvaluator {
  evaluate(batch: Batch): Promise<PredictionResult>;
}

/**
 * Evaluates a split in this process, in batches; loss is the sample-weighted mean. Yields to
 * the event loop between batches, so a long evaluation does not hold up signals or the dashboard.
 */
export async function evaluateSplit(model: BatchEvaluator, split: DataSplit, classes: number, options: EvaluateOptions = {}): Promise<EvaluationMetrics> {
  const batchSize = options.batchSize ?? 256;
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  let lossSum = 0;
  let correct = 0;
  let n = 0;
  for (let start = 0; start < split.length; start += batchSize) {
    const indices = Array.from({ length: Math.min(batchSize, split.length - start) }, (_, i) => start + i);
    const batch = await split.loadBatch(indices, { augment: false });
    if (batch.n === 0) continue;
    const result = await model.evaluate(batch);
    lossSum += result.loss * result.n;
    correct += result.correct;
    n += result.n;
    for (let i = 0; i < batch.n; i++) confusion[batch.y[i]!]![result.predicted[i]!]! += 1;
    batch.release?.();
    await nextTurn();
    if (options.signal?.aborted) break;
  }
  return { loss: n ? lossSum / n : NaN, accuracy: n ? correct / n : NaN, n, confusion };
}
