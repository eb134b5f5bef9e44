import { access } from 'node:fs/promises';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import type { Job, DataSpec } from '../config/job.ts';
import type { Dataset } from '../data/types.ts';
import type { PreprocessSpec, ResizeModeSpec } from '../data/spec.ts';
import { FASHION_MNIST_DIR, openIdxDataset } from '../data/idx.ts';
import { openDataset } from '../data/open.ts';
import { openShapesDataset } from '../data/shapes.ts';
import type { BackendChoice } from '../model/backend.ts';
import { initBackend } from '../model/backend.ts';
import { buildScratchModel, countParams } from '../model/build.ts';
import { saveModel } from '../model/export.ts';
import { PRESETS, type PresetName } from '../model/presets.ts';
import { buildTransferModel, unfreezeFrom } from '../model/transfer.ts';
import type { Logger } from '../telemetry/logger.ts';
import { logEvent } from '../telemetry/events.ts';
import { evaluateSplit, type Evaluation } from './evaluate.ts';
import { fit, type FitResult } from './fit.ts';
import { Trainer } from './trainer.ts';

export interface RunJobOptions {
  log: Logger;
  signal?: AbortSignal;
}

export interface JobResult {
  fit: FitResult;
  test?: Evaluation;
  seconds: number;
  /** Where the trained model was exported (tfjs LayersModel + class names). */
  modelDir?: string;
}

/** Opens the dataset a job names; `default` is Fashion-MNIST where installed, else generated shapes. */
export async function openJobDataset(spec: DataSpec, log: Logger): Promise<Dataset> {
  switch (spec.kind) {
    case 'default': {
      if (await exists(FASHION_MNIST_DIR)) return openIdxDataset({ dir: FASHION_MNIST_DIR, name: 'fashion-mnist' });
      log.info(
        { reason: `${FASHION_MNIST_DIR} not found (apt-get install dataset-fashion-mnist)` },
        'Fashion-MNIST is not installed: training on generated shapes instead',
      );
      return openShapesDataset({ perClass: 300, size: 32 });
    }
    case 'shapes':
      return openShapesDataset(spec);
    default:
      return openDataset(spec, { logger: log });
  }
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

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
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
 * the fine-tuning phase), test evaluation, model export.
 */
export async function runJob(job: Job, options: RunJobOptions): Promise<JobResult> {
  const { log } = options;
  const started = performance.now();
  const backend = await initBackend(job.backend as BackendChoice, log, { threads: job.threads });
  const dataset = await openJobDataset(job.data, log);
  try {
    const { model, label, expects } = await buildJobModel(job, dataset);
    const { preprocess } = samplePreparation(job.data);
    if (expects !== undefined && JSON.stringify(expects) !== JSON.stringify(preprocess)) {
      log.warn({ expects, preprocess }, `the backbone expects preprocess ${JSON.stringify(expects)} but data.preprocess is ${JSON.stringify(preprocess)}`);
    }
    const fineTune = job.model.transfer?.fineTune;
    const totalEpochs = job.train.epochs + (fineTune?.epochs ?? 0);
    let trainer = new Trainer(model, { optimizer: job.train.optimizer, dropoutSeed: job.seed });
    logEvent(
      log,
      'job_start',
      {
        job: job.name,
        mode: 'single',
        ...jobStartFields(job, { backend: backend.description, model, label, dataset, epochs: totalEpochs }),
      },
      `job ${job.name}: ${label} on ${dataset.name} (${dataset.train.length} training samples) with ${backend.description}`,
    );
    const phase = (epochs: number, learningRate: number, epochOffset: number, stepOffset: number): Promise<FitResult> =>
      fit({
        trainer,
        dataset,
        epochs,
        epochOffset,
        stepOffset,
        totalEpochs,
        batchSize: job.train.batchSize,
        seed: job.seed,
        schedule: job.train.schedule,
        learningRate,
        logEvery: job.train.logEvery,
        earlyStopping: job.train.earlyStopping,
        log,
        signal: options.signal,
      });
    let result = await phase(job.train.epochs, job.train.optimizer.learningRate, 0, 0);
    if (fineTune && result.status !== 'stopped') {
      const unfrozen = unfreezeFrom(model, fineTune.from, { batchNorm: job.model.transfer!.batchNorm });
      trainer.optimizer.dispose();
      // A fresh optimizer over the larger set of trainable weights, at the fine-tuning rate.
      trainer = new Trainer(model, { optimizer: { ...job.train.optimizer, learningRate: fineTune.learningRate }, dropoutSeed: job.seed + 1 });
      log.info({ from: fineTune.from, layers: unfrozen.length, learningRate: fineTune.learningRate }, `fine-tuning from ${fineTune.from} (${unfrozen.length} layers) at lr ${fineTune.learningRate}`);
      const second = await phase(fineTune.epochs, fineTune.learningRate, result.history.length, result.steps);
      result = { ...second, history: [...result.history, ...second.history] };
    }
    let test: Evaluation | undefined;
    if (dataset.test && result.status !== 'stopped') {
      test = await evaluateSplit(trainer, dataset.test, dataset.classNames.length);
      logEvent(
        log,
        'evaluation',
        { split: 'test', loss: test.loss, accuracy: test.accuracy, n: test.n, classNames: dataset.classNames, confusion: test.confusion },
        `test accuracy ${(test.accuracy * 100).toFixed(2)} % on ${test.n} samples`,
      );
    }
    const modelDir = path.join(job.output.dir ?? path.join('runs', job.name), 'model');
    await saveModel(model, modelDir, { classNames: dataset.classNames, ...samplePreparation(job.data) });
    const seconds = (performance.now() - started) / 1000;
    logEvent(
      log,
      'job_end',
      { status: result.status === 'stopped' ? 'stopped' : 'completed', epochs: result.history.length, steps: result.steps, seconds, testAccuracy: test?.accuracy, modelDir },
      `job ${job.name} ${result.status} in ${seconds.toFixed(1)} s; model saved to ${modelDir}`,
    );
    trainer.optimizer.dispose();
    return { fit: result, test, seconds, modelDir };
  } finally {
    await dataset.close();
  }
}
