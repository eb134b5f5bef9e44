// Original file: proto/drover.proto

import type { TaskKind as _drover_v1_TaskKind, TaskKind__Output as _drover_v1_TaskKind__Output } from '../../drover/v1/TaskKind.ts';
import type { Shard as _drover_v1_Shard, Shard__Output as _drover_v1_Shard__Output } from '../../drover/v1/Shard.ts';
import type { PeerStep as _drover_v1_PeerStep, PeerStep__Output as _drover_v1_PeerStep__Output } from '../../drover/v1/PeerStep.ts';

export interface TaskAssignment {
  'taskId'?: (string);
  'kind'?: (_drover_v1_TaskKind);
  /**
   * Global step (1-based) the task belongs to; for evaluation, the step after which it runs.
   */
  'step'?: (number);
  /**
   * The weights to compute on.
   */
  'weightsVersion'?: (number);
  'shard'?: (_drover_v1_Shard | null);
  /**
   * Peer reduction: the group that reduces this step's gradients. Absent with the star.
   */
  'peer'?: (_drover_v1_PeerStep | null);
}

export interface TaskAssignment__Output {
  'taskId': (string);
  'kind': (_drover_v1_TaskKind__Output);
  /**
   * Global step (1-based) the task belongs to; for evaluation, the step after which it runs.
   */
  'step': (number);
  /**
   * The weights to compute on.
   */
  'weightsVersion': (number);
  'shard': (_drover_v1_Shard__Output | null);
  /**
   * Peer reduction: the group that reduces this step's gradients. Absent with the star.
   */
  'peer': (_drover_v1_PeerStep__Output | null);
}
