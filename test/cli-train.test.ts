import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
  t.is(end.modelDir, path.join(dir, 'out', 'model'));
  t.true(JSON.parse(await readFile(path.join(dir, 'out', 'model', 'model.json'), 'utf8')).modelTopology !== undefined);
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
