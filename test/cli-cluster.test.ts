import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateShapes } from '../src/data/shapes.ts';
import { loadModel } from '../src/model/export.ts';
import { spawnDrover, tempDir } from './helpers/cluster.ts';

const TOKEN = 'cli-cluster-secret';

/** A small job on generated shapes whose pipeline is not the default (so the saved model must say so). */
async function writeJob(dir: string, name: string): Promise<string> {
  const file = path.join(dir, 'job.json');
  const images = await generateShapes(path.join(dir, 'shapes'), { perClass: 40, size: 16 });
  await writeFile(file, JSON.stringify({
    name,
    seed: 3,
    backend: 'wasm',
    data: { kind: 'folder', path: images, imageSize: [16, 16], resize: 'stretch', preprocess: 'mobilenet', validation: { fraction: 0.2, seed: 1 } },
    model: { layers: [{ type: 'conv2d', filters: 4, kernelSize: 3 }, { type: 'maxPool' }, { type: 'flatten' }, { type: 'dense', units: 16 }] },
    train: { epochs: 2, batchSize: 16, logEvery: 2, optimizer: { name: 'adam', learningRate: 0.003 } },
    output: { dir: path.join(dir, 'out') },
    cluster: { minWorkers: 1, joinTimeoutMs: 60_000 },
  }));
  return file;
}

test.serial('drover coordinator --dashboard and drover worker train a job over the network and export the model with its pipeline', async (t) => {
  const dir = await tempDir(t);
  const job = await writeJob(dir, 'cli-cluster');
  const coordinator = spawnDrover(t, ['coordinator', '--config', job, '--host', '127.0.0.1', '--port', '0', '--dashboard', '0'], { DROVER_TOKEN: TOKEN, CI: 'true' });
  const dashboard = await coordinator.sink.waitFor((l) => typeof l.url === 'string', 'the dashboard url');
  const listening = await coordinator.sink.waitFor((l) => typeof l.port === 'number', 'the coordinator listening');
  const page = await fetch(dashboard.url as string);
  t.is(page.status, 200);
  t.regex(await page.text(), /<html/i);

  const worker = spawnDrover(t, ['worker', '--coordinator', `127.0.0.1:${listening.port}`, '--backend', 'wasm', '--threads', '2', '--name', 'cli-w1'], { DROVER_TOKEN: TOKEN });
  const end = await coordinator.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 120_000);
  t.is(end.status, 'completed');
  t.is(await coordinator.exited, 0);
  t.is(await worker.exited, 0);
  t.true(worker.sink.lines.some((l) => l.msg === 'worker finished: completed'));
  const join = coordinator.sink.events('worker_join')[0];
  t.is(join?.worker, 'w1-cli-w1', 'the worker id carries its --name');
  t.regex(String(join?.msg), /2 compute threads/, 'the worker reports its --threads');

  // --dashboard writes the log it serves in the run's folder (out/<run id>/, out/latest).
  const log = (await readFile(path.join(dir, 'out', 'latest', 'run.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.is(log.at(-1)?.event, 'job_end');
  const saved = await loadModel(end.modelDir as string);
  t.is(saved.metadata?.preprocess, 'mobilenet');
  t.is(saved.metadata?.resize, 'stretch');
  saved.model.dispose();
});

test.serial('drover worker without the job\'s token is refused and exits 1 with the reason', async (t) => {
  const dir = await tempDir(t);
  const job = await writeJob(dir, 'cli-refused');
  const coordinator = spawnDrover(t, ['coordinator', '--config', job, '--host', '127.0.0.1', '--port', '0', '--token', TOKEN]);
  const listening = await coordinator.sink.waitFor((l) => typeof l.port === 'number', 'the coordinator listening');
  const worker = spawnDrover(t, ['worker', '--coordinator', `127.0.0.1:${listening.port}`, '--backend', 'wasm', '--token', 'not-the-secret']);
  t.is(await worker.exited, 1);
  t.true(worker.stderr().includes('DROVER_ERR_AUTH'), worker.stderr());
  await coordinator.sink.waitFor((l) => l.code === 'UNAUTHENTICATED' || /refused/i.test(String(l.msg)), 'the refusal in the coordinator log');
});

test.serial('drover train --workers 2 --processes runs a local cluster from the command line and exits 0', async (t) => {
  const dir = await tempDir(t);
  const job = await writeJob(dir, 'cli-local');
  const run = spawnDrover(t, ['train', '--config', job, '--workers', '2', '--processes', '--epochs', '1'], { CI: 'true' });
  const end = await run.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 120_000);
  t.is(end.status, 'completed');
  t.is(end.epochs, 1);
  t.is(run.sink.events('worker_join').length, 2);
  t.is(await run.exited, 0);
});

test.serial('drover train --workers 2 trains on 2 replica threads of one process (images decoded by its pool) and exits 0', async (t) => {
  const dir = await tempDir(t);
  const job = await writeJob(dir, 'cli-threads');
  // A setting of worker processes, which replica threads do not have.
  const spec = JSON.parse(await readFile(job, 'utf8')) as { cluster: Record<string, unknown> };
  await writeFile(job, JSON.stringify({ ...spec, cluster: { ...spec.cluster, reduction: 'peer' } }));
  const run = spawnDrover(t, ['train', '--config', job, '--workers', '2', '--per-worker-batch', '8', '--epochs', '1'], { CI: 'true' });
  const end = await run.sink.waitFor((l) => l.event === 'job_end', 'the job to end', 120_000);
  t.is(end.status, 'completed');
  t.is(await run.exited, 0);
  const start = run.sink.events('job_start')[0]!;
  t.is(start.replicas, 2);
  t.is(start.batchSize, 16);
  t.is(run.sink.events('worker_join').length, 0, 'no worker process joined');
  const steps = run.sink.events('step');
  t.true(steps.length > 0);
  for (const step of steps) t.deepEqual((step.workers as { worker: string }[]).map((w) => w.worker), ['replica-0', 'replica-1']);
  // The user is told the worker-process setting does not apply.
  t.true(run.sink.lines.some((l) => /apply to worker processes/.test(String(l.msg)) && String(l.msg).includes('cluster.reduction')));
  const saved = await loadModel(end.modelDir as string);
  t.is(saved.classNames!.length, 4);
  saved.model.dispose();
});

test.serial('drover train --processes without --workers is refused with a clear error', async (t) => {
  const run = spawnDrover(t, ['train', '--processes', '--epochs', '1'], { CI: 'true' });
  t.is(await run.exited, 1);
  t.regex(run.stderr(), /--processes goes with --workers N/);
});
