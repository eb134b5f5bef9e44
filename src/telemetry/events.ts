import { z } from 'zod';
import type { Logger } from 'pino';

/**
 * The event schema of drover's stats feed: one definition that producers (coordinator,
 * workers, single-process training) and consumers (progress bar, dashboard, report) share.
 * Every line is a pino JSON object with a stable `event` name; docs/events.md documents each
 * field with its type and unit. Fields not listed here are allowed and dropped on parse.
 */

const count = z.number().int().nonnegative();
const positiveInt = z.number().int().positive();
const finite = z.number().finite();
const nonNegative = z.number().finite().nonnegative();
const fraction = z.number().finite().min(0).max(1);
const workerId = z.string().min(1);

/** Fields pino adds to every line; all optional so hand-written logs parse too. */
const base = {
  /** pino numeric level (30 info, 40 warn, 50 error). */
  level: z.number().int().optional(),
  /** ISO 8601 string (drover's loggers) or epoch milliseconds (pino's default). */
  time: z.union([z.string(), z.number()]).optional(),
  pid: z.number().int().optional(),
  msg: z.string().optional(),
};

export const backendEventSchema = z.object({
  ...base,
  event: z.literal('backend'),
  backend: z.string(),
  description: z.string(),
  reason: z.string(),
});

export const jobStartEventSchema = z.object({
  ...base,
  event: z.literal('job_start'),
  job: z.string(),
  mode: z.enum(['single', 'distributed']),
  /** Replica threads of a single process (`drover train --workers N`); absent: one. */
  replicas: positiveInt.optional(),
  backend: z.string(),
  model: z.string(),
  params: count,
  dataset: z.string(),
  classNames: z.array(z.string()),
  /** Training samples per class, indexed like classNames. */
  classCounts: z.array(count).optional(),
  trainSize: count,
  valSize: count,
  epochs: positiveInt,
  batchSize: positiveInt,
  optimizer: z.union([z.string(), z.record(z.string(), z.unknown())]),
  stepsPerEpoch: positiveInt,
  /** Present when the job resumes from a checkpoint: the last completed epoch and step. */
  resumedFrom: z.object({ epoch: count, step: count }).optional(),
});

export const epochStartEventSchema = z.object({
  ...base,
  event: z.literal('epoch_start'),
  epoch: positiveInt,
  epochs: positiveInt,
  steps: positiveInt,
});

export const workerStepSchema = z.object({
  worker: workerId,
  n: count,
  imgPerSec: nonNegative,
  computeMs: nonNegative,
  dataWaitMs: nonNegative.optional(),
});

export const stepEventSchema = z.object({
  ...base,
  event: z.literal('step'),
  epoch: positiveInt,
  step: positiveInt,
  stepInEpoch: positiveInt,
  loss: finite,
  accuracy: fraction,
  lr: nonNegative,
  imgPerSec: nonNegative,
  n: positiveInt,
  dataWaitMs: nonNegative,
  computeMs: nonNegative,
  transferMs: nonNegative,
  reduceMs: nonNegative,
  /** Wall time of the whole step; optional because the parts may overlap. */
  stepMs: nonNegative.optional(),
  workers: z.array(workerStepSchema).optional(),
});

export const epochEventSchema = z.object({
  ...base,
  event: z.literal('epoch'),
  epoch: positiveInt,
  epochs: positiveInt,
  loss: finite,
  accuracy: fraction,
  valLoss: finite.optional(),
  valAccuracy: fraction.optional(),
  lr: nonNegative,
  seconds: nonNegative,
  imgPerSec: nonNegative,
});

export const evaluationEventSchema = z
  .object({
    ...base,
    event: z.literal('evaluation'),
    split: z.enum(['validation', 'test']),
    loss: finite,
    accuracy: fraction,
    n: count,
    classNames: z.array(z.string()).min(1),
    /** rows = true class, columns = predicted class. */
    confusion: z.array(z.array(count)),
    /** Epoch after which the evaluation ran, when it ran during training. */
    epoch: positiveInt.optional(),
  })
  .superRefine((e, ctx) => {
    const k = e.classNames.length;
    if (e.confusion.length !== k || e.confusion.some((row) => row.length !== k)) {
      ctx.addIssue({ code: 'custom', path: ['confusion'], message: `confusion must be ${k} x ${k} (one row and column per class)` });
    }
  });

