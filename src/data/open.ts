/**
 * `openDataset(spec)`: any source drover reads, behind the trainer's `Dataset` interface, with
 * one decode pool shared by its splits. `createSampleDecoder(spec)`: the same pipelines for a
 * worker that receives encoded samples from the coordinator instead of reading a dataset.
 */
import path from 'node:path';
import { DatasetError } from '../errors.ts';
import { silentLogger, type Logger } from '../telemetry/logger.ts';
import type { GeometryConfig } from './augment.ts';
import { BatchLoader } from './batch-loader.ts';
import { readCifar, type CifarPart } from './cifar.ts';
import { assertClassSizes } from './class-counts.ts';
import { scanImageFolder } from './folder.ts';
import { stratifiedHoldout } from './holdout.ts';
import { openIdxDataset, type InMemorySplit } from './idx.ts';
import { readManifest } from './manifest.ts';
import { resolveAugment, resolveNormalisation, type PipelineConfig } from './pipeline.ts';
import { DecodePool, type DecodePoolOptions } from './pool.ts';
import { FileList, PixelList, SampleSplit, type SampleList } from './sample-split.ts';
import { SkipLog, type SkipCounts } from './skips.ts';
import { parseDatasetSpec, type CifarSpec, type DatasetSpec, type FolderSpec, type IdxSpec, type ManifestSpec } from './spec.ts';
import type { DataSplit, Dataset, InputShape } from './types.ts';

export interface OpenDatasetOptions extends DecodePoolOptions {
  /** Receives `data_skip` events (and nothing else); default: silent. */
  logger?: Logger;
  /** Share an existing pool (not closed with the dataset); default: the dataset owns one. */
  pool?: DecodePool;
}

/** A dataset opened by drover: the trainer's interface plus skip counts and the spec. */
export interface OpenedDataset extends Dataset {
  readonly spec: DatasetSpec;
  skipCounts(): SkipCounts;
}

/** Images at most this large (output pixels) are handled on the calling thread: a pool round trip costs more. */
const INLINE_MAX_PIXELS = 64 * 64;

/** Default input size for image files when the spec gives none (Keras' default). */
const DEFAULT_FILE_SIZE: [number, number] = [256, 256];

/** The training (augmenting) and evaluation pipelines of a spec, given the source's own shape. */
export function resolvePipelines(spec: DatasetSpec, native: InputShape | null): { train: PipelineConfig; evaluation: PipelineConfig } {
  const [height, width] = spec.imageSize ?? (native ? [native[0], native[1]] : DEFAULT_FILE_SIZE);
  const channels = spec.channels ?? ((native?.[2] === 1 ? 1 : 3) as 1 | 3);
  const geometry: GeometryConfig = {
    height,
    width,
    resize: spec.resize,
    fill: spec.augment?.fillMode ?? 'nearest',
    fillValue: spec.augment?.fillValue ?? 0,
    interpolation: spec.augment?.interpolation ?? 'bilinear',
  };
  const base: PipelineConfig = {
    geometry,
    channels,
    augment: null,
    normalisation: resolveNormalisation(spec.preprocess, channels),
    maxInputPixels: spec.maxInputPixels,
    maxFileBytes: spec.maxFileBytes,
  };
  return { train: { ...base, augment: resolveAugment(spec.augment) }, evaluation: base };
}

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

interface Context {
  spec: DatasetSpec;
  name: string;
  skips: SkipLog;
  pools: Pools;
}

function split(ctx: Context, which: 'train' | 'validation' | 'test', samples: SampleList, pipelines: { train: PipelineConfig; evaluation: PipelineConfig }, inMemory: boolean): SampleSplit {
  const pipeline = which === 'train' ? pipelines.train : pipelines.evaluation;
  const pixels = pipeline.geometry.height * pipeline.geometry.width;
  const loader = new BatchLoader(ctx.pools.get(pixels, inMemory), pipeline, ctx.skips, `${ctx.name}/${which}`, ctx.spec.seed, { augmentOn: ctx.spec.augmentOn });
  return new SampleSplit(samples, loader);
}

