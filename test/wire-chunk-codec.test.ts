import test from 'ava';
import { COORDINATOR_CHUNK_FIELD, decodeChunkMessage, encodeChunkMessage, WORKER_CHUNK_FIELD } from '../src/wire/chunk-codec.ts';
import { FRAME_PREFIX_BYTES, framedSerializer, installFramedSerialize, writeFramePrefix } from '../src/wire/framed-serialize.ts';
import { envelope, protobufSessionCodec, sessionCodec } from '../src/wire/protocol.ts';

const reference = protobufSessionCodec();
const fast = sessionCodec();

const samples = [
  { envelope: envelope('job-1'), chunk: { transferId: 3, offset: 5, data: Buffer.from([1, 2, 3]) } },
  { envelope: envelope(''), chunk: { transferId: 0, offset: 0, data: Buffer.alloc(0) } },
  { envelope: { jobId: 'j'.repeat(300), protocolVersion: 0xffffffff }, chunk: { transferId: 0xffffffff, offset: 2 ** 40 + 7, data: new Uint8Array(1 << 20).fill(9) } },
];

test('chunk messages encode to exactly the bytes protobufjs writes, in both directions', (t) => {
  for (const message of samples) {
    t.deepEqual(fast.encodeWorkerMessage(message), reference.encodeWorkerMessage(message));
    t.deepEqual(fast.encodeCoordinatorMessage(message), reference.encodeCoordinatorMessage(message));
  }
});

test('chunk messages decode as protobufjs decodes them, the data a view of the received bytes', (t) => {
  for (const message of samples) {
    const bytes = reference.encodeWorkerMessage(message);
    const decoded = decodeChunkMessage(bytes, WORKER_CHUNK_FIELD);
    t.truthy(decoded);
    t.deepEqual(decoded, reference.decodeWorkerMessage(bytes) as unknown);
    t.is(decoded!.chunk.data.buffer, bytes.buffer);
    const down = reference.encodeCoordinatorMessage(message);
    t.deepEqual(fast.decodeCoordinatorMessage(down), reference.decodeCoordinatorMessage(down));
  }
});

test('the fast encoding is only used for plain chunk messages; the rest goes through protobufjs', (t) => {
  const chunk = { transferId: 1, offset: 0, data: Buffer.from([1]) };
  t.is(encodeChunkMessage({ envelope: envelope('j'), chunk: { ...chunk, data: 'AQ==' } }, WORKER_CHUNK_FIELD), undefined);
  t.is(encodeChunkMessage({ envelope: envelope('j'), chunk: { ...chunk, offset: '7' } }, WORKER_CHUNK_FIELD), undefined);
  t.is(encodeChunkMessage({ envelope: envelope('jöb'), chunk }, WORKER_CHUNK_FIELD), undefined);
  t.is(encodeChunkMessage({ envelope: envelope('j'), chunk: { ...chunk, offset: 2 ** 60 } }, WORKER_CHUNK_FIELD), undefined);
  const stop = { envelope: envelope('j'), stop: { reason: 'done', jobCompleted: true } };
  t.deepEqual(fast.encodeCoordinatorMessage(stop), reference.encodeCoordinatorMessage(stop));
  t.is(fast.decodeCoordinatorMessage(reference.encodeCoordinatorMessage(stop)).stop!.reason, 'done');
});

test('uncommon but valid encodings fall back to protobufjs and keep its semantics', (t) => {
  const message = samples[0]!;
  const chunkBytes = reference.encodeWorkerMessage(message);
  // Fields in reverse order, an unknown field, a repeated chunk (protobuf merges), a non-ASCII job id.
  const envelopePart = reference.encodeWorkerMessage({ envelope: message.envelope });
  const chunkPart = reference.encodeWorkerMessage({ chunk: { transferId: 9, offset: 4, data: Buffer.from([7]) } });
  const unknown = Buffer.from([0x78, 0x01]); // field 15, varint 1
  const variants = [
    Buffer.concat([chunkPart, envelopePart]),
    Buffer.concat([chunkBytes, unknown]),
    Buffer.concat([chunkBytes, chunkPart]),
    reference.encodeWorkerMessage({ envelope: envelope('jöb'), chunk: message.chunk }),
  ];
  for (const bytes of variants) t.deepEqual(fast.decodeWorkerMessage(bytes), reference.decodeWorkerMessage(bytes));
  t.is(decodeChunkMessage(variants[1]!, WORKER_CHUNK_FIELD), undefined);
  t.is(decodeChunkMessage(variants[2]!, WORKER_CHUNK_FIELD), undefined);
  t.is(decodeChunkMessage(variants[3]!, WORKER_CHUNK_FIELD), undefined);
  // A worker chunk read as a coordinator message is not a coordinator chunk.
  t.is(decodeChunkMessage(chunkBytes, COORDINATOR_CHUNK_FIELD), undefined);
});

/** What a decoder makes of some bytes: the message, or the fact that it refused them. */
function outcome(decode: (bytes: Buffer) => unknown, bytes: Buffer): unknown {
  try {
    return decode(bytes);
  } catch {
    return 'refused';
  }
}

test('truncated or corrupt bytes are never taken by the fast path: protobufjs refuses them as before', (t) => {
  const bytes = reference.encodeWorkerMessage(samples[0]!);
  for (let cut = 1; cut < bytes.length; cut++) {
    const truncated = bytes.subarray(0, cut);
    t.is(decodeChunkMessage(truncated, WORKER_CHUNK_FIELD), undefined, `cut at ${cut}`);
    t.deepEqual(outcome(fast.decodeWorkerMessage, truncated), outcome(reference.decodeWorkerMessage, truncated), `cut at ${cut}`);
  }
  // Random bytes: whatever the fast path accepts, protobufjs reads the same way.
  let seed = 7;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 256;
  for (let round = 0; round < 2000; round++) {
    const noise = Buffer.from(bytes);
    for (let k = 0; k < 3; k++) noise[next() % noise.length] = next();
    const decoded = decodeChunkMessage(noise, WORKER_CHUNK_FIELD);
    if (!decoded) continue;
    t.deepEqual(decoded, reference.decodeWorkerMessage(noise) as unknown);
  }
});

test('a framed serializer hands grpc-js whole frames and anyone else the message', (t) => {
  t.notThrows(() => installFramedSerialize(), 'this grpc-js has the hook drover uses to share broadcast frames');
  const message = Buffer.from([1, 2, 3, 4]);
  const frame = writeFramePrefix(Buffer.concat([Buffer.alloc(FRAME_PREFIX_BYTES), message]));
  t.deepEqual([...frame.subarray(0, FRAME_PREFIX_BYTES)], [0, 0, 0, 0, 4]);
  const serialize = framedSerializer(() => frame);
  t.deepEqual(serialize({}), message);
  const chunk = encodeChunkMessage(samples[0]!, COORDINATOR_CHUNK_FIELD, FRAME_PREFIX_BYTES)!;
  t.deepEqual(chunk.subarray(FRAME_PREFIX_BYTES), reference.encodeCoordinatorMessage(samples[0]!));
});
