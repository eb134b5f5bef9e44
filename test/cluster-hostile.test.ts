import test from 'ava';
import { status } from '@grpc/grpc-js';
import { AuthError } from '../src/errors.ts';
import { initBackend } from '../src/model/backend.ts';
import { runWorker } from '../src/worker/run-worker.ts';
import { EventSink, idleCoordinator, sinkLogger, smallFashionMnist, spawnWorker, startCoordinator, tempDir, testJob, type LogLine } from './helpers/cluster.ts';
import { joinRogue } from './helpers/rogue.ts';

// Peers that hold the valid token and still misbehave, over real gRPC on loopback.
test.before(async () => {
  await initBackend('wasm');
});

const TOKEN = 'correct-horse-battery';

const about = (worker: string) => (l: LogLine): boolean => l.worker === worker;

test('Leave naming another worker is refused: only the holder of a worker\'s session key ends its membership', async (t) => {
  const coordinator = await idleCoordinator(t, TOKEN);
  const address = `127.0.0.1:${coordinator.port}`;
  const victim = await joinRogue(address, TOKEN, 'victim');
  t.teardown(victim.close);
  const attacker = await joinRogue(address, TOKEN, 'attacker');
  t.teardown(attacker.close);
  await coordinator.sink.waitFor((l) => l.event === 'worker_join' && l.worker === attacker.workerId, 'both sessions open');
  await t.throwsAsync(attacker.connection.leave(victim.jobId, victim.workerId, attacker.sessionKey, 'bye'), { instanceOf: AuthError, message: /session key/ });
  await t.throwsAsync(attacker.connection.leave(victim.jobId, victim.workerId, '', 'bye'), { instanceOf: AuthError });
  t.deepEqual(coordinator.sink.lines.filter((l) => (l.event === 'worker_leave' || l.event === 'worker_fail') && l.worker === victim.workerId), [], 'the victim is still a member');
  // Its own key works.
  await victim.connection.leave(victim.jobId, victim.workerId, victim.sessionKey, 'done here');
  const left = await coordinator.sink.waitFor((l) => l.event === 'worker_leave' && l.worker === victim.workerId, 'the victim leaving by itself');
  t.is(left.reason, 'done here');
});

test('a session that ends without Leave is a worker_fail with its cause, never a worker_leave', async (t) => {
  const coordinator = await idleCoordinator(t, TOKEN);
  const rogue = await joinRogue(`127.0.0.1:${coordinator.port}`, TOKEN, 'quiet');
  t.teardown(rogue.close);
  await coordinator.sink.waitFor((l) => l.event === 'worker_join' && l.worker === rogue.workerId, 'its session open');
  // A clean half-close, as a stream torn down by kill -9 can look before its connection error.
  rogue.halfClose();
  const failed = await coordinator.sink.waitFor((l) => l.event === 'worker_fail' && l.worker === rogue.workerId, 'worker_fail');
  t.truthy(failed.reason);
  t.deepEqual(coordinator.sink.events('worker_leave'), []);
});

test('a worker killed with kill -9 is a worker_fail, never a worker_leave', async (t) => {
  const coordinator = await idleCoordinator(t, TOKEN);
  const workers = ['k1', 'k2'].map((name) => spawnWorker(t, coordinator.port, { name, token: TOKEN, args: ['--simulate-compute-ms', '1'] }));
  for (const name of ['k1', 'k2']) await coordinator.sink.waitFor((l) => l.event === 'worker_join' && String(l.worker).endsWith(name), `${name} joined`);
  for (const worker of workers) worker.kill('SIGKILL');
  for (const name of ['k1', 'k2']) await coordinator.sink.waitFor((l) => l.event === 'worker_fail' && String(l.worker).endsWith(name), `${name} failed`);
  t.deepEqual(coordinator.sink.events('worker_leave'), []);
});

test('messages about tasks never assigned are logged as protocol violations and the worker is evicted after three', async (t) => {
  const coordinator = await idleCoordinator(t, TOKEN);
  const rogue = await joinRogue(`127.0.0.1:${coordinator.port}`, TOKEN, 'forger');
  t.teardown(rogue.close);
  await coordinator.sink.waitFor((l) => l.event === 'worker_join' && l.worker === rogue.workerId, 'its session open');
  for (let i = 0; i < 50; i++) rogue.send({ failure: { taskId: `s${i}-1`, code: 'DROVER_ERR', message: 'nope' } });
  const refused = await rogue.ended;
  t.is(refused.code, status.INVALID_ARGUMENT);
  const violations = coordinator.sink.events('protocol_violation', about(rogue.workerId));
  t.deepEqual(violations.map((l) => l.count), [1, 2, 3]);
  t.is(violations[0]!.task, 's0-1');
  const failed = coordinator.sink.events('worker_fail', about(rogue.workerId));
  t.is(failed.length, 1);
  t.regex(String(failed[0]!.reason), /3 protocol violations/);
});

