import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { CheckpointError, DroverError } from '../errors.ts';
import type { Job } from '../job/job-file.ts';
import { guardWrite } from '../io/write-guard.ts';
import type { Dataset } from '../data/types.ts';
import type { BackendChoice } from '../model/backend.ts';
import { initBackend } from '../model/backend.ts';
import { buildReplicaModel } from '../model/replica-model.ts';
import { unfreezeFrom } from '../model/transfer.ts';
import { saveModel } from '../model/export.ts';
import { PRESETS, type PresetName } from '../model/presets.ts';
import { readWeights, weightManifest } from '../model/weights.ts';
import type { LayerSpecInput } from '../model/layer-spec.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { jobStartFields, samplePreparation } from '../train/run-job.ts';
import { openJobDataset } from '../data/open.ts';
import { workerSamples } from '../data/shards/index.ts';
import { Trainer } from '../train/trainer.ts';
import type { ReplicaModelSpec, ReplicaSpec } from '../job/replica-spec.ts';
import { checkpointPath, removeStaleTemporaries, saveCheckpoint } from '../job/checkpoint.ts';
import { defaultClusterSpec, type ClusterSpec } from '../job/cluster-spec.ts';
import { Coordinator, type CoordinatorResult } from './coordinator.ts';
import type { ShardedEvaluation } from './evaluation.ts';
import { PhaseHost } from './phase-host.ts';
import { clearPhaseMarker, jobPhases, phaseBoundary, writePhaseMarker, type PhaseStart } from '../job/phases.ts';
import { restoreCheckpoint, resumePoint } from '../job/resume.ts';
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
  /**
   * Continue from the job's last checkpoint (output.dir/checkpoint.drover). 'auto': when one
   * exists, else start fresh (a restarted pod runs the same command either way).
   */
  resume?: boolean | 'auto';
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

/**
 * The folder a job's checkpoint, exported model and logs go to: output.dir as given (the CLI
 * sets it to the run's own folder, see openRunFolder), else runs/<job name>.
 */
export function jobOutputDir(job: Job): string {
  return job.output.dir ?? path.join('runs', job.name);
}

/**
 * `drover coordinator`: opens the job's data, builds the model (or restores the last
 * checkpoint), serves workers, trains, evaluates on the test split, exports the model, and
 * dismisses the workers. A transfer job with `fineTune` trains in two phases (src/coordinator/
 * phases.ts), each with its own Coordinator behind one server: the trainable weights change,
 * so workers are sent back to rejoin and rebuild their replica. Every start has a close: the
 * server, the workers' sessions and the dataset are released however it ends.
 */
