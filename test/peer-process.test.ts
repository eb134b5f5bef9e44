import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import test from 'ava';
import { PeerTimeoutError } from '../src/errors.ts';
import { sameBits, sequentialSum, startGroup, vectorOf } from './peer-fixtures.ts';

/** Each rank's range spans several chunks, so the kill lands mid-stream. */
const LENGTH = 800_000;

test('a rank in another process takes part bit for bit, and killed with SIGKILL mid-reduction is named by the others within the deadline', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/peer-rank-process.ts'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
  const { port } = await next();

  let killAt = -1;
  let killedAt = 0;
  const group = await startGroup(2, {
    remote: [`127.0.0.1:${port}`],
    onChunk: (_receiver, chunk) => {
      if (chunk.sender === 2 && chunk.step === killAt && killedAt === 0) {
        killedAt = Date.now();
        child.kill('SIGKILL');
      }
    },
  });
  t.teardown(() => group.close());
  const vectors = [1, 2, 3].map((seed) => vectorOf(seed, LENGTH));
  const run = (step: number, deadlineMs: number) => {
    child.stdin.write(`${JSON.stringify({ rank: 2, peers: group.addresses, step, seed: 3, length: LENGTH, deadlineMs })}\n`);
    return Promise.allSettled(group.ranks.map((rank, r) => rank.collective.reduceScatterAllGather(step, vectors[r]!, { deadlineMs, encoding: 'fp32' })));
  };

  // A whole step across the two processes: the same bits on every rank.
  const expected = sequentialSum(vectors);
  for (const outcome of await run(1, 20_000)) t.true(outcome.status === 'fulfilled' && sameBits(outcome.value, expected));
  t.is((await next()).hash, createHash('sha256').update(new Uint8Array(expected.buffer)).digest('hex'), 'the child holds the same sum');

  // Killed as its first chunk of step 2 lands.
  killAt = 2;
  const deadlineMs = 4000;
  const started = Date.now();
  const outcomes = await run(2, deadlineMs);
  const elapsed = Date.now() - started;
  t.true(killedAt > 0, 'the child was killed mid-reduction');
  t.true(elapsed < deadlineMs + 1000, `rejected after ${elapsed} ms`);
  for (const outcome of outcomes) {
    if (outcome.status !== 'rejected') return t.fail('a step with a killed rank resolved');
    const error = outcome.reason as PeerTimeoutError;
    t.true(error instanceof PeerTimeoutError, String(error));
    t.deepEqual(error.failure.ranks, [2]);
    t.is(error.failure.step, 2);
    t.true(['deadline', 'unreachable'].includes(error.failure.reason));
    t.log(`${error.failure.phase} ${error.failure.reason} after ${Date.now() - killedAt} ms: ${error.message}`);
  }
});
