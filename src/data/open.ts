/**
 * `openDataset(spec)`: a source whose samples run through the data pipeline, behind the
 * trainer's `Dataset` interface, with one decode pool shared by its splits. `openJobDataset`:
 * any registered source (a job file's `data`). `createSampleDecoder(spec)`: the same pipelines
 * for a worker that receives encoded samples from the coordinator instead of reading a dataset.
 * What each kind reads and how lives in its module under ./sources/.
 */
import { DatasetError } from '../errors.ts';
import { silentLogger, type Logger } from '../telemetry/logger.ts';
import { BatchLoader } from './batch-loader.ts';
import { resolvePipelines, type Pipelines } from './pipeline-config.ts';
import { DecodePool, type DecodePoolOptions } from './pool.ts';
import { FileList, PixelList, SampleSplit, type SampleList } from './sample-split.ts';
import { SkipLog, type SkipCounts } from './skips.ts';
import { isPipelineSpec, parseDatasetSpec, sourceOf, type DataSpec, type DatasetSpec } from './sources/index.ts';
import type { SourceContext, SourceParts, SplitName } from './sources/source.ts';
import type { Dataset, InputShape } from './types.ts';

export interface OpenDatasetOptions extends DecodePoolOptions {
  /** Receives `data_skip` events (and nothing else); default: silent. */
  logger?: Logger;
  /** Share an existing pool (not closed with the dataset); default: the dataset owns one. */
  pool?: DecodePool;
}

/** A dataset opened by drover from a job's `data` spec: it knows that spec. */
export interface JobDataset extends Dataset {
  readonly spec: DataSpec;
}

/** A pipeline dataset: the trainer's interface plus skip counts and the spec. */
export interface OpenedDataset extends JobDataset {
  readonly spec: DatasetSpec;
  skipCounts(): SkipCounts;
}

/** Images at most this large (output pixels) are handled on the calling thread: a pool round trip costs more. */
const INLINE_MAX_PIXELS = 64 * 64;

/** Lazily started thread pool plus an inline one for tiny in-memory images. */
class Pools {
  private threaded: DecodePool | undefined;
  readonly inline = new DecodePool({ threads: 0 });
  constructor(
    private readonly options: OpenDatasetOptions,
  ) {}
  get(pixels: number, inMemory: boolean): DecodePool {
    if (inMemory && pixels <= INLINE_MAX_PIXELS) return this.inline;
    if (this.options.pool) return this.options.pool;
    const { threads, maxQueue, taskTimeoutMs } = this.options;
    this.threaded ??= new DecodePool({
      ...(threads !== undefined ? { threads } : {}),
      ...(maxQueue !== undefined ? { maxQueue } : {}),
      ...(taskTimeoutMs !== undefined ? { taskTimeoutMs } : {}),
    });
    return this.threaded;
  }
  async close(): Promise<void> {
    await this.threaded?.close();
    await this.inline.close();
  }
}

/** The helpers a pipeline source builds its splits with: one pool set, one skip log. */
class PipelineContext implements SourceContext {
  name = '';
  constructor(
    private readonly spec: DatasetSpec,
    readonly logger: Logger,
    readonly skips: SkipLog,
    private readonly pools: Pools,
  ) {}
  pipelines(native: InputShape | null): Pipelines {
    return resolvePipelines(this.spec, native);
  }
  fileSplit(which: SplitName, files: { paths: readonly string[]; labels: Int32Array }, pipelines: Pipelines): SampleSplit {
    return this.split(which, new FileList(files.paths, files.labels), pipelines, false);
  }
  pixelSplit(which: SplitName, part: { images: Uint8Array; labels: ArrayLike<number> }, native: InputShape, indexMap: Uint32Array | null, label: string, pipelines: Pipelines): SampleSplit {
    return this.split(which, new PixelList(part.images, part.labels, native[0], native[1], native[2], indexMap, label), pipelines, true);
  }
  private split(which: SplitName, samples: SampleList, pipelines: Pipelines, inMemory: boolean): SampleSplit {
    const pipeline = which === 'train' ? pipelines.train : pipelines.evaluation;
    const pixels = pipeline.geometry.height * pipeline.geometry.width;
    const loader = new BatchLoader(this.pools.get(pixels, inMemory), pipeline, this.skips, `${this.name}/${which}`, this.spec.seed, { augmentOn: this.spec.augmentOn });
    return new SampleSplit(samples, loader);
  }
}

