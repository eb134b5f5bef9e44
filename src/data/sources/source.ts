/**
 * What a data source is: a `kind`, the zod schema of its spec in a job file, and how it opens.
 * A source whose samples run through the data pipeline (decode, resize, augment, normalise) also
 * says how a worker rebuilds that pipeline from the spec alone, to decode the encoded samples
 * the coordinator ships it (src/data/shards/). Sources are listed in ./index.ts, the registry.
 *
 * Source modules import only light modules at the top (zod, readers of plain files): the
 * registry is loaded by the job-file validator and by every worker, and sharp or the decode
 * pool cost a second of start-up that a raw-pixel worker does not need.
 */
import type { z } from 'zod';
import type { Logger } from '../../telemetry/logger.ts';
import type { Pipelines } from '../pipeline-config.ts';
import type { SkipLog } from '../skips.ts';
import type { DataSplit, InputShape } from '../types.ts';

export type SplitName = 'train' | 'validation' | 'test';

/** What a source's `open` yields; the registry adds the spec, skip counts and `close`. */
export interface SourceParts {
  name: string;
  classNames: string[];
  inputShape: InputShape;
  train: DataSplit;
  validation?: DataSplit;
  test?: DataSplit;
  /** Releases what the source itself holds (the registry closes the decode pool). */
  close?(): Promise<void>;
}

/** Helpers `open` gets; the splits it builds share one decode pool and one skip log. */
export interface SourceContext {
  readonly logger: Logger;
  /** Counts and logs unreadable samples (`data_skip` events). */
  readonly skips: SkipLog;
  /** Prefix of split names in skip events and pool tasks; a source sets it once it knows its name. */
  name: string;
  /** The spec's pipelines, given the source's own [h, w, c] (null: image files of any size). */
  pipelines(native: InputShape | null): Pipelines;
  /** A split of image files, read and decoded on demand (shipped to workers as file bytes). */
  fileSplit(which: SplitName, files: { paths: readonly string[]; labels: Int32Array }, pipelines: Pipelines): DataSplit;
  /**
   * A split of same-sized uint8 HWC images held in memory, through the pipeline (shipped as raw
   * pixels); `indexMap` picks and orders the stored samples it exposes (all when null).
   */
  pixelSplit(
    which: SplitName,
    part: { images: Uint8Array; labels: ArrayLike<number> },
    native: InputShape,
    indexMap: Uint32Array | null,
    label: string,
    pipelines: Pipelines,
  ): DataSplit;
}

/** How a worker rebuilds a pipeline source's data pipeline from its spec (src/data/open.ts createSampleDecoder). */
export interface PipelineDecoding<Spec> {
  /** The source's own [h, w, c] (the size when the spec gives none); `inputShape` is the coordinator's dataset.inputShape. */
  nativeShape(spec: Spec, inputShape: InputShape): InputShape | null;
  /** Samples are small in-memory pixel arrays: tiny ones are decoded on the calling thread. */
  readonly inMemory: boolean;
  /** The name the worker's skip events give the dataset. */
  name(spec: Spec): string;
}

/** A spec schema: a strict object whose `kind` literal names the source. */
export type SourceSchema<Kind extends string = string> = z.ZodObject<{ kind: z.ZodLiteral<Kind> } & z.ZodRawShape>;

export interface DataSource<Kind extends string = string, Schema extends SourceSchema<Kind> = SourceSchema<Kind>> {
  readonly kind: Kind;
  readonly schema: Schema;
  /**
   * Present for sources whose samples run through the data pipeline: their spec takes the image
   * options (src/data/spec.ts), `openDataset` and `createSampleDecoder` accept it, and workers
   * decode the samples they are sent with it. Absent: the source yields in-memory uint8 splits
   * as they are (scaled to [0, 1]), shipped as raw pixels.
   */
  readonly pipeline?: PipelineDecoding<z.output<Schema>>;
  open(spec: z.output<Schema>, context: SourceContext): Promise<SourceParts>;
}
