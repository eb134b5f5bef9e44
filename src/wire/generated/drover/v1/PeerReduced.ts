// Original file: proto/drover.proto

import type { Timings as _drover_v1_Timings, Timings__Output as _drover_v1_Timings__Output } from '../../drover/v1/Timings.ts';
import type { SkippedSample as _drover_v1_SkippedSample, SkippedSample__Output as _drover_v1_SkippedSample__Output } from '../../drover/v1/SkippedSample.ts';

/**
 * Peer reduction: this worker holds the step's reduced gradient and waits for StepCommit.
 */
export interface PeerReduced {
  'taskId'?: (string);
  'step'?: (number);
  'generation'?: (number);
  /**
   * Of this worker's shard: mean loss, correct count, samples used.
   */
  'loss'?: (number | string);
  'correct'?: (number);
  'n'?: (number);
  'timings'?: (_drover_v1_Timings | null);
  'skipped'?: (number)[];
  'skipReasons'?: (_drover_v1_SkippedSample)[];
  /**
   * Non-empty when the reduced sum is not finite: every rank holds the same sum, so every
   * replica refuses the update alike at the commit (weights unchanged); says why.
   */
  'refused'?: (string);
}

/**
 * Peer reduction: this worker holds the step's reduced gradient and waits for StepCommit.
 */
export interface PeerReduced__Output {
  'taskId': (string);
  'step': (number);
  'generation': (number);
  /**
   * Of this worker's shard: mean loss, correct count, samples used.
   */
  'loss': (number);
  'correct': (number);
  'n': (number);
  'timings': (_drover_v1_Timings__Output | null);
  'skipped': (number)[];
  'skipReasons': (_drover_v1_SkippedSample__Output)[];
  /**
   * Non-empty when the reduced sum is not finite: every rank holds the same sum, so every
   * replica refuses the update alike at the commit (weights unchanged); says why.
   */
  'refused': (string);
}