test('a worker that fails every task is evicted and named; its shards go to the healthy worker and the job completes', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(64 * 6);
  const job = testJob(dir, { train: { epochs: 1, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } }, cluster: { minWorkers: 2, balance: 'equal', token: TOKEN } });
  const coordinator = await startCoordinator(t, job, { dataset, token: TOKEN });
  const address = `127.0.0.1:${coordinator.port}`;
  const rogue = await joinRogue(address, TOKEN, 'failing');
  t.teardown(rogue.close);
  void (async () => {
    for await (const task of rogue.tasks()) rogue.send({ failure: { taskId: task.taskId, code: 'DROVER_ERR_DATASET', message: 'cannot decode anything' } });
  })();
  const good = runWorker({ coordinator: address, token: TOKEN, name: 'good', simulateComputeMs: 1, log: sinkLogger(new EventSink()) });
  const result = await coordinator.result;
  t.is(result.status, 'completed');
  t.is((await good).status, 'completed');
  const failed = coordinator.sink.events('worker_fail', about(rogue.workerId));
  t.is(failed.length, 1);
  t.regex(String(failed[0]!.reason), /failed 3 tasks in a row; last: DROVER_ERR_DATASET/);
  const steps = coordinator.sink.events('step');
  t.deepEqual(steps.map((l) => l.step), [1, 2, 3, 4, 5, 6]);
  t.true(steps.every((l) => l.n === 64), 'every step covered its batch');
});

test('with no healthy worker left for the step deadline the job fails, and job_end counts the epochs done', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(128);
  const job = testJob(dir, { train: { epochs: 3, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.05 } }, cluster: { minWorkers: 1, token: TOKEN, stepDeadlineMs: 4000 } });
  const coordinator = await startCoordinator(t, job, { dataset, token: TOKEN });
  const rogue = await joinRogue(`127.0.0.1:${coordinator.port}`, TOKEN, 'turns-bad');
  t.teardown(rogue.close);
  // Good for the first epoch (2 steps), then fails every task.
  void (async () => {
    for await (const task of rogue.tasks()) {
      if (task.step <= 2) rogue.answer(task);
      else rogue.send({ failure: { taskId: task.taskId, code: 'DROVER_ERR_DATASET', message: 'disk gone' } });
    }
  })();
  await t.throwsAsync(coordinator.result, { message: /no healthy worker for 4000 ms \(cluster.stepDeadlineMs\): worker .*turns-bad was evicted: failed 3 tasks in a row/ });
  const [end] = coordinator.sink.events('job_end');
  t.is(end!.status, 'failed');
  t.is(end!.epochs, 1);
  t.is(end!.steps, 2);
});

test('throughput is what the coordinator measures: a worker claiming a tiny compute time gets no more than its speed earns', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(64 * 40);
  const job = testJob(dir, { train: { epochs: 1, batchSize: 64, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.01 } }, cluster: { minWorkers: 2, balance: 'throughput', token: TOKEN } });
  const coordinator = await startCoordinator(t, job, { dataset, token: TOKEN });
  const address = `127.0.0.1:${coordinator.port}`;
  const liar = await joinRogue(address, TOKEN, 'liar');
  t.teardown(liar.close);
  // Takes 150 ms a task whatever its size, and claims 0.001 ms.
  void (async () => {
    for await (const task of liar.tasks()) setTimeout(() => liar.answer(task, { computeMs: 0.001 }), 150);
  })();
  const honest = runWorker({ coordinator: address, token: TOKEN, name: 'honest', simulateComputeMs: 1, simulateMsPerSample: 0.2, log: sinkLogger(new EventSink()) });
  const { sink } = coordinator;
  await sink.waitFor((l) => l.event === 'step' && (l.step as number) >= 14, 'step 14', 120_000);
  coordinator.stop();
  await coordinator.result.catch(() => {});
  await honest;
  const shares = sink.events('step').map((l) => (l.workers as { worker: string; n: number }[]).find((w) => w.worker === liar.workerId)?.n ?? 0);
  t.true(shares.at(-1)! < 32, `the liar's last shard ${shares.at(-1)} is below an equal share: shares ${shares.join(' ')}`);
  // From the first measured step on, a share moves by a bounded step (1.3x up, 0.85x down of the estimate, plus rounding).
  for (let i = 4; i < shares.length; i++) {
    if (shares[i - 1]! >= 4) t.true(shares[i]! >= Math.floor(shares[i - 1]! * 0.5) && shares[i]! <= Math.ceil(shares[i - 1]! * 2), `step ${i + 1}: ${shares[i - 1]} -> ${shares[i]}`);
  }
});
