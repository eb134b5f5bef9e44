import { RunLogError } from '../errors.ts';
import { parseLogLine } from './events.ts';
import { followLog } from './log-follower.ts';
import { RunState } from './run-state.ts';

/**
 * Reads a finished (or paused) run log from top to bottom into a RunState: every line is
 * parsed with the shared schema; lines that are not events are counted, not fatal. Reads
 * in chunks, so a log of millions of lines does not sit in memory as text.
 */
export async function readRunLog(path: string): Promise<RunState> {
  const state = new RunState();
  try {
    for await (const chunk of followLog(path, { once: true })) {
      if (chunk.kind === 'missing') throw new RunLogError(`run log not found: ${path} (pass the file given to --log)`, path);
      if (chunk.kind === 'lines') for (const line of chunk.lines) state.apply(parseLogLine(line));
    }
  } catch (error) {
    if (error instanceof RunLogError) throw error;
    throw new RunLogError(`cannot read run log ${path}: ${(error as Error).message}`, path, { cause: error });
  }
  return state;
}
