import { selfSignedCertificate } from './helpers/certificate.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { PeerTimeoutError } from '../src/errors.ts';
import { createPeerClient, ENCODING_ON_WIRE, MAX_PEER_CHUNK_BYTES, PEER_PROTOCOL_VERSION, PHASE_ON_WIRE } from '../src/peer/protocol.ts';
import type { PeerChunk } from '../src/peer/generated/drover/peer/v1/PeerChunk.ts';
import { splitRanges } from '../src/peer/ranges.ts';
import { tokenMetadata } from '../src/wire/auth.ts';
import { JOB, sameBits, sequentialSum, startGroup, TOKEN, vectorOf, type RankGroup } from './peer-fixtures.ts';

/** Every rank reduces its own vector at `step`; resolves with each rank's result. */
function reduceAll(group: RankGroup, step: number, vectors: Float32Array[], encoding: 'fp32' | 'bf16' = 'fp32', deadlineMs = 10_000): Promise<Float32Array[]> {
  return Promise.all(group.ranks.map((rank, r) => rank.collective.reduceScatterAllGather(step, vectors[r]!, { deadlineMs, encoding })));
}

// Uneven ranges; with 2 ranks a range spans two 1 MiB chunks (262 144 fp32 values each).
const LENGTH = 130_003;
const LENGTH_OF = { 1: LENGTH, 2: 530_011, 3: LENGTH, 5: LENGTH } as const;

for (const size of [1, 2, 3, 5] as const) {
  test.serial(`${size} rank(s): every rank gets exactly the rank-order float32 sum, and again on a second run`, async (t) => {
    const group = await startGroup(size);
    t.teardown(() => group.close());
    const length = LENGTH_OF[size];
    const vectors = Array.from({ length: size }, (_, r) => vectorOf(r + 1, length));
    const expected = sequentialSum(vectors);
    const first = await reduceAll(group, 1, vectors);
    for (const [r, result] of first.entries()) t.true(sameBits(result, expected), `rank ${r}`);
    const second = await reduceAll(group, 2, vectors);
    for (const [r, result] of second.entries()) t.true(sameBits(result, first[r]!), `rank ${r}, second run`);
    // Each rank sends 2(N-1)/N of the vector (and receives as much).
    for (const rank of group.ranks) {
      const stats = rank.collective.stats;
      t.is(stats.reductions, 2);
      const ratio = stats.bytesSent / 2 / (length * 4);
      t.true(Math.abs(ratio - (2 * (size - 1)) / size) < 1e-3, `bytes sent / vector bytes ${ratio}`);
      t.is(stats.bytesReceived, stats.bytesSent, 'balanced ranges: as much in as out');
    }
  });
}

test.serial('bf16 halves the payload bytes, every rank holds the same values, within bf16 precision of the fp32 sum', async (t) => {
  const size = 3;
  const group = await startGroup(size);
  t.teardown(() => group.close());
  const vectors = Array.from({ length: size }, (_, r) => vectorOf(r + 1, LENGTH).map((v) => v + 1));
  const exact = sequentialSum(vectors);
  const fp32Sent = group.ranks.map((rank) => rank.collective.stats.bytesSent);
  const results = await reduceAll(group, 1, vectors, 'bf16');
  for (const [r, result] of results.entries()) {
    t.true(sameBits(result, results[0]!), `rank ${r} equals rank 0`);
    const ranges = splitRanges(LENGTH, size);
    const values = ranges.reduce((n, range, k) => n + (k === r ? (size - 1) * range.count : range.count), 0);
    t.is(group.ranks[r]!.collective.stats.bytesSent - fp32Sent[r]!, values * 2, 'two bytes a value');
  }
  // Rounding each of 3 contributions (2^-9 relative each) and the sum (2^-9) of values near 1.
  let worst = 0;
  for (let j = 0; j < LENGTH; j++) {
    const scale = vectors.reduce((s, v) => s + Math.abs(v[j]!), 0);
    worst = Math.max(worst, Math.abs(results[0]![j]! - exact[j]!) / scale);
  }
  t.true(worst <= 2 ** -7, `worst relative error ${worst}`);
  t.true(worst > 0, 'bf16 did round');
});

