import { access } from 'node:fs/promises';
import type { Job, DataSpec } from '../config/job.ts';
import type { Dataset } from '../data/types.ts';
import { FASHION_MNIST_DIR, openIdxDataset } from '../data/idx.ts';
import { openShapesDataset } from '../data/shapes.ts';
import type { BackendChoice } from '../model/backend.ts';
import { initBackend } from '../model/backend.ts';
import { buildScratchModel, countParams } from '../model/build.ts';
import { PRESETS, type PresetName } from '../model/presets.ts';
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
    case 'idx':
      return openIdxDataset(spec);
    case 'shapes':
      return openShapesDataset(spec);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Runs a whole job in this process: backend, data, model, training, test evaluation. */
export async function runJob(job: Job, options: RunJobOptions): Promise<JobResult> {
  const { log } = options;
  const started = performance.now();
  const backend = await initBackend(job.backend as BackendChoice, log);
  const dataset = await openJobDataset(job.data, log);
  try {
    const layers = job.model.preset ? PRESETS[job.model.preset as PresetName].layers : job.model.layers!;
    const model = buildScratchModel({
      layers,
      inputShape: dataset.inputShape,
      classes: dataset.classNames.length,
      l2: job.model.l2,
      seed: job.seed,
    });
    const trainer = new Trainer(model, { optimizer: job.train.optimizer });
    const stepsPerEpoch = Math.ceil(dataset.train.length / job.train.batchSize);
    logEvent(
      log,
      'job_start',
      {
        job: job.name,
        mode: 'single',
        backend: backend.description,
        model: job.model.preset ?? 'layers',
        params: countParams(model),
        dataset: dataset.name,
        classNames: dataset.classNames,
        trainSize: dataset.train.length,
        valSize: dataset.validation?.length ?? 0,
        epochs: job.train.epochs,
        batchSize: job.train.batchSize,
        optimizer: job.train.optimizer.name,
        stepsPerEpoch,
      },
      `job ${job.name}: ${job.model.preset ?? 'layer list'} on ${dataset.name} (${dataset.train.length} training samples) with ${backend.description}`,
    );
    const result = await fit({
      trainer,
      dataset,
      epochs: job.train.epochs,
      batchSize: job.train.batchSize,
      seed: job.seed,
      schedule: job.train.schedule,
      learningRate: job.train.optimizer.learningRate,
      logEvery: job.train.logEvery,
      earlyStopping: job.train.earlyStopping,
      log,
      signal: options.signal,
    });
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
    const seconds = (performance.now() - started) / 1000;
    logEvent(
      log,
      'job_end',
      { status: result.status === 'stopped' ? 'stopped' : 'completed', epochs: result.history.length, steps: result.steps, seconds, testAccuracy: test?.accuracy },
      `job ${job.name} ${result.status} in ${seconds.toFixed(1)} s`,
    );
    return { fit: result, test, seconds };
  } finally {
    await dataset.close();
  }
}
