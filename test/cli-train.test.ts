import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { idxBytes } from './helpers/image-fixtures.ts';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const cli = path.join(root, 'bin', 'drover.js');

test('drover train runs a job file end to end on generated shapes and logs JSON events', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const job = path.join(dir, 'job.yaml');
  await writeFile(
    job,
    [
      'name: shapes-smoke',
      'backend: wasm',
      `data: { kind: shapes, dir: ${JSON.stringify(path.join(dir, 'shapes'))}, perClass: 200, size: 24 }`,
      'model:',
      '  layers:',
      '    - { type: conv2d, filters: 8, kernelSize: 3 }',
      '    - { type: maxPool }',
      '    - { type: conv2d, filters: 16, kernelSize: 3 }',
      '    - { type: maxPool }',
      '    - { type: flatten }',
      '    - { type: dense, units: 32 }',
      'train: { epochs: 12, batchSize: 16, optimizer: { name: adam, learningRate: 0.003 }, logEvery: 5 }',
      `output: { dir: ${JSON.stringify(path.join(dir, 'out'))} }`,
    ].join('\n'),
  );
  const logFile = path.join(dir, 'run.jsonl');
  const { stdout } = await run(process.execPath, [cli, 'train', '--config', job, '--log', logFile], {
    env: { ...process.env, CI: 'true' },
    timeout: 240_000,
  });
  const events = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  const names = new Set(events.map((e) => e.event));
  for (const name of ['backend', 'job_start', 'epoch_start', 'step', 'epoch', 'evaluation', 'job_end']) t.true(names.has(name), name);
  const end = events.find((e) => e.event === 'job_end')!;
  t.is(end.status, 'completed');
  t.is(end.epochs, 12);
  // Four shape classes: chance is 25 %.
  t.true((end.testAccuracy as number) > 0.5, `test accuracy ${String(end.testAccuracy)}`);
  // The run's own folder under output.dir, and latest pointing at it.
  const runDir = path.join(dir, 'out', await readlink(path.join(dir, 'out', 'latest')));
  t.is(end.modelDir, path.join(runDir, 'model'));
  t.true(JSON.parse(await readFile(path.join(runDir, 'model', 'model.json'), 'utf8')).modelTopology !== undefined);
  // The classes and their sample counts are in job_start (a stray class would show there).
  const start = events.find((e) => e.event === 'job_start')!;
  t.deepEqual(start.classNames, ['circle', 'square', 'triangle', 'cross']);
  t.is((start.classCounts as number[]).reduce((a, b) => a + b, 0), start.trainSize as number);
  const logged = (await readFile(logFile, 'utf8')).split('\n').filter(Boolean);
  t.is(logged.length, events.length);
});

test('drover train names the bad field of a job file and exits 1', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const job = path.join(dir, 'job.yaml');
  await writeFile(job, 'train:\n  optimizer: { name: adam, learningRate: -0.1 }\n');
  const error = await t.throwsAsync(run(process.execPath, [cli, 'train', '--config', job], { timeout: 60_000 }));
  const failure = error as unknown as { code: number; stderr: string };
  t.is(failure.code, 1);
  t.regex(failure.stderr, /train\.optimizer\.learningRate/);
  t.regex(failure.stderr, /DROVER_ERR_CONFIG/);
});

/** A tiny IDX folder (MNIST layout): 4 classes, each a bright quadrant of an 8x8 image. */
async function writeIdx(dir: string, perClass: number): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  const pair = async (prefix: string, n: number): Promise<void> => {
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 4);
    const images = new Uint8Array(n * 64);
    labels.forEach((label, i) => {
      for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) {
        const quadrant = (y < 4 ? 0 : 2) + (x < 4 ? 0 : 1);
        images[i * 64 + y * 8 + x] = quadrant === label ? 200 + (i % 50) : (i * 7 + x * 3 + y) % 40;
      }
    });
    await writeFile(path.join(dir, `${prefix}-images-idx3-ubyte`), idxBytes([n, 8, 8], images));
    await writeFile(path.join(dir, `${prefix}-labels-idx1-ubyte`), idxBytes([n], labels));
  };
  await pair('train', perClass * 4);
  await pair('t10k', 40);
}

test('each drover train run keeps its own folder (--name, --output, --data an IDX folder), and evaluate takes the same path', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const idx = path.join(dir, 'digits');
  await writeIdx(idx, 40);
  const job = path.join(dir, 'model.yaml');
  await writeFile(job, [
    'backend: wasm',
    'model: { layers: [ { type: flatten }, { type: dense, units: 16 } ] }',
    'train: { batchSize: 16, optimizer: { name: adam, learningRate: 0.01 } }',
  ].join('\n'));
  const runs = path.join(dir, 'my-runs');
  const train = async (epochs: number): Promise<Record<string, unknown>[]> => {
    const { stdout } = await run(process.execPath, [cli, 'train', '--config', job, '--data', idx, '--name', 'quadrants', '--output', runs, '--epochs', String(epochs)], {
      env: { ...process.env, CI: 'true' },
      timeout: 180_000,
    });
    return stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  };
  const first = (await train(3)).find((e) => e.event === 'job_end')!;
  const firstLatest = await readlink(path.join(runs, 'latest'));
  const second = await train(1);
  const secondEnd = second.find((e) => e.event === 'job_end')!;
  t.is(second.find((e) => e.event === 'job_start')!.dataset, 'digits');
  t.is(second.find((e) => e.event === 'job_start')!.job, 'quadrants');
  const secondLatest = await readlink(path.join(runs, 'latest'));
  t.not(firstLatest, secondLatest);
  t.is(first.modelDir, path.join(runs, firstLatest, 'model'));
  t.is(secondEnd.modelDir, path.join(runs, secondLatest, 'model'));
  // The first (3-epoch) model is still there, untouched by the second run.
  const weights = async (modelDir: unknown): Promise<Buffer> => {
    const manifest = JSON.parse(await readFile(path.join(modelDir as string, 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
    return readFile(path.join(modelDir as string, manifest.weightsManifest[0]!.paths[0]!));
  };
  t.notDeepEqual(await weights(first.modelDir), await weights(secondEnd.modelDir));

  // evaluate: the same IDX folder path, no inline JSON; the latest model through `latest`.
  const { stdout } = await run(process.execPath, [cli, 'evaluate', path.join(runs, 'latest', 'model'), '--data', idx, '--json'], { timeout: 120_000 });
  const evaluation = JSON.parse(stdout) as { split: string; n: number; accuracy: number; dataset: string };
  t.is(evaluation.split, 'test');
  t.is(evaluation.n, 40);
  t.is(evaluation.accuracy, secondEnd.testAccuracy as number);
});

test('--resume with no earlier run in the job folder says so and exits 1', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'drover-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const error = await t.throwsAsync(run(process.execPath, [cli, 'coordinator', '--resume', '--output', path.join(dir, 'runs'), '--port', '0'], { timeout: 60_000 }));
  const failure = error as unknown as { code: number; stderr: string };
  t.is(failure.code, 1);
  t.regex(failure.stderr, /has no run to continue/);
  t.regex(failure.stderr, /DROVER_ERR_CHECKPOINT/);
});
