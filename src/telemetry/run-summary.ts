import { emptyTally, type LineTally } from './events.ts';

/** Where a run stands, for the dashboard's header and the report's titles. */
export interface RunSummary {
  status: 'waiting' | 'running' | 'completed' | 'failed' | 'stopped';
  job?: string;
  mode?: 'single' | 'distributed';
  backend?: string;
  backendDescription?: string;
  model?: string;
  params?: number;
  dataset?: string;
  classes?: number;
  trainSize?: number;
  valSize?: number;
  epochs?: number;
  batchSize?: number;
  optimizer?: string;
  stepsPerEpoch?: number;
  /** Epoch now running (or last finished). */
  epoch?: number;
  /** Latest global step. */
  step?: number;
  /** Latest step's values. */
  loss?: number;
  accuracy?: number;
  lr?: number;
  imgPerSec?: number;
  /** Latest finished epoch's values. */
  epochLoss?: number;
  epochAccuracy?: number;
  valLoss?: number;
  valAccuracy?: number;
  bestValAccuracy?: number;
  bestValEpoch?: number;
  /** Epoch ms of the first and latest event. */
  startedAt?: number;
  updatedAt?: number;
  workersActive: number;
  workersSeen: number;
  workerFailures: number;
  dataSkips: number;
  checkpoints: number;
  lastCheckpoint?: string;
  earlyStop?: { epoch: number; monitor: string; best: number; bestEpoch: number; restored: boolean };
  evaluation?: { split: 'validation' | 'test'; loss: number; accuracy: number; n: number };
  testAccuracy?: number;
  modelDir?: string;
  error?: string;
  seconds?: number;
  /** Steps per point of the step-level charts. */
  stepsPerPoint: number;
  lines: LineTally;
}

/** A run before its first event. */
export function emptySummary(): RunSummary {
  return {
    status: 'waiting',
    workersActive: 0,
    workersSeen: 0,
    workerFailures: 0,
    dataSkips: 0,
    checkpoints: 0,
    stepsPerPoint: 1,
    lines: emptyTally(),
  };
}
