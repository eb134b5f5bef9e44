import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { PhaseHost } from '../src/coordinator/phase-host.ts';
import { HEALTH_SERVICE, LIVENESS_SERVICE, startCoordinatorServer } from '../src/coordinator/server.ts';
import { HealthProbe } from './helpers/health-client.ts';
import { EventSink, sinkLogger, smallFashionMnist, spawnWorker, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

const TOKEN = 'health-secret';

test.serial('grpc.health.v1 answers SERVING to a client without the token once the job is loaded, and NOT_SERVING while it drains', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(256);
  t.teardown(() => dataset.close());
  // minWorkers 2 and no worker: the coordinator waits, workers may join.
  const coordinator = await startCoordinator(t, testJob(dir, { cluster: { minWorkers: 2 } }), { dataset, token: TOKEN });
  const probe = new HealthProbe(`127.0.0.1:${coordinator.port}`);
  t.teardown(() => probe.close());

  t.is(await probe.check(''), 'SERVING', 'the whole server');
  t.is(await probe.check(HEALTH_SERVICE), 'SERVING', 'the coordinator service by name');
  const unknown = await t.throwsAsync<grpc.ServiceError>(probe.check('no.such.Service'));
  t.is(unknown?.code, grpc.status.NOT_FOUND);

  const watch = probe.watch('');
  t.teardown(() => watch.stop());
  t.is(await watch.next(), 'SERVING');
  coordinator.stop(); // what SIGTERM does: finish the step, checkpoint, dismiss
  t.is(await watch.next(), 'NOT_SERVING', 'draining turns the probe NOT_SERVING before the server closes');
  // Stopped before any worker came: a stop like any other (the CLI exits 128 + signal), not a failure.
  const result = await coordinator.result;
  t.is(result.status, 'stopped');
  t.is(result.steps, 0);
  t.is(coordinator.sink.events('job_end').at(-1)?.status, 'stopped');
});

test.serial('a coordinator whose training is over reports NOT_SERVING while it exports and dismisses its workers', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(128);
  t.teardown(() => dataset.close());
  const coordinator = await startCoordinator(t, testJob(dir, { cluster: { minWorkers: 1 } }), { dataset, token: TOKEN });
  const probe = new HealthProbe(`127.0.0.1:${coordinator.port}`);
  t.teardown(() => probe.close());
  const watch = probe.watch(HEALTH_SERVICE);
  t.teardown(() => watch.stop());
  t.is(await watch.next(), 'SERVING');
  spawnWorker(t, coordinator.port, { name: 'health', token: TOKEN, args: ['--simulate-compute-ms', '1'] });
  t.is(await watch.next(120_000), 'NOT_SERVING');
  const result = await coordinator.result;
  t.is(result.status, 'completed');
  t.true(coordinator.sink.events('step').length > 0, 'it trained before it stopped serving');
});

test.serial('the liveness service stays SERVING while readiness is NOT_SERVING (draining, export, test) and turns NOT_SERVING only as the server closes', async (t) => {
  const server = await startCoordinatorServer(new PhaseHost('liveness-job', TOKEN), { host: '127.0.0.1', port: 0, log: sinkLogger(new EventSink()) });
  let closed = false;
  t.teardown(() => (closed ? undefined : server.close()));
  const probe = new HealthProbe(`127.0.0.1:${server.port}`);
  t.teardown(() => probe.close());
  const liveness = probe.watch(LIVENESS_SERVICE);
  t.teardown(() => liveness.stop());

  t.is(await liveness.next(), 'SERVING', 'alive as soon as it listens');
  t.is(await probe.check(HEALTH_SERVICE), 'NOT_SERVING', 'not ready before the job is served');
  server.setServing(true);
  t.is(await probe.check(HEALTH_SERVICE), 'SERVING');
  t.is(await probe.check(LIVENESS_SERVICE), 'SERVING');
  server.setServing(false); // draining, exporting, evaluating the test split
  t.is(await probe.check(HEALTH_SERVICE), 'NOT_SERVING');
  t.is(await probe.check(''), 'NOT_SERVING', 'the whole server follows readiness');
  t.is(await probe.check(LIVENESS_SERVICE), 'SERVING', 'a liveness probe does not restart a coordinator that is exporting');
  t.deepEqual(liveness.statuses, ['SERVING'], 'liveness never wavered');
  closed = true;
  await server.close();
  t.true(liveness.statuses.length === 1 || liveness.statuses[1] === 'NOT_SERVING', `after close: ${JSON.stringify(liveness.statuses)}`);
});
