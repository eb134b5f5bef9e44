import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { CheckpointError } from '../src/errors.ts';
import { latestRunId, openRunFolder } from '../src/job/run-folder.ts';
import { spawnDrover } from './helpers/cluster.ts';
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
  await writeFile(path.join(second.dir, 'checkpoint.drover'), 'x');
  const resumed = await openRunFolder(jobDir, { resume: true });
  t.deepEqual(resumed, { jobDir, runId: second.runId, dir: second.dir, resumed: true, removedTemporaries: [] });
});

test('--resume without a run to continue is a CheckpointError; a job folder from before run folders resumes in place', async (t) => {
  const jobDir = path.join(await tempDir(t), 'job');
  await t.throwsAsync(openRunFolder(jobDir, { resume: true }), { instanceOf: CheckpointError, message: /no run to continue \(no run folder in it holds a checkpoint\)/ });
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

test('--resume and --resume auto continue the newest run that holds a checkpoint, not an empty folder a failed start left latest on', async (t) => {
  const jobDir = path.join(await tempDir(t), 'job');
  // Same second: -2 ... -10; -10 is the newest (compared as a number, not as text).
  const now = new Date('2026-11-30T00:10:00Z');
  const runs = [];
  for (let i = 0; i < 10; i++) runs.push(await openRunFolder(jobDir, { now }));
  t.is(runs[9]!.runId, '20261130-001000-10');
  await writeFile(path.join(runs[8]!.dir, 'checkpoint.drover'), 'x');
  await writeFile(path.join(runs[9]!.dir, 'checkpoint.drover'), 'x');
  // A start that failed before its first checkpoint (bad dataset, busy port, Ctrl-C).
  const failed = await openRunFolder(jobDir, { now: new Date('2026-11-30T00:11:00Z') });
  t.is(await latestRunId(jobDir), failed.runId);
  for (const resume of [true, 'auto'] as const) {
    const resumed = await openRunFolder(jobDir, { resume });
    t.like(resumed, { runId: runs[9]!.runId, dir: runs[9]!.dir, resumed: true }, `resume: ${resume}`);
    t.is(await latestRunId(jobDir), runs[9]!.runId, 'latest moves to the run being continued');
  }
  // latest, when it holds a checkpoint, is the one continued (one can point it at an older run).
  await symlink(runs[8]!.runId, path.join(jobDir, 'latest.new'));
  await rename(path.join(jobDir, 'latest.new'), path.join(jobDir, 'latest'));
  t.like(await openRunFolder(jobDir, { resume: true }), { runId: runs[8]!.runId });
});

test('a completed run (model exported) is not resumed: --resume says so, --resume auto opens a new run', async (t) => {
  const jobDir = path.join(await tempDir(t), 'job');
  const done = await openRunFolder(jobDir, { now: new Date('2026-11-30T00:20:00Z') });
  await writeFile(path.join(done.dir, 'checkpoint.drover'), 'x');
  await mkdir(path.join(done.dir, 'model'));
  await writeFile(path.join(done.dir, 'model', 'model.json'), '{}');
  await t.throwsAsync(openRunFolder(jobDir, { resume: true }), { instanceOf: CheckpointError, message: /completed: its model is in .*start the job without --resume/ });
  const next = await openRunFolder(jobDir, { resume: 'auto', now: new Date('2026-11-30T00:21:00Z') });
  t.like(next, { runId: '20261130-002100', resumed: false });
  t.is(await latestRunId(jobDir), next.runId);
  t.true(existsSync(path.join(done.dir, 'model', 'model.json')), 'the completed run is left as it was');
  // The same for a job folder from before run folders.
  const legacy = path.join(await tempDir(t), 'legacy');
  await mkdir(path.join(legacy, 'model'), { recursive: true });
  await writeFile(path.join(legacy, 'checkpoint.drover'), 'x');
  await writeFile(path.join(legacy, 'model', 'model.json'), '{}');
  await t.throwsAsync(openRunFolder(legacy, { resume: true }), { instanceOf: CheckpointError, message: /completed/ });
  t.like(await openRunFolder(legacy, { resume: 'auto' }), { resumed: false });
});

test('checkpoint temporaries a crash left are removed from every run folder, not only the new one; a live writer\'s are kept', async (t) => {
  const jobDir = path.join(await tempDir(t), 'job');
  const old = await openRunFolder(jobDir, { now: new Date('2026-11-30T00:30:00Z') });
  const other = await openRunFolder(jobDir, { now: new Date('2026-11-30T00:31:00Z') });
  // A real process that has exited (its pid is free) and one still running.
  const dead = spawn(process.execPath, ['-e', '']);
  await once(dead, 'exit');
  const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
  t.teardown(() => live.kill());
  await writeFile(path.join(old.dir, `checkpoint.drover.tmp-${dead.pid}`), 'half');
  await writeFile(path.join(other.dir, `checkpoint.drover.tmp-${dead.pid}`), 'half');
  await writeFile(path.join(other.dir, `checkpoint.drover.tmp-${live.pid}`), 'being written');
  const fresh = await openRunFolder(jobDir, { now: new Date('2026-11-30T00:32:00Z') });
  t.deepEqual(fresh.removedTemporaries.sort(), [path.join(old.dir, `checkpoint.drover.tmp-${dead.pid}`), path.join(other.dir, `checkpoint.drover.tmp-${dead.pid}`)].sort());
  t.deepEqual(await readdir(old.dir), []);
  t.deepEqual(await readdir(other.dir), [`checkpoint.drover.tmp-${live.pid}`]);
});

test('the public API opens run folders as the CLI does: runJob in run.dir, latest/model holds the model, --resume of it says it completed', async (t) => {
  const drover = await import('../src/index.ts');
  const base = await tempDir(t);
  const job = drover.parseJob({
    name: 'api',
    seed: 1,
    backend: 'cpu',
    data: { kind: 'shapes', dir: path.join(base, 'shapes'), perClass: 8, size: 16 },
    model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 4 }] },
    train: { epochs: 1, batchSize: 8, logEvery: 1, optimizer: { name: 'sgd', learningRate: 0.01 } },
  });
  const jobDir = path.join(base, 'runs', 'api');
  const run: import('../src/index.ts').RunFolder = await drover.openRunFolder(jobDir);
  const feed = await drover.createRunFeed({ stdout: new PassThrough() as unknown as NodeJS.WriteStream, progress: 'never' });
  t.teardown(() => feed.close());
  const result = await drover.runJob({ ...job, output: { dir: run.dir } }, { log: feed.logger });
  t.is(result.modelDir, path.join(run.dir, 'model'));
  t.true(existsSync(path.join(jobDir, drover.LATEST, 'model', 'model.json')));
  t.is(await drover.latestRunId(jobDir), run.runId);
  await t.throwsAsync(drover.openRunFolder(jobDir, { resume: true }), { instanceOf: drover.CheckpointError, message: /completed/ });
});

test('drover train logs each stale checkpoint temporary it removed from an earlier run folder', async (t) => {
  const base = await tempDir(t);
  const jobDir = path.join(base, 'runs');
  const old = await openRunFolder(jobDir, { now: new Date('2026-11-30T00:40:00Z') });
  const dead = spawn(process.execPath, ['-e', '']);
  await once(dead, 'exit');
  const stale = path.join(old.dir, `checkpoint.drover.tmp-${dead.pid}`);
  await writeFile(stale, 'half');
  // A start that fails on its data once the run folder is open: enough to see the cleanup.
  await mkdir(path.join(base, 'no-classes'));
  const run = spawnDrover(t, ['train', '--output', jobDir, '--data', path.join(base, 'no-classes')], { CI: 'true' });
  t.is(await run.exited, 1);
  t.true(run.sink.lines.some((l) => l.path === stale && l.level === 40 && /half-written/.test(String(l.msg))), 'a warning names the file');
  t.false(existsSync(stale));
});