export async function runCoordinator(options: CoordinatorRunOptions): Promise<CoordinatorRunResult> {
  const { job, log } = options;
  const started = performance.now();
  const cluster: ClusterSpec = {
    ...(job.cluster ?? defaultClusterSpec()),
    // One interval for every kind of run (cluster.checkpointEvery is its deprecated alias).
    checkpointEvery: job.train.checkpointEvery,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.minWorkers !== undefined ? { minWorkers: options.minWorkers } : {}),
  };
  const token = options.token ?? cluster.token ?? process.env.DROVER_TOKEN;
  const backend = await initBackend(job.backend as BackendChoice, log, { threads: job.threads });
  const ownDataset = options.dataset === undefined;
  const dataset = options.dataset ?? (await openJobDataset(job.data, log));
  let model: tf.LayersModel | undefined;
  let trainer: Trainer | undefined;
  let server: Awaited<ReturnType<typeof startCoordinatorServer>> | undefined;
  let coordinator: Coordinator | undefined;
  try {
    const phases = jobPhases(job);
    const jobEpochs = phases.reduce((sum, phase) => sum + phase.epochs, 0);
    model = await buildReplicaModel(replicaModelSpec(job, dataset, null));
    const outputDir = jobOutputDir(job);
    for (const file of await removeStaleTemporaries(outputDir)) log.warn({ path: file }, `removed ${file}: a checkpoint half-written when an earlier run stopped`);
    const resuming = options.resume === 'auto' ? await checkpointToResume(outputDir, log) : options.resume === true;
    const resumed = resuming ? await resumePoint(outputDir, job, phases.length) : undefined;
    if (!resuming) await clearPhaseMarker(outputDir);
    const jobId = resumed?.checkpoint.state.jobId ?? `${job.name}-${randomBytes(3).toString('hex')}`;
    const host = new PhaseHost(jobId, token);
    const failOnAbort = (): void => {
      if (options.signal?.reason instanceof DroverError) coordinator?.fail(options.signal.reason);
    };
    if (!token) log.warn({}, 'no cluster.token (or DROVER_TOKEN): any process that reaches the port can join this job');

    let resume = resumed?.checkpoint;
    let phaseStart: PhaseStart = resumed?.phaseStart ?? { step: 0, epoch: 0 };
    let result: CoordinatorResult | undefined;
    for (let index = resumed?.phase ?? 0; index < phases.length; index++) {
      const phase = phases[index]!;
      if (phase.trainableFrom !== null) {
        const unfrozen = unfreezeFrom(model, phase.trainableFrom, { batchNorm: job.model.transfer!.batchNorm });
        log.info({ from: phase.trainableFrom, layers: unfrozen.length, learningRate: phase.learningRate }, `fine-tuning from ${phase.trainableFrom} (${unfrozen.length} layers) at lr ${phase.learningRate}`);
      }
      trainer?.optimizer.dispose();
      // A fresh optimizer over this phase's trainable weights, at its learning rate.
      trainer = new Trainer(model, { optimizer: { ...job.train.optimizer, learningRate: phase.learningRate } });
      if (resume && resume === resumed?.checkpoint) restoreCheckpoint(resume, resumed.file, trainer, { optimizer: resumed.optimizer });
      const replicaSpec: ReplicaSpec = {
        jobName: job.name,
        model: replicaModelSpec(job, dataset, phase.trainableFrom),
        weights: weightManifest(model).map((w) => ({ name: w.name, shape: w.shape, trainable: w.trainable })),
        samples: workerSamples(dataset, cluster.dataTransport, job.data),
      };
      const previous = coordinator;
      coordinator = new Coordinator({
        jobId,
        jobName: job.name,
        cluster,
        token,
        dataset,
        trainer,
        replicaSpec,
        epochs: phaseStart.epoch + phase.epochs,
        jobEpochs,
        phaseStart,
        batchSize: job.train.batchSize,
        seed: job.seed,
        schedule: job.train.schedule,
        learningRate: phase.learningRate,
        logEvery: job.train.logEvery,
        earlyStopping: job.train.earlyStopping,
        outputDir,
        resume,
        log,
        signal: options.signal,
      });
      host.serve(coordinator);
      // The last phase's workers rejoin at once, and get this phase's replica spec.
      await previous?.dismissWorkers('the fine-tuning phase starts', false, true);
      if (!server) {
        if (options.signal?.aborted) failOnAbort();
        options.signal?.addEventListener('abort', failOnAbort, { once: true });
        // A worker's event loop is blocked while it computes: a keepalive ping may wait that long
        // for its answer. Longer than the step deadline would not help: the deadline evicts first.
        const keepaliveTimeoutMs = Math.max(20_000, cluster.stepDeadlineMs);
        server = await startCoordinatorServer(host, { host: cluster.host, port: cluster.port, tls: cluster.tls, keepaliveTimeMs: 15_000, keepaliveTimeoutMs, log });
        // Health: the job is loaded and workers may join; NOT_SERVING once it drains (Ctrl-C, SIGTERM).
        const drain = (): void => server?.setServing(false);
        if (!options.signal?.aborted) {
          server.setServing(true);
          options.signal?.addEventListener('abort', drain, { once: true });
        }
        log.info({ host: cluster.host, port: server.port, jobId, tls: cluster.tls !== undefined }, `coordinator of job ${jobId} listening on ${cluster.host}:${server.port}`);
        options.onListening?.({ port: server.port, jobId });
        const label = job.model.transfer ? `transfer(${job.model.transfer.backbone})` : job.model.preset ?? 'layers';
        logEvent(log, 'job_start', {
          job: jobId,
          mode: 'distributed',
          ...jobStartFields(job, { backend: backend.description, model, label, dataset, epochs: jobEpochs }),
          ...(resume ? { resumedFrom: { epoch: resume.state.epoch, step: resume.state.step } } : {}),
        }, `job ${jobId}: ${label} on ${dataset.name} with workers, coordinator on ${backend.description}${resume ? ` (resumed at step ${resume.state.step})` : ''}`);
      }
      result = await coordinator.run();
      if (index + 1 === phases.length || result.status === 'stopped') break;
      // Mark the phase change first, then save its start: a crash between leaves the last
      // checkpoint at the boundary step, which --resume also reads as the next phase's start.
      phaseStart = { step: result.steps, epoch: result.history.length };
      await writePhaseMarker(outputDir, { jobId, phase: index + 1, start: phaseStart });
      resume = phaseBoundary({ jobId, jobName: job.name, seed: job.seed, steps: result.steps, history: result.history }, await readWeights(model));
      const boundary = resume;
      await guardWrite(() => saveCheckpoint(checkpointPath(outputDir), boundary));
    }
    // Training is over: export, test and dismissal follow, no worker can join any more.
    server?.setServing(false);
    if (!result || !coordinator) throw new CheckpointError(`the checkpoint in ${outputDir} is past the job's last phase: nothing to resume`, checkpointPath(outputDir));
    let test: ShardedEvaluation | undefined;
    let modelDir: string | undefined;
    if (result.status !== 'stopped') {
      const [exported, dir] = [model, path.join(outputDir, 'model')];
      const info = { job: job.name, jobId, steps: result.steps, epochs: result.history.length };
      // Guarded: a second Ctrl-C waits for both files, never pairs new weights with an old model.json.
      await guardWrite(() => saveModel(exported, dir, { classNames: dataset.classNames, ...samplePreparation(job.data), info }));
      modelDir = dir;
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
    return { ...result, jobId, port: server!.port, test, modelDir, seconds };
  } catch (error) {
    const droverError = error instanceof DroverError ? error : undefined;
    logEvent(log, 'job_end', {
      status: 'failed',
      epochs: coordinator?.epochsDone ?? 0,
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

/** What workers build: the same description the coordinator built its model from. */
function replicaModelSpec(job: Job, dataset: Dataset, trainableFrom: string | null): ReplicaModelSpec {
  const classes = dataset.classNames.length;
  if (job.model.transfer) return { kind: 'transfer', transfer: job.model.transfer, inputShape: dataset.inputShape, classes, seed: job.seed, trainableFrom };
  const layers: LayerSpecInput[] = job.model.preset ? PRESETS[job.model.preset as PresetName].layers : job.model.layers!;
  return { kind: 'scratch', layers: layers as Extract<ReplicaModelSpec, { kind: 'scratch' }>['layers'], inputShape: dataset.inputShape, classes, l2: job.model.l2, seed: job.seed };
}

/** --resume auto: whether the output folder holds a checkpoint; says which way it went. */
async function checkpointToResume(outputDir: string, log: Logger): Promise<boolean> {
  const file = checkpointPath(outputDir);
  try {
    await access(file);
  } catch {
    log.info({ resume: 'auto', checkpoint: file, resuming: false }, `--resume auto: no checkpoint at ${file}, starting the job fresh`);
    return false;
  }
  log.info({ resume: 'auto', checkpoint: file, resuming: true }, `--resume auto: resuming from ${file}`);
  return true;
}
