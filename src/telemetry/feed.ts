import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import pino from 'pino';
import type { DestinationStream, Level, Logger, StreamEntry } from 'pino';
import { ConfigError } from '../errors.ts';
import { createLogger } from './logger.ts';
import { ProgressStream } from './progress.ts';
import type { TerminalStream } from './progress.ts';

export interface RunFeedOptions {
  /** The process's standard output (a TTY gets the progress bar, anything else JSON lines). Default process.stdout. */
  stdout?: TerminalStream;
  /** Also write every JSON line here (created with its folder; truncated unless `appendLog`). */
  logFile?: string;
  /** Keep an existing log file and append (a resumed job). Default false. */
  appendLog?: boolean;
  /** pino level name. Default 'info' (DROVER_LOG_LEVEL overrides the default). */
  level?: string;
  /** 'auto' (default): progress bar on a TTY outside CI, JSON otherwise. */
  progress?: 'auto' | 'always' | 'never';
  /** Environment consulted for CI and DROVER_LOG_LEVEL. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Progress bar redraw interval; see ProgressOptions. */
  minRedrawMs?: number;
  /** Also hand every JSON line (info and above) to this stream: the metrics endpoint's reader. */
  tap?: DestinationStream;
}

export interface RunFeed {
  /** The logger the job writes its events to. */
  logger: Logger;
  /** What stdout shows. */
  stdoutMode: 'progress' | 'json';
  /** The JSON log file, when one is written. */
  logFile?: string;
  /** Flushes and closes the log file and the progress view; stdout stays open. */
  close(): Promise<void>;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const FEED_OPTION_KEYS = new Set(['stdout', 'logFile', 'appendLog', 'level', 'progress', 'env', 'minRedrawMs', 'tap']);

/** True when the environment says we run under continuous integration (CI=1, CI=true, ...). */
export function isCi(env: NodeJS.ProcessEnv): boolean {
  const ci = env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

function validate(options: RunFeedOptions): void {
  for (const key of Object.keys(options)) {
    if (!FEED_OPTION_KEYS.has(key)) throw new ConfigError(`unknown run feed option "${key}"`, key);
  }
  if (options.logFile !== undefined && (typeof options.logFile !== 'string' || options.logFile === '')) {
    throw new ConfigError(`logFile must be a non-empty path, got ${JSON.stringify(options.logFile)}`, 'logFile');
  }
  if (options.level !== undefined && !(LEVELS as readonly string[]).includes(options.level)) {
    throw new ConfigError(`level must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(options.level)}`, 'level');
  }
  if (options.progress !== undefined && !['auto', 'always', 'never'].includes(options.progress)) {
    throw new ConfigError(`progress must be 'auto', 'always' or 'never', got ${JSON.stringify(options.progress)}`, 'progress');
  }
  if (options.stdout !== undefined && typeof options.stdout.write !== 'function') {
    throw new ConfigError('stdout must be a writable stream', 'stdout');
  }
}

/**
 * The feed of one run: a pino logger whose JSON lines go to stdout (in a pipe or CI) or,
 * on a terminal, drive a Keras-style progress bar instead; and, when `logFile` is given,
 * always go to that file too (what `drover dashboard` and `drover report` read). Rejects
 * with ConfigError on a bad option and with the file system's error when the log file
 * cannot be opened.
 */
export async function createRunFeed(options: RunFeedOptions = {}): Promise<RunFeed> {
  validate(options);
  const env = options.env ?? process.env;
  const stdout = options.stdout ?? process.stdout;
  const level = (options.level ?? env.DROVER_LOG_LEVEL ?? 'info') as Level;
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(`DROVER_LOG_LEVEL must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`, 'DROVER_LOG_LEVEL');
  }
  const wantProgress = options.progress ?? 'auto';
  const progress = wantProgress === 'always' || (wantProgress === 'auto' && stdout.isTTY === true && !isCi(env));

  const streams: StreamEntry[] = [];
  let progressStream: ProgressStream | undefined;
  if (progress) {
    progressStream = new ProgressStream({ out: stdout, ...(options.minRedrawMs !== undefined ? { minRedrawMs: options.minRedrawMs } : {}) });
    streams.push({ level, stream: progressStream });
  } else {
    streams.push({ level, stream: stdout as DestinationStream });
  }

  let file: ReturnType<typeof pino.destination> | undefined;
  if (options.logFile !== undefined) {
    // Synchronous writes: a line is on disk (and visible to the dashboard) as soon as it is
    // logged, and a crash loses nothing. A step line every few ms costs microseconds.
    file = pino.destination({ dest: options.logFile, sync: true, mkdir: true, append: options.appendLog ?? false });
    streams.push({ level, stream: file });
  }

  // The tap reads the events (info and above) even when DROVER_LOG_LEVEL=warn quiets stdout and
  // the file: the logger then lets info through, and each stream keeps its own level.
  let loggerLevel: string = level;
  if (options.tap !== undefined) {
    streams.push({ level: 'info', stream: options.tap });
    const value = pino.levels.values[level];
    if (value !== undefined && value > pino.levels.values.info!) loggerLevel = 'info';
  }
  const logger = createLogger({ level: loggerLevel, destination: pino.multistream(streams) });
  let closed: Promise<void> | undefined;
  return {
    logger,
    stdoutMode: progress ? 'progress' : 'json',
    ...(options.logFile !== undefined ? { logFile: options.logFile } : {}),
    close() {
      closed ??= (async () => {
        if (progressStream) {
          progressStream.end();
          await finished(progressStream);
        }
        if (file) {
          const done = once(file, 'close');
          file.end();
          await done;
        }
      })();
      return closed;
    },
  };
}
