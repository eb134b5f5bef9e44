import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { spawnDrover, tempDir, type ChildHandle } from './helpers/cluster.ts';

// `drover train --workers 2` (replica threads) from the command line: Ctrl-C and --resume.

async function writeJob(dir: string, out: string): Promise<string> {
  const file = path.join(dir, `job-${path.basename(out)}.yaml`);
  await writeFile(
    file,
    [
      'name: threads-signals',
      'seed: 5',
      'backend: wasm',
      `data: { kind: shapes, dir: ${JSON.stringify(path.join(dir, 'shapes'))}, perClass: 40, size: 16 }`,
      'model:',
      '  layers:',
      '    - { type: conv2d, filters: 4, kernelSize: 3 }',
      '    - { type: maxPool }',
      '    - { type: flatten }',
      '    - { type: dropout, rate: 0.25 }',
      '    - { type: dense, units: 16 }',
      'train: { epochs: 3, batchSize: 8, optimizer: { name: adam, learningRate: 0.003 }, logEvery: 1 }',
      `output: { dir: ${JSON.stringify(out)} }`,
    ].join('\n'),
  );
  return file;
}

const train = (t: Parameters<typeof spawnDrover>[0], args: string[]): ChildHandle =>
  spawnDrover(t, ['train', '--workers', '2', '--per-worker-batch', '4', ...args], { CI: 'true', DROVER_LOG_LEVEL: 'info' });

test('Ctrl-C stops replica threads after the step with a checkpoint and exit 130; --resume ends with the weights of an uninterrupted run', async (t) => {
  const dir = await tempDir(t, 'drover-threads-');
  const whole = path.join(dir, 'whole');
  const cut = path.join(dir, 'cut');
  const reference = train(t, ['--config', await writeJob(dir, whole)]);
  t.is(await reference.exited, 0, reference.stderr());
  const cutJob = await writeJob(dir, cut);
  const interrupted = train(t, ['--config', cutJob]);
  await interrupted.sink.waitFor((l) => l.event === 'step' && (l.step as number) >= 3, 'the third step', 120_000);
  interrupted.kill('SIGINT');
  t.is(await interrupted.exited, 130);
  const end = interrupted.sink.events('job_end')[0]!;
  t.is(end.status, 'stopped');
  const total = reference.sink.events('job_end')[0]!.steps as number;
  t.true((end.steps as number) < total, `stopped at step ${String(end.steps)} of ${total}`);

  const resumed = train(t, ['--config', cutJob, '--resume']);
  t.is(await resumed.exited, 0, resumed.stderr());
  t.is(resumed.sink.events('step')[0]!.step, (end.steps as number) + 1, 'the resumed run continues at the next step');
  const resumedEnd = resumed.sink.events('job_end')[0]!;
  t.is(resumedEnd.status, 'completed');
  t.is(resumedEnd.steps, total);
  const [a, b] = await Promise.all([readFile(path.join(whole, 'latest', 'model', 'weights.bin')), readFile(path.join(cut, 'latest', 'model', 'weights.bin'))]);
  t.true(a.equals(b), 'interrupted + resumed ends with the same weights, bit for bit, as the uninterrupted run');
});
