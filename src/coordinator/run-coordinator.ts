import type * as tf from '@tensorflow/tfjs';
import { DroverError } from '../errors.ts';
import type { Dataset } from '../data/types.ts';
import type { BackendChoice } from '../model/backend.ts';
import { initBackend } from '../model/backend.ts';
import { buildReplicaModel } from '../model/replica-model.ts';
import { weightManifest } from '../model/weights.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Trainer } from '../train/trainer.ts';
import type { Job } from '../job/job-file.ts';
import { openJobDataset } from '../data/open.ts';
import { workerSamples } from '../data/shards/index.ts';
import { finishJob, jobModelLabel, jobOutputDir, jobStartFields, startRun, trainPhase, trainPhases, type RunStart } from '../job/job-runner.ts';
import type { TrainingResult } from '../job/training-loop.ts';
import type { ReplicaSpec } from '../job/replica-spec.ts';
import { jobModelSpec } from '../job/job-model-spec.ts';
import { defaultClusterSpec, type ClusterSpec } from '../job/cluster-spec.ts';
import type { EvaluationMetrics } from '../job/step-engine.ts';
import { Coordinator } from './coordinator.ts';
import { PhaseHost } from './phase-host.ts';
import { startCoordinatorServer } from './server.ts';

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

export interface CoordinatorRunResult extends TrainingResult {
  jobId: string;
  port: number;
  test?: EvaluationMetrics;
  modelDir?: string;
  seconds: number;
}

type Server = Awaited<ReturnType<typeof startCoordinatorServer>>;

/**
 * `drover coordinator`: opens the job's data, builds the model (or restores the last
 * checkpoint), serves workers, trains (the training loop over a Coordinator, the engine whose
 * steps workers compute), evaluates on the test split, exports the model, and dismisses the
 * workers. A transfer job with `fineTune` trains in two phases (src/job/job-runner.ts), each
 * with its own Coordinator behind one server: the trainable weights change, so workers are sent
 * back to rejoin and rebuild their replica. Every start has a close: the server, the workers'
 * sessions and the dataset are released however it ends.
 */
export async function runCoordinator(options: CoordinatorRunOptions): Promise<CoordinatorRunResult> {
  const { job, log, signal } = options;
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
  let server: Server | undefined;
  let coordinator: Coordinator | undefined;
  let run: RunStart | undefined;
  try {
    model = await buildReplicaModel(jobModelSpec(job, dataset, null));
    const jobModel = model;
    run = await startRun(job, jobOutputDir(job), options.resume, log);
    const jobRun = run;
    const { jobId } = run;
    const host = new PhaseHost(jobId, token);
    if (!token) log.warn({}, 'no cluster.token (or DROVER_TOKEN): any process that reaches the port can join this job');
    // The first phase's coordinator is served before the server starts; the job is announced once it listens.
    const listen = async (): Promise<Server> => {
      const failOnAbort = (): void => {
        if (signal?.reason instanceof DroverError) coordinator?.fail(signal.reason);
      };
      if (signal?.aborted) failOnAbort();
      signal?.addEventListener('abort', failOnAbort, { once: true });
      // A worker's event loop is blocked while it computes: a keepalive ping may wait that long
      // for its answer. Longer than the step deadline would not help: the deadline evicts first.
      const keepaliveTimeoutMs = Math.max(20_000, cluster.stepDeadlineMs);
      const listening = await startCoordinatorServer(host, { host: cluster.host, port: cluster.port, tls: cluster.tls, keepaliveTimeMs: 15_000, keepaliveTimeoutMs, log });
      // Health: the job is loaded and workers may join; NOT_SERVING once it drains (Ctrl-C, SIGTERM).
      if (!signal?.aborted) {
        listening.setServing(true);
        signal?.addEventListener('abort', () => listening.setServing(false), { once: true });
      }
      log.info({ host: cluster.host, port: listening.port, jobId, tls: cluster.tls !== undefined }, `coordinator of job ${jobId} listening on ${cluster.host}:${listening.port}`);
      options.onListening?.({ port: listening.port, jobId });
      const label = jobModelLabel(job);
      const resumed = jobRun.resumed?.checkpoint;
      logEvent(log, 'job_start', {
        job: jobId,
        mode: 'distributed',
        ...jobStartFields(job, { backend: backend.description, model: jobModel, label, dataset, epochs: jobRun.totalEpochs, replicas: cluster.minWorkers }),
        ...(resumed ? { resumedFrom: { epoch: resumed.state.epoch, step: resumed.state.step } } : {}),
      }, `job ${jobId}: ${label} on ${dataset.name} with workers, coordinator on ${backend.description}${resumed ? ` (resumed at step ${resumed.state.step})` : ''}`);
      return listening;
    };

    const phases = await trainPhases({
      run,
      model,
      log,
      seededDropout: false,
      train: async (setup) => {
        const { phase, phaseStart, resume } = setup;
        const replicaSpec: ReplicaSpec = {
          jobName: job.name,
          model: jobModelSpec(job, dataset, phase.trainableFrom),
          weights: weightManifest(jobModel).map((w) => ({ name: w.name, shape: w.shape, trainable: w.trainable })),
          samples: workerSamples(dataset, cluster.dataTransport, job.data),
        };
        const previous = coordinator;
        const engine = new Coordinator({
          jobId,
          cluster,
          token,
          dataset,
          trainer: setup.trainer,
          replicaSpec,
          stepsDone: resume?.state.step ?? phaseStart.step,
          log,
        });
        coordinator = engine;
        host.serve(engine);
        // The last phase's workers rejoin at once, and get this phase's replica spec.
        await previous?.dismissWorkers('the fine-tuning phase starts', false, true);
        server ??= await listen();
        try {
          return await trainPhase(engine, setup, { run: jobRun, dataset, log, signal });
        } finally {
          engine.endTraining();
        }
      },
    });
    trainer = phases.trainer;
    const last = coordinator!;
    // Training is over: test, export and dismissal follow, no worker can join any more.
    server?.setServing(false);
    const finished = await finishJob({
      run,
      result: phases.result,
      engine: last,
      model,
      dataset,
      log,
      signal,
      started,
      name: jobId,
      beforeEnd: (status) => last.dismissWorkers(status === 'stopped' ? 'the coordinator was stopped' : 'job completed', status !== 'stopped'),
    });
    return {
      ...phases.result,
      status: finished.status,
      jobId,
      port: server!.port,
      ...(finished.test ? { test: finished.test } : {}),
      ...(finished.modelDir ? { modelDir: finished.modelDir } : {}),
      seconds: finished.seconds,
    };
  } catch (error) {
    const droverError = error instanceof DroverError ? error : undefined;
    logEvent(log, 'job_end', {
      status: 'failed',
      epochs: run?.saved.epoch ?? 0,
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
