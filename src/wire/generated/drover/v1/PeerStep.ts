// Original file: proto/drover.proto


/**
 * One step of the peer reduction as one worker takes part in it.
 */
export interface PeerStep {
  /**
   * Membership generation: raised whenever the group changes (an eviction, a join).
   */
  'generation'?: (number);
  /**
   * This worker's rank in `peers` (the summation order).
   */
  'rank'?: (number);
  /**
   * Every rank's Peer address ("host:port"), in rank order.
   */
  'peers'?: (string)[];
  /**
   * The step's global batch: each worker scales its mean gradient by n / global_batch, so the
   * rank-order sum is the global-batch mean.
   */
  'globalBatch'?: (number);
  /**
   * How long to wait for the peers' parts before naming the missing ones (PeerFault).
   */
  'deadlineMs'?: (number);
}

/**
 * One step of the peer reduction as one worker takes part in it.
 */
export interface PeerStep__Output {
  /**
   * Membership generation: raised whenever the group changes (an eviction, a join).
   */
  'generation': (number);
  /**
   * This worker's rank in `peers` (the summation order).
   */
  'rank': (number);
  /**
   * Every rank's Peer address ("host:port"), in rank order.
   */
  'peers': (string)[];
  /**
   * The step's global batch: each worker scales its mean gradient by n / global_batch, so the
   * rank-order sum is the global-batch mean.
   */
  'globalBatch': (number);
  /**
   * How long to wait for the peers' parts before naming the missing ones (PeerFault).
   */
  'deadlineMs': (number);
}
