import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { CheckpointError, ConfigError, DroverError } from '../errors.ts';
import type { Job } from '../config/job.ts';
import { InMemorySplit } from '../data/idx.ts';
import type { Dataset } from '../data/types.ts';
import type { BackendChoice } from '../model/backend.ts';
import { initBackend } from '../model/backend.ts';
import { buildScratchModel, countParams } from '../model/build.ts';
import { saveModel } from '../model/export.ts';
import { PRESETS, type PresetName } from '../model/presets.ts';
import { weightManifest, writeWeights } from '../model/weights.ts';
import type { LayerSpecInput } from '../model/layer-spec.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { openJobDataset, samplePreparation } from '../train/run-job.ts';
import { Trainer } from '../train/trainer.ts';
import type { ReplicaSpec } from '../wire/replica-spec.ts';
import { checkpointPath, loadCheckpoint, type Checkpoint } from './checkpoint.ts';
import { defaultClusterSpec, type ClusterSpec } from './cluster-spec.ts';
import { Coordinator, type CoordinatorResult } from './coordinator.ts';
import type { ShardedEvaluation } from './evaluation.ts';
import { startCoordinatorServer } from './server.ts';
import type * as tf from '@tensorflow/tfjs';

export interface CoordinatorRunOptions {
  job: Job;
  /** Overrides cluster.port (0: any free port, see onListening). */
  port?: number;
  /** Overrides cluster.host. */
  host?: string;
  /** Overrides cluster.minWorkers. */
  minWorkers?: number;
  /** Overrides cluster.token (default: cluster.token, then DROVER_TOKEN). */
  token?: string;
  /** Continue from the job's last checkpoint (output.dir/checkpoint.drover). */
  resume?: boolean;
  /** The opened dataset (tests, local clusters that opened it already); default: the job's data spec. */
  dataset?: Dataset;
  log: Logger;
  /**
   * Finish the current step, checkpoint, and stop. Aborted with a DroverError as its reason,
   * the job fails with that error at once instead (a local cluster whose workers crashed).
   */
  signal?: AbortSignal;
  /** Called once the server listens, with the bound port and the job id. */
  onListening?: (info: { port: number; jobId: string }) => void;
}

export interface CoordinatorRunResult extends CoordinatorResult {
  jobId: string;
  port: number;
  test?: ShardedEvaluation;
  modelDir?: string;
  seconds: number;
}

/** Where a job writes checkpoints, the exported model and logs. */
export function jobOutputDir(job: Job): string {
  return job.output.dir ?? path.join('runs', job.name);
}

/**
 * `drover coordinator`: opens the job's data, builds the model (or restores the last
 * checkpoint), serves workers, trains, evaluates on the test split, exports the model, and
 * dismisses the workers. Every start has a close: the server, the workers' sessions and the
 * dataset are released however it ends.
 */
