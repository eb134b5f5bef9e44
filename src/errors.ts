/**
 * Every error drover raises. Across threads and the wire an error is identified by its
 * `code`, never by its message. Messages say what failed, where, and what to do.
 *
 * Each class sets its `code` and `name` once, as fields; the constructor is DroverError's
 * (message, options) unless the error carries more (a field, a path, a remote code).
 */

export interface DroverErrorOptions {
  cause?: unknown;
}

/** Base class: all drover errors carry a stable `code` (DROVER_ERR_*). */
export class DroverError extends Error {
  readonly code: string = 'DROVER_ERR';
  override name = 'DroverError';
  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** A job file or option that fails validation; `field` names the offending path. */
export class ConfigError extends DroverError {
  override readonly code = 'DROVER_ERR_CONFIG';
  override name = 'ConfigError';
  constructor(message: string, readonly field: string, options: DroverErrorOptions = {}) {
    super(message, options);
  }
}

/** The requested compute backend cannot be used. */
export class BackendError extends DroverError {
  override readonly code = 'DROVER_ERR_BACKEND';
  override name = 'BackendError';
}

/** A GPU was asked for (`--gpu`, `--gpus`, `--backend webgpu`) and none suitable is present. */
export class NoGpuError extends DroverError {
  override readonly code = 'DROVER_ERR_NO_GPU';
  override name = 'NoGpuError';
}

/** A model cannot be built, loaded, cut or saved. */
export class ModelError extends DroverError {
  override readonly code = 'DROVER_ERR_MODEL';
  override name = 'ModelError';
}

/** Weights or gradients whose names, shapes, dtypes or values do not fit the model. */
export class WeightsError extends DroverError {
  override readonly code = 'DROVER_ERR_WEIGHTS';
  override name = 'WeightsError';
}

/** A dataset that cannot be read at all (missing, malformed header, no classes). */
export class DatasetError extends DroverError {
  override readonly code = 'DROVER_ERR_DATASET';
  override name = 'DatasetError';
}

/** One sample that cannot be decoded; callers count and log it as a skip. */
export class SampleError extends DroverError {
  override readonly code = 'DROVER_ERR_SAMPLE';
  override name = 'SampleError';
  constructor(message: string, readonly source: string, options: DroverErrorOptions = {}) {
    super(message, options);
  }
}

/** Training diverged or produced values that cannot be applied (NaN / Inf loss). */
export class TrainingError extends DroverError {
  override readonly code = 'DROVER_ERR_TRAINING';
  override name = 'TrainingError';
}

/**
 * An optimizer step that would make a weight or an optimizer slot non-finite (a finite but huge
 * gradient overflows Adam's second moment): refused before anything is written. `target` names
 * the first weight or slot that would have overflowed.
 */
export class NonFiniteUpdateError extends DroverError {
  override readonly code = 'DROVER_ERR_NON_FINITE_UPDATE';
  override name = 'NonFiniteUpdateError';
  constructor(message: string, readonly target: string, options: DroverErrorOptions = {}) {
    super(message, options);
  }
}

/** A run log (JSON lines) that cannot be read, or holds nothing to report. */
export class RunLogError extends DroverError {
  override readonly code = 'DROVER_ERR_RUN_LOG';
  override name = 'RunLogError';
  constructor(message: string, readonly path: string, options: DroverErrorOptions = {}) {
    super(message, options);
  }
}

/** A peer speaks another protocol version or belongs to another job. */
export class ProtocolMismatchError extends DroverError {
  override readonly code = 'DROVER_ERR_PROTOCOL_MISMATCH';
  override name = 'ProtocolMismatchError';
}

/** A wire message that is malformed, out of order, or refers to something that does not exist. */
export class ProtocolError extends DroverError {
  override readonly code = 'DROVER_ERR_PROTOCOL';
  override name = 'ProtocolError';
}

/** A worker presented no shared secret, or the wrong one. */
export class AuthError extends DroverError {
  override readonly code = 'DROVER_ERR_AUTH';
  override name = 'AuthError';
}

/** A payload (transfer, shard, message) larger than the limit the receiver set. */
export class TransferLimitError extends DroverError {
  override readonly code = 'DROVER_ERR_TRANSFER_LIMIT';
  override name = 'TransferLimitError';
}

/** A worker missed its step deadline (stalled, or far slower than its peers). */
export class DeadlineError extends DroverError {
  override readonly code = 'DROVER_ERR_DEADLINE';
  override name = 'DeadlineError';
}

/** A session or call names a worker the coordinator does not know (left, evicted, or restarted). */
export class UnknownWorkerError extends DroverError {
  override readonly code = 'DROVER_ERR_UNKNOWN_WORKER';
  override name = 'UnknownWorkerError';
}

/** The cluster cannot go on: too few workers in time, coordinator unreachable, a process died. */
export class ClusterError extends DroverError {
  override readonly code = 'DROVER_ERR_CLUSTER';
  override name = 'ClusterError';
}

/** A checkpoint that cannot be written, or read back (missing, truncated, from another job). */
export class CheckpointError extends DroverError {
  override readonly code = 'DROVER_ERR_CHECKPOINT';
  override name = 'CheckpointError';
  constructor(message: string, readonly path: string, options: DroverErrorOptions = {}) {
    super(message, options);
  }
}

/** An error a peer reported over the wire whose code this side has no class for. */
export class RemoteError extends DroverError {
  override readonly code = 'DROVER_ERR_REMOTE';
  override name = 'RemoteError';
  constructor(
    message: string,
    /** The peer's DROVER_ERR_* code, or the gRPC status name when the peer sent none. */
    readonly remoteCode: string,
    options: DroverErrorOptions = {},
  ) {
    super(message, options);
  }
}

/**
 * The installed grpc-js is not the version whose internals drover patches were tested against
 * (src/wire/grpc-internals.ts), or lacks the internal a patch needs: install the tested version.
 */
export class GrpcInternalsError extends DroverError {
  override readonly code = 'DROVER_ERR_GRPC_INTERNALS';
  override name = 'GrpcInternalsError';
  constructor(
    message: string,
    /** The grpc-js version found installed. */
    readonly seenVersion: string,
    /** The grpc-js version drover's patches were tested with. */
    readonly testedVersion: string,
    options: DroverErrorOptions = {},
  ) {
    super(message, options);
  }
}

/**
 * A replica thread of `drover train --workers N` failed (its request threw, or the thread died):
 * the step cannot complete on every replica alike, so the job stops (and --resume continues).
 */
export class ReplicaThreadError extends DroverError {
  override readonly code = 'DROVER_ERR_REPLICA_THREAD';
  override name = 'ReplicaThreadError';
  constructor(
    message: string,
    /** The replica's rank. */
    readonly rank: number,
    /** The failed request's DROVER_ERR_* code inside the thread, when it had one. */
    readonly threadCode?: string,
    options: DroverErrorOptions = {},
  ) {
    super(message, options);
  }
}

/** Why a saved model cannot be read or written; stable, so callers and tests need no message. */
export type ModelFileReason =
  | 'missing-dir'
  | 'missing-model-json'
  | 'malformed-model-json'
  | 'missing-weights'
  | 'weights-size'
  | 'http'
  | 'write';

/** A saved model (model.json + weight shards, on disk or at a URL) that cannot be read or written. */
export class ModelFileError extends DroverError {
  override readonly code = 'DROVER_ERR_MODEL_FILE';
  override name = 'ModelFileError';
  constructor(
    message: string,
    /** The file, directory or URL at fault. */
    readonly path: string,
    readonly reason: ModelFileReason,
    options: DroverErrorOptions = {},
  ) {
    super(message, options);
  }
}

/** A saved model lacks what drover needs to use it: class names, preprocessing, a fixed input size. */
export class ModelMetadataError extends DroverError {
  override readonly code = 'DROVER_ERR_MODEL_METADATA';
  override name = 'ModelMetadataError';
  /** `path`: the model directory or model.json at fault. */
  constructor(message: string, readonly path: string, options: DroverErrorOptions = {}) {
    super(message, options);
  }
}

/** What a PeerTimeoutError found: who, in which half of the reduction, and how they failed. */
export interface PeerFailure {
  /** Ranks (of the group the step ran with) that failed the step, ascending. */
  ranks: readonly number[];
  phase: 'scatter' | 'gather';
  step: number;
  /**
   * deadline: their part did not arrive in time; unreachable: their connection failed; refused:
   * they answered with an error (often: they had abandoned the step already, naming the culprit
   * themselves). A coordinator evicts on deadline and unreachable, scatter reports first.
   */
  reason: 'deadline' | 'unreachable' | 'refused';
}

/**
 * A step of the peer gradient reduction failed because of other ranks (named in `failure`): the
 * coordinator evicts them and the smaller group redoes the step.
 */
export class PeerTimeoutError extends DroverError {
  override readonly code = 'DROVER_ERR_PEER_TIMEOUT';
  readonly failure: PeerFailure;
  constructor(message: string, failure?: PeerFailure, options: DroverErrorOptions = {}) {
    super(message, options);
    this.name = 'PeerTimeoutError';
    this.failure = failure ?? { ranks: [], phase: 'scatter', step: -1, reason: 'deadline' };
  }
}
