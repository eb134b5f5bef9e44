import type * as tf from '@tensorflow/tfjs';
import type { PreprocessSpec } from '../data/spec.ts';
import type { Dataset } from '../data/types.ts';
import { openJobDataset } from '../data/open.ts';
import type { BackendChoice } from '../model/backend.ts';
import { initBackend } from '../model/backend.ts';
import { buildScratchModel } from '../model/build.ts';
import { PRESETS, type PresetName } from '../model/presets.ts';
import { buildTransferModel } from '../model/transfer.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Trainer } from '../train/trainer.ts';
import { InProcessEngine } from './in-process-engine.ts';
import type { Job } from './job-file.ts';
import { finishJob, jobModelLabel, jobOutputDir, jobStartFields, samplePreparation, startRun, trainPhase, trainPhases } from './job-runner.ts';
import type { PhaseEngines } from './phase-engines.ts';
import type { EvaluationMetrics, StepEngine } from './step-engine.ts';
import type { TrainingResult } from './training-loop.ts';

export interface RunJobOptions {
  log: Logger;
  /** Finish the current step, checkpoint, and stop without exporting (Ctrl-C, SIGTERM). */
  signal?: AbortSignal;
  /** Continue from the job's last checkpoint (<output dir>/checkpoint.drover). */
  resume?: boolean;
  /**
   * Takes the steps elsewhere than in this thread (`--workers N`: replica threads), given what
   * the job runs on; default: this thread.
   */
  engines?: (context: { job: Job; dataset: Dataset; log: Logger; backend: string }) => PhaseEngines;
}

export interface JobResult {
  fit: TrainingResult;
  test?: EvaluationMetrics;
  seconds: number;
  /** Where the trained model was exported (tfjs LayersModel + class names); none when stopped. */
  modelDir?: string;
  /** The last checkpoint written. */
  checkpoint: string;
}

interface BuiltModel {
  model: tf.LayersModel;
  /** Preprocessing the backbone expects, for transfer models. */
  expects?: PreprocessSpec;
}

async function buildJobModel(job: Job, dataset: Dataset): Promise<BuiltModel> {
  const classes = dataset.classNames.length;
  if (job.model.transfer) {
    const built = await buildTransferModel(job.model.transfer, { inputShape: dataset.inputShape, classes, seed: job.seed });
    return { model: built.model, expects: built.preprocess };
  }
  const layers = job.model.preset ? PRESETS[job.model.preset as PresetName].layers : job.model.layers!;
  return { model: buildScratchModel({ layers, inputShape: dataset.inputShape, classes, l2: job.model.l2, seed: job.seed }) };
}

/**
 * `drover train`: runs a whole job in this process: backend, data, model, the training loop over
 * an in-process engine (and, for transfer jobs, the fine-tuning phase), test evaluation, model
 * export. Checkpoints in the coordinator's format (each epoch, every train.checkpointEvery steps,
 * and on stop); with `resume` it continues from the last one exactly. Stopped (signal), it
 * exports nothing.
 */
export async function runJob(job: Job, options: RunJobOptions): Promise<JobResult> {
  const { log, signal } = options;
  const started = performance.now();
  const backend = await initBackend(job.backend as BackendChoice, log, { threads: job.threads });
  const dataset = await openJobDataset(job.data, log);
  let trainer: Trainer | undefined;
  let engines: PhaseEngines | undefined;
  try {
    engines = options.engines?.({ job, dataset, log, backend: backend.name });
    const { model, expects } = await buildJobModel(job, dataset);
    const label = jobModelLabel(job);
    const { preprocess } = samplePreparation(job.data);
    if (expects !== undefined && JSON.stringify(expects) !== JSON.stringify(preprocess)) {
      log.warn({ expects, preprocess }, `the backbone expects preprocess ${JSON.stringify(expects)} but data.preprocess is ${JSON.stringify(preprocess)}`);
    }
    const run = await startRun(job, jobOutputDir(job), options.resume, log);
    const resume = run.resumed?.checkpoint;
    logEvent(
      log,
      'job_start',
      {
        job: job.name,
        mode: 'single',
        ...(engines ? { replicas: engines.replicas } : {}),
        ...jobStartFields(job, { backend: backend.description, model, label, dataset, epochs: run.totalEpochs, replicas: engines?.replicas }),
        ...(resume ? { resumedFrom: { epoch: resume.state.epoch, step: resume.state.step } } : {}),
      },
      `job ${job.name}: ${label} on ${dataset.name} (${dataset.train.length} training samples) with ${backend.description}${engines ? ` on ${engines.description}` : ''}${resume ? ` (resumed at step ${resume.state.step})` : ''}`,
    );
    const classes = dataset.classNames.length;
    // The last phase's engine evaluates the test split (replica threads share it out).
    let lastEngine: StepEngine | undefined;
    const phases = await trainPhases({
      run,
      model,
      log,
      seededDropout: true,
      train: async (setup) => {
        if (!engines) return trainPhase(new InProcessEngine(setup.trainer, dataset.train, classes), setup, { run, dataset, log, signal });
        const engine = await engines.open(setup);
        lastEngine = engine;
        const result = await trainPhase(engine, setup, { run, dataset, log, signal });
        await engine.settle();
        return result;
      },
    });
    trainer = phases.trainer;
    const finished = await finishJob({
      run,
      result: phases.result,
      engine: lastEngine ?? new InProcessEngine(trainer, dataset.train, classes),
      model,
      dataset,
      log,
      signal,
      started,
      name: job.name,
    });
    return {
      fit: { ...phases.result, status: finished.status },
      ...(finished.test ? { test: finished.test } : {}),
      seconds: finished.seconds,
      ...(finished.modelDir ? { modelDir: finished.modelDir } : {}),
      checkpoint: run.checkpointFile,
    };
  } finally {
    await engines?.close();
    trainer?.optimizer.dispose();
    await dataset.close();
  }
}