test.serial('a peer that starts a step early waits, paused, at the receiver and its range lands once the step opens there', async (t) => {
  const group = await startGroup(2);
  t.teardown(() => group.close());
  const vectors = [vectorOf(1, LENGTH_OF[2]), vectorOf(2, LENGTH_OF[2])];
  const early = group.ranks[1]!.collective.reduceScatterAllGather(4, vectors[1]!, { deadlineMs: 20_000, encoding: 'fp32' });
  const waiting = Date.now();
  while (group.ranks[0]!.server.inbox.parkedCount === 0 && Date.now() - waiting < 5000) await new Promise((resolve) => setTimeout(resolve, 20));
  t.is(group.ranks[0]!.server.inbox.parkedCount, 1, 'rank 1\'s range (two chunks) waits at rank 0');
  await new Promise((resolve) => setTimeout(resolve, 200));
  const late = group.ranks[0]!.collective.reduceScatterAllGather(4, vectors[0]!, { deadlineMs: 20_000, encoding: 'fp32' });
  for (const result of await Promise.all([late, early])) t.true(sameBits(result, sequentialSum(vectors)));
  t.is(group.ranks[0]!.server.inbox.parkedCount, 0);
});

test.serial('vectors shorter than the group (empty ranges) and empty vectors reduce too', async (t) => {
  const group = await startGroup(5);
  t.teardown(() => group.close());
  for (const length of [0, 3]) {
    const vectors = Array.from({ length: 5 }, (_, r) => vectorOf(r + 7, length));
    const results = await reduceAll(group, length + 1, vectors);
    for (const result of results) t.true(sameBits(result, sequentialSum(vectors)));
  }
});

test.serial('a rank that never sends makes the others reject within the deadline naming it; the smaller group redoes the step', async (t) => {
  const group = await startGroup(3);
  t.teardown(() => group.close());
  const vectors = Array.from({ length: 3 }, (_, r) => vectorOf(r + 1, 50_000));
  const deadlineMs = 1500;
  const started = Date.now();
  const outcomes = await Promise.allSettled(group.ranks.slice(0, 2).map((rank, r) => rank.collective.reduceScatterAllGather(7, vectors[r]!, { deadlineMs, encoding: 'fp32' })));
  const elapsed = Date.now() - started;
  t.true(elapsed < deadlineMs + 1000, `rejected after ${elapsed} ms`);
  for (const outcome of outcomes) {
    if (outcome.status !== 'rejected') return t.fail('a reduction without rank 2 resolved');
    const error = outcome.reason as PeerTimeoutError;
    t.true(error instanceof PeerTimeoutError);
    t.is(error.code, 'DROVER_ERR_PEER_TIMEOUT');
    t.deepEqual(error.failure, { ranks: [2], phase: 'scatter', step: 7, reason: 'deadline' });
    t.regex(error.message, /rank 2 did not deliver/);
  }
  // The coordinator evicts rank 2: generation 1, ranks 0 and 1, same step.
  const survivors = group.addresses.slice(0, 2);
  for (const [rank, member] of group.ranks.slice(0, 2).entries()) member.collective.rebuild({ generation: 1, rank, peers: survivors });
  const redo = await Promise.all(group.ranks.slice(0, 2).map((rank, r) => rank.collective.reduceScatterAllGather(7, vectors[r]!, { deadlineMs: 10_000, encoding: 'fp32' })));
  for (const result of redo) t.true(sameBits(result, sequentialSum(vectors.slice(0, 2))));
  t.throws(() => group.ranks[0]!.collective.rebuild({ generation: 1, rank: 0, peers: survivors }), { message: /generation/ });
});

test.serial('an unreachable peer fails the step at once, naming it', async (t) => {
  const group = await startGroup(1, { remote: ['127.0.0.1:1'] });
  t.teardown(() => group.close());
  const started = Date.now();
  const error = await t.throwsAsync(group.ranks[0]!.collective.reduceScatterAllGather(1, vectorOf(1, 1000), { deadlineMs: 20_000, encoding: 'fp32' }), { instanceOf: PeerTimeoutError });
  t.is(error!.failure.reason, 'unreachable');
  t.deepEqual(error!.failure.ranks, [1]);
  t.true(Date.now() - started < 10_000);
});

test.serial('an aborted reduction rejects with the signal reason and the next step works', async (t) => {
  const group = await startGroup(2);
  t.teardown(() => group.close());
  const controller = new AbortController();
  const pending = group.ranks[0]!.collective.reduceScatterAllGather(1, vectorOf(1, 1000), { deadlineMs: 20_000, encoding: 'fp32', signal: controller.signal });
  controller.abort(new Error('stopping'));
  await t.throwsAsync(pending, { message: 'stopping' });
  const vectors = [vectorOf(1, 1000), vectorOf(2, 1000)];
  for (const result of await reduceAll(group, 2, vectors)) t.true(sameBits(result, sequentialSum(vectors)));
});

