// Original file: proto/drover.proto


/**
 * Where a worker's time went on one task, in milliseconds.
 */
export interface Timings {
  /**
   * Waiting for the decoded shard once weights were there (0 when prefetch kept up).
   */
  'dataWaitMs'?: (number | string);
  /**
   * Forward and backward pass (or inference).
   */
  'computeMs'?: (number | string);
  /**
   * Receiving the weights and sending the result, as the worker sees it.
   */
  'transferMs'?: (number | string);
  /**
   * Decoding and augmenting the shard (overlaps earlier steps when prefetched).
   */
  'decodeMs'?: (number | string);
}

/**
 * Where a worker's time went on one task, in milliseconds.
 */
export interface Timings__Output {
  /**
   * Waiting for the decoded shard once weights were there (0 when prefetch kept up).
   */
  'dataWaitMs': (number);
  /**
   * Forward and backward pass (or inference).
   */
  'computeMs': (number);
  /**
   * Receiving the weights and sending the result, as the worker sees it.
   */
  'transferMs': (number);
  /**
   * Decoding and augmenting the shard (overlaps earlier steps when prefetched).
   */
  'decodeMs': (number);
}
