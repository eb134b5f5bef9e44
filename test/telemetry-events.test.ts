import test from 'ava';
import { readFile } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { EVENT_NAMES, countLine, emptyTally, eventSchemas, eventTimeMs, logEvent, parseLogLine, workerStepSchema } from '../src/telemetry/events.ts';
import { syntheticRunEvents } from './helpers/run-log.ts';

test('every line of a realistic run log parses as a drover event', (t) => {
  const events = syntheticRunEvents();
  const names = new Set<string>();
  for (const line of events) {
    const parsed = parseLogLine(JSON.stringify(line));
    if (parsed.kind !== 'event') t.fail(`${String(line.event)}: ${JSON.stringify(parsed)}`);
    else names.add(parsed.event.event);
  }
  // The generator covers the schema, except the events a healthy run never needs.
  t.deepEqual(
    [...names].sort(),
    EVENT_NAMES.filter((n) => !['worker_leave', 'early_stop', 'protocol_violation', 'update_refused'].includes(n)).sort(),
  );
});

test('a known event with a wrong field is invalid and names the field', (t) => {
  const step = syntheticRunEvents().find((e) => e.event === 'step')!;
  const parsed = parseLogLine(JSON.stringify({ ...step, loss: 'high' }));
  t.is(parsed.kind, 'invalid');
  if (parsed.kind === 'invalid') {
    t.is(parsed.name, 'step');
    t.regex(parsed.problem, /^loss: /);
  }
  const missing = parseLogLine(JSON.stringify({ event: 'epoch', epoch: 1 }));
  t.is(missing.kind, 'invalid');
});

test('a confusion matrix must be k x k for k class names', (t) => {
  const parsed = parseLogLine(
    JSON.stringify({ event: 'evaluation', split: 'test', loss: 0.3, accuracy: 0.9, n: 3, classNames: ['a', 'b'], confusion: [[1, 0]] }),
  );
  t.is(parsed.kind, 'invalid');
  if (parsed.kind === 'invalid') t.regex(parsed.problem, /confusion: confusion must be 2 x 2/);
});

test('unknown events, plain log lines, non-JSON and blank lines are told apart and counted', (t) => {
  const lines = [
    JSON.stringify({ level: 30, event: 'interrupt', msg: 'stopping' }),
    JSON.stringify({ level: 30, msg: 'listening on :7000' }),
    'Error: something\n    at foo (bar.js:1:1)',
    '{"event":"step","loss":0.1',
    '',
    '   ',
    '[1,2,3]',
    JSON.stringify({ event: 'checkpoint', step: 10, epoch: 1, path: 'p' }),
  ];
  const parsed = lines.map(parseLogLine);
  t.deepEqual(
    parsed.map((p) => p.kind),
    ['unknown', 'record', 'not-json', 'not-json', 'blank', 'blank', 'not-json', 'event'],
  );
  const tally = emptyTally();
  for (const p of parsed) countLine(tally, p);
  t.deepEqual(tally, { events: 1, records: 1, unknownEvents: 1, invalidEvents: 0, notJson: 3 });
});

test('unknown fields are accepted and dropped; time is read as ISO or epoch ms', (t) => {
  const parsed = parseLogLine(JSON.stringify({ event: 'checkpoint', step: 1, epoch: 1, path: 'p', extra: 42, time: '2025-01-01T00:00:01.000Z' }));
  t.is(parsed.kind, 'event');
  if (parsed.kind === 'event') {
    t.false('extra' in parsed.event);
    t.is(eventTimeMs(parsed.event), Date.parse('2025-01-01T00:00:01.000Z'));
  }
  t.is(eventTimeMs({ time: 1234 }), 1234);
  t.is(eventTimeMs({ time: 'not a date' }), undefined);
  t.is(eventTimeMs({}), undefined);
});

test('logEvent writes a line every consumer parses, at the level the event calls for', (t) => {
  const sink = new PassThrough();
  const chunks: string[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c.toString()));
  const logger = pino({ timestamp: pino.stdTimeFunctions.isoTime }, sink);
  logEvent(logger, 'worker_fail', { worker: 'w1', reason: 'deadline exceeded', step: 12 });
  logEvent(logger, 'job_end', { status: 'failed', epochs: 1, steps: 12, seconds: 3.5, error: 'boom', code: 'DROVER_ERR_TRAINING' }, 'job failed');
  logEvent(logger, 'checkpoint', { step: 12, epoch: 1, path: 'runs/x' });
  const lines = chunks.join('').trim().split('\n');
  t.is(lines.length, 3);
  const parsed = lines.map(parseLogLine);
  t.true(parsed.every((p) => p.kind === 'event'));
  const levels = lines.map((l) => (JSON.parse(l) as { level: number }).level);
  t.deepEqual(levels, [40, 50, 30]);
  t.is((JSON.parse(lines[1]!) as { msg: string }).msg, 'job failed');
});

test('docs/events.md documents every event and every field', async (t) => {
  const doc = await readFile(new URL('../docs/events.md', import.meta.url), 'utf8');
  // Sections: "### `a`, `b`" followed by tables whose first column is a backticked field.
  const sections = new Map<string, Set<string>>();
  let current: string[] = [];
  const base = new Set<string>();
  let inBase = false;
  for (const line of doc.split('\n')) {
    if (line.startsWith('## ')) {
      inBase = line.includes('Fields on every line');
      current = [];
      continue;
    }
    if (line.startsWith('### ')) {
      current = [...line.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
      for (const name of current) sections.set(name, new Set());
      continue;
    }
    const field = /^\| `([A-Za-z]+)` \|/.exec(line)?.[1];
    if (!field) continue;
    if (inBase) base.add(field);
    for (const name of current) sections.get(name)!.add(field);
  }
  for (const name of EVENT_NAMES) {
    const documented = sections.get(name);
    if (!documented) {
      t.fail(`event ${name} has no section`);
      continue;
    }
    for (const field of Object.keys(eventSchemas[name].shape)) {
      if (field === 'event') continue;
      t.true(documented.has(field) || base.has(field), `${name}.${field} is not documented`);
    }
  }
  for (const field of Object.keys(workerStepSchema.shape)) t.true(sections.get('step')!.has(field), `step.workers[].${field} is not documented`);
  t.deepEqual([...sections.keys()].filter((n) => !(EVENT_NAMES as string[]).includes(n)), [], 'documented events that do not exist');
});