test.serial('over TLS (the coordinator\'s credentials), the same exact sum; a plaintext peer cannot take part', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-peer-tls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const certificate = selfSignedCertificate(dir);
  if (!certificate) return void t.pass('openssl is not installed: no certificate to test with');
  const { cert, key } = certificate;
  const group = await startGroup(2, { tls: { cert, key, ca: cert } });
  t.teardown(() => group.close());
  const vectors = [vectorOf(1, 10_000), vectorOf(2, 10_000)];
  for (const result of await reduceAll(group, 1, vectors)) t.true(sameBits(result, sequentialSum(vectors)));
  t.not(await push(group.addresses[0]!, TOKEN, []), grpc.status.OK, 'a plaintext stream is not served');
});

/** Opens one Push stream to `address`, writes `chunks`, and resolves with the status it ended with. */
function push(address: string, token: string, chunks: PeerChunk[]): Promise<grpc.status> {
  const client = createPeerClient(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 8 * 1024 * 1024 });
  return new Promise((resolve) => {
    const call = client.Push(tokenMetadata(token), (error) => {
      client.close();
      resolve(error ? error.code : grpc.status.OK);
    });
    for (const chunk of chunks) call.write(chunk);
    call.end();
  });
}

test.serial('a wrong token, chunks for other steps, and oversize or misfitting chunks are refused without touching the sum', async (t) => {
  const group = await startGroup(2, { parkMs: (rank) => (rank === 0 ? 300 : undefined) });
  t.teardown(() => group.close());
  const vectors = [vectorOf(1, LENGTH), vectorOf(2, LENGTH)];
  const rangeOf0 = splitRanges(LENGTH, 2)[0]!;
  const header = (fields: Partial<PeerChunk>): PeerChunk => ({
    jobId: JOB,
    protocolVersion: PEER_PROTOCOL_VERSION,
    generation: 0,
    step: 3,
    phase: PHASE_ON_WIRE.scatter,
    senderRank: 1,
    rangeIndex: 0,
    offset: 0,
    count: 4,
    encoding: ENCODING_ON_WIRE.fp32,
    payload: Buffer.alloc(16, 0x7f),
    ...fields,
  });
  // Rank 0 expects step 3 (waiting for rank 1, which starts only after the hostile streams).
  const rank0 = group.ranks[0]!.collective.reduceScatterAllGather(3, vectors[0]!, { deadlineMs: 20_000, encoding: 'fp32' });
  await new Promise((resolve) => setTimeout(resolve, 100));
  const target = group.addresses[0]!;
  const streams: [string, PeerChunk[]][] = [
    ['wrong-token', [header({})]],
    [TOKEN, [header({ step: 2 })]], // a finished step
    [TOKEN, [header({ step: 4 })]], // a step never started in time (parkMs)
    [TOKEN, [header({ jobId: 'other-job' })]],
    [TOKEN, [header({ count: MAX_PEER_CHUNK_BYTES, payload: Buffer.alloc(MAX_PEER_CHUNK_BYTES * 4) })]], // over the message limit
    [TOKEN, [header({ count: rangeOf0.count + 1, offset: 0, payload: Buffer.alloc(16) })]], // past the range, bytes not matching
    [TOKEN, [header({ offset: 8 })]], // a gap
    [TOKEN, [header({}), header({ offset: 4, step: 9 })]], // a stream that changes step (its first chunk is given back)
    [TOKEN, [header({})]], // ends before the range is complete
  ];
  const refused: grpc.status[] = [];
  for (const [token, chunks] of streams) refused.push(await push(target, token, chunks));
  t.deepEqual(refused, [
    grpc.status.UNAUTHENTICATED,
    grpc.status.INVALID_ARGUMENT,
    grpc.status.DEADLINE_EXCEEDED,
    grpc.status.FAILED_PRECONDITION,
    grpc.status.RESOURCE_EXHAUSTED,
    grpc.status.RESOURCE_EXHAUSTED,
    grpc.status.INVALID_ARGUMENT,
    grpc.status.INVALID_ARGUMENT,
    grpc.status.INVALID_ARGUMENT,
  ]);
  const rank1 = group.ranks[1]!.collective.reduceScatterAllGather(3, vectors[1]!, { deadlineMs: 20_000, encoding: 'fp32' });
  const expected = sequentialSum(vectors);
  for (const result of await Promise.all([rank0, rank1])) t.true(sameBits(result, expected));
  t.is(group.ranks[0]!.server.inbox.parkedCount, 0);
});
