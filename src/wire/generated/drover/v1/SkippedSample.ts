// Original file: proto/drover.proto


/**
 * One sample a worker could not decode.
 */
export interface SkippedSample {
  'sampleId'?: (number);
  /**
   * Reason as in data_skip events (unsupported_format, corrupt, too_large, ...).
   */
  'reason'?: (string);
  'detail'?: (string);
}

/**
 * One sample a worker could not decode.
 */
export interface SkippedSample__Output {
  'sampleId': (number);
  /**
   * Reason as in data_skip events (unsupported_format, corrupt, too_large, ...).
   */
  'reason': (string);
  'detail': (string);
}
