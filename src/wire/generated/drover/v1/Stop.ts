// Original file: proto/drover.proto


/**
 * The job is over (or the worker is dismissed): finish nothing, say goodbye.
 */
export interface Stop {
  'reason'?: (string);
  'jobCompleted'?: (boolean);
}

/**
 * The job is over (or the worker is dismissed): finish nothing, say goodbye.
 */
export interface Stop__Output {
  'reason': (string);
  'jobCompleted': (boolean);
}