export const checkpointEventSchema = z.object({
  ...base,
  event: z.literal('checkpoint'),
  step: count,
  epoch: count,
  path: z.string(),
  bytes: count.optional(),
});

export const earlyStopEventSchema = z.object({
  ...base,
  event: z.literal('early_stop'),
  epoch: positiveInt,
  monitor: z.string(),
  best: finite,
  bestEpoch: positiveInt,
  restored: z.boolean(),
});

export const dataSkipEventSchema = z.object({
  ...base,
  event: z.literal('data_skip'),
  source: z.string(),
  path: z.string(),
  reason: z.string(),
  code: z.string(),
  /** The worker that met the bad sample, when a worker decoded it. */
  worker: workerId.optional(),
});

const workerEventFields = {
  ...base,
  worker: workerId,
  address: z.string().optional(),
  backend: z.string().optional(),
  reason: z.string().optional(),
  step: count.optional(),
};

export const workerJoinEventSchema = z.object({ ...workerEventFields, event: z.literal('worker_join') });
export const workerLeaveEventSchema = z.object({ ...workerEventFields, event: z.literal('worker_leave') });
export const workerFailEventSchema = z.object({ ...workerEventFields, event: z.literal('worker_fail') });

/** A worker sent a message about a task it does not hold; evicted after a few. */
export const protocolViolationEventSchema = z.object({
  ...base,
  event: z.literal('protocol_violation'),
  worker: workerId,
  task: z.string(),
  reason: z.string(),
  /** Violations of this worker so far. */
  count: positiveInt,
  step: count.optional(),
});

/** An optimizer step refused because it would have made a weight or optimizer slot non-finite. */
export const updateRefusedEventSchema = z.object({
  ...base,
  event: z.literal('update_refused'),
  step: positiveInt,
  epoch: positiveInt,
  /** The first weight or slot that would have overflowed. */
  target: z.string(),
  code: z.string(),
  /** Workers whose gradients made up the step. */
  workers: z.array(workerId),
  reason: z.string(),
});

export const jobEndEventSchema = z.object({
  ...base,
  event: z.literal('job_end'),
  status: z.enum(['completed', 'failed', 'stopped']),
  epochs: count,
  steps: count,
  seconds: nonNegative,
  testAccuracy: fraction.optional(),
  modelDir: z.string().optional(),
  error: z.string().optional(),
  /** Stable error code (DROVER_ERR_*) when status is 'failed'. */
  code: z.string().optional(),
});

/** Every event drover emits, keyed by its `event` name. */
export const eventSchemas = {
  backend: backendEventSchema,
  job_start: jobStartEventSchema,
  epoch_start: epochStartEventSchema,
  step: stepEventSchema,
  epoch: epochEventSchema,
  evaluation: evaluationEventSchema,
  checkpoint: checkpointEventSchema,
  early_stop: earlyStopEventSchema,
  data_skip: dataSkipEventSchema,
  worker_join: workerJoinEventSchema,
  worker_leave: workerLeaveEventSchema,
  worker_fail: workerFailEventSchema,
  protocol_violation: protocolViolationEventSchema,
  update_refused: updateRefusedEventSchema,
  job_end: jobEndEventSchema,
} as const;

export type EventName = keyof typeof eventSchemas;
export const EVENT_NAMES = Object.keys(eventSchemas) as EventName[];

export type DroverEvent = { [K in EventName]: z.infer<(typeof eventSchemas)[K]> }[EventName];
/** The parsed event named `K`. */
export type EventOf<K extends EventName> = Extract<DroverEvent, { event: K }>;
/** What a producer passes for event `K`: its own fields, without pino's and without `event`. */
export type EventFields<K extends EventName> = Omit<z.input<(typeof eventSchemas)[K]>, 'event' | keyof typeof base>;

export type BackendEvent = EventOf<'backend'>;
export type JobStartEvent = EventOf<'job_start'>;
export type EpochStartEvent = EventOf<'epoch_start'>;
export type StepEvent = EventOf<'step'>;
export type WorkerStep = z.infer<typeof workerStepSchema>;
export type EpochEvent = EventOf<'epoch'>;
export type EvaluationEvent = EventOf<'evaluation'>;
export type CheckpointEvent = EventOf<'checkpoint'>;
export type EarlyStopEvent = EventOf<'early_stop'>;
export type DataSkipEvent = EventOf<'data_skip'>;
export type WorkerEvent = EventOf<'worker_join' | 'worker_leave' | 'worker_fail'>;
export type JobEndEvent = EventOf<'job_end'>;

