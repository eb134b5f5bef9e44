import type { Dataset } from '../../data/types.ts';
import { ConfigError } from '../../errors.ts';
import type { Job } from '../../job/job-file.ts';
import { jobModelSpec } from '../../job/job-model-spec.ts';
import type { PhaseSetup } from '../../job/job-runner.ts';
import type { PhaseEngines } from '../../job/phase-engines.ts';
import { readWeights, writeWeights } from '../../model/weights.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { ReplicaThread } from './replica-thread-handle.ts';
import { SharedGradients } from './shared-gradients.ts';
import { StepBarrier } from './step-barrier.ts';
import { ThreadsEngine } from './threads-engine.ts';

export interface ThreadReplicasOptions {
  replicas: number;
  job: Job;
  dataset: Dataset;
  log: Logger;
  /** The backend this process started (each thread starts the same, on one thread of its own). */
  backend: string;
}

/** Backends a replica thread can run: the CPU ones (a GPU worker is a process: --gpus). */
const THREAD_BACKENDS = new Set(['wasm', 'cpu']);

/**
 * `drover train --workers N` on this machine: N replica threads in this process, one per core,
 * each with its own tfjs backend on one thread. Data parallelism needs no intra-op threading,
 * which the wasm backend does poorly, and threads share memory, so gradients are averaged
 * without serialising or sending a byte (issue #13 measured one process per core at 1.8x one
 * core's img/s with nothing exchanged, and local worker processes over gRPC at 0.6-0.9x).
 */
export class ThreadReplicas implements PhaseEngines {
  /** Where the threads meet in a step, for the whole job (phases change the model, not the replicas). */
  private readonly barrier: StepBarrier;

  private constructor(
    private readonly options: ThreadReplicasOptions,
    private readonly threads: ReplicaThread[],
  ) {
    this.barrier = StepBarrier.allocate(threads.length);
    // A thread that dies mid-step never arrives: the others must stop waiting for it.
    for (const thread of threads) thread.onDeath(() => this.barrier.abort());
  }

  static start(options: ThreadReplicasOptions): ThreadReplicas {
    if (!THREAD_BACKENDS.has(options.backend)) {
      throw new ConfigError(
        `--workers ${options.replicas} trains replica threads on the wasm or cpu backend, and this job runs on ${options.backend}: add --processes (one worker process each), --backend wasm, or for GPUs --gpus`,
        'backend',
      );
    }
    const threads: ReplicaThread[] = [];
    try {
      for (let rank = 0; rank < options.replicas; rank++) threads.push(new ReplicaThread(rank, options.backend));
    } catch (error) {
      for (const thread of threads) void thread.close();
      throw error;
    }
    return new ThreadReplicas(options, threads);
  }

  get replicas(): number {
    return this.threads.length;
  }

  get description(): string {
    return `${this.threads.length} replica threads`;
  }

  async open(setup: PhaseSetup): Promise<ThreadsEngine> {
    const { job, dataset, log } = this.options;
    const { trainer } = setup;
    const weights = await readWeights(trainer.model);
    const state = await trainer.optimizer.getState();
    const model = jobModelSpec(job, dataset, setup.phase.trainableFrom);
    // Each replica draws its own dropout masks (its own seed per phase), as separate workers would.
    const built = await Promise.all(this.threads.map((thread) => thread.call({
      kind: 'phase',
      model: { ...model, seed: model.seed + setup.index + 1009 * thread.rank },
      manifest: weights.manifest,
      weights: weights.values,
      optimizerJson: JSON.stringify(trainer.optimizer.spec),
      // A fresh optimizer has nothing to restore (and an unbound one cannot take slots).
      ...(state.iterations > 0 || state.slots.length > 0 ? { optimizerState: state } : {}),
      passesDone: setup.resume ? setup.resume.state.step - setup.phaseStart.step : 0,
    })));
    const shared = SharedGradients.allocate(built[0]!.sharedLength, this.threads.length);
    await Promise.all(this.threads.map((thread) => thread.call({ kind: 'share', shared: shared.buffer, length: shared.length, barrier: this.barrier.buffer, replicas: shared.replicas })));
    return new ThreadsEngine({
      threads: this.threads,
      manifest: built[0]!.manifest,
      train: dataset.train,
      classes: dataset.classNames.length,
      log,
      settle: async (settled, optimizer) => {
        writeWeights(trainer.model, settled);
        trainer.modelOptimizer.bind();
        trainer.optimizer.setState(optimizer);
      },
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((thread) => thread.close()));
  }
}
