import test from 'ava';
import { selfSignedCertificate } from './helpers/certificate.ts';
import path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { AuthError, ClusterError, ProtocolMismatchError } from '../src/errors.ts';
import { initBackend } from '../src/model/backend.ts';
import { buildScratchModel } from '../src/model/build.ts';
import { loadModel } from '../src/model/export.ts';
import { readWeights } from '../src/model/weights.ts';
import { Trainer } from '../src/train/trainer.ts';
import { tokenMetadata } from '../src/wire/auth.ts';
import { channelCredentials } from '../src/wire/credentials.ts';
import type { CoordinatorMessage__Output } from '../src/wire/generated/drover/v1/CoordinatorMessage.ts';
import { createCoordinatorClient, envelope, PROTOCOL_VERSION } from '../src/wire/protocol.ts';
import { parseReplicaSpec } from '../src/job/replica-spec.ts';
import { tensorTransfer } from '../src/wire/transfer.ts';
import { CoordinatorConnection } from '../src/worker/client.ts';
import { runWorker } from '../src/worker/run-worker.ts';
import { EventSink, compareUpdates, idleCoordinator, sinkLogger, smallFashionMnist, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

test.before(async () => {
  await initBackend('wasm');
});

const TOKEN = 'correct-horse-battery';

test('a worker without the token, or with a wrong one, is refused and the refusal is logged', async (t) => {
  const coordinator = await idleCoordinator(t, TOKEN);
  const address = `127.0.0.1:${coordinator.port}`;
  const log = sinkLogger(new EventSink());
  await t.throwsAsync(runWorker({ coordinator: address, backend: 'wasm', log, token: '' }), { instanceOf: AuthError, message: /no token presented/ });
  await t.throwsAsync(runWorker({ coordinator: address, backend: 'wasm', log, token: 'guess-guess-guess' }), { instanceOf: AuthError, message: /wrong token/ });
  // The stream itself is guarded too, not only Join.
  const client = createCoordinatorClient(address, channelCredentials(undefined));
  t.teardown(() => client.close());
  const call = client.session(tokenMetadata(undefined));
  const [error] = await new Promise<[ServiceError]>((resolve) => call.on('error', (e: ServiceError) => resolve([e])));
  t.is(error.code, status.UNAUTHENTICATED);
  const refusals = coordinator.sink.lines.filter((l) => l.code === 'DROVER_ERR_AUTH');
  t.deepEqual(refusals.map((l) => l.method), ['Join', 'Join', 'Session']);
  t.true(refusals.every((l) => typeof l.peer === 'string' && (l.peer as string).includes('127.0.0.1')), 'the log names who was refused');
  t.is(coordinator.sink.events('worker_join').length, 0);
});

test('another protocol version or another job id is refused with FAILED_PRECONDITION and a clear message', async (t) => {
  const coordinator = await idleCoordinator(t, TOKEN);
  const client = createCoordinatorClient(`127.0.0.1:${coordinator.port}`, channelCredentials(undefined));
  t.teardown(() => client.close());
  const join = (jobId: string, protocolVersion: number) =>
    new Promise<ServiceError>((resolve) => {
      client.join({ envelope: { jobId, protocolVersion }, name: 'x' }, tokenMetadata(TOKEN), { deadline: Date.now() + 5000 }, (e) => resolve(e!));
    });
  const version = await join('', PROTOCOL_VERSION + 1);
  t.is(version.code, status.FAILED_PRECONDITION);
  t.regex(version.details, new RegExp(`protocol ${PROTOCOL_VERSION + 1}, this coordinator speaks ${PROTOCOL_VERSION}`));
  const job = await join('someone-elses-job', PROTOCOL_VERSION);
  t.is(job.code, status.FAILED_PRECONDITION);
  t.regex(job.details, /job "someone-elses-job", but this coordinator runs job "cluster-test-/);
  await t.throwsAsync(runWorker({ coordinator: `127.0.0.1:${coordinator.port}`, backend: 'wasm', token: TOKEN, jobId: 'nope', log: sinkLogger(new EventSink()) }), {
    instanceOf: ProtocolMismatchError,
  });
});

/** Joins and opens a session by hand, as a buggy or hostile worker would. */
async function rogue(address: string, jobId = '') {
  const connection = new CoordinatorConnection({ address, token: TOKEN });
  const reply = await connection.join({ name: 'rogue' }, jobId);
  const call = connection.session();
  const messages: CoordinatorMessage__Output[] = [];
  const waiters: ((m: CoordinatorMessage__Output) => void)[] = [];
  call.on('data', (m: CoordinatorMessage__Output) => {
    messages.push(m);
    waiters.splice(0).forEach((w) => w(m));
  });
  const ended = new Promise<ServiceError>((resolve) => call.on('error', resolve));
  const jobEnvelope = envelope(reply.envelope!.jobId);
  call.write({ envelope: jobEnvelope, ready: { workerId: reply.workerId, sessionKey: reply.sessionKey } });
  return {
    reply,
    call,
    ended,
    jobEnvelope,
    spec: parseReplicaSpec(reply.replicaSpecJson),
    async next(match: (m: CoordinatorMessage__Output) => boolean): Promise<CoordinatorMessage__Output> {
      for (;;) {
        const found = messages.find(match);
        if (found) return found;
        await new Promise<CoordinatorMessage__Output>((resolve) => waiters.push(resolve));
      }
    },
    close: () => {
      call.cancel();
      connection.close();
    },
  };
}

test('a NaN gradient is refused without touching the model: the step is computed from good gradients only', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(64);
  const layers = [{ type: 'flatten' as const }, { type: 'dense' as const, units: 16 }];
  const job = testJob(dir, { seed: 21, model: { layers }, train: { epochs: 1, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.1 } }, cluster: { minWorkers: 2, token: TOKEN, balance: 'equal' } });
  const coordinator = await startCoordinator(t, job, { dataset });
  const address = `127.0.0.1:${coordinator.port}`;
  const bad = await rogue(address);
  t.teardown(bad.close);
  const good = runWorker({ coordinator: address, backend: 'wasm', token: TOKEN, name: 'good', log: sinkLogger(new EventSink()) });
  const assignment = (await bad.next((m) => m.body === 'task')).task!;
  const trainable = bad.spec.weights.filter((w) => w.trainable);
  const grads = trainable.map((w) => new Float32Array(w.shape.reduce((a, b) => a * b, 1)).fill(0.01));
  grads[1]![3] = Number.NaN;
  const transfer = tensorTransfer(1, trainable.map((w, i) => ({ name: w.name, shape: w.shape, data: grads[i]! })));
  bad.call.write({
    envelope: bad.jobEnvelope,
    gradient: { taskId: assignment.taskId, step: assignment.step, weightsVersion: assignment.weightsVersion, loss: 1, correct: 0, n: assignment.shard!.sampleIds.length, gradients: transfer.header, buffers: null, skipped: [] },
  });
  for (const chunk of transfer.chunks) bad.call.write({ envelope: bad.jobEnvelope, chunk });
  const refused = await bad.ended;
  t.is(refused.code, status.INVALID_ARGUMENT);
  t.regex(refused.details, /dense_1\/bias: value 3 is NaN/);
  const failed = await coordinator.sink.waitFor((l) => l.event === 'worker_fail', 'the rogue evicted');
  t.is(failed.worker, bad.reply.workerId);
  const result = await coordinator.result;
  t.is((await good).status, 'completed');
  t.is(result.steps, 1);
  t.is(coordinator.sink.events('step')[0]!.n, 64);

  // The update is exactly that of the 64 samples' mean gradient: the NaN never reached the model.
  const reference = new Trainer(buildScratchModel({ layers, inputShape: dataset.inputShape, classes: 10, l2: 0, seed: 21 }), { optimizer: job.train.optimizer });
  const w0 = await readWeights(reference.model);
  const single = await reference.computeGradients(await dataset.train.loadBatch(Array.from({ length: 64 }, (_, i) => i)));
  await reference.applyGradients(single.grads, 0.1);
  const expected = await readWeights(reference.model);
  const saved = await loadModel(path.join(dir, 'model'));
  for (const weight of compareUpdates(w0, (await readWeights(saved.model)), expected)) t.true(weight.error <= 1e-5, weight.name);
  saved.model.dispose();
  reference.model.dispose();
});