/** A log line that is JSON but no drover event (a plain pino message). */
export interface LogRecord {
  level?: number;
  time?: string | number;
  msg?: string;
  [key: string]: unknown;
}

/** What one line of a log turned out to be. */
export type ParsedLine =
  | { kind: 'event'; event: DroverEvent }
  /** JSON with an `event` name this version does not know: ignored, counted. */
  | { kind: 'unknown'; name: string; record: LogRecord }
  /** A known event whose fields fail the schema: ignored, counted, with the reason. */
  | { kind: 'invalid'; name: EventName; problem: string }
  /** A JSON object without `event` (a plain log message). */
  | { kind: 'record'; record: LogRecord }
  /** Not a JSON object (a stack trace, a partial line, output of another tool). */
  | { kind: 'not-json' }
  /** Empty or whitespace only. */
  | { kind: 'blank' };

const known = new Set<string>(EVENT_NAMES);

/** Validates one decoded JSON value as a drover event. */
export function parseEventObject(value: unknown): ParsedLine {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { kind: 'not-json' };
  const name = (value as Record<string, unknown>).event;
  if (name === undefined) return { kind: 'record', record: value as LogRecord };
  if (typeof name !== 'string' || !known.has(name)) return { kind: 'unknown', name: String(name), record: value as LogRecord };
  const result = eventSchemas[name as EventName].safeParse(value);
  if (result.success) return { kind: 'event', event: result.data as DroverEvent };
  const issue = result.error.issues[0]!;
  const where = issue.path.length > 0 ? issue.path.join('.') : '(event)';
  return { kind: 'invalid', name: name as EventName, problem: `${where}: ${issue.message}` };
}

/** Classifies one line of a log (without its trailing newline). Never throws. */
export function parseLogLine(line: string): ParsedLine {
  const text = line.trim();
  if (text === '') return { kind: 'blank' };
  if (text[0] !== '{') return { kind: 'not-json' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'not-json' };
  }
  return parseEventObject(value);
}

/** How many lines of each kind a consumer has seen; blank lines are not counted. */
export interface LineTally {
  events: number;
  /** JSON lines without `event`: plain log messages. */
  records: number;
  unknownEvents: number;
  invalidEvents: number;
  notJson: number;
}

export function emptyTally(): LineTally {
  return { events: 0, records: 0, unknownEvents: 0, invalidEvents: 0, notJson: 0 };
}

/** Adds one parsed line to a tally. */
export function countLine(tally: LineTally, parsed: ParsedLine): void {
  switch (parsed.kind) {
    case 'event':
      tally.events++;
      break;
    case 'record':
      tally.records++;
      break;
    case 'unknown':
      tally.unknownEvents++;
      break;
    case 'invalid':
      tally.invalidEvents++;
      break;
    case 'not-json':
      tally.notJson++;
      break;
    case 'blank':
      break;
  }
}

/** Milliseconds since the epoch of an event's `time`, or undefined when absent or unreadable. */
export function eventTimeMs(event: { time?: string | number }): number | undefined {
  if (typeof event.time === 'number') return Number.isFinite(event.time) ? event.time : undefined;
  if (typeof event.time === 'string') {
    const ms = Date.parse(event.time);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/** pino levels by event: trouble is a warning, a failed job an error, the rest info. */
function levelOf(name: EventName, fields: Record<string, unknown>): 'info' | 'warn' | 'error' {
  if (name === 'worker_fail' || name === 'data_skip' || name === 'protocol_violation' || name === 'update_refused') return 'warn';
  if (name === 'job_end' && fields.status === 'failed') return 'error';
  return 'info';
}

/**
 * Emits event `name` on `logger` with the fields the schema documents, at the level that
 * fits (warn for a failed worker or skipped sample, error for a failed job). Typed, so a
 * producer cannot misspell a field; the message defaults to the event name.
 */
export function logEvent<K extends EventName>(logger: Logger, name: K, fields: EventFields<K>, msg?: string): void {
  const record = { ...(fields as Record<string, unknown>), event: name };
  logger[levelOf(name, record)](record, msg ?? name);
}
