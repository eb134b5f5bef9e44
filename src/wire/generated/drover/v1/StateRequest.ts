// Original file: proto/drover.proto


/**
 * Send the model's weights and optimizer state as of the last applied step (StateReply).
 */
export interface StateRequest {
  'requestId'?: (number);
}

/**
 * Send the model's weights and optimizer state as of the last applied step (StateReply).
 */
export interface StateRequest__Output {
  'requestId': (number);
}
