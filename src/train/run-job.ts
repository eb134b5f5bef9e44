import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import type { Job, DataSpec } from '../job/job-file.ts';
import type { Dataset } from '../data/types.ts';
import type { PreprocessSpec, ResizeModeSpec } from '../data/spec.ts';
import { openJobDataset } from '../data/open.ts';
import type { BackendChoice } from '../model/backend.ts';
import { initBackend } from '../model/backend.ts';
import { buildScratchModel, countParams } from '../model/build.ts';
import { saveModel } from '../model/export.ts';
import { PRESETS, type PresetName } from '../model/presets.ts';
import { buildTransferModel, unfreezeFrom } from '../model/transfer.ts';
import { readWeights } from '../model/weights.ts';
import { checkpointPath, removeStaleTemporaries, saveCheckpoint, type Checkpoint } from '../job/checkpoint.ts';
import { clearPhaseMarker, jobPhases, phaseBoundary, writePhaseMarker, type PhaseStart } from '../job/phases.ts';
import { restoreCheckpoint, resumePoint } from '../job/resume.ts';
import { CheckpointError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import { logEvent } from '../telemetry/events.ts';
import { evaluateSplit, type Evaluation } from './evaluate.ts';
import { fit, type FitProgress, type FitResult } from './fit.ts';
import { guardWrite } from '../io/write-guard.ts';
import { Trainer } from './trainer.ts';

export interface RunJobOptions {
  log: Logger;
  /** Finish the current step, checkpoint, and stop without exporting (Ctrl-C, SIGTERM). */
  signal?: AbortSignal;
  /** Continue from the job's last checkpoint (<output dir>/checkpoint.drover). */
  resume?: boolean;
}

export interface JobResult {
  fit: FitResult;
  test?: Evaluation;
  seconds: number;
  /** Where the trained model was exported (tfjs LayersModel + class names); none when stopped. */
  modelDir?: string;
  /** The last checkpoint written. */
  checkpoint: string;
}

/** The fields of a job_start event that single-process and distributed runs share. */
export function jobStartFields(job: Job, run: { backend: string; model: tf.LayersModel; label: string; dataset: Dataset; epochs: number }) {
  const { dataset } = run;
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
    batchSize: job.train.batchSize,
    optimizer: job.train.optimizer.name,
    stepsPerEpoch: Math.ceil(dataset.train.length / job.train.batchSize),
  };
}

/** Training samples per class, logged at job start so a stray class shows at once. */
function trainClassCounts(dataset: Dataset): number[] {
  const counts = new Array<number>(dataset.classNames.length).fill(0);
  for (let i = 0; i < dataset.train.length; i++) counts[dataset.train.label(i)]!++;
  return counts;
}

/** How the job's samples became model input (scaling, resizing), recorded with the exported model. */
export function samplePreparation(spec: DataSpec): { preprocess: PreprocessSpec; resize: ResizeModeSpec } {
  return {
    preprocess: 'preprocess' in spec ? spec.preprocess : 'rescale',
    resize: 'resize' in spec ? spec.resize : 'cover',
  };
}

interface BuiltModel {
  model: tf.LayersModel;
  label: string;
  /** Preprocessing the backbone expects, for transfer models. */
  expects?: PreprocessSpec;
}

async function buildJobModel(job: Job, dataset: Dataset): Promise<BuiltModel> {
  const classes = dataset.classNames.length;
  if (job.model.transfer) {
    const built = await buildTransferModel(job.model.transfer, { inputShape: dataset.inputShape, classes, seed: job.seed });
    return { model: built.model, label: `transfer(${job.model.transfer.backbone})`, expects: built.preprocess };
  }
  const layers = job.model.preset ? PRESETS[job.model.preset as PresetName].layers : job.model.layers!;
  const model = buildScratchModel({ layers, inputShape: dataset.inputShape, classes, l2: job.model.l2, seed: job.seed });
  return { model, label: job.model.preset ?? 'layers' };
}

