// Original file: proto/drover.proto


/**
 * The job is over (or the worker is dismissed): finish nothing, say goodbye.
 */
export interface Stop {
  'reason'?: (string);
  'jobCompleted'?: (boolean);
  /**
   * The job goes on in a new phase on the same port (transfer fine-tuning trains another set
   * of weights): the worker joins again at once and gets the new replica spec.
   */
  'rejoin'?: (boolean);
}

/**
 * The job is over (or the worker is dismissed): finish nothing, say goodbye.
 */
export interface Stop__Output {
  'reason': (string);
  'jobCompleted': (boolean);
  /**
   * The job goes on in a new phase on the same port (transfer fine-tuning trains another set
   * of weights): the worker joins again at once and gets the new replica spec.
   */
  'rejoin': (boolean);
}
