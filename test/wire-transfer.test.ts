import test from 'ava';
import { ProtocolError, TransferLimitError, WeightsError } from '../src/errors.ts';
import { BufferPool } from '../src/wire/buffer-pool.ts';
import { firstNonFinite } from '../src/wire/finite-check.ts';
import { envelope, MAX_CHUNK_BYTES, MAX_MESSAGE_BYTES, sessionCodec } from '../src/wire/protocol.ts';
import { bytesTransfer, tensorTransfer, TransferAssembler, type OutgoingTransfer } from '../src/wire/transfer.ts';
import type { Transfer__Output } from '../src/wire/generated/drover/v1/Transfer.ts';
import type { Chunk__Output } from '../src/wire/generated/drover/v1/Chunk.ts';

const codec = sessionCodec();

/** Sends a transfer through the real Session serialization, as a worker's gradient result would travel. */
function overTheWire(out: OutgoingTransfer): { header: Transfer__Output; chunks: Chunk__Output[]; largestMessage: number } {
  let largestMessage = 0;
  const headerBytes = codec.encodeWorkerMessage({
    envelope: envelope('job-1'),
    gradient: { taskId: 't', step: 1, weightsVersion: 0, loss: 1, correct: 0, n: 1, gradients: out.header },
  });
  largestMessage = headerBytes.length;
  const header = codec.decodeWorkerMessage(headerBytes).gradient!.gradients!;
  const chunks = out.chunks.map((chunk) => {
    const bytes = codec.encodeWorkerMessage({ envelope: envelope('job-1'), chunk });
    largestMessage = Math.max(largestMessage, bytes.length);
    return codec.decodeWorkerMessage(bytes).chunk!;
  });
  return { header, chunks, largestMessage };
}

function ramp(n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (i % 1000) * scale - 3);
}

test('tensors of any size arrive intact in chunks of at most 1 MiB', async (t) => {
  // 2.4 MB, 0 bytes and an odd-sized uint8 tensor: chunking, empty tensors and alignment.
  const big = ramp(600_000, 0.25);
  const empty = new Float32Array(0);
  const labels = Uint8Array.from([1, 2, 3]);
  const ids = Int32Array.from([7, -8, 9]);
  const out = tensorTransfer(5, [
    { name: 'dense/kernel', shape: [600, 1000], data: big },
    { name: 'empty', shape: [0, 3], data: empty },
    { name: 'labels', shape: [3], data: labels },
    { name: 'ids', shape: [3], data: ids },
  ]);
  t.is(out.chunks.length, 5); // 3 for the big tensor, none for the empty one, 1 each for the small ones
  const { header, chunks, largestMessage } = overTheWire(out);
  t.true(chunks.every((c) => c.data.length <= MAX_CHUNK_BYTES));
  t.true(largestMessage <= MAX_MESSAGE_BYTES, `largest message ${largestMessage} bytes`);
  const assembler = new TransferAssembler(10_000_000);
  const done = assembler.expect(header, { maxBytes: 5_000_000, what: 'test' });
  t.is(assembler.bufferedBytes, header.totalBytes);
  for (const chunk of chunks) assembler.accept(chunk);
  const received = await done;
  t.is(assembler.bufferedBytes, 0);
  t.deepEqual(received.tensors.map((x) => [x.name, x.dtype, x.shape]), [
    ['dense/kernel', 'float32', [600, 1000]],
    ['empty', 'float32', [0, 3]],
    ['labels', 'uint8', [3]],
    ['ids', 'int32', [3]],
  ]);
  t.deepEqual(received.tensors[0]!.data, big);
  t.deepEqual(received.tensors[2]!.data, labels);
  t.deepEqual(received.tensors[3]!.data, ids);
});

test('an opaque payload round-trips, and an empty one completes at once', async (t) => {
  const payload = Uint8Array.from({ length: 2_500_000 }, (_, i) => i % 251);
  const { header, chunks } = overTheWire(bytesTransfer(1, payload));
  const assembler = new TransferAssembler(10_000_000);
  const done = assembler.expect(header, { maxBytes: 3_000_000, what: 'shard' });
  chunks.forEach((c) => assembler.accept(c));
  t.deepEqual((await done).bytes, payload);
  const empty = overTheWire(bytesTransfer(2, new Uint8Array(0)));
  t.is(empty.chunks.length, 0);
  t.is((await assembler.expect(empty.header, { maxBytes: 0, what: 'empty' })).bytes.length, 0);
});

