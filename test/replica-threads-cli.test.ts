import test from 'ava';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { spawnDrover, tempDir, type ChildHandle } from './helpers/cluster.ts';
import { writeSignalJob } from './helpers/signal-job.ts';

// `drover train --workers 2` (replica threads) from the command line: Ctrl-C and --resume.

const train = (t: Parameters<typeof spawnDrover>[0], args: string[]): ChildHandle =>
  spawnDrover(t, ['train', '--workers', '2', '--per-worker-batch', '4', ...args], { CI: 'true', DROVER_LOG_LEVEL: 'info' });

test('Ctrl-C stops replica threads after the step with a checkpoint and exit 130; --resume ends with the weights of an uninterrupted run', async (t) => {
  const dir = await tempDir(t, 'drover-threads-');
  const whole = path.join(dir, 'whole');
  const cut = path.join(dir, 'cut');
  const reference = train(t, ['--config', await writeSignalJob(dir, { backend: 'wasm', epochs: 3, out: whole, seed: 5 })]);
  t.is(await reference.exited, 0, reference.stderr());
  const cutJob = await writeSignalJob(dir, { backend: 'wasm', epochs: 3, out: cut, seed: 5 });
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