/**
 * Runs a whole job in this process: backend, data, model, training (and, for transfer jobs,
 * the fine-tuning phase), test evaluation, model export. Checkpoints in the coordinator's
 * format (each epoch, every train.checkpointEvery steps, and on stop); with `resume` it
 * continues from the last one exactly. Stopped (signal), it exports nothing.
 */
export async function runJob(job: Job, options: RunJobOptions): Promise<JobResult> {
  const { log } = options;
  const started = performance.now();
  const backend = await initBackend(job.backend as BackendChoice, log, { threads: job.threads });
  const dataset = await openJobDataset(job.data, log);
  let trainer: Trainer | undefined;
  try {
    const { model, label, expects } = await buildJobModel(job, dataset);
    const { preprocess } = samplePreparation(job.data);
    if (expects !== undefined && JSON.stringify(expects) !== JSON.stringify(preprocess)) {
      log.warn({ expects, preprocess }, `the backbone expects preprocess ${JSON.stringify(expects)} but data.preprocess is ${JSON.stringify(preprocess)}`);
    }
    const outputDir = job.output.dir ?? path.join('runs', job.name);
    const checkpointFile = checkpointPath(outputDir);
    const phases = jobPhases(job);
    const totalEpochs = phases.reduce((sum, phase) => sum + phase.epochs, 0);
    for (const file of await removeStaleTemporaries(outputDir)) log.warn({ path: file }, `removed ${file}: a checkpoint half-written when an earlier run stopped`);
    const resumed = options.resume ? await resumePoint(outputDir, job, phases.length) : undefined;
    if (!options.resume) await clearPhaseMarker(outputDir);
    const jobId = resumed?.checkpoint.state.jobId ?? `${job.name}-${randomBytes(3).toString('hex')}`;
    let resume: Checkpoint | undefined = resumed?.checkpoint;
    let phaseStart: PhaseStart = resumed?.phaseStart ?? { step: 0, epoch: 0 };
    logEvent(
      log,
      'job_start',
      {
        job: job.name,
        mode: 'single',
        ...jobStartFields(job, { backend: backend.description, model, label, dataset, epochs: totalEpochs }),
        ...(resume ? { resumedFrom: { epoch: resume.state.epoch, step: resume.state.step } } : {}),
      },
      `job ${job.name}: ${label} on ${dataset.name} (${dataset.train.length} training samples) with ${backend.description}${resume ? ` (resumed at step ${resume.state.step})` : ''}`,
    );
    let result: FitResult | undefined;
    for (let index = resumed?.phase ?? 0; index < phases.length; index++) {
      const phase = phases[index]!;
      if (phase.trainableFrom !== null) {
        const unfrozen = unfreezeFrom(model, phase.trainableFrom, { batchNorm: job.model.transfer!.batchNorm });
        log.info({ from: phase.trainableFrom, layers: unfrozen.length, learningRate: phase.learningRate }, `fine-tuning from ${phase.trainableFrom} (${unfrozen.length} layers) at lr ${phase.learningRate}`);
      }
      trainer?.optimizer.dispose();
      // A fresh optimizer over this phase's trainable weights, at its learning rate; the dropout
      // masks continue where a resumed run left them.
      trainer = new Trainer(model, {
        optimizer: { ...job.train.optimizer, learningRate: phase.learningRate },
        dropoutSeed: job.seed + index,
        passesDone: resume ? resume.state.step - phaseStart.step : 0,
      });
      if (resume && resume === resumed?.checkpoint) restoreCheckpoint(resume, resumed.file, trainer, { optimizer: resumed.optimizer });
      const phaseTrainer = trainer;
      const writeCheckpoint = async (progress: FitProgress): Promise<void> => {
        const optimizer = await phaseTrainer.optimizer.getState();
        const weights = await readWeights(model);
        const { bytes } = await guardWrite(() => {
          // Marks the window a second Ctrl-C must not cut (test/train-signals.test.ts waits for it).
          log.debug({ step: progress.step, path: checkpointFile }, `writing checkpoint at step ${progress.step}`);
          return saveCheckpoint(checkpointFile, {
            state: {
              jobId,
              jobName: job.name,
              step: progress.step,
              epoch: progress.epoch,
              sampler: progress.sampler,
              seed: job.seed,
              history: progress.history,
              epochProgress: progress.epochProgress,
              ...(progress.earlyStopping ? { earlyStopping: progress.earlyStopping } : {}),
              savedAt: new Date().toISOString(),
            },
            weights,
            optimizer: { iterations: optimizer.iterations, slots: optimizer.slots.map((slot) => ({ name: slot.name, values: new Float32Array(slot.values) })) },
            ...(progress.bestWeights ? { bestWeights: progress.bestWeights } : {}),
          });
        });
        logEvent(log, 'checkpoint', { step: progress.step, epoch: progress.epoch, path: checkpointFile, bytes }, `checkpoint at step ${progress.step} -> ${checkpointFile}`);
      };
      result = await fit({
        trainer,
        dataset,
        epochs: phase.epochs,
        epochOffset: phaseStart.epoch,
        stepOffset: phaseStart.step,
        totalEpochs,
        batchSize: job.train.batchSize,
        seed: job.seed,
        schedule: job.train.schedule,
        learningRate: phase.learningRate,
        logEvery: job.train.logEvery,
        earlyStopping: job.train.earlyStopping,
        log,
        signal: options.signal,
        ...(resume ? { resume: { ...resume.state, ...(resume.bestWeights ? { bestWeights: resume.bestWeights } : {}) } } : {}),
        checkpoint: writeCheckpoint,
        checkpointEvery: job.train.checkpointEvery,
      });
      if (index + 1 === phases.length || result.status === 'stopped') break;
      // As the coordinator does: mark the phase change first, then save its start.
      phaseStart = { step: result.steps, epoch: result.history.length };
      await writePhaseMarker(outputDir, { jobId, phase: index + 1, start: phaseStart });
      resume = phaseBoundary({ jobId, jobName: job.name, seed: job.seed, steps: result.steps, history: result.history }, await readWeights(model));
      await guardWrite(() => saveCheckpoint(checkpointFile, resume!));
    }
    if (!result || !trainer) throw new CheckpointError(`the checkpoint in ${outputDir} is past the job's last phase: nothing to resume`, checkpointFile);
    const stopped = (): JobResult => {
      const seconds = (performance.now() - started) / 1000;
      logEvent(
        log,
        'job_end',
        { status: 'stopped', epochs: result!.history.length, steps: result!.steps, seconds },
        `job ${job.name} stopped at step ${result!.steps}: checkpoint ${checkpointFile}, nothing exported; \`drover train --resume\` continues`,
      );
      return { fit: { ...result!, status: 'stopped' }, seconds, checkpoint: checkpointFile };
    };
    if (result.status === 'stopped') return stopped();
    let test: Evaluation | undefined;
    if (dataset.test) {
      test = await evaluateSplit(trainer, dataset.test, dataset.classNames.length, { signal: options.signal });
      // Stopped during the test evaluation: the last epoch's checkpoint stands; --resume evaluates and exports.
      if (options.signal?.aborted) return stopped();
      logEvent(
        log,
        'evaluation',
        { split: 'test', loss: test.loss, accuracy: test.accuracy, n: test.n, classNames: dataset.classNames, confusion: test.confusion },
        `test accuracy ${(test.accuracy * 100).toFixed(2)} % on ${test.n} samples`,
      );
    }
    if (options.signal?.aborted) return stopped();
    const modelDir = path.join(outputDir, 'model');
    await guardWrite(() => saveModel(model, modelDir, { classNames: dataset.classNames, ...samplePreparation(job.data) }));
    const seconds = (performance.now() - started) / 1000;
    logEvent(
      log,
      'job_end',
      { status: 'completed', epochs: result.history.length, steps: result.steps, seconds, testAccuracy: test?.accuracy, modelDir },
      `job ${job.name} ${result.status} in ${seconds.toFixed(1)} s; model saved to ${modelDir}`,
    );
    return { fit: result, test, seconds, modelDir, checkpoint: checkpointFile };
  } finally {
    trainer?.optimizer.dispose();
    await dataset.close();
  }
}