test('chunks out of order, outside their tensor, or for an undeclared transfer are refused', (t) => {
  const out = overTheWire(tensorTransfer(3, [{ name: 'w', shape: [300_000], data: ramp(300_000, 1) }], 400_000));
  t.is(out.chunks.length, 3);
  const assembler = new TransferAssembler(10_000_000);
  void assembler.expect(out.header, { maxBytes: 2_000_000, what: 'gradients' });
  t.throws(() => assembler.accept(out.chunks[1]!), { instanceOf: ProtocolError, message: /expected byte 0/ });
  t.throws(() => assembler.accept({ ...out.chunks[0]!, transferId: 99 }), { instanceOf: ProtocolError, message: /never declared/ });
  const tooLong = { ...out.chunks[0]!, data: Buffer.alloc(1_300_000) };
  t.throws(() => assembler.accept(tooLong), { instanceOf: ProtocolError, message: /does not fit/ });
});

test('a manifest that lies about sizes, or exceeds the limits, is refused before any allocation', (t) => {
  const out = overTheWire(tensorTransfer(4, [{ name: 'w', shape: [10] , data: ramp(10, 1) }]));
  const assembler = new TransferAssembler(1000);
  const lying = { ...out.header, tensors: [{ ...out.header.tensors[0]!, shape: [11] }] };
  t.throws(() => assembler.expect(lying, { maxBytes: 1000, what: 'gradients' }), { instanceOf: ProtocolError, message: /needs 44 bytes/ });
  const outside = { ...out.header, totalBytes: 20 };
  t.throws(() => assembler.expect(outside, { maxBytes: 1000, what: 'gradients' }), { instanceOf: ProtocolError, message: /misplaced/ });
  t.throws(() => assembler.expect(out.header, { maxBytes: 39, what: 'gradients' }), { instanceOf: TransferLimitError });
  t.throws(() => assembler.expect({ ...out.header, totalBytes: 2000, tensors: [] }, { maxBytes: 5000, what: 'shard' }), {
    instanceOf: TransferLimitError,
    message: /in flight/,
  });
  t.throws(() => assembler.expect(null, { maxBytes: 5000, what: 'shard' }), { instanceOf: ProtocolError });
  t.is(assembler.bufferedBytes, 0);
});

test('closing a stream fails its incomplete transfers', async (t) => {
  const out = overTheWire(tensorTransfer(6, [{ name: 'w', shape: [4], data: ramp(4, 1) }]));
  const assembler = new TransferAssembler(1000);
  const done = assembler.expect(out.header, { maxBytes: 1000, what: 'weights' });
  assembler.abort(new ProtocolError('stream closed'));
  await t.throwsAsync(done, { instanceOf: ProtocolError, message: 'stream closed' });
  t.is(assembler.bufferedBytes, 0);
  t.throws(() => assembler.accept(out.chunks[0]!), { instanceOf: ProtocolError });
});

test('a sender never copies: chunks are views of the tensor memory', (t) => {
  const data = ramp(1000, 1);
  const out = tensorTransfer(7, [{ name: 'w', shape: [1000], data }]);
  t.is((out.chunks[0]!.data as Buffer).buffer, data.buffer);
  t.throws(() => tensorTransfer(8, [{ name: 'w', shape: [3, 3], data }]), { instanceOf: ProtocolError, message: /holds 9 values/ });
});

test('with `finite`, a NaN or infinite float32 value is refused as its chunk lands, named by tensor and index', (t) => {
  const values = ramp(300_000, 1);
  values[250_001] = Number.NaN;
  // Chunks of 400 002 bytes: value boundaries fall inside chunks, so values straddle two chunks.
  const out = overTheWire(tensorTransfer(3, [{ name: 'b', shape: [4], data: ramp(4, 1) }, { name: 'w', shape: [300_000], data: values }], 400_002));
  const assembler = new TransferAssembler(10_000_000);
  void assembler.expect(out.header, { maxBytes: 2_000_000, what: 'gradients of task s1-1', finite: true });
  assembler.accept(out.chunks[0]!);
  assembler.accept(out.chunks[1]!);
  assembler.accept(out.chunks[2]!);
  t.throws(() => assembler.accept(out.chunks[3]!), { instanceOf: WeightsError, message: 'gradients of task s1-1[1] w: value 250001 is NaN' });

  const infinite = ramp(10, 1);
  infinite[9] = -Infinity;
  const last = overTheWire(tensorTransfer(4, [{ name: 'k', shape: [10], data: infinite }], 6));
  const other = new TransferAssembler(1000);
  void other.expect(last.header, { maxBytes: 1000, what: 'g', finite: true });
  for (const chunk of last.chunks.slice(0, -1)) other.accept(chunk);
  t.throws(() => other.accept(last.chunks.at(-1)!), { instanceOf: WeightsError, message: 'g[0] k: value 9 is -Infinity' });
});

