import test from 'ava';
import { randomBytes } from 'node:crypto';
import { chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LIVENESS_SERVICE } from '../../src/coordinator/server.ts';
import { loadModel } from '../../src/model/export.ts';
import { EventSink, REPO_ROOT } from '../helpers/cluster.ts';
import { HealthProbe } from '../helpers/health-client.ts';
import { parseExposition, sampleValue } from '../helpers/prometheus.ts';
import { Podman, caBundle, debootstrapBase, followLogs } from './podman.ts';

/** The image's user (Containerfile: USER 10001). */
const DROVER_UID = 10001;
const TOKEN = 'container-test-secret';

test.serial('the image trains a 2-worker job on a private network: SIGTERM checkpoints, --resume auto continues, workers find the coordinator from the environment, health and metrics answer', async (t) => {
  const podman = await Podman.create();
  t.teardown(() => podman.close());
  const seconds = (since: number): string => ((performance.now() - since) / 1000).toFixed(0);

  // 1. The image, from a Debian base built here (no registry needed).
  const base = process.env.DROVER_CONTAINER_BASE ?? 'localhost/drover-base:bookworm';
  let since = performance.now();
  if (process.env.DROVER_CONTAINER_BASE === undefined) await debootstrapBase(podman, base, 'bookworm');
  t.log(`base image ${base}: ${seconds(since)} s`);
  since = performance.now();
  const image = `localhost/drover:test-${randomBytes(3).toString('hex')}`;
  const ca = await caBundle();
  await podman.stream(['build', ...(ca ? ['--secret', `id=ca-bundle,src=${ca}`] : []), '--build-arg', `BASE=${base}`, '-t', image, '-f', path.join(REPO_ROOT, 'Containerfile'), REPO_ROOT], 30 * 60_000);
  t.teardown(() => podman.exec(['rmi', '-f', image]).then(() => {}, () => {}));
  t.log(`podman build: ${seconds(since)} s`);
  t.is((await podman.exec(['image', 'inspect', '--format', '{{.Config.User}}', image])).trim(), `${DROVER_UID}:${DROVER_UID}`, 'runs as non-root');
  const inImage = (command: string[]): Promise<string> => podman.exec(['run', '--rm', '--entrypoint', command[0]!, image, ...command.slice(1)]).then((out) => out.trim());
  const node = await inImage(['/usr/local/bin/node', '-p', 'process.release.lts ?? "none"']);
  t.not(node, 'none', 'a Node LTS release');
  t.log(`node in the image: ${await inImage(['/usr/local/bin/node', '--version'])} (${node})`);
  t.regex(await inImage(['/bin/sh', '-c', 'ls /usr/lib/*/libvulkan.so.1 && ls /usr/lib/*/libdnnl.so.*']), /libvulkan\.so\.1[\s\S]*libdnnl/, 'the Vulkan loader and the oneDNN runtime');
  t.is((await podman.exec(['image', 'inspect', '--format', '{{index .Config.Entrypoint 0}}', image])).trim(), '/usr/bin/tini', 'an init process forwards signals');

  // 2. A private network, and an output folder the image's user owns.
  const id = randomBytes(3).toString('hex');
  const network = `drover-test-${id}`;
  await podman.exec(['network', 'create', network]);
  const containers: string[] = [];
  t.teardown(async () => {
    for (const name of containers) await podman.exec(['rm', '-f', '-t', '0', name]).catch(() => {});
    await podman.exec(['network', 'rm', '-f', network]).catch(() => {});
  });
  const data = await mkdtemp(path.join(os.tmpdir(), 'drover-container-'));
  t.teardown(() => rm(data, { recursive: true, force: true }));
  await chown(data, DROVER_UID, DROVER_UID);
  await writeFile(path.join(data, 'job.json'), JSON.stringify({
    name: 'container',
    seed: 7,
    backend: 'auto',
    data: { kind: 'shapes', perClass: 60, size: 16 },
    model: { layers: [{ type: 'conv2d', filters: 8, kernelSize: 3 }, { type: 'maxPool' }, { type: 'flatten' }, { type: 'dense', units: 16 }] },
    train: { epochs: 3, batchSize: 32, logEvery: 1, optimizer: { name: 'adam', learningRate: 0.003 } },
    cluster: { port: 7070, minWorkers: 2, checkpointEvery: 2, joinTimeoutMs: 300_000, stepDeadlineMs: 60_000 },
  }));

  const coordinatorName = `drover-coordinator-${id}`;
  // The same command both times, as a Job's pod template runs it after a restart.
  const startCoordinator = async (): Promise<{ sink: EventSink; stop: () => void }> => {
    containers.push(coordinatorName);
    // --read-only: as readOnlyRootFilesystem in deploy/k8s (podman keeps a tmpfs on /tmp).
    await podman.exec(['run', '-d', '--read-only', '--name', coordinatorName, '--network', network, '--network-alias', 'coordinator',
      '-p', '127.0.0.1::7070', '-p', '127.0.0.1::9464', '-v', `${data}:/data`, '-e', `DROVER_TOKEN=${TOKEN}`,
      image, 'coordinator', '--config', '/data/job.json', '--resume', 'auto', '--metrics-port', '9464']);
    const sink = new EventSink();
    return { sink, stop: followLogs(podman, coordinatorName, sink) };
  };
  const hostPort = async (port: number): Promise<string> => (await podman.exec(['port', coordinatorName, `${port}/tcp`])).trim().split('\n')[0]!;
  const startWorker = async (name: string, args: string[], env: Record<string, string>): Promise<EventSink> => {
    const container = `drover-${name}-${id}`;
    containers.push(container);
    await podman.exec(['run', '-d', '--read-only', '--name', container, '--network', network, '-e', `DROVER_TOKEN=${TOKEN}`,
      ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]), image, 'worker', '--name', name, '--reconnect-ms', '300000', ...args]);
    const sink = new EventSink();
    t.teardown(followLogs(podman, container, sink));
    return sink;
  };

  // 3. First run: two slow simulated workers, so the run lasts long enough to scrape and stop it.
  since = performance.now();
  const first = await startCoordinator();
  t.teardown(first.stop);
  const fresh = await first.sink.waitFor((l) => l.resume === 'auto', 'the --resume auto decision', 300_000);
  t.false(fresh.resuming, 'nothing to resume in an empty folder');
  await first.sink.waitFor((l) => typeof l.port === 'number' && l.jobId !== undefined, 'the coordinator listening', 300_000);
  const probe = new HealthProbe(await hostPort(7070));
  t.teardown(() => probe.close());
  t.is(await probe.check(''), 'SERVING', 'a gRPC health probe of the running coordinator, without the token');
  t.is(await probe.check(LIVENESS_SERVICE), 'SERVING', 'the liveness service deploy/ probes');
  for (const name of ['sim-1', 'sim-2']) await startWorker(name, ['--simulate-compute-ms', '300'], { DROVER_COORDINATOR: 'coordinator:7070' });
  await first.sink.waitFor((l) => l.event === 'step' && (l.step as number) >= 3, 'step 3 of the first run', 300_000);
  const scraped = parseExposition(await (await fetch(`http://${await hostPort(9464)}/metrics`)).text());
  t.true(sampleValue(scraped.samples, 'drover_steps_total') >= 3);
  t.is(sampleValue(scraped.samples, 'drover_workers_alive'), 2);

  // 4. SIGTERM (podman stop, a pod deletion) reaches drover through tini: step, checkpoint, exit 143.
  await podman.exec(['stop', '-t', '60', coordinatorName], { timeoutMs: 90_000 });
  const stopped = await first.sink.waitFor((l) => l.event === 'job_end', 'the first run to stop');
  t.is(stopped.status, 'stopped');
  t.is((await podman.exec(['inspect', '--format', '{{.State.ExitCode}}', coordinatorName])).trim(), '143', 'stopped, not completed');
  t.truthy(first.sink.events('checkpoint').find((l) => l.step === stopped.steps), 'checkpointed on the way out');
  await podman.exec(['rm', coordinatorName]);
  t.log(`first run (simulated workers, stopped at step ${stopped.steps}): ${seconds(since)} s`);

  // 5. Second run, same command: resumes; two real workers find it via DROVER_COORDINATOR and MASTER_ADDR/MASTER_PORT.
  since = performance.now();
  const second = await startCoordinator();
  t.teardown(second.stop);
  const resumed = await second.sink.waitFor((l) => l.resume === 'auto', 'the second --resume auto decision', 300_000);
  t.true(resumed.resuming);
  const workers = [
    await startWorker('env-drover', [], { DROVER_COORDINATOR: 'coordinator:7070' }),
    await startWorker('env-master', [], { MASTER_ADDR: coordinatorName, MASTER_PORT: '7070' }),
  ];
  const start = await second.sink.waitFor((l) => l.event === 'job_start', 'the resumed job_start', 300_000);
  t.is((start.resumedFrom as { step: number }).step, stopped.steps as number);
  const end = await second.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 15 * 60_000);
  t.is(end.status, 'completed', JSON.stringify(end));
  t.is(second.sink.events('step')[0]?.step, (stopped.steps as number) + 1, 'continues after the checkpoint');
  t.is((await podman.exec(['wait', coordinatorName], { timeoutMs: 120_000 })).trim(), '0');
  t.log(`second run (real workers): ${seconds(since)} s`);

  const sources = await Promise.all(workers.map((sink) => sink.waitFor((l) => l.source !== undefined, 'the worker saying where it found the coordinator')));
  t.deepEqual(sources.map((l) => l.source), ['DROVER_COORDINATOR', 'MASTER_ADDR/MASTER_PORT']);
  const backends = await Promise.all(workers.map((sink) => sink.waitFor((l) => l.event === 'backend', 'the worker backend')));
  for (const backend of backends) t.regex(String(backend.description), /onednn/i, `the native kernels load in the image: ${backend.description}`);
  t.is(second.sink.events('worker_join').length, 2);

  // 6. What the coordinator wrote to the volume, as the image's user: checkpoint, exported model,
  // run log, in the run folder `latest` points at (both runs: the second resumed the first's).
  const out = path.join(data, 'runs', 'container', 'latest');
  t.is((await stat(path.join(out, 'checkpoint.drover'))).uid, DROVER_UID);
  const saved = await loadModel(path.join(out, 'model'));
  t.teardown(() => saved.model.dispose());
  t.deepEqual(saved.model.inputs[0]!.shape.slice(1), [16, 16, 3]);
  t.is(saved.metadata?.classNames?.length, saved.model.outputs[0]!.shape[1] ?? -1);
  const info = JSON.parse(await readFile(path.join(out, 'model', 'model.json'), 'utf8')) as Record<string, unknown>;
  t.truthy(info.modelTopology);
  t.is(end.steps, (start.resumedFrom as { step: number }).step + second.sink.events('step').length);
  const log = (await readFile(path.join(out, 'run.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.deepEqual(log.filter((l) => l.event === 'job_end').map((l) => l.status), ['stopped', 'completed'], 'one run log, appended to by the resumed run');
});
