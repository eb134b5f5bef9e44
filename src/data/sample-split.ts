/**
 * A `DataSplit` over any list of samples (files, or images already in memory): labels are
 * known without decoding; `loadBatch` hands the chosen samples to a `BatchLoader`.
 */
import { DatasetError } from '../errors.ts';
import type { BatchLoader } from './batch-loader.ts';
import { readSampleFile, type SampleInput } from './decode.ts';
import type { Batch, BatchOptions, DataSplit } from './types.ts';

/** Where a split's samples live. */
export interface SampleList {
  readonly length: number;
  label(index: number): number;
  input(index: number): SampleInput;
  /** How the sample is named in logs (its path, or e.g. "cifar train #31"). */
  describe(index: number): string;
}

/** Files on disk with their labels. */
export class FileList implements SampleList {
  constructor(
    readonly paths: readonly string[],
    readonly labels: Int32Array,
  ) {
    if (paths.length !== labels.length) throw new DatasetError(`${paths.length} files but ${labels.length} labels`);
  }
  get length(): number {
    return this.paths.length;
  }
  label(index: number): number {
    return this.labels[index]!;
  }
  input(index: number): SampleInput {
    return { path: this.paths[index]! };
  }
  describe(index: number): string {
    return this.paths[index]!;
  }
}

/** Same-sized uint8 HWC images in one buffer (CIFAR, IDX), optionally through an index map. */
export class PixelList implements SampleList {
  readonly length: number;
  private readonly sampleBytes: number;

  constructor(
    readonly images: Uint8Array,
    readonly labels: ArrayLike<number>,
    readonly height: number,
    readonly width: number,
    readonly channels: number,
    /** Which stored samples this list exposes, in order; all of them when absent. */
    readonly indexMap: Uint32Array | null,
    readonly name: string,
  ) {
    this.sampleBytes = height * width * channels;
    const stored = labels.length;
    if (images.length !== stored * this.sampleBytes) {
      throw new DatasetError(`${name}: image data holds ${images.length} bytes, expected ${stored} x ${this.sampleBytes}`);
    }
    this.length = indexMap ? indexMap.length : stored;
  }
  private stored(index: number): number {
    return this.indexMap ? this.indexMap[index]! : index;
  }
  label(index: number): number {
    return this.labels[this.stored(index)]!;
  }
  input(index: number): SampleInput {
    const start = this.stored(index) * this.sampleBytes;
    return { pixels: this.images.subarray(start, start + this.sampleBytes), width: this.width, height: this.height, channels: this.channels };
  }
  describe(index: number): string {
    return `${this.name} #${this.stored(index)}`;
  }
}

/** One sample ready to send over the wire: what a worker's `BatchLoader.load` accepts. */
export interface EncodedSample {
  id: number;
  label: number;
  input: { bytes: Uint8Array } | { pixels: Uint8Array; width: number; height: number; channels: number };
}

export class SampleSplit implements DataSplit {
  constructor(
    readonly samples: SampleList,
    readonly loader: BatchLoader,
  ) {}

  get length(): number {
    return this.samples.length;
  }

  label(index: number): number {
    return this.samples.label(index);
  }

  private checkIndices(indices: ArrayLike<number>): void {
    const n = this.samples.length;
    for (let i = 0; i < indices.length; i++) {
      const id = indices[i]!;
      if (!(Number.isInteger(id) && id >= 0 && id < n)) {
        throw new DatasetError(`${this.loader.source}: sample index ${id} is out of range 0..${n - 1}`);
      }
    }
  }

  async loadBatch(indices: ArrayLike<number>, options: BatchOptions = {}): Promise<Batch> {
    this.checkIndices(indices);
    const inputs: SampleInput[] = [];
    const labels = new Int32Array(indices.length);
    for (let i = 0; i < indices.length; i++) {
      inputs.push(this.samples.input(indices[i]!));
      labels[i] = this.samples.label(indices[i]!);
    }
    return this.loader.load(inputs, labels, {
      augment: options.augment,
      epoch: options.epoch,
      ids: indices,
      describe: (position) => this.samples.describe(indices[position]!),
    });
  }

  /**
   * The encoded samples for the coordinator to send to a worker (file bytes as stored, or raw
   * pixels). Unreadable files are skipped here, counted and logged, and listed in `skipped`.
   */
  async encodedSamples(indices: ArrayLike<number>): Promise<{ samples: EncodedSample[]; skipped: number[] }> {
    this.checkIndices(indices);
    const samples: EncodedSample[] = [];
    const skipped: number[] = [];
    const { maxFileBytes } = this.loader.pipeline;
    for (let i = 0; i < indices.length; i++) {
      const id = indices[i]!;
      const input = this.samples.input(id);
      if ('path' in input) {
        const read = await readSampleFile(input.path, maxFileBytes);
        if (!read.ok) {
          skipped.push(id);
          this.loader.skips.record({ source: this.loader.source, path: input.path, id, ...read.failure });
          continue;
        }
        samples.push({ id, label: this.samples.label(id), input: { bytes: read.bytes } });
      } else {
        samples.push({ id, label: this.samples.label(id), input });
      }
    }
    return { samples, skipped };
  }
}
