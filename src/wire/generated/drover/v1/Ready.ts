// Original file: proto/drover.proto


/**
 * First message of a session.
 */
export interface Ready {
  'workerId'?: (string);
}

/**
 * First message of a session.
 */
export interface Ready__Output {
  'workerId': (string);
}
