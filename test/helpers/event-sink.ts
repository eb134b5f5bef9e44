import { Writable } from 'node:stream';
import pino from 'pino';

/** A pino logger whose JSON events the test reads back (logs are asserted through a sink). */
export function eventSink(): { log: pino.Logger; events: Array<Record<string, unknown>> } {
  const events: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) events.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), events };
}