test('message sizes are bounded: an oversized message or a transfer larger than the model is refused', async (t) => {
  const coordinator = await idleCoordinator(t, TOKEN);
  const address = `127.0.0.1:${coordinator.port}`;
  const big = await rogue(address);
  t.teardown(big.close);
  big.call.write({ envelope: big.jobEnvelope, chunk: { transferId: 1, offset: 0, data: Buffer.alloc(3 * 1024 * 1024) } });
  t.is((await big.ended).code, status.RESOURCE_EXHAUSTED);

  const liar = await rogue(address, big.reply.envelope!.jobId);
  t.teardown(liar.close);
  const modelBytes = liar.spec.weights.filter((w) => w.trainable).reduce((sum, w) => sum + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
  liar.call.write({
    envelope: liar.jobEnvelope,
    gradient: { taskId: 's1-1', step: 1, weightsVersion: 0, loss: 1, correct: 0, n: 1, gradients: { transferId: 1, totalBytes: 64 * modelBytes, tensors: [] }, buffers: null, skipped: [] },
  });
  const refused = await liar.ended;
  t.is(refused.code, status.RESOURCE_EXHAUSTED);
  t.regex(refused.details, /exceeds the limit/);
});

test('workers and coordinator talk TLS when certificate paths are given; a plaintext worker cannot join', async (t) => {
  const dir = await tempDir(t);
  const certificate = selfSignedCertificate(dir);
  if (!certificate) return void t.pass('openssl is not installed: no certificate to test with');
  const { cert, key } = certificate;
  const dataset = await smallFashionMnist(64);
  const job = testJob(dir, { train: { epochs: 1, batchSize: 32, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.1 } }, cluster: { minWorkers: 1, token: TOKEN, tls: { cert, key } } });
  const coordinator = await startCoordinator(t, job, { dataset });
  const address = `127.0.0.1:${coordinator.port}`;
  await t.throwsAsync(runWorker({ coordinator: address, backend: 'wasm', token: TOKEN, reconnectMs: 1500, log: sinkLogger(new EventSink()) }), { instanceOf: ClusterError });
  const worker = await runWorker({ coordinator: address, backend: 'wasm', token: TOKEN, tls: { ca: cert }, log: sinkLogger(new EventSink()) });
  t.is(worker.status, 'completed');
  t.is((await coordinator.result).steps, 2);
});
