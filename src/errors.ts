/**
 * Every error drover raises. Across threads and the wire an error is identified by its
 * `code`, never by its message. Messages say what failed, where, and what to do.
 */

export interface DroverErrorOptions {
  cause?: unknown;
}

/** Base class: all drover errors carry a stable `code` (DROVER_ERR_*). */
export class DroverError extends Error {
  readonly code: string = 'DROVER_ERR';
  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DroverError';
  }
}

/** A job file or option that fails validation; `field` names the offending path. */
export class ConfigError extends DroverError {
  override readonly code = 'DROVER_ERR_CONFIG';
  constructor(
    message: string,
    readonly field: string,
    options: DroverErrorOptions = {},
  ) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** The requested compute backend cannot be used. */
export class BackendError extends DroverError {
  override readonly code = 'DROVER_ERR_BACKEND';
  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options);
    this.name = 'BackendError';
  }
}

/** A model cannot be built, loaded, cut or saved. */
export class ModelError extends DroverError {
  override readonly code = 'DROVER_ERR_MODEL';
  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options);
    this.name = 'ModelError';
  }
}

/** Weights or gradients whose names, shapes, dtypes or values do not fit the model. */
export class WeightsError extends DroverError {
  override readonly code = 'DROVER_ERR_WEIGHTS';
  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options);
    this.name = 'WeightsError';
  }
}

/** A dataset that cannot be read at all (missing, malformed header, no classes). */
export class DatasetError extends DroverError {
  override readonly code = 'DROVER_ERR_DATASET';
  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options);
    this.name = 'DatasetError';
  }
}

/** One sample that cannot be decoded; callers count and log it as a skip. */
export class SampleError extends DroverError {
  override readonly code = 'DROVER_ERR_SAMPLE';
  constructor(
    message: string,
    readonly source: string,
    options: DroverErrorOptions = {},
  ) {
    super(message, options);
    this.name = 'SampleError';
  }
}

/** Training diverged or produced values that cannot be applied (NaN / Inf loss). */
export class TrainingError extends DroverError {
  override readonly code = 'DROVER_ERR_TRAINING';
  constructor(message: string, options: DroverErrorOptions = {}) {
    super(message, options);
    this.name = 'TrainingError';
  }
}

/** A run log (JSON lines) that cannot be read, or holds nothing to report. */
export class RunLogError extends DroverError {
  override readonly code = 'DROVER_ERR_RUN_LOG';
  constructor(
    message: string,
    readonly path: string,
    options: DroverErrorOptions = {},
  ) {
    super(message, options);
    this.name = 'RunLogError';
  }
}
