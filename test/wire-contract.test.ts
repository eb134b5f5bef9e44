import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import * as errors from '../src/errors.ts';
import { fromServiceError, statusOf, toStatus } from '../src/wire/status.ts';
import { generateTypes } from '../src/wire/generate-types.ts';
import { envelope, PROTOCOL_VERSION, sessionCodec } from '../src/wire/protocol.ts';

test('domain errors map to the gRPC status codes of the contract', (t) => {
  t.is(statusOf(new errors.AuthError('bad token')), status.UNAUTHENTICATED);
  t.is(statusOf(new errors.WeightsError('NaN gradient')), status.INVALID_ARGUMENT);
  t.is(statusOf(new errors.ProtocolMismatchError('other job')), status.FAILED_PRECONDITION);
  t.is(statusOf(new errors.TransferLimitError('too big')), status.RESOURCE_EXHAUSTED);
  t.is(statusOf(new errors.DeadlineError('late')), status.DEADLINE_EXCEEDED);
  t.is(statusOf(new errors.UnknownWorkerError('who')), status.NOT_FOUND);
  t.is(statusOf(new Error('bug')), status.INTERNAL);
});

test('an error crosses the wire by its code and comes back as the same class', (t) => {
  const cases = [
    new errors.AuthError('worker presented no token'),
    new errors.WeightsError('gradient 3 (dense_1/bias): value 0 is NaN'),
    new errors.ProtocolMismatchError('protocol 2, coordinator speaks 1'),
    new errors.DeadlineError('missed the deadline'),
    new errors.UnknownWorkerError('w-9 is unknown'),
    new errors.ClusterError('no workers'),
  ];
  for (const original of cases) {
    const wire = toStatus(original);
    const back = fromServiceError({ code: wire.code, details: wire.details, metadata: wire.metadata }, 'join');
    t.is(back.constructor, original.constructor);
    t.is(back.code, original.code);
    t.is(back.message, `join: ${original.message}`);
  }
  const unknown = toStatus(new errors.SampleError('bad png', 'a.png'));
  const back = fromServiceError({ code: unknown.code, details: unknown.details, metadata: unknown.metadata });
  t.true(back instanceof errors.RemoteError);
  t.is((back as errors.RemoteError).remoteCode, 'DROVER_ERR_SAMPLE');
  // No drover trailer (the peer is not drover, or the channel failed): chosen by status.
  t.true(fromServiceError({ code: status.UNAVAILABLE, details: 'connect ECONNREFUSED' }) instanceof errors.ClusterError);
});

test('every error code is unique', (t) => {
  const classes = Object.values(errors).filter((value) => typeof value === 'function' && value.prototype instanceof Error) as unknown as (new (...args: string[]) => errors.DroverError)[];
  const codes = classes.map((Class) => new Class('m', 'x').code);
  t.is(new Set(codes).size, codes.length);
});

test('the committed message types are what the generator makes of proto/drover.proto', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-proto-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const files = await generateTypes(dir);
  t.true(files.includes(path.join('drover', 'v1', 'WorkerMessage.ts')));
  const committed = path.resolve('src/wire/generated');
  for (const file of files) {
    t.is(await readFile(path.join(dir, file), 'utf8'), await readFile(path.join(committed, file), 'utf8'), `${file} is stale: run npm run proto:types`);
  }
});

test('every session message carries the job id and protocol version', (t) => {
  const codec = sessionCodec();
  const decoded = codec.decodeCoordinatorMessage(codec.encodeCoordinatorMessage({ envelope: envelope('job-7'), stop: { reason: 'done', jobCompleted: true } }));
  t.deepEqual(decoded.envelope, { jobId: 'job-7', protocolVersion: PROTOCOL_VERSION });
  t.is(decoded.body, 'stop');
  t.is(decoded.stop!.reason, 'done');
});
