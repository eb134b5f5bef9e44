import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ProtocolError, TransferLimitError } from '../src/errors.ts';
import { bf16BitsOf, decodeBf16, encodeBf16, roundArrayToBf16, roundToBf16 } from '../src/wire/bf16.ts';
import { generatePeerTypes } from '../src/peer/generate-types.ts';
import { PeerInbox, type InboundChunk, type SlotSpec } from '../src/peer/inbox.ts';
import { splitRanges } from '../src/peer/ranges.ts';
import { sumInOrder } from '../src/peer/sum.ts';
import { sameBits, sequentialSum, vectorOf } from './peer-fixtures.ts';

test('ranges cover the vector in order, balanced to one element, the same on every call', (t) => {
  for (const [length, parts] of [[0, 3], [2, 5], [10, 3], [1_000_003, 7], [25_000_000, 4]] as const) {
    const ranges = splitRanges(length, parts);
    t.is(ranges.length, parts);
    t.is(ranges[0]!.start, 0);
    for (let r = 1; r < parts; r++) t.is(ranges[r]!.start, ranges[r - 1]!.start + ranges[r - 1]!.count);
    t.is(ranges.reduce((n, range) => n + range.count, 0), length);
    const counts = ranges.map((range) => range.count);
    t.true(Math.max(...counts) - Math.min(...counts) <= 1);
    t.deepEqual(splitRanges(length, parts), ranges);
  }
  t.deepEqual(splitRanges(10, 3), [{ start: 0, count: 4 }, { start: 4, count: 3 }, { start: 7, count: 3 }]);
  t.throws(() => splitRanges(10, 0), { instanceOf: RangeError });
  t.throws(() => splitRanges(-1, 2), { instanceOf: RangeError });
});

test('bf16 rounds to nearest, ties to even, keeps NaN a NaN and overflows to infinity', (t) => {
  t.is(roundToBf16(1), 1);
  t.is(roundToBf16(-2.5), -2.5);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even mantissa (1).
  t.is(roundToBf16(1 + 2 ** -8), 1);
  // 1 + 3 x 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  t.is(roundToBf16(1 + 3 * 2 ** -8), 1 + 2 ** -6);
  t.is(roundToBf16(1 + 2 ** -8 + 2 ** -15), 1 + 2 ** -7);
  t.is(roundToBf16(Infinity), Infinity);
  t.is(roundToBf16(-Infinity), -Infinity);
  t.true(Number.isNaN(roundToBf16(NaN)));
  // A NaN whose payload sits only in the low bits would truncate to infinity.
  t.is(bf16BitsOf(0x7f800001) & 0x7f80, 0x7f80);
  t.not(bf16BitsOf(0x7f800001) & 0x007f, 0);
  t.is(bf16BitsOf(0xff800001) >>> 15, 1, 'sign kept');
  t.is(roundToBf16(3.4e38), Infinity, 'above the largest bfloat16 rounds to infinity');
  t.is(roundToBf16(-0), -0);
  t.is(roundToBf16(2 ** -130), 2 ** -130, 'subnormals go through');
});

test('bf16 arrays: encoding then decoding equals rounding, in half the bytes, within 2^-8 relative', (t) => {
  const values = vectorOf(3, 10_001);
  values[5] = NaN;
  values[6] = Infinity;
  const encoded = encodeBf16(values);
  t.is(encoded.byteLength * 2, values.byteLength);
  const decoded = decodeBf16(encoded);
  const rounded = roundArrayToBf16(Float32Array.from(values));
  t.true(Number.isNaN(decoded[5]!));
  decoded[5] = 0;
  rounded[5] = 0;
  t.true(sameBits(decoded, rounded));
  for (let j = 0; j < values.length; j++) {
    if (j === 5 || j === 6) continue;
    t.true(Math.abs(decoded[j]! - values[j]!) <= Math.abs(values[j]!) * 2 ** -8, `value ${j}`);
  }
});

test('sumInOrder is exactly the sequential float32 loop, for every count of parts', (t) => {
  for (let parts = 1; parts <= 9; parts++) {
    const vectors = Array.from({ length: parts }, (_, k) => vectorOf(k + 11, 4099));
    const out = sumInOrder(new Float32Array(4099), vectors);
    t.true(sameBits(out, sequentialSum(vectors)), `${parts} parts`);
  }
  // The order matters (what makes the fixed rank order necessary): reversed, the bits differ.
  const vectors = Array.from({ length: 5 }, (_, k) => vectorOf(k + 11, 4099));
  t.false(sameBits(sumInOrder(new Float32Array(4099), vectors), sequentialSum([...vectors].reverse())));
});

