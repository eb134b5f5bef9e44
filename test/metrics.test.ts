import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCoordinator } from '../src/coordinator/run-coordinator.ts';
import { FASHION_MNIST_DIR } from '../src/data/idx.ts';
import { logEvent } from '../src/telemetry/events.ts';
import { createRunFeed } from '../src/telemetry/feed.ts';
import { startMetricsServer } from '../src/telemetry/metrics.ts';
import { ConfigError } from '../src/errors.ts';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { EventSink, smallFashionMnist, spawnDrover, spawnWorker, tempDir, testJob } from './helpers/cluster.ts';
import { parseExposition, sampleValue } from './helpers/prometheus.ts';

async function scrape(url: string): Promise<ReturnType<typeof parseExposition>> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status}`);
  if (!/^text\/plain; version=0\.0\.4/.test(response.headers.get('content-type') ?? '')) throw new Error(`content-type ${response.headers.get('content-type')}`);
  return parseExposition(await response.text());
}

test.serial('drover coordinator --metrics-port serves Prometheus metrics on their own port, scraped during a run', async (t) => {
  const dir = await tempDir(t);
  const jobFile = path.join(dir, 'job.json');
  await writeFile(jobFile, JSON.stringify({
    name: 'metrics',
    seed: 6,
    backend: 'wasm',
    data: { kind: 'idx', dir: FASHION_MNIST_DIR, limitTrain: 640, validationSize: 64, limitTest: 64 },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 16 }] },
    train: { epochs: 2, batchSize: 32, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.01 } },
    output: { dir: path.join(dir, 'out') },
    cluster: { port: 0, host: '127.0.0.1', minWorkers: 2, joinTimeoutMs: 60_000 },
  }));
  const coordinator = spawnDrover(t, ['coordinator', '--config', jobFile, '--metrics-port', '0', '--metrics-host', '127.0.0.1']);
  const announced = await coordinator.sink.waitFor((l) => typeof l.metricsUrl === 'string', 'the metrics url');
  const listening = await coordinator.sink.waitFor((l) => typeof l.port === 'number' && l.jobId !== undefined, 'the coordinator listening');
  t.not(announced.metricsPort, listening.port, 'metrics have a port of their own');

  const before = await scrape(announced.metricsUrl as string);
  t.is(sampleValue(before.samples, 'drover_workers_alive'), 0);
  t.is(sampleValue(before.samples, 'drover_job_state', { state: 'running' }), 1);
  t.is(before.types.get('drover_steps_total'), 'counter');

  // Steps of >= 100 ms: the run lasts seconds, long enough to scrape it twice while it trains.
  for (const name of ['m1', 'm2']) spawnWorker(t, listening.port as number, { name, args: ['--simulate-compute-ms', '100'] });
  const seen = await coordinator.sink.waitFor((l) => l.event === 'step' && (l.step as number) >= 3, 'step 3');
  const during = await scrape(announced.metricsUrl as string);
  const steps = sampleValue(during.samples, 'drover_steps_total');
  t.true(steps >= (seen.step as number) && steps < 40, `steps_total ${steps} counts the steps so far`);
  t.true(sampleValue(during.samples, 'drover_step') >= (seen.step as number));
  t.is(sampleValue(during.samples, 'drover_workers_alive'), 2);
  t.is(sampleValue(during.samples, 'drover_worker_joins_total'), 2);
  t.is(sampleValue(during.samples, 'drover_worker_evictions_total'), 0);
  t.true(sampleValue(during.samples, 'drover_images_per_second') > 0);
  t.true(sampleValue(during.samples, 'drover_step_phase_seconds', { phase: 'compute' }) >= 0.1, 'simulated compute takes >= 100 ms a step');
  for (const phase of ['data_wait', 'transfer', 'reduce']) t.true(Number.isFinite(sampleValue(during.samples, 'drover_step_phase_seconds', { phase })));
  const loss = sampleValue(during.samples, 'drover_loss', { split: 'train' });
  const accuracy = sampleValue(during.samples, 'drover_accuracy', { split: 'train' });
  t.true(Number.isFinite(loss) && accuracy >= 0 && accuracy <= 1);
  t.truthy(during.samples.find((s) => s.name === 'drover_process_resident_memory_bytes'), 'process metrics too');

  await coordinator.sink.waitFor((l) => l.event === 'step' && (l.step as number) > steps + 1, 'two more steps');
  const later = await scrape(announced.metricsUrl as string);
  t.true(sampleValue(later.samples, 'drover_steps_total') > steps, 'the counter moves with the run');
  const end = await coordinator.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 120_000);
  t.is(end.status, 'completed');
  t.is(await coordinator.exited, 0);
  const gone = await fetch(announced.metricsUrl as string).then(() => 'answered', () => 'closed');
  t.is(gone, 'closed', 'the endpoint closes with the coordinator');
});

test.serial('the metrics agree with the event feed they are read from: steps, workers, evictions, test accuracy, end state', async (t) => {
  const dir = await tempDir(t);
  const dataset = await smallFashionMnist(256, 0, 64);
  t.teardown(() => dataset.close());
  const metrics = await startMetricsServer({ port: 0, host: '127.0.0.1' });
  t.teardown(() => metrics.close());
  const sink = new EventSink();
  const feed = await createRunFeed({ stdout: sink as unknown as NodeJS.WriteStream, progress: 'never', tap: metrics.stream });
  t.teardown(() => feed.close());
  // logEvery 3 (8 steps, not a multiple): a step line stands for up to 3 steps, and the last 2 are logged by job_end only.
  const job = testJob(dir, { train: { epochs: 1, batchSize: 32, logEvery: 3, optimizer: { name: 'sgd', learningRate: 0.05 } }, cluster: { minWorkers: 1, stepDeadlineMs: 30_000 } });
  let port = 0;
  const run = runCoordinator({ job, dataset, log: feed.logger, onListening: (info) => {
    port = info.port;
    spawnWorker(t, port, { name: 'agree' });
  } });
  const result = await run;
  t.is(result.status, 'completed');
  const { samples } = parseExposition(await metrics.registry.metrics());
  t.true(sink.events('step').length < result.steps, `${sink.events('step').length} step lines for ${result.steps} steps`);
  t.is(sampleValue(samples, 'drover_steps_total'), result.steps, 'steps, not step lines');
  t.is(sampleValue(samples, 'drover_step'), result.steps);
  t.is(sampleValue(samples, 'drover_worker_joins_total'), 1);
  t.is(sampleValue(samples, 'drover_worker_evictions_total'), sink.events('worker_fail').length);
  const last = sink.events('step').at(-1)!;
  t.is(sampleValue(samples, 'drover_loss', { split: 'train' }), last.loss as number);
  t.is(sampleValue(samples, 'drover_accuracy', { split: 'test' }), result.test!.accuracy);
  t.is(sampleValue(samples, 'drover_checkpoints_total'), sink.events('checkpoint').length);
  t.is(sampleValue(samples, 'drover_job_state', { state: 'completed' }), 1);
  t.is(sampleValue(samples, 'drover_job_state', { state: 'running' }), 0);
});

test('a metrics port that is taken is a ConfigError naming --metrics-port, and so is a bad option', async (t) => {
  const first = await startMetricsServer({ port: 0, host: '127.0.0.1' });
  t.teardown(() => first.close());
  const taken = await t.throwsAsync(startMetricsServer({ port: first.port, host: '127.0.0.1' }), { instanceOf: ConfigError, message: /metrics port \d+ on 127\.0\.0\.1 is in use: pick another with --metrics-port/ });
  t.is((taken?.cause as NodeJS.ErrnoException | undefined)?.code, 'EADDRINUSE');
  await t.throwsAsync(startMetricsServer({ port: 70000 }), { code: 'DROVER_ERR_CONFIG' });
  const notFound = await fetch(first.url.replace('/metrics', '/'));
  t.is(notFound.status, 404);
});

test('metrics still see the events when DROVER_LOG_LEVEL=warn quiets the log', async (t) => {
  const metrics = await startMetricsServer({ port: 0, host: '127.0.0.1' });
  t.teardown(() => metrics.close());
  const stdout = new EventSink();
  const feed = await createRunFeed({ stdout: stdout as unknown as NodeJS.WriteStream, progress: 'never', level: 'warn', tap: metrics.stream });
  logEvent(feed.logger, 'worker_join', { worker: 'w1', step: 0 });
  logEvent(feed.logger, 'step', { epoch: 1, step: 1, stepInEpoch: 1, loss: 0.5, accuracy: 0.75, lr: 0.01, imgPerSec: 100, n: 32, dataWaitMs: 1, computeMs: 2, transferMs: 3, reduceMs: 4 });
  await feed.close();
  const { samples } = parseExposition(await metrics.registry.metrics());
  t.is(sampleValue(samples, 'drover_steps_total'), 1);
  t.is(sampleValue(samples, 'drover_workers_alive'), 1);
  t.is(sampleValue(samples, 'drover_step_phase_seconds', { phase: 'reduce' }), 0.004);
  t.is(stdout.events('step').length, 0, 'stdout stays at warn');
});

test('drover_steps_total counts the steps between step lines (logEvery > 1) from where a resumed job starts; refused updates and protocol violations are counted', async (t) => {
  const metrics = await startMetricsServer({ port: 0, host: '127.0.0.1' });
  t.teardown(() => metrics.close());
  const feed = await createRunFeed({ stdout: new EventSink() as unknown as NodeJS.WriteStream, progress: 'never', tap: metrics.stream });
  const step = (n: number) => ({ epoch: 1, step: n, stepInEpoch: n, loss: 0.5, accuracy: 0.75, lr: 0.01, imgPerSec: 100, n: 32, dataWaitMs: 1, computeMs: 2, transferMs: 3, reduceMs: 4 });
  logEvent(feed.logger, 'job_start', {
    job: 'resumed', mode: 'distributed', backend: 'wasm', model: 'm', params: 10, dataset: 'd', classNames: ['a', 'b'], trainSize: 100, valSize: 0,
    epochs: 2, batchSize: 32, optimizer: 'sgd', stepsPerEpoch: 20, resumedFrom: { epoch: 0, step: 10 },
  });
  logEvent(feed.logger, 'step', step(13));
  logEvent(feed.logger, 'step', step(16));
  logEvent(feed.logger, 'update_refused', { step: 17, epoch: 1, target: 'dense/kernel', code: 'DROVER_ERR_NON_FINITE_UPDATE', workers: ['w1'], reason: 'overflow' });
  logEvent(feed.logger, 'protocol_violation', { worker: 'w1', task: 't1', reason: 'gradient of the wrong length', count: 1, step: 17 });
  logEvent(feed.logger, 'protocol_violation', { worker: 'w2', task: 't2', reason: 'unknown task', count: 1, step: 17 });
  logEvent(feed.logger, 'job_end', { status: 'stopped', epochs: 0, steps: 18, seconds: 1 });
  await feed.close();
  const { samples } = parseExposition(await metrics.registry.metrics());
  t.is(sampleValue(samples, 'drover_steps_total'), 8, 'steps 11-18 ran in this process: 3 + 3 logged, 2 after the last line');
  t.is(sampleValue(samples, 'drover_step'), 18);
  t.is(sampleValue(samples, 'drover_updates_refused_total'), 1);
  t.is(sampleValue(samples, 'drover_protocol_violations_total'), 2);
});

test('drover coordinator --metrics-port on a port in use exits 1 with the ConfigError, not a stack trace', async (t) => {
  const blocker = createServer();
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.teardown(() => blocker.close());
  const busy = (blocker.address() as { port: number }).port;
  const dir = await tempDir(t);
  const coordinator = spawnDrover(t, ['coordinator', '--output', path.join(dir, 'out'), '--port', '0', '--metrics-port', String(busy), '--metrics-host', '127.0.0.1']);
  t.is(await coordinator.exited, 1);
  t.regex(coordinator.stderr(), /metrics port \d+ on 127\.0\.0\.1 is in use: pick another with --metrics-port.*DROVER_ERR_CONFIG/);
  t.notRegex(coordinator.stderr(), /    at /, 'no stack trace');
});
