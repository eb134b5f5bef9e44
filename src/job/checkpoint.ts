import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError } from '../errors.ts';
import type { SamplerPosition } from '../data/sampler.ts';
import type { WeightEntry, WeightSet } from '../model/weights.ts';
import type { OptimizerSlot } from '../train/optimizers.ts';
import type { EpochRecord } from './training-loop.ts';
import type { EarlyStoppingState } from './early-stopping.ts';

const MAGIC = Buffer.from('DROVERCK', 'ascii');
const FORMAT_VERSION = 1;

/** Running sums of the epoch in progress, so a resumed epoch reports the right loss and accuracy. */
export interface EpochProgress {
  lossSum: number;
  correct: number;
  seen: number;
  seconds: number;
}

/** Everything but the tensors: JSON in the file's header. */
export interface CheckpointState {
  jobId: string;
  jobName: string;
  /** Optimizer steps applied (= weights version). */
  step: number;
  /** Epochs completed (validation and early stopping included). */
  epoch: number;
  /**
   * Where the training sampler resumes. All randomness of a run derives from (seed, epoch,
   * sample id), so seed + position is the complete random state.
   */
  sampler: SamplerPosition;
  seed: number;
  history: EpochRecord[];
  epochProgress: EpochProgress;
  earlyStopping?: EarlyStoppingState;
  savedAt: string;
}

export interface Checkpoint {
  state: CheckpointState;
  weights: WeightSet;
  optimizer: { iterations: number; slots: OptimizerSlot[] };
  /** Best weights of early stopping (restore_best), when kept. */
  bestWeights?: WeightSet;
}

interface BlobRef {
  name: string;
  offset: number;
  length: number;
}

interface Header {
  format: 'drover-checkpoint';
  version: number;
  state: CheckpointState;
  weights: { manifest: WeightEntry[]; blobs: BlobRef[] };
  optimizer: { iterations: number; blobs: BlobRef[] };
  bestWeights?: { manifest: WeightEntry[]; blobs: BlobRef[] };
}

/** Where a job keeps its latest checkpoint. */
export function checkpointPath(outputDir: string): string {
  return path.join(outputDir, 'checkpoint.drover');
}

/**
 * Writes a checkpoint atomically: to a temporary file in the same folder, fsync'd, then renamed
 * over the previous one, so a crash at any moment leaves either the old or the new checkpoint.
 * Layout: magic, u32 header length, JSON header, then the float32 arrays (4-byte aligned).
 */
export async function saveCheckpoint(file: string, checkpoint: Checkpoint): Promise<{ bytes: number }> {
  const arrays: Float32Array[] = [];
  let offset = 0;
  const refs = (named: { name: string; values: Float32Array }[]): BlobRef[] =>
    named.map(({ name, values }) => {
      const ref = { name, offset, length: values.length };
      arrays.push(values);
      offset += values.byteLength;
      return ref;
    });
  const weightBlobs = refs(checkpoint.weights.manifest.map((w, i) => ({ name: w.name, values: checkpoint.weights.values[i]! })));
  const optimizerBlobs = refs(checkpoint.optimizer.slots);
  const best = checkpoint.bestWeights;
  const bestBlobs = best ? refs(best.manifest.map((w, i) => ({ name: w.name, values: best.values[i]! }))) : undefined;
  const header: Header = {
    format: 'drover-checkpoint',
    version: FORMAT_VERSION,
    state: checkpoint.state,
    weights: { manifest: checkpoint.weights.manifest, blobs: weightBlobs },
    optimizer: { iterations: checkpoint.optimizer.iterations, blobs: optimizerBlobs },
    ...(best && bestBlobs ? { bestWeights: { manifest: best.manifest, blobs: bestBlobs } } : {}),
  };
  // A poisoned state would make --resume carry the poison on: the last good checkpoint stays.
  const names = [...weightBlobs, ...optimizerBlobs, ...(bestBlobs ?? [])].map((ref) => ref.name);
  arrays.forEach((values, i) => {
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new CheckpointError(`refused to write checkpoint ${file}: ${names[i]} value ${bad} is ${values[bad]}; the previous checkpoint is kept`, file);
  });
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(Math.ceil((MAGIC.length + 4 + json.length) / 4) * 4);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(json.length, MAGIC.length);
  json.copy(prefix, MAGIC.length + 4);

  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.tmp-${process.pid}`;
  try {
    const handle = await open(temporary, 'w');
    try {
      await handle.write(prefix);
      for (const values of arrays) await handle.write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
    await syncDirectory(path.dirname(file));
  } catch (cause) {
    await rm(temporary, { force: true });
    throw new CheckpointError(`cannot write checkpoint ${file}: ${(cause as Error).message}`, file, { cause });
  }
  return { bytes: prefix.length + offset };
}

/**
 * Deletes the half-written temporaries (`<checkpoint>.tmp-<pid>`) a crash mid-save left in
 * `outputDir`; those of a process still running (another writer) are left alone. Returns the
 * paths removed.
 */
export async function removeStaleTemporaries(outputDir: string): Promise<string[]> {
  const prefix = `${path.basename(checkpointPath(outputDir))}.tmp-`;
  let names: string[];
  try {
    names = await readdir(outputDir);
  } catch {
    return []; // no output folder yet: nothing was left
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (Number.isInteger(pid) && pid !== process.pid && processRuns(pid)) continue;
    const file = path.join(outputDir, name);
    await rm(file, { force: true });
    removed.push(file);
  }
  return removed;
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Reads a checkpoint written by saveCheckpoint; throws a CheckpointError naming what is wrong. */
export async function loadCheckpoint(file: string): Promise<Checkpoint> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (cause) {
    throw new CheckpointError(`cannot read checkpoint ${file}: ${(cause as Error).message}`, file, { cause });
  }
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new CheckpointError(`${file} is not a drover checkpoint`, file);
  }
  const jsonLength = bytes.readUInt32LE(MAGIC.length);
  const dataStart = Math.ceil((MAGIC.length + 4 + jsonLength) / 4) * 4;
  let header: Header;
  try {
    header = JSON.parse(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + jsonLength).toString('utf8')) as Header;
  } catch (cause) {
    throw new CheckpointError(`${file}: header is not valid JSON (truncated write?)`, file, { cause });
  }
  if (header.format !== 'drover-checkpoint' || header.version !== FORMAT_VERSION) {
    throw new CheckpointError(`${file}: checkpoint format ${header.format} v${header.version} is not supported (expected v${FORMAT_VERSION})`, file);
  }
  const blob = (ref: BlobRef): Float32Array => {
    const start = dataStart + ref.offset;
    const end = start + ref.length * 4;
    if (end > bytes.length) throw new CheckpointError(`${file}: ${ref.name} lies beyond the end of the file (truncated)`, file);
    // A copy: aligned, and independent of the file buffer.
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + end));
  };
  const weights: WeightSet = { manifest: header.weights.manifest, values: header.weights.blobs.map(blob) };
  const optimizer = { iterations: header.optimizer.iterations, slots: header.optimizer.blobs.map((ref) => ({ name: ref.name, values: blob(ref) })) };
  const bestWeights = header.bestWeights ? { manifest: header.bestWeights.manifest, values: header.bestWeights.blobs.map(blob) } : undefined;
  return { state: header.state, weights, optimizer, ...(bestWeights ? { bestWeights } : {}) };
}

async function syncDirectory(dir: string): Promise<void> {
  // Makes the rename durable; some filesystems refuse to open a directory for sync: not fatal.
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort
  }
}
