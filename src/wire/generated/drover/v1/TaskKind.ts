// Original file: proto/drover.proto

export const TaskKind = {
  TASK_KIND_UNSPECIFIED: 'TASK_KIND_UNSPECIFIED',
  /**
   * Loss, correct count and gradients of the mean loss over the shard.
   */
  TRAIN: 'TRAIN',
  /**
   * Loss, correct count and the predicted class of every sample (inference mode).
   */
  EVALUATE: 'EVALUATE',
} as const;

export type TaskKind =
  | 'TASK_KIND_UNSPECIFIED'
  | 0
  /**
   * Loss, correct count and gradients of the mean loss over the shard.
   */
  | 'TRAIN'
  | 1
  /**
   * Loss, correct count and the predicted class of every sample (inference mode).
   */
  | 'EVALUATE'
  | 2

export type TaskKind__Output = typeof TaskKind[keyof typeof TaskKind]