function subsetFiles(files: FileList, indices: Uint32Array): FileList {
  return new FileList(Array.from(indices, (i) => files.paths[i]!), Int32Array.from(indices, (i) => files.labels[i]!));
}

interface Sides {
  classNames: string[];
  train: FileList;
  validation?: FileList;
  test?: FileList;
}

async function openFileSides(ctx: Context, spec: FolderSpec | ManifestSpec): Promise<Sides> {
  type Read = { classNames: string[]; files: FileList; describe: (i: number) => string };
  const read = async (file: string, which: string, classNames?: string[]): Promise<Read> => {
    const source = `${ctx.name}/${which}`;
    if (spec.kind === 'folder') {
      const scanned = await scanImageFolder(file, { skips: ctx.skips, source, classNames });
      return { classNames: scanned.classNames, files: new FileList(scanned.paths, scanned.labels), describe: (i) => scanned.paths[i]! };
    }
    const parsed = await readManifest(file, { format: spec.format, root: spec.root, classNames: classNames ?? spec.classNames, skips: ctx.skips, source });
    return { classNames: parsed.classNames, files: new FileList(parsed.paths, parsed.labels), describe: (i) => `${file}:${parsed.lines[i]}` };
  };
  const main = await read(spec.path, 'train');
  // Manifest labels are typed by hand: without a class list a typo becomes a class of its own
  // (with one it is an unknown_label skip). A folder's classes are sub-folders made on purpose.
  if (spec.kind === 'manifest' && spec.classNames === undefined) {
    assertClassSizes({ classNames: main.classNames, labels: main.files.labels, min: spec.minClassSamples, where: `manifest ${spec.path}`, describe: main.describe });
  }
  const sides: Sides = { classNames: main.classNames, train: main.files };
  if (spec.validation && 'fraction' in spec.validation) {
    const holdout = stratifiedHoldout(main.files.labels, spec.validation.fraction, spec.validation.seed ?? spec.seed);
    sides.train = subsetFiles(main.files, holdout.train);
    sides.validation = subsetFiles(main.files, holdout.validation);
  } else if (spec.validation) {
    sides.validation = (await read(spec.validation.path, 'validation', main.classNames)).files;
  }
  if (spec.test) sides.test = (await read(spec.test.path, 'test', main.classNames)).files;
  return sides;
}

function pixelList(part: CifarPart | InMemorySplit, shape: InputShape, indexMap: Uint32Array | null, name: string): PixelList {
  return new PixelList(part.images, part.labels, shape[0], shape[1], shape[2], indexMap, name);
}

/** True when the lead's in-memory IDX splits already give what the spec asks (no copy, no pool). */
function idxAsIs(spec: IdxSpec, native: InputShape): boolean {
  return spec.augment === undefined && spec.preprocess === 'rescale' &&
    (spec.imageSize === undefined || (spec.imageSize[0] === native[0] && spec.imageSize[1] === native[1])) &&
    (spec.channels === undefined || spec.channels === native[2]);
}

