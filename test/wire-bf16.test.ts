import test from 'ava';
import { ProtocolError, TransferLimitError, WeightsError } from '../src/errors.ts';
import { roundArrayToBf16 } from '../src/wire/bf16.ts';
import { BufferPool } from '../src/wire/buffer-pool.ts';
import type { Chunk__Output } from '../src/wire/generated/drover/v1/Chunk.ts';
import type { Transfer__Output } from '../src/wire/generated/drover/v1/Transfer.ts';
import { coordinatorService, envelope, sessionCodec } from '../src/wire/protocol.ts';
import { bytesPerFloat, TENSOR_ENCODING, wireEncodingFrom } from '../src/wire/tensor-encoding.ts';
import { tensorTransfer, TransferAssembler, type OutgoingTransfer, type TensorPart } from '../src/wire/transfer.ts';

const codec = sessionCodec();

/** Through the real Session serialization, as a worker's gradient result travels. */
function overTheWire(out: OutgoingTransfer): { header: Transfer__Output; chunks: Chunk__Output[] } {
  const headerBytes = codec.encodeWorkerMessage({ envelope: envelope('job-1'), gradient: { taskId: 't', step: 1, weightsVersion: 0, loss: 1, correct: 0, n: 1, gradients: out.header } });
  const header = codec.decodeWorkerMessage(headerBytes).gradient!.gradients!;
  const chunks = out.chunks.map((chunk) => codec.decodeWorkerMessage(codec.encodeWorkerMessage({ envelope: envelope('job-1'), chunk })).chunk!);
  return { header, chunks };
}

/** Gradient-like values: both signs, magnitudes from 1e-9 to 1e3, every mantissa pattern. */
function gradientLike(n: number, seed: number): Float32Array {
  let state = seed;
  const next = (): number => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  return Float32Array.from({ length: n }, () => (next() - 0.5) * 10 ** (next() * 12 - 9));
}

async function receive(out: OutgoingTransfer, limits: Parameters<TransferAssembler['expect']>[1], pool?: BufferPool) {
  const { header, chunks } = overTheWire(out);
  const assembler = new TransferAssembler(100_000_000, pool);
  const done = assembler.expect(header, limits);
  for (const chunk of chunks) assembler.accept(chunk);
  return { received: await done, header, assembler };
}

// Odd sizes everywhere: a tensor with an odd count (its bf16 bytes end off a 4-byte boundary),
// chunks of an odd byte count (values split between chunks), raw tensors of other dtypes between.
function parts(): TensorPart[] {
  return [
    { name: 'conv/kernel', shape: [3, 3, 1, 333], data: gradientLike(2997, 1) },
    { name: 'ids', shape: [3], data: Int32Array.from([7, -8, 9]) },
    { name: 'conv/bias', shape: [333], data: gradientLike(333, 2) },
    { name: 'mask', shape: [5], data: Uint8Array.from([1, 0, 1, 1, 0]) },
    { name: 'dense/kernel', shape: [600, 1001], data: gradientLike(600_600, 3) },
  ];
}

