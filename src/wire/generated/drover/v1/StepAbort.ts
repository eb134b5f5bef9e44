// Original file: proto/drover.proto


/**
 * The step's reduction is abandoned (a peer failed): drop its result and its queued task.
 */
export interface StepAbort {
  'step'?: (number);
  'generation'?: (number);
}

/**
 * The step's reduction is abandoned (a peer failed): drop its result and its queued task.
 */
export interface StepAbort__Output {
  'step': (number);
  'generation': (number);
}
