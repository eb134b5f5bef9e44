// Original file: proto/drover.proto


/**
 * Drops tasks the worker has not started (their samples went to someone else).
 */
export interface CancelTasks {
  'taskIds'?: (string)[];
}

/**
 * Drops tasks the worker has not started (their samples went to someone else).
 */
export interface CancelTasks__Output {
  'taskIds': (string)[];
}
