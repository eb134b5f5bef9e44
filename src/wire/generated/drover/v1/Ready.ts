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
}