/** A source opened with the spec's own kind (the registry keeps the pairing; TypeScript cannot see it). */
function openWith(spec: DataSpec, context: SourceContext): Promise<SourceParts> {
  return sourceOf(spec.kind)!.open(spec, context);
}

function withSpec<Spec extends DataSpec>(parts: SourceParts, spec: Spec): Dataset & { spec: Spec } {
  const { name, classNames, inputShape, train, validation, test } = parts;
  return { name, classNames, inputShape, train, validation, test, spec, close: parts.close ?? (async () => {}) };
}

/** Opens a pipeline dataset spec (validated here; a bad field is a ConfigError naming it). */
export async function openDataset(input: unknown, options: OpenDatasetOptions = {}): Promise<OpenedDataset> {
  const spec = parseDatasetSpec(input);
  const logger = options.logger ?? silentLogger();
  const skips = new SkipLog(logger);
  const pools = new Pools(options);
  try {
    const parts = await openWith(spec, new PipelineContext(spec, logger, skips, pools));
    if (parts.train.length === 0) throw new DatasetError(`${parts.name}: the training split is empty`);
    return { ...withSpec(parts, spec), skipCounts: () => skips.counts(), close: () => pools.close() };
  } catch (error) {
    await pools.close();
    throw error;
  }
}

/** Opens the dataset a job's `data` names (validated by the job schema); `default` is Fashion-MNIST where installed, else generated shapes. */
export async function openJobDataset(spec: DataSpec, log: Logger): Promise<JobDataset> {
  if (isPipelineSpec(spec)) return openDataset(spec, { logger: log });
  // In-memory sources as they are: no pipeline, pool or skips.
  const noPipeline = (): never => {
    throw new DatasetError(`data source ${spec.kind} has no pipeline`);
  };
  const context: SourceContext = { logger: log, skips: new SkipLog(log), name: spec.kind, pipelines: noPipeline, fileSplit: noPipeline, pixelSplit: noPipeline };
  return withSpec(await openWith(spec, context), spec);
}

export interface SampleDecoder {
  /** Augments when asked (training shards). */
  readonly train: BatchLoader;
  /** Never augments (evaluation shards). */
  readonly evaluation: BatchLoader;
  skipCounts(): SkipCounts;
  close(): Promise<void>;
}

/**
 * For a worker that receives encoded samples (file bytes or raw pixels) from the coordinator:
 * the spec's pipelines over a local pool. `inputShape` is the coordinator's
 * `dataset.inputShape` (the source's own size matters when the spec gives no imageSize).
 */
export function createSampleDecoder(input: unknown, inputShape: InputShape, options: OpenDatasetOptions = {}): SampleDecoder {
  const spec = parseDatasetSpec(input);
  const decoding = sourceOf(spec.kind)!.pipeline!;
  const skips = new SkipLog(options.logger ?? silentLogger());
  const pools = new Pools(options);
  const pipelines = resolvePipelines(spec, decoding.nativeShape(spec, inputShape));
  const pixels = pipelines.train.geometry.height * pipelines.train.geometry.width;
  const name = decoding.name(spec);
  return {
    train: new BatchLoader(pools.get(pixels, decoding.inMemory), pipelines.train, skips, `${name}/train`, spec.seed, { augmentOn: spec.augmentOn }),
    evaluation: new BatchLoader(pools.get(pixels, decoding.inMemory), pipelines.evaluation, skips, `${name}/evaluation`, spec.seed),
    skipCounts: () => skips.counts(),
    close: () => pools.close(),
  };
}
