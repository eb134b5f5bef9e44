import type { PhaseSetup } from './job-runner.ts';
import type { StepEngine } from './step-engine.ts';

/** An engine that holds its own copies of the model (replica threads), per training phase. */
export interface PhaseEngine extends StepEngine {
  /**
   * Writes the engine's weights and optimizer state into the phase's trainer: at the phase's
   * end, before the next phase unfreezes layers, the boundary checkpoint or the export.
   */
  settle(): Promise<void>;
}

/**
 * Where `runJob` takes its steps when not in this thread: one engine per phase, built from the
 * phase's trainer (its model's weights, trainable set and optimizer state).
 */
export interface PhaseEngines {
  /** Replicas each step is shared among (job_start's batch size with a per-worker batch). */
  readonly replicas: number;
  /** What the replicas are, for job_start (e.g. "2 replica threads"). */
  readonly description: string;
  open(setup: PhaseSetup): Promise<PhaseEngine>;
  close(): Promise<void>;
}
