import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import test, { type ExecutionContext } from 'ava';
import { PeerTimeoutError } from '../src/errors.ts';
import type { InboundChunk } from '../src/peer/inbox.ts';
import { sameBits, sequentialSum, startGroup, vectorOf } from './peer-fixtures.ts';

/** Each rank's range spans several chunks, so a signal sent as the first one lands arrives mid-stream. */
const LENGTH = 800_000;

/**
 * Ranks 0 and 1 here, rank 2 in a child process (test/peer-rank-process.ts). `onChunk` sees
 * every chunk ranks 0 and 1 accept; `run(step, deadlineMs)` reduces on all three.
 */
async function threeRanks(t: ExecutionContext, onChunk: (chunk: InboundChunk, child: ReturnType<typeof spawn>) => void) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/peer-rank-process.ts'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
  const { port } = await next();
  const group = await startGroup(2, { remote: [`127.0.0.1:${port}`], onChunk: (_receiver, chunk) => onChunk(chunk, child) });
  t.teardown(() => group.close());
  const vectors = [1, 2, 3].map((seed) => vectorOf(seed, LENGTH));
  const startChild = (step: number, deadlineMs: number): void => {
    child.stdin!.write(`${JSON.stringify({ rank: 2, peers: group.addresses, step, seed: 3, length: LENGTH, deadlineMs })}\n`);
  };
  const reduceHere = (step: number, deadlineMs: number) => Promise.allSettled(group.ranks.map((rank, r) => rank.collective.reduceScatterAllGather(step, vectors[r]!, { deadlineMs, encoding: 'fp32' })));
  const run = (step: number, deadlineMs: number) => {
    startChild(step, deadlineMs);
    return reduceHere(step, deadlineMs);
  };
  return { child, next, run, startChild, reduceHere, group, vectors };
}

/** Both local ranks rejected the step within the deadline, naming rank 2. */
function namedRank2(t: ExecutionContext, outcomes: PromiseSettledResult<Float32Array>[], step: number, reasons: string[]): void {
  for (const outcome of outcomes) {
    if (outcome.status !== 'rejected') return void t.fail('a step without rank 2 resolved');
    const error = outcome.reason as PeerTimeoutError;
    t.true(error instanceof PeerTimeoutError, String(error));
    t.deepEqual(error.failure.ranks, [2]);
    t.is(error.failure.step, step);
    t.true(reasons.includes(error.failure.reason), error.message);
  }
}

test('a rank in another process takes part bit for bit, and killed with SIGKILL mid-reduction is named by the others within the deadline', async (t) => {
  let killAt = -1;
  let killed = false;
  const { next, run, vectors } = await threeRanks(t, (chunk, child) => {
    if (chunk.sender === 2 && chunk.step === killAt && !killed) {
      killed = true;
      child.kill('SIGKILL');
    }
  });
  // A whole step across the two processes: the same bits on every rank.
  const expected = sequentialSum(vectors);
  for (const outcome of await run(1, 20_000)) t.true(outcome.status === 'fulfilled' && sameBits(outcome.value, expected));
  t.is((await next()).hash, createHash('sha256').update(new Uint8Array(expected.buffer)).digest('hex'), 'the child holds the same sum');

  killAt = 2;
  const deadlineMs = 4000;
  const started = Date.now();
  const outcomes = await run(2, deadlineMs);
  t.true(killed, 'the child was killed mid-reduction');
  t.true(Date.now() - started < deadlineMs + 1000, `rejected after ${Date.now() - started} ms`);
  namedRank2(t, outcomes, 2, ['deadline', 'unreachable']);
});

test('a rank stopped with SIGSTOP mid-reduction is named by the others at the deadline: nobody hangs', async (t) => {
  let stopped = false;
  const { child, startChild, reduceHere, group } = await threeRanks(t, () => {});
  // Long enough that ranks 0 and 1 finish their own exchange on a loaded 2-core machine (1.5 s was not).
  const deadlineMs = 4000;
  // Rank 2 starts first; it is stopped once its ranges wait at ranks 0 and 1, before it can have
  // their contributions (a rank that had them might deliver its sum before the signal lands,
  // and ranks 0 and 1 would then rightly finish without it).
  startChild(1, deadlineMs);
  while (group.ranks.some((rank) => rank.server.inbox.parkedCount === 0)) await new Promise((resolve) => setTimeout(resolve, 5));
  child.kill('SIGSTOP');
  stopped = true;
  const started = Date.now();
  const outcomes = await reduceHere(1, deadlineMs);
  const elapsed = Date.now() - started;
  t.true(stopped, 'the child was stopped mid-reduction');
  t.true(elapsed >= deadlineMs - 50 && elapsed < deadlineMs + 1000, `rejected after ${elapsed} ms`);
  namedRank2(t, outcomes, 1, ['deadline']);
});
