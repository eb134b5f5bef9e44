import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import {
  AuthError,
  ClusterError,
  ConfigError,
  DeadlineError,
  DroverError,
  ProtocolError,
  ProtocolMismatchError,
  RemoteError,
  TransferLimitError,
  UnknownWorkerError,
  WeightsError,
} from '../errors.ts';

/** Trailer that carries the DROVER_ERR_* code: across the wire an error is known by its code. */
export const ERROR_CODE_KEY = 'drover-error-code';

/** gRPC status of each domain error code; anything else is INTERNAL. The one place this mapping lives. */
const STATUS_OF_CODE: Record<string, status> = {
  DROVER_ERR_AUTH: status.UNAUTHENTICATED,
  DROVER_ERR_PROTOCOL_MISMATCH: status.FAILED_PRECONDITION,
  DROVER_ERR_UNKNOWN_WORKER: status.NOT_FOUND,
  DROVER_ERR_PROTOCOL: status.INVALID_ARGUMENT,
  DROVER_ERR_WEIGHTS: status.INVALID_ARGUMENT,
  DROVER_ERR_CONFIG: status.INVALID_ARGUMENT,
  DROVER_ERR_TRANSFER_LIMIT: status.RESOURCE_EXHAUSTED,
  DROVER_ERR_DEADLINE: status.DEADLINE_EXCEEDED,
  DROVER_ERR_CLUSTER: status.UNAVAILABLE,
};

/** The gRPC status a drover error travels as. */
export function statusOf(error: unknown): status {
  if (error instanceof DroverError) return STATUS_OF_CODE[error.code] ?? status.INTERNAL;
  return status.INTERNAL;
}

/** A status object (server side) for a domain error: code, message, and the drover code in a trailer. */
export function toStatus(error: unknown): Partial<StatusObject> & { code: status; details: string; metadata: Metadata } {
  const metadata = new Metadata();
  const code = error instanceof DroverError ? error.code : 'DROVER_ERR';
  metadata.set(ERROR_CODE_KEY, code);
  const details = error instanceof Error ? error.message : String(error);
  return { code: statusOf(error), details, metadata };
}

type ErrorFactory = (message: string) => DroverError;

const CLASS_OF_CODE: Record<string, ErrorFactory> = {
  DROVER_ERR_AUTH: (m) => new AuthError(m),
  DROVER_ERR_PROTOCOL_MISMATCH: (m) => new ProtocolMismatchError(m),
  DROVER_ERR_UNKNOWN_WORKER: (m) => new UnknownWorkerError(m),
  DROVER_ERR_PROTOCOL: (m) => new ProtocolError(m),
  DROVER_ERR_WEIGHTS: (m) => new WeightsError(m),
  DROVER_ERR_CONFIG: (m) => new ConfigError(m, '(remote)'),
  DROVER_ERR_TRANSFER_LIMIT: (m) => new TransferLimitError(m),
  DROVER_ERR_DEADLINE: (m) => new DeadlineError(m),
  DROVER_ERR_CLUSTER: (m) => new ClusterError(m),
};

/**
 * The domain error behind a gRPC error a client received: the class of the drover code in the
 * trailers, else one chosen by status (UNAVAILABLE and a local DEADLINE_EXCEEDED are cluster
 * conditions), else a RemoteError that keeps the peer's code.
 */
export function fromServiceError(error: Partial<ServiceError> & { message?: string }, what = 'call'): DroverError {
  const code = error.metadata?.get(ERROR_CODE_KEY)[0];
  const details = error.details || error.message || 'no details';
  const message = `${what}: ${details}`;
  if (typeof code === 'string') {
    const make = CLASS_OF_CODE[code];
    return make ? withCause(make(message), error) : new RemoteError(message, code, { cause: error });
  }
  switch (error.code) {
    case status.UNAVAILABLE:
      return new ClusterError(`${what}: coordinator unreachable (${details})`, { cause: error });
    case status.DEADLINE_EXCEEDED:
      return new DeadlineError(`${what}: no answer before the deadline (${details})`, { cause: error });
    case status.UNAUTHENTICATED:
      return new AuthError(message, { cause: error });
    case status.RESOURCE_EXHAUSTED:
      return new TransferLimitError(message, { cause: error });
    default:
      return new RemoteError(message, status[error.code ?? status.UNKNOWN] ?? 'UNKNOWN', { cause: error });
  }
}

function withCause(error: DroverError, cause: unknown): DroverError {
  Object.defineProperty(error, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  return error;
}