/** Opens any dataset spec (validated here; a bad field is a ConfigError naming it). */
export async function openDataset(input: unknown, options: OpenDatasetOptions = {}): Promise<OpenedDataset> {
  const spec = parseDatasetSpec(input);
  const logger = options.logger ?? silentLogger();
  const skips = new SkipLog(logger);
  const pools = new Pools(options);
  const name = spec.kind === 'idx' ? path.basename(spec.dir) : spec.kind === 'cifar' ? 'cifar' : path.basename(spec.path, path.extname(spec.path));
  const ctx: Context = { spec, name, skips, pools };
  // Resolved before any file is read, so a bad option fails fast (IDX needs its own shape first).
  const early = spec.kind === 'idx' ? null : resolvePipelines(spec, spec.kind === 'cifar' ? [32, 32, 3] : null);
  try {
    let classNames: string[];
    let inputShape: InputShape;
    let train: DataSplit;
    let validation: DataSplit | undefined;
    let test: DataSplit | undefined;
    let datasetName = name;
    if (spec.kind === 'folder' || spec.kind === 'manifest') {
      const sides = await openFileSides(ctx, spec);
      const pipelines = early!;
      classNames = sides.classNames;
      train = split(ctx, 'train', sides.train, pipelines, false);
      if (sides.validation) validation = split(ctx, 'validation', sides.validation, pipelines, false);
      if (sides.test) test = split(ctx, 'test', sides.test, pipelines, false);
      inputShape = [pipelines.train.geometry.height, pipelines.train.geometry.width, pipelines.train.channels];
    } else if (spec.kind === 'cifar') {
      const data = await readCifar(spec.path, { variant: spec.variant, labels: spec.labels });
      datasetName = `cifar-${data.variant}`;
      ctx.name = datasetName;
      const native: InputShape = [32, 32, 3];
      const pipelines = early!;
      classNames = data.classNames;
      if (spec.validation) {
        const holdout = stratifiedHoldout(data.train.labels, spec.validation.fraction, spec.validation.seed ?? spec.seed);
        train = split(ctx, 'train', pixelList(data.train, native, holdout.train, `${datasetName} train`), pipelines, true);
        validation = split(ctx, 'validation', pixelList(data.train, native, holdout.validation, `${datasetName} train`), pipelines, true);
      } else {
        train = split(ctx, 'train', pixelList(data.train, native, null, `${datasetName} train`), pipelines, true);
      }
      if (data.test) test = split(ctx, 'test', pixelList(data.test, native, null, `${datasetName} test`), pipelines, true);
      inputShape = [pipelines.train.geometry.height, pipelines.train.geometry.width, pipelines.train.channels];
    } else {
      // IDX: the lead's reader (src/data/idx.ts) parses; we only add the pipeline when asked.
      const idx = await openIdxDataset({
        dir: spec.dir, classNames: spec.classNames, validationSize: spec.validationSize,
        limitTrain: spec.limitTrain, limitTest: spec.limitTest,
      });
      datasetName = idx.name;
      ctx.name = datasetName;
      classNames = idx.classNames;
      const native = idx.inputShape;
      if (idxAsIs(spec, native)) {
        ({ train, validation, test } = idx);
        inputShape = native;
      } else {
        const pipelines = resolvePipelines(spec, native);
        const wrap = (which: 'train' | 'validation' | 'test', part: DataSplit | undefined): SampleSplit | undefined =>
          part ? split(ctx, which, pixelList(part as InMemorySplit, native, null, `${datasetName} ${which}`), pipelines, true) : undefined;
        train = wrap('train', idx.train)!;
        validation = wrap('validation', idx.validation);
        test = wrap('test', idx.test);
        inputShape = [pipelines.train.geometry.height, pipelines.train.geometry.width, pipelines.train.channels];
      }
    }
    if (train.length === 0) throw new DatasetError(`${datasetName}: the training split is empty`);
    return {
      name: datasetName,
      classNames,
      inputShape,
      train,
      validation,
      test,
      spec,
      skipCounts: () => skips.counts(),
      close: () => pools.close(),
    };
  } catch (error) {
    await pools.close();
    throw error;
  }
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
  const skips = new SkipLog(options.logger ?? silentLogger());
  const pools = new Pools(options);
  const native: InputShape | null = spec.kind === 'cifar' ? [32, 32, 3] : spec.kind === 'idx' ? inputShape : null;
  const pipelines = resolvePipelines(spec, native);
  const inMemory = spec.kind === 'cifar' || spec.kind === 'idx';
  const pixels = pipelines.train.geometry.height * pipelines.train.geometry.width;
  const name = spec.kind === 'idx' ? path.basename(spec.dir) : path.basename(spec.path);
  return {
    train: new BatchLoader(pools.get(pixels, inMemory), pipelines.train, skips, `${name}/train`, spec.seed, { augmentOn: spec.augmentOn }),
    evaluation: new BatchLoader(pools.get(pixels, inMemory), pipelines.evaluation, skips, `${name}/evaluation`, spec.seed),
    skipCounts: () => skips.counts(),
    close: () => pools.close(),
  };
}
