import { CheckpointError } from '../errors.ts';
import type { Job } from './job-file.ts';
import { writeWeights } from '../model/weights.ts';
import type { Trainer } from '../train/trainer.ts';
import { checkpointPath, loadCheckpoint, type Checkpoint } from './checkpoint.ts';
import { phaseBoundary, readPhaseMarker, type PhaseStart } from './phases.ts';

// Where a job resumes: read by the job runner (src/job/job-runner.ts) for every kind of run.

export interface ResumePoint {
  file: string;
  checkpoint: Checkpoint;
  /** Index of the phase the checkpoint belongs to. */
  phase: number;
  phaseStart: PhaseStart;
  /** False at a phase's first step: the phase starts with a fresh optimizer. */
  optimizer: boolean;
}

/**
 * The last checkpoint and the phase it belongs to: a checkpoint at or after the step where the
 * fine-tuning phase began (the phase marker says which) is that phase's; any other is the first's.
 */
export async function resumePoint(outputDir: string, job: Job, phaseCount: number): Promise<ResumePoint> {
  const file = checkpointPath(outputDir);
  const checkpoint = await loadCheckpoint(file);
  if (checkpoint.state.jobName !== job.name) {
    throw new CheckpointError(`${file} belongs to job "${checkpoint.state.jobName}", not "${job.name}"`, file);
  }
  const marker = await readPhaseMarker(outputDir);
  if (marker && marker.jobId === checkpoint.state.jobId && checkpoint.state.step >= marker.start.step) {
    if (marker.phase >= phaseCount) {
      throw new CheckpointError(`${file} was saved in training phase ${marker.phase + 1}, but this job has ${phaseCount} (was model.transfer.fineTune removed?)`, file);
    }
    if (checkpoint.state.step > marker.start.step) return { file, checkpoint, phase: marker.phase, phaseStart: marker.start, optimizer: true };
    // At the phase's first step: the earlier phase's optimizer and early-stopping state stay behind.
    const start = phaseBoundary({ ...checkpoint.state, steps: checkpoint.state.step }, checkpoint.weights);
    return { file, checkpoint: start, phase: marker.phase, phaseStart: marker.start, optimizer: false };
  }
  return { file, checkpoint, phase: 0, phaseStart: { step: 0, epoch: 0 }, optimizer: true };
}

/** Loads a checkpoint's weights (and optimizer state) into the model and this phase's optimizer. */
export function restoreCheckpoint(checkpoint: Checkpoint, file: string, trainer: Trainer, what: { optimizer: boolean }): void {
  try {
    writeWeights(trainer.model, checkpoint.weights);
    if (!what.optimizer) return;
    trainer.modelOptimizer.bind();
    trainer.optimizer.setState(checkpoint.optimizer);
  } catch (cause) {
    throw new CheckpointError(`${file} does not fit this job's model: ${(cause as Error).message}`, file, { cause });
  }
}
