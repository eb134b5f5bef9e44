/**
 * drover's public API: what a TypeScript program may rely on to run jobs, use the models they
 * export, and watch runs. Everything else under src/ is internal and may change without notice.
 *
 * runJob and runCoordinator write into `job.output.dir` itself (checkpoint.drover, model/,
 * phase.json): for the CLI's layout, one folder per run and `latest` (README: Stopping and
 * resuming), open the run with openRunFolder and run the job with output.dir = run.dir.
 */

// Errors: each kind is a class with a stable `code` (DROVER_ERR_...); all extend DroverError.
export * from './errors.ts';

// The job file.
/** Validates a job (an object as in a job file) and fills in its defaults; a ConfigError names the bad field. */
export { parseJob } from './job/job-file.ts';
/** Reads and validates a YAML or JSON job file. */
export { loadJobFile } from './job/job-file.ts';
/** The zod schema of a job file (for editors and generated docs). */
export { jobSchema } from './job/job-file.ts';
/** A validated job (Job) and what a job file may hold before defaults (JobInput). */
export type { Job, JobInput } from './job/job-file.ts';
/** The cluster section of a job. */
export type { ClusterSpec } from './job/cluster-spec.ts';

// Running jobs.
/** Trains a job in this process: data, model, training, evaluation, export; resumable from its checkpoint. */
export { runJob, type JobResult, type RunJobOptions } from './job/run-job.ts';
/** Serves a job to `drover worker` processes and trains it with them (what `drover coordinator` runs). */
export { runCoordinator, type CoordinatorRunOptions, type CoordinatorRunResult } from './coordinator/run-coordinator.ts';
/** Joins a coordinator and computes gradients until the job ends (what `drover worker` runs). */
export { runWorker, type WorkerOptions, type WorkerResult } from './worker/run-worker.ts';
/** A coordinator in this process and N worker processes it starts on this machine (`drover train --workers N`). */
export { runWithLocalWorkers, type LocalWorkersOptions } from './launch/local-workers.ts';
/** Picks a job's run folder as the CLI does: a new one per run, or the latest unfinished one to resume. */
export { openRunFolder, type RunFolder } from './job/run-folder.ts';
/** The id of the run `latest` points at in a job folder, if any. */
export { latestRunId } from './job/run-folder.ts';
/** The name of the link to the newest run in a job folder ('latest'). */
export { LATEST } from './job/run-folder.ts';

// Compute backends.
/** Picks and starts the compute backend (auto, tfjs-node-gpu, webgpu, tfjs-node, wasm, cpu); call before building models. */
export { initBackend, type BackendChoice, type BackendInfo } from './model/backend.ts';
/** The backend initBackend started, if any. */
export { activeBackend } from './model/backend.ts';
/** The WebGPU adapters this machine offers, numbered as `--gpu` and `--gpus` count them. */
export { listGpuAdapters, type GpuAdapterEntry } from './model/webgpu.ts';

// Models.
/** Builds a model from a layer list or a preset, as a job's `model` section does. */
export { buildScratchModel, type ScratchModelOptions } from './model/build.ts';
/** The names of the built-in model presets. */
export { PRESET_NAMES, type PresetName } from './model/presets.ts';
/** Builds a pretrained base with a new classification head, as a job's `transfer` section does. */
export { buildTransferModel, type TransferSpec } from './model/transfer.ts';
/** Trainable parameters of a model. */
export { countParams } from './model/build.ts';
/** Saves a model in drover's format (tfjs LayersModel with class names and input pipeline, docs/model-format.md). */
export { saveModel } from './model/export.ts';
/** Loads a model saved by drover, with its metadata. */
export { loadModel, type LoadedModel } from './model/export.ts';
/** The top classes of each image under a saved model (what `drover predict` runs). */
export { predictImages, type PredictOptions, type PredictionReport } from './commands/predict.ts';
/** Accuracy, loss and confusion matrix of a saved model on a dataset (what `drover evaluate` runs). */
export { evaluateModel, type EvaluateOptions, type ModelEvaluation } from './commands/evaluate.ts';

// Data.
/** Opens a dataset (a dataset spec, as a job's `data` section) with its splits, ready to batch. */
export { openDataset, type OpenedDataset } from './data/open.ts';
/** A dataset spec: where the images are and how they are read. */
export type { DatasetSpec } from './data/sources/index.ts';
/** A dataset, its splits, their batches and the input shape they decode to. */
export type { Batch, Dataset, DataSplit, InputShape } from './data/types.ts';

// Watching runs.
/** The logger drover's functions take (pino); its JSON lines are the event feed of docs/events.md. */
export type { Logger } from './telemetry/logger.ts';
/** A run's feed as the CLI has it: progress or JSON lines on stdout, and the JSON log file. */
export { createRunFeed, type RunFeed, type RunFeedOptions } from './telemetry/feed.ts';
/** Parses one line of a run log into its event (docs/events.md), or says why it is not one. */
export { parseLogLine, type DroverEvent, type ParsedLine } from './telemetry/events.ts';
/** Serves the live dashboard of a run log. */
export { startDashboard } from './telemetry/dashboard.ts';
/** Writes a run's learning curves and confusion matrix as PNG and SVG. */
export { writeReport } from './telemetry/report.ts';
/** Serves Prometheus metrics read from a run's event feed. */
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from './telemetry/metrics.ts';
