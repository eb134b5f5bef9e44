/**
 * One folder per run: `<job folder>/<run id>/` (model, checkpoints, run log), and
 * `<job folder>/latest` pointing at the newest, so a new run never overwrites an older run's
 * model, and `--resume` (train or coordinator) continues the latest unfinished run in its own
 * folder.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkpointPath, removeStaleTemporaries } from './checkpoint.ts';
import { CheckpointError } from '../errors.ts';

export const LATEST = 'latest';

/** Run ids openRunFolder makes: the UTC start second, then -2, -3... for runs in the same second. */
const RUN_ID = /^(\d{8}-\d{6})(?:-(\d+))?$/;

export interface RunFolder {
  /** The job's folder: output.dir, default runs/<job name>. */
  jobDir: string;
  /** This run's id, e.g. 20261129-231502 (UTC start time); '.' for a job folder from before run folders. */
  runId: string;
  /** jobDir/runId: model, checkpoints, run log. */
  dir: string;
  /** True when it continues an earlier run (--resume, or --resume auto that found one). */
  resumed: boolean;
  /** Half-written checkpoint files a crash had left in the job's run folders, now deleted. */
  removedTemporaries: string[];
}

/**
 * A new run's folder under `jobDir` (and `latest` moved to it), or with `resume` the run to
 * continue: the one `latest` points at when it holds a checkpoint, else the newest run folder
 * that does (a start that failed before its first checkpoint leaves `latest` on an empty folder;
 * the run before it is the one to continue). `latest` is moved to the resumed run.
 * A run that completed (its model exported) is not continued: `resume: true` rejects with a
 * CheckpointError, `resume: 'auto'` (a restarted pod) opens a new run.
 * A job folder from before run folders (its checkpoint directly inside) resumes in place.
 * Every run folder is first cleared of the checkpoint temporaries a crash left behind.
 */
export async function openRunFolder(jobDir: string, options: { resume?: boolean | 'auto'; now?: Date } = {}): Promise<RunFolder> {
  const removedTemporaries = await removeAllStaleTemporaries(jobDir);
  if (options.resume) {
    const runId = await resumableRunId(jobDir);
    if (runId !== undefined) {
      const dir = runId === '.' ? jobDir : path.join(jobDir, runId);
      if (!(await isCompleted(dir))) {
        if (runId !== '.' && (await latestRunId(jobDir)) !== runId) await pointLatest(jobDir, runId);
        return { jobDir, runId, dir, resumed: true, removedTemporaries };
      }
      if (options.resume === true) {
        throw new CheckpointError(
          `--resume: the last run of ${jobDir} (${dir}) completed: its model is in ${path.join(dir, 'model')}; start the job without --resume for a new run`,
          dir,
        );
      }
      // auto: the job was done; a new run starts below.
    } else if (options.resume === true) {
      throw new CheckpointError(`--resume: ${jobDir} has no run to continue (no run folder in it holds a checkpoint); start the job without --resume`, jobDir);
    }
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
    return { jobDir, runId, dir: path.join(jobDir, runId), resumed: false, removedTemporaries };
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

/**
 * The run a resume continues: `latest` when it holds a checkpoint, else the newest run folder
 * (by run id) that holds one, else '.' for a job folder from before run folders; undefined when
 * there is no checkpoint anywhere.
 */
async function resumableRunId(jobDir: string): Promise<string | undefined> {
  const latest = await latestRunId(jobDir);
  if (latest !== undefined && (await exists(checkpointPath(path.join(jobDir, latest))))) return latest;
  const runs = (await runFolderNames(jobDir)).sort(compareRunIds).reverse();
  for (const runId of runs) if (await exists(checkpointPath(path.join(jobDir, runId)))) return runId;
  if (await exists(checkpointPath(jobDir))) return '.';
  return undefined;
}

/** A run whose model was exported (model.json is written last) is complete. */
async function isCompleted(runDir: string): Promise<boolean> {
  return exists(path.join(runDir, 'model', 'model.json'));
}

/** Deletes stale checkpoint temporaries in the job folder itself and in each of its run folders. */
async function removeAllStaleTemporaries(jobDir: string): Promise<string[]> {
  const removed = await removeStaleTemporaries(jobDir);
  for (const runId of await runFolderNames(jobDir)) removed.push(...(await removeStaleTemporaries(path.join(jobDir, runId))));
  return removed;
}

/** Folders of `jobDir` named as openRunFolder names runs. */
async function runFolderNames(jobDir: string): Promise<string[]> {
  try {
    const entries = await readdir(jobDir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && RUN_ID.test(e.name)).map((e) => e.name);
  } catch {
    return []; // no job folder yet
  }
}

/** Oldest first: by start second, then by the same-second suffix as a number (-10 after -9). */
function compareRunIds(a: string, b: string): number {
  const [, aStamp, aN] = RUN_ID.exec(a)!;
  const [, bStamp, bN] = RUN_ID.exec(b)!;
  if (aStamp !== bStamp) return aStamp! < bStamp! ? -1 : 1;
  return Number(aN ?? 1) - Number(bN ?? 1);
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
