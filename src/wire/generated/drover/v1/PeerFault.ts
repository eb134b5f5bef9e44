// Original file: proto/drover.proto


/**
 * Peer reduction: the step's reduction failed (PeerTimeoutError); `ranks` are who failed it.
 */
export interface PeerFault {
  'taskId'?: (string);
  'step'?: (number);
  'generation'?: (number);
  'ranks'?: (number)[];
  /**
   * "scatter" or "gather".
   */
  'phase'?: (string);
  /**
   * "deadline", "unreachable" or "refused".
   */
  'reason'?: (string);
  'message'?: (string);
}

/**
 * Peer reduction: the step's reduction failed (PeerTimeoutError); `ranks` are who failed it.
 */
export interface PeerFault__Output {
  'taskId': (string);
  'step': (number);
  'generation': (number);
  'ranks': (number)[];
  /**
   * "scatter" or "gather".
   */
  'phase': (string);
  /**
   * "deadline", "unreachable" or "refused".
   */
  'reason': (string);
  'message': (string);
}
