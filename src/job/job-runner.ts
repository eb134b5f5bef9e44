import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import type { Dataset } from '../data/types.ts';
import { CheckpointError } from '../errors.ts';
import { guardWrite } from '../io/write-guard.ts';
import { countParams } from '../model/build.ts';
import { saveModel } from '../model/export.ts';
import { unfreezeFrom } from '../model/transfer.ts';
import { readWeights } from '../model/weights.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { isAdaptiveOptimizer } from '../train/optimizers.ts';
import { scalingRuleFor } from '../train/schedule.ts';
import { Trainer } from '../train/trainer.ts';
import { checkpointPath, removeStaleTemporaries, saveCheckpoint, type Checkpoint } from './checkpoint.ts';
import type { PreprocessSpec, ResizeModeSpec } from '../data/spec.ts';
import type { DataSpec, Job } from './job-file.ts';
import { clearPhaseMarker, jobPhases, phaseBoundary, writePhaseMarker, type PhaseStart, type TrainingPhase } from './phases.ts';
import { restoreCheckpoint, resumePoint, type ResumePoint } from './resume.ts';
import type { EvaluationMetrics, StepEngine } from './step-engine.ts';
import { runTrainingLoop, type PerWorkerBatch, type TrainingProgress, type TrainingResult } from './training-loop.ts';

// What every run of a job does around the training loop, whatever takes its steps (this process
// or a cluster): where it resumes, its phases, checkpoints, the test evaluation and the export.

/**
 * The folder a job's checkpoint, exported model and logs go to: output.dir as given (the CLI
 * sets it to the run's own folder, see openRunFolder), else runs/<job name>.
 */
export function jobOutputDir(job: Job): string {
  return job.output.dir ?? path.join('runs', job.name);
}

/** A run of a job as it starts: its phases and, when it continues an earlier run, where. */
export interface RunStart {
  job: Job;
  jobId: string;
  outputDir: string;
  checkpointFile: string;
  phases: TrainingPhase[];
  /** Epochs of all phases. */
  totalEpochs: number;
  resumed?: ResumePoint;
  /** Where the last checkpoint written (or resumed) stands: what a failed run got to. */
  saved: { step: number; epoch: number };
}

/**
 * Prepares a run in `outputDir`: removes checkpoint temporaries a crash left, and with `resume`
 * finds the checkpoint and phase to continue from ('auto': when there is a checkpoint).
 */
export async function startRun(job: Job, outputDir: string, resume: boolean | 'auto' | undefined, log: Logger): Promise<RunStart> {
  const checkpointFile = checkpointPath(outputDir);
  const phases = jobPhases(job);
  for (const file of await removeStaleTemporaries(outputDir)) log.warn({ path: file }, `removed ${file}: a checkpoint half-written when an earlier run stopped`);
  const resuming = resume === 'auto' ? await checkpointToResume(checkpointFile, log) : resume === true;
  const resumed = resuming ? await resumePoint(outputDir, job, phases.length) : undefined;
  if (!resuming) await clearPhaseMarker(outputDir);
  const jobId = resumed?.checkpoint.state.jobId ?? `${job.name}-${randomBytes(3).toString('hex')}`;
  const totalEpochs = phases.reduce((sum, phase) => sum + phase.epochs, 0);
  const saved = { step: resumed?.checkpoint.state.step ?? 0, epoch: resumed?.checkpoint.state.epoch ?? 0 };
  return { job, jobId, outputDir, checkpointFile, phases, totalEpochs, ...(resumed ? { resumed } : {}), saved };
}

/** --resume auto: whether the output folder holds a checkpoint; says which way it went. */
async function checkpointToResume(file: string, log: Logger): Promise<boolean> {
  try {
    await access(file);
  } catch {
    log.info({ resume: 'auto', checkpoint: file, resuming: false }, `--resume auto: no checkpoint at ${file}, starting the job fresh`);
    return false;
  }
  log.info({ resume: 'auto', checkpoint: file, resuming: true }, `--resume auto: resuming from ${file}`);
  return true;
}

/** How the job's samples became model input (scaling, resizing), recorded with the exported model. */
export function samplePreparation(spec: DataSpec): { preprocess: PreprocessSpec; resize: ResizeModeSpec } {
  return {
    preprocess: 'preprocess' in spec ? spec.preprocess : 'rescale',
    resize: 'resize' in spec ? spec.resize : 'cover',
  };
}

