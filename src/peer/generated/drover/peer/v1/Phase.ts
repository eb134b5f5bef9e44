// Original file: proto/peer.proto

/**
 * Which half of the reduction a chunk belongs to.
 */
export const Phase = {
  PHASE_UNSPECIFIED: 'PHASE_UNSPECIFIED',
  /**
   * A sender's own values of the receiver's range.
   */
  PHASE_SCATTER: 'PHASE_SCATTER',
  /**
   * The owner's summed range, sent to every rank.
   */
  PHASE_GATHER: 'PHASE_GATHER',
} as const;

/**
 * Which half of the reduction a chunk belongs to.
 */
export type Phase =
  | 'PHASE_UNSPECIFIED'
  | 0
  /**
   * A sender's own values of the receiver's range.
   */
  | 'PHASE_SCATTER'
  | 1
  /**
   * The owner's summed range, sent to every rank.
   */
  | 'PHASE_GATHER'
  | 2

/**
 * Which half of the reduction a chunk belongs to.
 */
export type Phase__Output = typeof Phase[keyof typeof Phase]