test('checked tensors are marked finite; without `finite`, bad values pass through for the caller to judge', async (t) => {
  const data = ramp(1000, 1);
  const out = overTheWire(tensorTransfer(5, [{ name: 'w', shape: [1000], data }, { name: 'ids', shape: [2], data: Int32Array.from([1, 2]) }]));
  const assembler = new TransferAssembler(100_000);
  const checked = assembler.expect(out.header, { maxBytes: 10_000, what: 'g', finite: true });
  out.chunks.forEach((c) => assembler.accept(c));
  t.deepEqual((await checked).tensors.map((x) => x.finite), [true, undefined]);
  data[3] = Number.NaN;
  const unchecked = overTheWire(tensorTransfer(6, [{ name: 'w', shape: [1000], data }]));
  const plain = assembler.expect(unchecked.header, { maxBytes: 10_000, what: 'g' });
  unchecked.chunks.forEach((c) => assembler.accept(c));
  const received = await plain;
  t.true(Number.isNaN(received.tensors[0]!.data[3]!));
  t.is(received.tensors[0]!.finite, undefined);
});

test('released receive buffers are reused for the next transfer of that size, padding zeroed', async (t) => {
  const pool = new BufferPool(1_000_000);
  const assembler = new TransferAssembler(1_000_000, pool);
  const send = async (id: number, fill: number) => {
    const out = overTheWire(tensorTransfer(id, [{ name: 'u', shape: [3], data: new Uint8Array(3).fill(fill) }, { name: 'w', shape: [2], data: new Float32Array(2).fill(fill) }]));
    const done = assembler.expect(out.header, { maxBytes: 1000, what: 'g' });
    out.chunks.forEach((c) => assembler.accept(c));
    return done;
  };
  const first = await send(1, 7);
  first.bytes[3] = 99; // a padding byte, dirtied
  first.release();
  first.release(); // idempotent: the buffer is in the pool once
  t.is(pool.retainedBytes, first.bytes.length);
  const second = await send(2, 5);
  t.is(second.bytes.buffer, first.bytes.buffer);
  t.is(pool.retainedBytes, 0);
  t.deepEqual([...second.bytes.subarray(0, 4)], [5, 5, 5, 0]);
  t.deepEqual(Array.from(second.tensors[1]!.data), [5, 5]);
  const third = await send(3, 1);
  t.not(third.bytes.buffer, second.bytes.buffer);
});

test('a buffer pool keeps no more than its limit, and only whole buffers', (t) => {
  const pool = new BufferPool(100);
  pool.give(new Uint8Array(60));
  pool.give(new Uint8Array(60));
  t.is(pool.retainedBytes, 60);
  pool.give(new Uint8Array(new ArrayBuffer(40), 8, 20));
  t.is(pool.retainedBytes, 60);
  t.is(pool.take(60).length, 60);
  t.is(pool.retainedBytes, 0);
});

test('firstNonFinite finds the first NaN or infinity in any block, and -1 when there is none', (t) => {
  const values = new Float32Array(10_000).fill(1.5);
  t.is(firstNonFinite(values), -1);
  values[9_999] = Infinity;
  values[5_000] = Number.NaN;
  t.is(firstNonFinite(values), 5_000);
  t.is(firstNonFinite(values, 5_001), 9_999);
  t.is(firstNonFinite(values, 0, 5_000), -1);
  values[0] = -Infinity;
  t.is(firstNonFinite(values), 0);
  t.is(firstNonFinite(new Float32Array([3.4e38, -3.4e38, 0])), -1);
});