/** How a job's model is named in events: its preset, `layers`, or transfer(backbone). */
export function jobModelLabel(job: Job): string {
  return job.model.transfer ? `transfer(${job.model.transfer.backbone})` : (job.model.preset ?? 'layers');
}

/** The fields of a job_start event that single-process and distributed runs share. */
export function jobStartFields(job: Job, run: { backend: string; model: tf.LayersModel; label: string; dataset: Dataset; epochs: number; replicas?: number }) {
  const { dataset } = run;
  // A per-worker batch: the global batch with the replicas expected at the start (it follows the live ones).
  const batchSize = job.cluster?.batch ? job.cluster.batch.perWorker * (run.replicas ?? 1) : job.train.batchSize;
  return {
    backend: run.backend,
    model: run.label,
    params: countParams(run.model),
    dataset: dataset.name,
    classNames: dataset.classNames,
    classCounts: trainClassCounts(dataset),
    trainSize: dataset.train.length,
    valSize: dataset.validation?.length ?? 0,
    epochs: run.epochs,
    batchSize,
    optimizer: job.train.optimizer.name,
    stepsPerEpoch: Math.ceil(dataset.train.length / batchSize),
  };
}

/** Training samples per class, logged at job start so a stray class shows at once. */
function trainClassCounts(dataset: Dataset): number[] {
  const counts = new Array<number>(dataset.classNames.length).fill(0);
  for (let i = 0; i < dataset.train.length; i++) counts[dataset.train.label(i)]!++;
  return counts;
}

/** One phase about to train: its optimizer (in `trainer`) and what it continues from. */
export interface PhaseSetup {
  index: number;
  phase: TrainingPhase;
  /** Steps and epochs of the phases before this one. */
  phaseStart: PhaseStart;
  /** The model with this phase's trainable weights and a fresh optimizer (restored when resuming). */
  trainer: Trainer;
  /** The checkpoint this phase continues from: the resumed one, or the previous phase's end. */
  resume: Checkpoint | undefined;
}

export interface PhasesOptions {
  run: RunStart;
  model: tf.LayersModel;
  log: Logger;
  /**
   * Seed the dropout masks per phase and continue their sequence on resume (the trainer takes
   * the training passes itself); a cluster's workers draw their own.
   */
  seededDropout: boolean;
  /** Trains one phase (its epochs on an engine). */
  train(setup: PhaseSetup): Promise<TrainingResult>;
}

/**
 * Trains the job's phases in turn from where the run starts. A transfer job with `fineTune`
 * has two: between them the top of the backbone is unfrozen and the optimizer starts afresh;
 * the phase marker and a boundary checkpoint let `--resume` tell which phase a checkpoint is in.
 * Returns the last phase's result and trainer, whose optimizer the caller disposes.
 */
export async function trainPhases(options: PhasesOptions): Promise<{ result: TrainingResult; trainer: Trainer }> {
  const { run, model, log } = options;
  const { job, resumed, outputDir } = run;
  let resume: Checkpoint | undefined = resumed?.checkpoint;
  let phaseStart: PhaseStart = resumed?.phaseStart ?? { step: 0, epoch: 0 };
  let trainer: Trainer | undefined;
  let result: TrainingResult | undefined;
  try {
    for (let index = resumed?.phase ?? 0; index < run.phases.length; index++) {
      const phase = run.phases[index]!;
      if (phase.trainableFrom !== null) {
        const unfrozen = unfreezeFrom(model, phase.trainableFrom, { batchNorm: job.model.transfer!.batchNorm });
        log.info({ from: phase.trainableFrom, layers: unfrozen.length, learningRate: phase.learningRate }, `fine-tuning from ${phase.trainableFrom} (${unfrozen.length} layers) at lr ${phase.learningRate}`);
      }
      trainer?.optimizer.dispose();
      trainer = undefined;
      // A fresh optimizer over this phase's trainable weights, at its learning rate; the dropout
      // masks continue where a resumed run left them.
      trainer = new Trainer(model, {
        optimizer: { ...job.train.optimizer, learningRate: phase.learningRate },
        ...(options.seededDropout ? { dropoutSeed: job.seed + index, passesDone: resume ? resume.state.step - phaseStart.step : 0 } : {}),
      });
      if (resume && resume === resumed?.checkpoint) restoreCheckpoint(resume, resumed.file, trainer, { optimizer: resumed.optimizer });
      result = await options.train({ index, phase, phaseStart, trainer, resume });
      if (index + 1 === run.phases.length || result.status === 'stopped') break;
      // Mark the phase change first, then save its start: a crash between leaves the last
      // checkpoint at the boundary step, which --resume also reads as the next phase's start.
      phaseStart = { step: result.steps, epoch: result.history.length };
      await writePhaseMarker(outputDir, { jobId: run.jobId, phase: index + 1, start: phaseStart });
      const boundary = phaseBoundary({ jobId: run.jobId, jobName: job.name, seed: job.seed, steps: result.steps, history: result.history }, await readWeights(model));
      resume = boundary;
      await guardWrite(() => saveCheckpoint(run.checkpointFile, boundary));
      run.saved = { step: result.steps, epoch: result.history.length };
    }
  } catch (error) {
    trainer?.optimizer.dispose();
    throw error;
  }
  if (!result || !trainer) throw new CheckpointError(`the checkpoint in ${outputDir} is past the job's last phase: nothing to resume`, run.checkpointFile);
  return { result, trainer };
}

