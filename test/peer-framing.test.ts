import { createRequire } from 'node:module';
import test from 'ava';
import { framedChunkSerializer, installClientFramedWrite, releaseChunkFrame } from '../src/peer/framed-push.ts';
import type { PeerChunk } from '../src/peer/generated/drover/peer/v1/PeerChunk.ts';
import { MAX_PEER_CHUNK_BYTES, PEER_PROTOCOL_VERSION, peerService } from '../src/peer/protocol.ts';
import { FRAME_PREFIX_BYTES } from '../src/wire/framed-serialize.ts';
import { sameBits, sequentialSum, startGroup, vectorOf } from './peer-fixtures.ts';

function chunkOf(payload: Uint8Array, offset = 0): PeerChunk {
  return {
    jobId: 'job-é',
    protocolVersion: PEER_PROTOCOL_VERSION,
    generation: 3,
    step: 2 ** 40,
    phase: 'PHASE_GATHER',
    senderRank: 1,
    rangeIndex: 1,
    offset,
    count: payload.byteLength / 4,
    encoding: 'ENCODING_FP32',
    payload,
  };
}

test('a framed chunk is the bytes the contract serializes, behind a gRPC prefix that gives its length', (t) => {
  const { requestSerialize, requestDeserialize } = peerService().Push;
  const framed = framedChunkSerializer(requestSerialize);
  // Lengths around the varint steps of the payload's length field, and a full chunk.
  for (const bytes of [4, 124, 128, 16_380, 16_384, MAX_PEER_CHUNK_BYTES]) {
    const payload = new Uint8Array(bytes).map((_, i) => (i * 37) & 0xff);
    const chunk = chunkOf(payload);
    const message = framed(chunk);
    t.deepEqual(Buffer.from(message), Buffer.from(requestSerialize(chunk)), `${bytes} bytes`);
    const frame = Buffer.from(message.buffer, message.byteOffset - FRAME_PREFIX_BYTES, message.length + FRAME_PREFIX_BYTES);
    t.is(frame[0], 0);
    t.is(frame.readUInt32BE(1), message.length);
    const decoded = requestDeserialize(message) as PeerChunk & { payload: Buffer };
    t.deepEqual(Buffer.from(decoded.payload), Buffer.from(payload));
    releaseChunkFrame(chunk);
  }
  // No payload: the contract's own bytes.
  const empty = chunkOf(new Uint8Array(0));
  t.deepEqual(Buffer.from(framed(empty)), Buffer.from(requestSerialize(empty)));
});

test('a pooled frame is handed out again only once released', (t) => {
  const framed = framedChunkSerializer(peerService().Push.requestSerialize);
  const first = chunkOf(new Uint8Array(1024).fill(1));
  const a = framed(first);
  const second = chunkOf(new Uint8Array(1024).fill(2));
  const b = framed(second);
  t.not(a.buffer, b.buffer, 'a frame still being written is not shared');
  t.is(a[a.length - 1], 1);
  releaseChunkFrame(first);
  const third = chunkOf(new Uint8Array(1024).fill(3));
  const c = framed(third);
  t.is(c.buffer, a.buffer, 'the released frame is reused');
  t.is(b[b.length - 1], 2, 'the frame in use kept its bytes');
  releaseChunkFrame(second);
  releaseChunkFrame(third);
});

test('with the client patch, grpc-js sends a framed chunk as it is and frames other messages as before', async (t) => {
  installClientFramedWrite();
  installClientFramedWrite();
  const require = createRequire(import.meta.url);
  const { CompressionFilter } = require('@grpc/grpc-js/build/src/compression-filter.js') as { CompressionFilter: new (options: object, shared: object) => { sendMessage(message: Promise<{ message: Buffer; flags?: number }>): Promise<{ message: Buffer }> } };
  const filter = new CompressionFilter({}, {});
  const chunk = chunkOf(new Uint8Array(64).fill(7));
  const message = framedChunkSerializer(peerService().Push.requestSerialize)(chunk);
  const sent = (await filter.sendMessage(Promise.resolve({ message }))).message;
  t.is(sent.buffer, message.buffer, 'no copy');
  t.is(sent.byteOffset, message.byteOffset - FRAME_PREFIX_BYTES);
  const plain = Buffer.from([1, 2, 3]);
  t.deepEqual((await filter.sendMessage(Promise.resolve({ message: plain }))).message, Buffer.from([0, 0, 0, 0, 3, 1, 2, 3]));
  releaseChunkFrame(chunk);
});

test('results handed back are refilled by later reductions, with the same sums bit for bit', async (t) => {
  const group = await startGroup(3);
  t.teardown(() => group.close());
  const length = 3 * Math.floor(MAX_PEER_CHUNK_BYTES / 4) + 17;
  const recycled = new Set<Float32Array>();
  let refilled = 0;
  for (let step = 1; step <= 6; step++) {
    const vectors = group.ranks.map((_, r) => vectorOf(step * 10 + r, length));
    const results = await Promise.all(group.ranks.map((rank, r) => rank.collective.reduceScatterAllGather(step, vectors[r]!, { deadlineMs: 60_000, encoding: 'fp32' })));
    const expected = sequentialSum(vectors);
    for (const [r, result] of results.entries()) t.true(sameBits(result, expected), `step ${step}, rank ${r}`);
    refilled += results.filter((result) => recycled.has(result)).length;
    for (const [r, result] of results.entries()) {
      group.ranks[r]!.collective.recycle(result);
      recycled.add(result);
      // What a recycled vector held must not matter: scribble on it.
      result.fill(Number.NaN);
    }
  }
  // A vector is refilled once the sums sent from it are acknowledged, which a step later they are.
  t.true(refilled > 0);
});
