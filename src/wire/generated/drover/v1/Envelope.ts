// Original file: proto/drover.proto


/**
 * On every top-level message.
 */
export interface Envelope {
  /**
   * The job's id. A worker may send "" in JoinRequest to join whatever job the coordinator runs.
   */
  'jobId'?: (string);
  'protocolVersion'?: (number);
}

/**
 * On every top-level message.
 */
export interface Envelope__Output {
  /**
   * The job's id. A worker may send "" in JoinRequest to join whatever job the coordinator runs.
   */
  'jobId': (string);
  'protocolVersion': (number);
}
