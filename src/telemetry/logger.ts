import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** pino level; default 'info' (DROVER_LOG_LEVEL overrides). */
  level?: string;
  /** Where JSON lines go; default stdout. Tests pass a sink they read. */
  destination?: DestinationStream;
}

/** The stats feed: JSON lines, one stable `event` name per line. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.DROVER_LOG_LEVEL ?? 'info';
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A logger that drops everything, for library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
