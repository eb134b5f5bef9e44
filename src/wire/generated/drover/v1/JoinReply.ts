// Original file: proto/drover.proto

import type { Envelope as _drover_v1_Envelope, Envelope__Output as _drover_v1_Envelope__Output } from '../../drover/v1/Envelope.ts';
import type { TensorEncoding as _drover_v1_TensorEncoding, TensorEncoding__Output as _drover_v1_TensorEncoding__Output } from '../../drover/v1/TensorEncoding.ts';

export interface JoinReply {
  'envelope'?: (_drover_v1_Envelope | null);
  /**
   * Id to present in Session.ready and Leave.
   */
  'workerId'?: (string);
  /**
   * JSON of the replica spec (model layers, input shape, classes, sample format, data transport);
   * validated by the worker against its schema.
   */
  'replicaSpecJson'?: (string);
  /**
   * Largest chunk payload the coordinator sends and accepts.
   */
  'maxChunkBytes'?: (number);
  /**
   * Secret bound to worker_id: only a peer presenting it may open the id's session or leave as
   * it (the shared token proves membership of the cluster, not which worker one is).
   */
  'sessionKey'?: (string);
  /**
   * How the worker must send its gradients (the job's cluster.wire); the coordinator refuses a
   * gradient transfer in any other encoding.
   */
  'gradientEncoding'?: (_drover_v1_TensorEncoding);
}

export interface JoinReply__Output {
  'envelope': (_drover_v1_Envelope__Output | null);
  /**
   * Id to present in Session.ready and Leave.
   */
  'workerId': (string);
  /**
   * JSON of the replica spec (model layers, input shape, classes, sample format, data transport);
   * validated by the worker against its schema.
   */
  'replicaSpecJson': (string);
  /**
   * Largest chunk payload the coordinator sends and accepts.
   */
  'maxChunkBytes': (number);
  /**
   * Secret bound to worker_id: only a peer presenting it may open the id's session or leave as
   * it (the shared token proves membership of the cluster, not which worker one is).
   */
  'sessionKey': (string);
  /**
   * How the worker must send its gradients (the job's cluster.wire); the coordinator refuses a
   * gradient transfer in any other encoding.
   */
  'gradientEncoding': (_drover_v1_TensorEncoding__Output);
}
