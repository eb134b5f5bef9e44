// Original file: proto/drover.proto


/**
 * Every rank reported the step reduced: apply it (two-phase step: all or none apply).
 */
export interface StepCommit {
  'step'?: (number);
  'generation'?: (number);
  'learningRate'?: (number | string);
  /**
   * Samples used over the group (skips make it smaller than global_batch: rescale by
   * global_batch / samples). 0: no sample could be used, no update.
   */
  'samples'?: (number);
  /**
   * The weights version after the update (bumped even when the update is skipped).
   */
  'version'?: (number);
}

/**
 * Every rank reported the step reduced: apply it (two-phase step: all or none apply).
 */
export interface StepCommit__Output {
  'step': (number);
  'generation': (number);
  'learningRate': (number);
  /**
   * Samples used over the group (skips make it smaller than global_batch: rescale by
   * global_batch / samples). 0: no sample could be used, no update.
   */
  'samples': (number);
  /**
   * The weights version after the update (bumped even when the update is skipped).
   */
  'version': (number);
}