/** Trains one phase with the training loop over `engine`, checkpointing into the run's folder. */
export function trainPhase(engine: StepEngine, setup: PhaseSetup, context: { run: RunStart; dataset: Dataset; log: Logger; signal?: AbortSignal }): Promise<TrainingResult> {
  const { run, log } = context;
  const { job } = run;
  const resume = setup.resume;
  return runTrainingLoop({
    engine,
    dataset: context.dataset,
    epochs: setup.phase.epochs,
    epochOffset: setup.phaseStart.epoch,
    stepOffset: setup.phaseStart.step,
    totalEpochs: run.totalEpochs,
    batchSize: job.train.batchSize,
    // The scaling rule is told once, as the run's first phase starts.
    ...perWorkerBatch(job, setup.index === (run.resumed?.phase ?? 0) ? log : undefined),
    seed: job.seed,
    schedule: job.train.schedule,
    learningRate: setup.phase.learningRate,
    logEvery: job.train.logEvery,
    earlyStopping: job.train.earlyStopping,
    log,
    signal: context.signal,
    ...(resume ? { resume: { ...resume.state, ...(resume.bestWeights ? { bestWeights: resume.bestWeights } : {}) } } : {}),
    checkpoint: checkpointWriter(run, engine, log),
    checkpointEvery: job.train.checkpointEvery,
  });
}

/**
 * cluster.batch as the loop takes it: the reference batch defaults to train.batchSize, the
 * scaling rule to the optimizer's. With `log`, says which rule applies.
 */
function perWorkerBatch(job: Job, log?: Logger): { perWorker?: PerWorkerBatch } {
  const batch = job.cluster?.batch;
  if (!batch) return {};
  const optimizer = job.train.optimizer.name;
  const rule = scalingRuleFor(batch.scaleLearningRate, isAdaptiveOptimizer(optimizer));
  const referenceBatch = batch.referenceBatch ?? job.train.batchSize;
  const how = rule === 'sqrt' ? 'x sqrt' : 'x';
  log?.info(
    { perWorker: batch.perWorker, scalingRule: rule ?? 'none', optimizer, referenceBatch, warmupEpochs: batch.warmupEpochs },
    rule
      ? `per-worker batch ${batch.perWorker}: learning rate ${how}(global batch / ${referenceBatch}) (${rule === 'sqrt' ? 'square-root' : 'linear'} rule for ${optimizer}), warmed up over ${batch.warmupEpochs} epochs`
      : `per-worker batch ${batch.perWorker}: learning rate not scaled with the global batch`,
  );
  const scaling = rule ? { rule, referenceBatch, warmupEpochs: batch.warmupEpochs } : undefined;
  return { perWorker: { perWorker: batch.perWorker, ...(scaling ? { scaling } : {}) } };
}