test('bf16 halves the bytes of float32 tensors and the receiver gets float32 back, each value the nearest bfloat16', async (t) => {
  const sent = parts();
  const fp32 = tensorTransfer(1, sent, 100_001);
  const bf16 = tensorTransfer(2, sent, 100_001, 'bf16');
  const floatBytes = 4 * (2997 + 333 + 600_600);
  t.is(fp32.bytes, floatBytes + 12 + 5);
  t.is(bf16.bytes, floatBytes / 2 + 12 + 5, 'half the float32 bytes; other dtypes as they are');
  t.deepEqual(bf16.header.tensors!.map((x) => x.encoding), ['TENSOR_ENCODING_BF16', 'TENSOR_ENCODING_RAW', 'TENSOR_ENCODING_BF16', 'TENSOR_ENCODING_RAW', 'TENSOR_ENCODING_BF16']);
  t.deepEqual(fp32.header.tensors!.map((x) => x.encoding), sent.map(() => 'TENSOR_ENCODING_RAW'));

  const pool = new BufferPool(100_000_000);
  const { received, assembler } = await receive(bf16, { maxBytes: 4 * 700_000, what: 'gradients', finite: true, encoding: 'bf16' }, pool);
  t.is(assembler.bufferedBytes, 0);
  t.deepEqual(received.tensors.map((x) => [x.name, x.dtype, x.shape, x.finite]), sent.map((x) => [x.name, x.data instanceof Float32Array ? 'float32' : x.data instanceof Int32Array ? 'int32' : 'uint8', x.shape, x.data instanceof Float32Array ? true : undefined]));
  let worst = 0;
  for (const [i, part] of sent.entries()) {
    const got = received.tensors[i]!.data;
    if (!(part.data instanceof Float32Array)) {
      t.deepEqual(got, part.data);
      continue;
    }
    t.true(got instanceof Float32Array);
    // Decoding is exact: what arrives is the sender's value rounded to nearest bfloat16.
    t.deepEqual(got, roundArrayToBf16(Float32Array.from(part.data)), part.name);
    for (let j = 0; j < got.length; j++) worst = Math.max(worst, Math.abs(got[j]! - part.data[j]!) / Math.abs(part.data[j]!));
  }
  t.true(worst > 0 && worst <= 2 ** -8, `largest relative error ${worst}: bf16 keeps 8 significant bits, rounded to nearest`);

  // The receive buffer is the float32 layout, so a later fp32 transfer of the same tensors reuses it.
  received.release();
  const again = await receive(fp32, { maxBytes: 4 * 700_000, what: 'gradients', finite: true }, pool);
  t.is(again.received.bytes.length, received.bytes.length);
  t.deepEqual(again.received.tensors.map((x) => x.data), sent.map((x) => x.data));
});

test('bf16 decoding holds whatever the chunking: one value per chunk, or a chunk ending mid-value', async (t) => {
  const values = gradientLike(101, 4);
  const expected = roundArrayToBf16(Float32Array.from(values));
  for (const maxChunk of [4, 5, 7, 64, 203]) {
    const { received } = await receive(tensorTransfer(3, [{ name: 'w', shape: [101], data: values }], maxChunk, 'bf16'), { maxBytes: 404, what: 'g', finite: true, encoding: 'bf16' });
    t.deepEqual(received.tensors[0]!.data, expected, `chunks of ${maxChunk} bytes`);
  }
});

test('with bf16, a NaN or infinity is refused as its chunk lands, named as fp32 names it', async (t) => {
  for (const [bad, shown] of [[Number.NaN, 'NaN'], [Infinity, 'Infinity'], [-Infinity, '-Infinity'], [3.4e38, 'Infinity']] as const) {
    const values = gradientLike(300_000, 5);
    values[250_001] = bad;
    for (const encoding of ['fp32', 'bf16'] as const) {
      // Chunks of 100 001 bytes: values straddle chunks in both encodings.
      const out = overTheWire(tensorTransfer(9, [{ name: 'b', shape: [4], data: gradientLike(4, 6) }, { name: 'w', shape: [300_000], data: values }], 100_001, encoding));
      const assembler = new TransferAssembler(10_000_000);
      const done = assembler.expect(out.header, { maxBytes: 2_000_000, what: 'gradients of task s1-1', finite: true, encoding });
      const width = bytesPerFloat(encoding);
      const landing = out.chunks.findIndex((c) => c.offset + c.data.length >= out.header.tensors[1]!.byteOffset + (250_001 + 1) * width);
      for (const chunk of out.chunks.slice(0, landing)) assembler.accept(chunk);
      if (bad === 3.4e38 && encoding === 'fp32') {
        // Finite as float32; only bfloat16's smaller largest value (about 3.39e38) makes it infinite.
        for (const chunk of out.chunks.slice(landing)) assembler.accept(chunk);
        await t.notThrowsAsync(done);
        continue;
      }
      t.throws(() => assembler.accept(out.chunks[landing]!), { instanceOf: WeightsError, message: `gradients of task s1-1[1] w: value 250001 is ${shown}` }, `${bad} as ${encoding}`);
    }
  }
});

