// Original file: proto/drover.proto


/**
 * What a worker of a peer-reduction job needs besides the replica spec.
 */
export interface PeerConfig {
  /**
   * Port to serve the Peer service on (0: any free port).
   */
  'port'?: (number);
  /**
   * JSON of the job's optimizer spec: every worker applies the same optimizer step.
   */
  'optimizerJson'?: (string);
  /**
   * How long the peer server lets a peer a step ahead wait (at least the step deadline).
   */
  'parkMs'?: (number);
}

/**
 * What a worker of a peer-reduction job needs besides the replica spec.
 */
export interface PeerConfig__Output {
  /**
   * Port to serve the Peer service on (0: any free port).
   */
  'port': (number);
  /**
   * JSON of the job's optimizer spec: every worker applies the same optimizer step.
   */
  'optimizerJson': (string);
  /**
   * How long the peer server lets a peer a step ahead wait (at least the step deadline).
   */
  'parkMs': (number);
}