/** Writes the run's checkpoint: the loop's progress with the engine's weights and optimizer state. */
export function checkpointWriter(run: RunStart, engine: Pick<StepEngine, 'weights' | 'optimizerState'>, log: Logger): (progress: TrainingProgress) => Promise<void> {
  const file = run.checkpointFile;
  return async (progress) => {
    const checkpoint: Checkpoint = {
      state: {
        jobId: run.jobId,
        jobName: run.job.name,
        step: progress.step,
        epoch: progress.epoch,
        sampler: progress.sampler,
        seed: run.job.seed,
        history: progress.history,
        epochProgress: progress.epochProgress,
        ...(progress.earlyStopping ? { earlyStopping: progress.earlyStopping } : {}),
        savedAt: new Date().toISOString(),
      },
      weights: await engine.weights(),
      optimizer: await engine.optimizerState(),
      ...(progress.bestWeights ? { bestWeights: progress.bestWeights } : {}),
    };
    // Guarded: a second Ctrl-C (or SIGTERM) waits for the write instead of cutting it in half.
    const { bytes } = await guardWrite(() => {
      // Marks the window a second signal must not cut (the signal tests wait for it).
      log.info({ step: progress.step, path: file }, `writing checkpoint at step ${progress.step}`);
      return saveCheckpoint(file, checkpoint);
    });
    run.saved = { step: progress.step, epoch: progress.epoch };
    logEvent(log, 'checkpoint', { step: progress.step, epoch: progress.epoch, path: file, bytes }, `checkpoint at step ${progress.step} -> ${file}`);
  };
}

export interface FinishOptions {
  run: RunStart;
  result: TrainingResult;
  /** Evaluates the test split on the trained weights. */
  engine: Pick<StepEngine, 'evaluate'>;
  model: tf.LayersModel;
  dataset: Dataset;
  log: Logger;
  signal?: AbortSignal;
  /** performance.now() when the run started. */
  started: number;
  /** How the job is named in the closing message (its name, or a cluster's job id). */
  name: string;
  /** Runs before job_end (a cluster dismisses its workers). */
  beforeEnd?: (status: 'completed' | 'stopped') => Promise<void>;
}

export interface Finished {
  status: TrainingResult['status'];
  test?: EvaluationMetrics;
  /** Where the model was exported; none when stopped. */
  modelDir?: string;
  seconds: number;
}

/**
 * After the last phase: the test evaluation, then the export (a run whose model is exported is
 * complete), then job_end. Stopped before or during them, the run exports nothing: the last
 * epoch's checkpoint stands, and --resume evaluates and exports.
 */
export async function finishJob(options: FinishOptions): Promise<Finished> {
  const { run, result, dataset, log, signal } = options;
  const end = async (status: 'completed' | 'stopped', fields: { test?: EvaluationMetrics; modelDir?: string }): Promise<Finished> => {
    await options.beforeEnd?.(status);
    const seconds = (performance.now() - options.started) / 1000;
    const { test, modelDir } = fields;
    logEvent(
      log,
      'job_end',
      { status, epochs: result.history.length, steps: result.steps, seconds, ...(test ? { testAccuracy: test.accuracy } : {}), ...(modelDir ? { modelDir } : {}) },
      status === 'stopped'
        ? `job ${options.name} stopped at step ${result.steps}: checkpoint ${run.checkpointFile}, nothing exported; --resume continues`
        : `job ${options.name} ${result.status} in ${seconds.toFixed(1)} s; model saved to ${modelDir}`,
    );
    return { status: status === 'stopped' ? 'stopped' : result.status, ...fields, seconds };
  };
  if (result.status === 'stopped' || signal?.aborted) return end('stopped', {});
  let test: EvaluationMetrics | undefined;
  if (dataset.test) {
    test = await options.engine.evaluate('test', dataset.test, result.history.length, signal);
    if (signal?.aborted) return end('stopped', {});
    logEvent(
      log,
      'evaluation',
      { split: 'test', loss: test.loss, accuracy: test.accuracy, n: test.n, classNames: dataset.classNames, confusion: test.confusion },
      `test accuracy ${(test.accuracy * 100).toFixed(2)} % on ${test.n} samples`,
    );
  }
  const modelDir = path.join(run.outputDir, 'model');
  const info = { job: run.job.name, jobId: run.jobId, steps: result.steps, epochs: result.history.length };
  // Guarded: a second Ctrl-C waits for both files, never pairs new weights with an old model.json.
  await guardWrite(() => saveModel(options.model, modelDir, { classNames: dataset.classNames, ...samplePreparation(run.job.data), info }));
  return end('completed', { ...(test ? { test } : {}), modelDir });
}
