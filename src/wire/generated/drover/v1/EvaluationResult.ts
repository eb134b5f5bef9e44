// Original file: proto/drover.proto

import type { Timings as _drover_v1_Timings, Timings__Output as _drover_v1_Timings__Output } from '../../drover/v1/Timings.ts';
import type { SkippedSample as _drover_v1_SkippedSample, SkippedSample__Output as _drover_v1_SkippedSample__Output } from '../../drover/v1/SkippedSample.ts';

export interface EvaluationResult {
  'taskId'?: (string);
  'step'?: (number);
  /**
   * Sum of per-sample losses (mean loss x n), correct count, samples.
   */
  'lossSum'?: (number | string);
  'correct'?: (number);
  'n'?: (number);
  /**
   * Predicted class of each evaluated sample, in shard order (skipped samples left out).
   */
  'predicted'?: (number)[];
  'timings'?: (_drover_v1_Timings | null);
  /**
   * Sample ids of the shard that could not be decoded.
   */
  'skipped'?: (number)[];
  'skipReasons'?: (_drover_v1_SkippedSample)[];
}

export interface EvaluationResult__Output {
  'taskId': (string);
  'step': (number);
  /**
   * Sum of per-sample losses (mean loss x n), correct count, samples.
   */
  'lossSum': (number);
  'correct': (number);
  'n': (number);
  /**
   * Predicted class of each evaluated sample, in shard order (skipped samples left out).
   */
  'predicted': (number)[];
  'timings': (_drover_v1_Timings__Output | null);
  /**
   * Sample ids of the shard that could not be decoded.
   */
  'skipped': (number)[];
  'skipReasons': (_drover_v1_SkippedSample__Output)[];
}