test('a transfer in an encoding the job did not ask for is refused before any allocation', (t) => {
  const data = gradientLike(10, 7);
  const bf16 = overTheWire(tensorTransfer(1, [{ name: 'w', shape: [10], data }], undefined, 'bf16'));
  const fp32 = overTheWire(tensorTransfer(2, [{ name: 'w', shape: [10], data }]));
  const assembler = new TransferAssembler(1000);
  t.throws(() => assembler.expect(bf16.header, { maxBytes: 1000, what: 'gradients', finite: true }), { instanceOf: ProtocolError, message: "gradients: tensor w travels as bf16, but this job's wire is fp32 (cluster.wire)" });
  t.throws(() => assembler.expect(fp32.header, { maxBytes: 1000, what: 'gradients', encoding: 'bf16' }), { instanceOf: ProtocolError, message: /travels as fp32, but this job's wire is bf16/ });
  // bf16 is for float32 tensors only, and a manifest's byte count must match its encoding.
  const ids = { ...fp32.header, tensors: [{ ...fp32.header.tensors[0]!, dtype: 'INT32' as const, encoding: 'TENSOR_ENCODING_BF16' as const, byteLength: 20 }] };
  t.throws(() => assembler.expect(ids, { maxBytes: 1000, what: 'g', encoding: 'bf16' }), { instanceOf: ProtocolError, message: /is int32: only float32 tensors travel as bf16/ });
  const lying = { ...bf16.header, tensors: [{ ...bf16.header.tensors[0]!, byteLength: 40 }], totalBytes: 40 };
  t.throws(() => assembler.expect(lying, { maxBytes: 1000, what: 'g', encoding: 'bf16' }), { instanceOf: ProtocolError, message: /float32 as bf16 needs 20 bytes, manifest says 40/ });
  const unknown = { ...bf16.header, tensors: [{ ...bf16.header.tensors[0]!, encoding: 7 as unknown as 'TENSOR_ENCODING_RAW' }] };
  t.throws(() => assembler.expect(unknown, { maxBytes: 1000, what: 'g', encoding: 'bf16' }), { instanceOf: ProtocolError, message: /unsupported encoding 7/ });
  // The limit is on the float32 the receiver holds: 20 bytes on the wire are 40 once decoded.
  t.throws(() => assembler.expect(bf16.header, { maxBytes: 39, what: 'g', encoding: 'bf16' }), { instanceOf: TransferLimitError, message: /40 bytes once decoded/ });
  t.is(assembler.bufferedBytes, 0);
});

test('the job\'s wire reaches workers as a TensorEncoding; an unknown one is refused', (t) => {
  t.is(wireEncodingFrom(TENSOR_ENCODING.bf16, 'join reply'), 'bf16');
  t.is(wireEncodingFrom(TENSOR_ENCODING.fp32, 'join reply'), 'fp32');
  t.is(wireEncodingFrom(undefined, 'join reply'), 'fp32', 'a coordinator that never set it sends raw float32');
  t.throws(() => wireEncodingFrom(9, 'join reply'), { instanceOf: ProtocolError, message: 'join reply: unknown tensor encoding 9' });
  const join = coordinatorService().Join;
  const reply = join.responseDeserialize(join.responseSerialize({ workerId: 'w1', gradientEncoding: TENSOR_ENCODING.bf16 }));
  t.is(wireEncodingFrom(reply.gradientEncoding, 'join reply'), 'bf16');
  t.is(join.responseDeserialize(join.responseSerialize({ workerId: 'w1' })).gradientEncoding, 'TENSOR_ENCODING_RAW');
});
