import { ProtocolError } from '../errors.ts';
import type { EvaluationMetrics } from '../job/step-engine.ts';

/**
 * Sums the results of evaluation tasks. The coordinator knows every label, so the confusion
 * matrix is built here from the workers' predicted classes; a worker's correct count must agree.
 */
export class EvaluationAccumulator {
  private readonly confusion: number[][];
  private lossSum = 0;
  private correct = 0;
  private n = 0;

  constructor(private readonly classes: number) {
    this.confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  }

  /** Adds one task's result; `labels` are the true classes of its samples, in shard order. */
  add(result: { lossSum: number; correct: number; n: number; predicted: readonly number[] }, labels: ArrayLike<number>, from: string): void {
    if (result.n !== labels.length || result.predicted.length !== labels.length) {
      throw new ProtocolError(`${from}: evaluation of ${labels.length} samples returned n=${result.n} and ${result.predicted.length} predictions`);
    }
    if (!Number.isFinite(result.lossSum)) throw new ProtocolError(`${from}: evaluation loss is ${result.lossSum}`);
    let correct = 0;
    for (const [i, p] of result.predicted.entries()) {
      if (!Number.isInteger(p) || p < 0 || p >= this.classes) throw new ProtocolError(`${from}: predicted class ${p} is outside 0..${this.classes - 1}`);
      if (p === labels[i]) correct++;
    }
    if (correct !== result.correct) throw new ProtocolError(`${from}: reports ${result.correct} correct, its predictions give ${correct}`);
    for (const [i, p] of result.predicted.entries()) this.confusion[labels[i]!]![p]! += 1;
    this.lossSum += result.lossSum;
    this.correct += correct;
    this.n += result.n;
  }

  result(): EvaluationMetrics {
    const n = this.n;
    return { loss: n ? this.lossSum / n : NaN, accuracy: n ? this.correct / n : NaN, n, confusion: this.confusion.map((row) => [...row]) };
  }
}
