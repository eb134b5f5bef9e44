/**
 * One folder per run: `<job folder>/<run id>/` (model, checkpoints, run log), and
 * `<job folder>/latest` pointing at the newest, so a new run never overwrites an older run's
 * model, and `--resume` (train or coordinator) continues the latest run in its own folder.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError } from '../errors.ts';

export const LATEST = 'latest';

export interface RunFolder {
  /** The job's folder: output.dir, default runs/<job name>. */
  jobDir: string;
  /** This run's id, e.g. 20261129-231502 (UTC start time). */
  runId: string;
  /** jobDir/runId: model, checkpoints, run log. */
  dir: string;
  /** True when it continues the latest run (--resume). */
  resumed: boolean;
}

/**
 * A new run's folder under `jobDir` (and `latest` moved to it), or with `resume` the latest
 * run's. A job folder from before run folders (its checkpoint directly inside) resumes in place.
 * `resume: 'auto'` takes the latest run when it holds a checkpoint, else opens a new one.
 */
export async function openRunFolder(jobDir: string, options: { resume?: boolean | 'auto'; now?: Date } = {}): Promise<RunFolder> {
  if (options.resume === 'auto') {
    // A restarted pod: continue the latest run where it left a checkpoint, else start a new one.
    const runId = await latestRunId(jobDir);
    if (runId !== undefined && (await exists(path.join(jobDir, runId, 'checkpoint.drover')))) return { jobDir, runId, dir: path.join(jobDir, runId), resumed: true };
    if (await exists(path.join(jobDir, 'checkpoint.drover'))) return { jobDir, runId: '.', dir: jobDir, resumed: true };
  } else if (options.resume) {
    const runId = await latestRunId(jobDir);
    if (runId !== undefined) return { jobDir, runId, dir: path.join(jobDir, runId), resumed: true };
    if (await exists(path.join(jobDir, 'checkpoint.drover'))) return { jobDir, runId: '.', dir: jobDir, resumed: true };
    throw new CheckpointError(`--resume: ${jobDir} has no run to continue (no ${path.join(jobDir, LATEST)}); start the job without --resume`, jobDir);
  }
  await mkdir(jobDir, { recursive: true });
  const stamp = (options.now ?? new Date()).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  for (let attempt = 1; ; attempt++) {
    const runId = attempt === 1 ? stamp : `${stamp}-${attempt}`;
    try {
      // Not recursive: fails if another run took this id in the same second.
      await mkdir(path.join(jobDir, runId));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    await pointLatest(jobDir, runId);
    return { jobDir, runId, dir: path.join(jobDir, runId), resumed: false };
  }
}

/** The run `jobDir/latest` points at, if it exists. */
export async function latestRunId(jobDir: string): Promise<string | undefined> {
  const latest = path.join(jobDir, LATEST);
  let runId: string;
  try {
    const info = await lstat(latest);
    if (info.isSymbolicLink()) runId = await readlink(latest);
    else if (info.isFile()) runId = (await readFile(latest, 'utf8')).trim();
    else return undefined;
  } catch {
    return undefined;
  }
  // Only a sibling folder: a `latest` edited to point elsewhere is not followed.
  if (runId === '' || runId !== path.basename(runId) || runId === '.' || runId === '..') return undefined;
  return (await isDirectory(path.join(jobDir, runId))) ? runId : undefined;
}

/** Replaces `latest` atomically: a symlink where the file system has them, else a file holding the id. */
async function pointLatest(jobDir: string, runId: string): Promise<void> {
  const temp = path.join(jobDir, `.${LATEST}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
  try {
    await symlink(runId, temp);
  } catch {
    await writeFile(temp, `${runId}\n`);
  }
  try {
    await rename(temp, path.join(jobDir, LATEST));
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}

async function isDirectory(dir: string): Promise<boolean> {
  return stat(dir).then((info) => info.isDirectory(), () => false);
}
