import test from 'ava';
import { ConfigError } from '../src/errors.ts';
import { resolveCoordinatorAddress } from '../src/worker/coordinator-address.ts';
import { smallFashionMnist, spawnDrover, startCoordinator, tempDir, testJob } from './helpers/cluster.ts';

/** Every variable the lookup reads, unset: the test's own environment must not leak in. */
const UNSET = { DROVER_COORDINATOR: '', MASTER_ADDR: '', MASTER_PORT: '', PET_MASTER_ADDR: '', PET_MASTER_PORT: '' };

test('the coordinator address comes from the flag, then DROVER_COORDINATOR, then MASTER_*, then PET_MASTER_*', (t) => {
  const all = { DROVER_COORDINATOR: 'drover-svc:7070', MASTER_ADDR: 'master', MASTER_PORT: '23456', PET_MASTER_ADDR: 'pet', PET_MASTER_PORT: '29500' };
  t.deepEqual(resolveCoordinatorAddress('flag-host:1', all), { address: 'flag-host:1', source: '--coordinator' });
  t.deepEqual(resolveCoordinatorAddress(undefined, all), { address: 'drover-svc:7070', source: 'DROVER_COORDINATOR' });
  t.deepEqual(resolveCoordinatorAddress(undefined, { ...all, DROVER_COORDINATOR: '' }), { address: 'master:23456', source: 'MASTER_ADDR/MASTER_PORT' });
  t.deepEqual(resolveCoordinatorAddress(undefined, { PET_MASTER_ADDR: 'pet', PET_MASTER_PORT: '29500' }), { address: 'pet:29500', source: 'PET_MASTER_ADDR/PET_MASTER_PORT' });
  t.deepEqual(resolveCoordinatorAddress(undefined, { MASTER_ADDR: 'fd00::1', MASTER_PORT: '7070' }), { address: '[fd00::1]:7070', source: 'MASTER_ADDR/MASTER_PORT' });
});

test('a missing, half-set or malformed address is a ConfigError naming the variable', (t) => {
  const none = t.throws(() => resolveCoordinatorAddress(undefined, {}), { instanceOf: ConfigError });
  t.regex(none!.message, /DROVER_COORDINATOR.*MASTER_ADDR.*PET_MASTER_ADDR/);
  t.is(t.throws<ConfigError>(() => resolveCoordinatorAddress(undefined, { MASTER_ADDR: 'master' }))?.field, 'MASTER_PORT');
  t.is(t.throws<ConfigError>(() => resolveCoordinatorAddress(undefined, { PET_MASTER_PORT: '29500' }))?.field, 'PET_MASTER_ADDR');
  t.is(t.throws<ConfigError>(() => resolveCoordinatorAddress(undefined, { DROVER_COORDINATOR: 'no-port' }))?.field, 'DROVER_COORDINATOR');
  t.is(t.throws<ConfigError>(() => resolveCoordinatorAddress(undefined, { MASTER_ADDR: 'm', MASTER_PORT: '99999' }))?.field, 'MASTER_PORT');
  // A half-set pair is an error, not a fall-through to the next source.
  t.throws(() => resolveCoordinatorAddress(undefined, { MASTER_ADDR: 'm', PET_MASTER_ADDR: 'p', PET_MASTER_PORT: '1' }), { instanceOf: ConfigError });
});

test.serial('drover worker processes without --coordinator find it through each environment variable, say which, and train the job', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(256);
  t.teardown(() => dataset.close());
  const coordinator = await startCoordinator(t, testJob(dir, { cluster: { minWorkers: 3 } }), { dataset });
  const port = String(coordinator.port);
  const worker = (name: string, env: Record<string, string>) =>
    spawnDrover(t, ['worker', '--backend', 'wasm', '--name', name, '--reconnect-ms', '30000', '--simulate-compute-ms', '1'], { ...UNSET, ...env });
  const workers = [
    // DROVER_COORDINATOR wins over a MASTER_ADDR that leads nowhere.
    { source: 'DROVER_COORDINATOR', child: worker('drover', { DROVER_COORDINATOR: `127.0.0.1:${port}`, MASTER_ADDR: '192.0.2.1', MASTER_PORT: '1' }) },
    { source: 'MASTER_ADDR/MASTER_PORT', child: worker('pytorchjob', { MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, PET_MASTER_ADDR: '192.0.2.1', PET_MASTER_PORT: '1' }) },
    { source: 'PET_MASTER_ADDR/PET_MASTER_PORT', child: worker('trainjob', { PET_MASTER_ADDR: '127.0.0.1', PET_MASTER_PORT: port }) },
  ];
  const result = await coordinator.result;
  t.is(result.status, 'completed');
  t.is(coordinator.sink.events('worker_join').length, 3, 'all three joined');
  for (const { source, child } of workers) {
    const said = child.sink.lines.find((l) => l.source !== undefined);
    t.is(said?.source, source);
    t.is(said?.coordinator, `127.0.0.1:${port}`);
    t.is(await child.exited, 0, `${source} worker finished with the job`);
  }
});

test.serial('drover worker with no coordinator address anywhere exits 1 with the variables it looked for', async (t) => {
  const child = spawnDrover(t, ['worker', '--backend', 'wasm'], UNSET);
  t.is(await child.exited, 1);
  t.regex(child.stderr(), /no coordinator address.*DROVER_COORDINATOR.*\[DROVER_ERR_CONFIG\]/s);
});