export async function runCoordinator(options: CoordinatorRunOptions): Promise<CoordinatorRunResult> {
  const { job, log } = options;
  const started = performance.now();
  const cluster: ClusterSpec = {
    ...(job.cluster ?? defaultClusterSpec()),
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.minWorkers !== undefined ? { minWorkers: options.minWorkers } : {}),
  };
  if (job.model.transfer) {
    throw new ConfigError(
      'model.transfer: distributed training of transfer models is not supported yet (workers would each need the backbone and the fine-tuning phase); train it in one process (drover train without --workers)',
      'model.transfer',
    );
  }
  const token = options.token ?? cluster.token ?? process.env.DROVER_TOKEN;
  const backend = await initBackend(job.backend as BackendChoice, log, { threads: job.threads });
  const ownDataset = options.dataset === undefined;
  const dataset = options.dataset ?? (await openJobDataset(job.data, log));
  let model: tf.LayersModel | undefined;
  let trainer: Trainer | undefined;
  let server: Awaited<ReturnType<typeof startCoordinatorServer>> | undefined;
  let coordinator: Coordinator | undefined;
  try {
    const layers: LayerSpecInput[] = job.model.preset ? PRESETS[job.model.preset as PresetName].layers : job.model.layers!;
    model = buildScratchModel({ layers, inputShape: dataset.inputShape, classes: dataset.classNames.length, l2: job.model.l2, seed: job.seed });
    trainer = new Trainer(model, { optimizer: job.train.optimizer });
    const outputDir = jobOutputDir(job);
    const resume = options.resume ? await restore(checkpointPath(outputDir), job, trainer) : undefined;
    const jobId = resume?.state.jobId ?? `${job.name}-${randomBytes(3).toString('hex')}`;
    const replicaSpec: ReplicaSpec = {
      jobName: job.name,
      model: { kind: 'scratch', layers: layers as ReplicaSpec['model']['layers'], inputShape: dataset.inputShape, classes: dataset.classNames.length, l2: job.model.l2, seed: job.seed },
      weights: weightManifest(model).map((w) => ({ name: w.name, shape: w.shape, trainable: w.trainable })),
      samples: samplesSpec(job, dataset, cluster),
    };
    coordinator = new Coordinator({
      jobId,
      jobName: job.name,
      cluster,
      token,
      dataset,
      trainer,
      replicaSpec,
      epochs: job.train.epochs,
      batchSize: job.train.batchSize,
      seed: job.seed,
      schedule: job.train.schedule,
      learningRate: job.train.optimizer.learningRate,
      logEvery: job.train.logEvery,
      earlyStopping: job.train.earlyStopping,
      outputDir,
      resume,
      log,
      signal: options.signal,
    });
    const failOnAbort = (): void => {
      if (options.signal?.reason instanceof DroverError) coordinator?.fail(options.signal.reason);
    };
    if (options.signal?.aborted) failOnAbort();
    options.signal?.addEventListener('abort', failOnAbort, { once: true });
    if (!token) log.warn({}, 'no cluster.token (or DROVER_TOKEN): any process that reaches the port can join this job');
    // A worker's event loop is blocked while it computes: a keepalive ping may wait that long
    // for its answer. Longer than the step deadline would not help: the deadline evicts first.
    const keepaliveTimeoutMs = Math.max(20_000, cluster.stepDeadlineMs);
    server = await startCoordinatorServer(coordinator, { host: cluster.host, port: cluster.port, tls: cluster.tls, keepaliveTimeMs: 15_000, keepaliveTimeoutMs, log });
    const port = server.port;
    log.info({ host: cluster.host, port, jobId, tls: cluster.tls !== undefined }, `coordinator of job ${jobId} listening on ${cluster.host}:${port}`);
    options.onListening?.({ port, jobId });
    const stepsPerEpoch = Math.ceil(dataset.train.length / job.train.batchSize);
    logEvent(log, 'job_start', {
      job: jobId,
      mode: 'distributed',
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
      ...(resume ? { resumedFrom: { epoch: resume.state.epoch, step: resume.state.step } } : {}),
    }, `job ${jobId}: ${job.model.preset ?? 'layer list'} on ${dataset.name} with workers, coordinator on ${backend.description}${resume ? ` (resumed at step ${resume.state.step})` : ''}`);

    const result = await coordinator.run();
    let test: ShardedEvaluation | undefined;
    let modelDir: string | undefined;
    if (result.status !== 'stopped') {
      modelDir = path.join(outputDir, 'model');
      await saveModel(model, modelDir, { classNames: dataset.classNames, ...samplePreparation(job.data), info: { job: job.name, jobId, steps: result.steps, epochs: result.history.length } });
      if (dataset.test) {
        test = await coordinator.evaluateSplit('test', dataset.test, result.history.length);
        logEvent(log, 'evaluation', { split: 'test', loss: test.loss, accuracy: test.accuracy, n: test.n, classNames: dataset.classNames, confusion: test.confusion },
          `test accuracy ${(test.accuracy * 100).toFixed(2)} % on ${test.n} samples`);
      }
    }
    await coordinator.dismissWorkers(result.status === 'stopped' ? 'the coordinator was stopped' : 'job completed', result.status !== 'stopped');
    const seconds = (performance.now() - started) / 1000;
    logEvent(log, 'job_end', {
      status: result.status === 'stopped' ? 'stopped' : 'completed',
      epochs: result.history.length,
      steps: result.steps,
      seconds,
      ...(test ? { testAccuracy: test.accuracy } : {}),
      ...(modelDir ? { modelDir } : {}),
    }, `job ${jobId} ${result.status} in ${seconds.toFixed(1)} s`);
    return { ...result, jobId, port, test, modelDir, seconds };
  } catch (error) {
    const droverError = error instanceof DroverError ? error : undefined;
    logEvent(log, 'job_end', {
      status: 'failed',
      epochs: 0,
      steps: coordinator?.stepsDone ?? 0,
      seconds: (performance.now() - started) / 1000,
      error: error instanceof Error ? error.message : String(error),
      ...(droverError ? { code: droverError.code } : {}),
    });
    await coordinator?.dismissWorkers(`the job failed: ${error instanceof Error ? error.message : String(error)}`, false).catch(() => {});
    throw error;
  } finally {
    await server?.close();
    trainer?.optimizer.dispose();
    model?.dispose();
    if (ownDataset) await dataset.close();
  }
}

/** How workers get their samples: raw pixels for in-memory splits, the data pipeline otherwise, or their own mounts. */
function samplesSpec(job: Job, dataset: Dataset, cluster: ClusterSpec): ReplicaSpec['samples'] {
  const openedSpec = (dataset as Dataset & { spec?: unknown }).spec;
  if (cluster.dataTransport === 'shared') {
    return openedSpec !== undefined
      ? { decoder: 'pipeline', transport: 'shared', dataset: openedSpec, inputShape: dataset.inputShape }
      : { decoder: 'job-data', transport: 'shared', data: job.data as Record<string, unknown> };
  }
  if (dataset.train instanceof InMemorySplit) return { decoder: 'raw-u8', transport: 'stream', shape: dataset.inputShape };
  if (openedSpec === undefined) {
    throw new ConfigError(`dataset ${dataset.name} has no spec a worker could decode its samples with; use cluster.dataTransport: shared`, 'cluster.dataTransport');
  }
  return { decoder: 'pipeline', transport: 'stream', dataset: openedSpec, inputShape: dataset.inputShape };
}

/** Loads the last checkpoint into the model and optimizer. */
async function restore(file: string, job: Job, trainer: Trainer): Promise<Checkpoint> {
  const checkpoint = await loadCheckpoint(file);
  if (checkpoint.state.jobName !== job.name) {
    throw new CheckpointError(`${file} belongs to job "${checkpoint.state.jobName}", not "${job.name}"`, file);
  }
  try {
    writeWeights(trainer.model, checkpoint.weights);
    type LayerVariable = { read(): tf.Variable };
    trainer.optimizer.bind((trainer.model.trainableWeights as unknown as LayerVariable[]).map((w) => w.read()));
    trainer.optimizer.setState(checkpoint.optimizer);
  } catch (cause) {
    throw new CheckpointError(`${file} does not fit this job's model: ${(cause as Error).message}`, file, { cause });
  }
  return checkpoint;
}
