// Original file: proto/drover.proto


/**
 * First message of a session.
 */
export interface Ready {
  'workerId'?: (string);
  /**
   * The session_key of worker_id's JoinReply.
   */
  'sessionKey'?: (string);
  /**
   * Port of this worker's Peer service (peer-reduction jobs; 0 otherwise). The coordinator
   * pairs it with the address it sees the session come from.
   */
  'peerPort'?: (number);
}

/**
 * First message of a session.
 */
export interface Ready__Output {
  'workerId': (string);
  /**
   * The session_key of worker_id's JoinReply.
   */
  'sessionKey': (string);
  /**
   * Port of this worker's Peer service (peer-reduction jobs; 0 otherwise). The coordinator
   * pairs it with the address it sees the session come from.
   */
  'peerPort': (number);
}
