import test from 'ava';
import { mkdir, readlink, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError } from '../src/errors.ts';
import { latestRunId, openRunFolder } from '../src/train/run-folder.ts';
import { tempDir } from './helpers/image-fixtures.ts';

test('each run gets its own folder, latest points at the newest, and --resume continues the latest', async (t) => {
  const jobDir = path.join(await tempDir(t), 'runs', 'job');
  const now = new Date('2026-11-29T23:15:02.500Z');
  const first = await openRunFolder(jobDir, { now });
  const second = await openRunFolder(jobDir, { now });
  t.is(first.runId, '20261129-231502');
  t.is(second.runId, '20261129-231502-2', 'same second: a new folder, not the same one');
  t.is(first.dir, path.join(jobDir, first.runId));
  t.false(first.resumed);
  t.is(await readlink(path.join(jobDir, 'latest')), second.runId);
  const resumed = await openRunFolder(jobDir, { resume: true });
  t.deepEqual(resumed, { jobDir, runId: second.runId, dir: second.dir, resumed: true });
});

test('--resume without a run to continue is a CheckpointError; a job folder from before run folders resumes in place', async (t) => {
  const jobDir = path.join(await tempDir(t), 'job');
  await t.throwsAsync(openRunFolder(jobDir, { resume: true }), { instanceOf: CheckpointError, message: /no run to continue/ });
  await mkdir(jobDir, { recursive: true });
  await writeFile(path.join(jobDir, 'checkpoint.drover'), 'x');
  t.like(await openRunFolder(jobDir, { resume: true }), { dir: jobDir, resumed: true });
});

test('a latest that points outside the job folder, or at nothing, is not followed', async (t) => {
  const base = await tempDir(t);
  const jobDir = path.join(base, 'job');
  await mkdir(path.join(base, 'elsewhere'), { recursive: true });
  await mkdir(jobDir, { recursive: true });
  await symlink('../elsewhere', path.join(jobDir, 'latest'));
  t.is(await latestRunId(jobDir), undefined);
  const other = path.join(base, 'job3');
  await mkdir(path.join(other, 'r1'), { recursive: true });
  // A pointer file (file systems without symlinks) works the same way.
  await writeFile(path.join(other, 'latest'), 'r1\n');
  t.is(await latestRunId(other), 'r1');
  await writeFile(path.join(other, 'latest'), 'gone\n');
  t.is(await latestRunId(other), undefined);
});
