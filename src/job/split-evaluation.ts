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
 * Evaluates a split in batches; loss is the sample-weighted mean. With several evaluators
 * (replica threads) each takes the next batch as it frees up, and the results are added in
 * batch order, so the figures do not depend on which evaluator took which batch. Yields to the
 * event loop between batches, so a long evaluation does not hold up signals or the dashboard.
 */
export async function evaluateSplit(model: BatchEvaluator | readonly BatchEvaluator[], split: DataSplit, classes: number, options: EvaluateOptions = {}): Promise<EvaluationMetrics> {
  const batchSize = options.batchSize ?? 256;
  const evaluators = Array.isArray(model) ? model : [model as BatchEvaluator];
  const batches = Math.ceil(split.length / batchSize);
  const results: ({ loss: number; correct: number; n: number; confusion: [number, number][] } | undefined)[] = new Array(batches);
  let next = 0;
  let failed = false;
  const lane = async (evaluator: BatchEvaluator): Promise<void> => {
    try {
      await run(evaluator);
    } catch (error) {
      // The other lanes stop at their next batch: the split's result is lost anyway.
      failed = true;
      throw error;
    }
  };
  const run = async (evaluator: BatchEvaluator): Promise<void> => {
    while (next < batches && !failed && !options.signal?.aborted) {
      const b = next++;
      const start = b * batchSize;
      const indices = Array.from({ length: Math.min(batchSize, split.length - start) }, (_, i) => start + i);
      const batch = await split.loadBatch(indices, { augment: false });
      if (batch.n > 0) {
        const result = await evaluator.evaluate(batch);
        const pairs: [number, number][] = Array.from({ length: batch.n }, (_, i) => [batch.y[i]!, result.predicted[i]!]);
        results[b] = { loss: result.loss, correct: result.correct, n: result.n, confusion: pairs };
      }
      batch.release?.();
      await nextTurn();
    }
  };
  await Promise.all(evaluators.map(lane));
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  let lossSum = 0;
  let correct = 0;
  let n = 0;
  for (const result of results) {
    if (!result) continue;
    lossSum += result.loss * result.n;
    correct += result.correct;
    n += result.n;
    for (const [truth, predicted] of result.confusion) confusion[truth]![predicted]! += 1;
  }
  return { loss: n ? lossSum / n : NaN, accuracy: n ? correct / n : NaN, n, confusion };
}