function chunk(fields: Partial<InboundChunk>): InboundChunk {
  return { generation: 1, step: 5, phase: 'scatter', sender: 1, range: 0, offset: 0, count: 4, encoding: 'fp32', payload: new Uint8Array(16), ...fields };
}

function bytesOf(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

test('the inbox writes only in-order chunks of open slots, refuses the rest before writing, and a broken stream gives its slot back', (t) => {
  const inbox = new PeerInbox({ maxParked: 1, parkMs: 60_000 });
  const target = new Float32Array(6);
  const slots: SlotSpec[] = [{ phase: 'scatter', sender: 1, range: 0, target }];
  const done: SlotSpec[] = [];
  const close = inbox.open({ generation: 1, step: 5, rank: 0, size: 2, encoding: 'fp32', slots }, { done: (slot) => done.push(slot) });

  const refusals: [Partial<InboundChunk>, new (...args: never[]) => Error][] = [
    [{ step: 4 }, ProtocolError], // a finished step
    [{ generation: 0, step: 9 }, ProtocolError], // an abandoned generation
    [{ sender: 0 }, ProtocolError], // the receiver itself
    [{ sender: 2 }, ProtocolError], // outside the group
    [{ phase: 'gather', range: 1 }, ProtocolError], // not expected
    [{ range: 1 }, ProtocolError],
    [{ encoding: 'bf16', payload: new Uint8Array(8) }, ProtocolError],
    [{ offset: 2 }, ProtocolError], // a gap
    [{ count: 7, payload: new Uint8Array(28) }, TransferLimitError], // past the range
    [{ count: 0, payload: new Uint8Array(0) }, TransferLimitError],
    [{ count: 4, payload: new Uint8Array(12) }, ProtocolError], // bytes do not match the count
    [{ count: 300_000, payload: new Uint8Array(1_200_000) }, TransferLimitError], // over the chunk limit
  ];
  for (const [fields, type] of refusals) t.throws(() => inbox.admit(chunk(fields)), { instanceOf: type }, JSON.stringify({ ...fields, payload: undefined }));

  // A stream that writes part of the range and breaks leaves nothing behind: the next one starts over.
  const broken = {};
  const admitted = inbox.admit(chunk({ payload: bytesOf([9, 9, 9, 9]) }));
  if (admitted.kind !== 'slot') return t.fail();
  inbox.write(admitted.slot, broken, chunk({ payload: bytesOf([9, 9, 9, 9]) }));
  const other = {};
  t.throws(() => inbox.write(admitted.slot, other, chunk({ offset: 4, count: 2, payload: bytesOf([7, 7]) })), { instanceOf: ProtocolError }, 'one stream per slot');
  inbox.release(admitted.slot, broken);
  t.throws(() => inbox.write(admitted.slot, other, chunk({ offset: 4, count: 2, payload: bytesOf([7, 7]) })), { instanceOf: ProtocolError }, 'must start over');
  inbox.write(admitted.slot, other, chunk({ payload: bytesOf([1, 2, 3, 4]) }));
  t.is(done.length, 0);
  inbox.write(admitted.slot, other, chunk({ offset: 4, count: 2, payload: bytesOf([5, 6]) }));
  t.deepEqual([...target], [1, 2, 3, 4, 5, 6]);
  t.is(done.length, 1);
  t.throws(() => inbox.write(admitted.slot, other, chunk({ offset: 6, count: 1, payload: bytesOf([0]) })), { instanceOf: ProtocolError }, 'complete');

  // A step ahead waits (bounded in number); opening it lets it in, a later step refuses it.
  const ahead = inbox.admit(chunk({ step: 6 }));
  t.is(ahead.kind, 'park');
  t.throws(() => inbox.admit(chunk({ step: 7 })), { instanceOf: TransferLimitError });
  let outcome: unknown;
  if (ahead.kind === 'park') ahead.parked.onSettle((o) => (outcome = o));
  close();
  t.throws(() => inbox.admit(chunk({})), { instanceOf: ProtocolError }, 'a closed step');
  inbox.open({ generation: 1, step: 7, rank: 0, size: 2, encoding: 'fp32', slots: [] }, { done: () => undefined });
  t.true(outcome !== undefined && 'error' in (outcome as object));
  t.is(inbox.parkedCount, 0);
  inbox.close();
});

test('the committed peer message types are what the generator makes of proto/peer.proto', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-peer-proto-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const files = await generatePeerTypes(dir);
  t.true(files.includes(path.join('drover', 'peer', 'v1', 'PeerChunk.ts')));
  for (const file of files) {
    t.is(await readFile(path.join(dir, file), 'utf8'), await readFile(path.join('src/peer/generated', file), 'utf8'), `${file} is stale: run node --import tsx src/peer/generate-types.ts`);
  }
});
