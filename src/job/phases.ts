import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CheckpointError } from '../errors.ts';
import type { Job } from './job-file.ts';
import type { WeightSet } from '../model/weights.ts';
import type { EpochRecord } from './training-loop.ts';
import type { Checkpoint } from './checkpoint.ts';

/**
 * A job trains in phases: one, or for a transfer job with `fineTune` a second one that unfreezes
 * the top of the backbone and trains on with a fresh optimizer. Epochs and steps are numbered
 * on across phases; src/job/job-runner.ts runs them, in one process or on a cluster.
 */
export interface TrainingPhase {
  epochs: number;
  learningRate: number;
  /** The layer unfreezeFrom starts at before this phase; null: the model as built. */
  trainableFrom: string | null;
}

export function jobPhases(job: Job): TrainingPhase[] {
  const phases: TrainingPhase[] = [{ epochs: job.train.epochs, learningRate: job.train.optimizer.learningRate, trainableFrom: null }];
  const fineTune = job.model.transfer?.fineTune;
  if (fineTune) phases.push({ epochs: fineTune.epochs, learningRate: fineTune.learningRate, trainableFrom: fineTune.from });
  return phases;
}

/** Where a phase begins: the steps and epochs of the phases before it. */
export interface PhaseStart {
  step: number;
  epoch: number;
}

/**
 * What a phase continues from: the previous phase's end as a checkpoint the next phase resumes,
 * with no optimizer state (the phase gets a fresh optimizer) and no early-stopping state (each
 * phase watches its own epochs).
 */
export function phaseBoundary(previous: { jobId: string; jobName: string; seed: number; steps: number; history: EpochRecord[] }, weights: WeightSet): Checkpoint {
  const epoch = previous.history.length;
  return {
    state: {
      jobId: previous.jobId,
      jobName: previous.jobName,
      step: previous.steps,
      epoch,
      sampler: { epoch, offset: 0 },
      seed: previous.seed,
      history: previous.history,
      epochProgress: { lossSum: 0, correct: 0, seen: 0, seconds: 0 },
      savedAt: new Date().toISOString(),
    },
    weights,
    optimizer: { iterations: 0, slots: [] },
  };
}

/**
 * Kept beside the checkpoint once the fine-tuning phase begins, so `--resume` knows which phase a
 * checkpoint belongs to (its optimizer state fits only that phase's trainable weights).
 */
const markerSchema = z.strictObject({ jobId: z.string(), phase: z.number().int().min(1), start: z.strictObject({ step: z.number().int().min(0), epoch: z.number().int().min(0) }) });
export type PhaseMarker = z.infer<typeof markerSchema>;

export function phaseMarkerPath(outputDir: string): string {
  return path.join(outputDir, 'phase.json');
}

/** Written to a temporary file and renamed over the old one: a crash leaves one or the other. */
export async function writePhaseMarker(outputDir: string, marker: PhaseMarker): Promise<void> {
  const file = phaseMarkerPath(outputDir);
  await writeFile(`${file}.tmp`, JSON.stringify(marker));
  await rename(`${file}.tmp`, file);
}

export async function readPhaseMarker(outputDir: string): Promise<PhaseMarker | undefined> {
  const file = phaseMarkerPath(outputDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return markerSchema.parse(JSON.parse(text));
  } catch (cause) {
    throw new CheckpointError(`${file} is not a phase marker: ${(cause as Error).message}`, file, { cause });
  }
}

/** A fresh run of the job: a marker left by an earlier run must not steer a later --resume. */
export async function clearPhaseMarker(outputDir: string): Promise<void> {
  await rm(phaseMarkerPath(outputDir), { force: true });
}
