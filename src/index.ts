/**
 * drover's public API: what a TypeScript program needs to train, load and watch models.
 * runJob and runCoordinator write into `job.output.dir` itself (checkpoint.drover, model/,
 * phase.json): for the CLI's layout, one folder per run and `latest` (README: Stopping and
 * resuming), open the run with openRunFolder and run the job with output.dir = run.dir.
 */
export * from './errors.ts';
export { parseJob, loadJobFile, jobSchema, type Job, type JobInput } from './job/job-file.ts';
export { runJob, type JobResult, type RunJobOptions } from './job/run-job.ts';
export { openJobDataset } from './job/job-dataset.ts';
export { openRunFolder, latestRunId, LATEST, type RunFolder } from './train/run-folder.ts';
export { runTrainingLoop, type TrainingLoopOptions, type TrainingResult, type TrainingProgress, type EpochRecord } from './job/training-loop.ts';
export { InProcessEngine } from './job/in-process-engine.ts';
export type { StepEngine, StepContext, StepOutcome, StepTiming, EvaluationMetrics } from './job/step-engine.ts';
export { Trainer, type GradientResult, type StepMetrics, type PredictionResult } from './train/trainer.ts';
export { evaluateSplit } from './job/split-evaluation.ts';
export { createOptimizer, optimizerSpecSchema, type Optimizer, type OptimizerSpec } from './train/optimizers.ts';
export { learningRateAt, scheduleSpecSchema, type ScheduleSpec } from './train/schedule.ts';
export { initBackend, activeBackend, type BackendChoice, type BackendInfo } from './model/backend.ts';
export { listGpuAdapters, type GpuAdapterEntry, type WebGpuAdapterInfo } from './model/webgpu.ts';
export { buildScratchModel, countParams } from './model/build.ts';
export { PRESETS, PRESET_NAMES, type PresetName } from './model/presets.ts';
export { buildTransferModel, unfreezeFrom, transferSpecSchema, type TransferSpec } from './model/transfer.ts';
export { saveModel, loadModel, type LoadedModel } from './model/export.ts';
export { readWeights, writeWeights, weightManifest, type WeightEntry, type WeightSet } from './model/weights.ts';
export { openDataset, createSampleDecoder } from './data/open.ts';
export { datasetSpecSchema, type DatasetSpec } from './data/spec.ts';
export { openIdxDataset } from './data/idx.ts';
export { Sampler, proportionalSizes } from './data/sampler.ts';
export { prefetch } from './data/prefetch.ts';
export type { Batch, Dataset, DataSplit, InputShape } from './data/types.ts';
export { createRunFeed } from './telemetry/feed.ts';
export { startDashboard } from './telemetry/dashboard.ts';
export { writeReport } from './telemetry/report.ts';
export { logEvent, parseLogLine, type DroverEvent } from './telemetry/events.ts';
export { startMetricsServer, CoordinatorMetrics, type MetricsServer, type MetricsServerOptions } from './telemetry/metrics.ts';
export { runCoordinator, type CoordinatorRunOptions, type CoordinatorRunResult } from './coordinator/run-coordinator.ts';
export { jobOutputDir } from './job/job-runner.ts';
export { clusterSpecSchema, type ClusterSpec, type ClusterSpecInput } from './job/cluster-spec.ts';
export { runWorker, type WorkerOptions, type WorkerResult } from './worker/run-worker.ts';
export { resolveCoordinatorAddress, type CoordinatorAddress, type CoordinatorAddressSource } from './worker/coordinator-address.ts';
export { runLocalCluster, type LocalClusterOptions } from './launch/local-workers.ts';
