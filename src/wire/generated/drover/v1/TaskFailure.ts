// Original file: proto/drover.proto


/**
 * A task the worker could not do (e.g. its shard cannot be decoded); it goes to another worker.
 */
export interface TaskFailure {
  'taskId'?: (string);
  /**
   * Stable DROVER_ERR_* code.
   */
  'code'?: (string);
  'message'?: (string);
}

/**
 * A task the worker could not do (e.g. its shard cannot be decoded); it goes to another worker.
 */
export interface TaskFailure__Output {
  'taskId': (string);
  /**
   * Stable DROVER_ERR_* code.
   */
  'code': (string);
  'message': (string);
}
