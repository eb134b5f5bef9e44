/**
 * Turns a list of samples into one ready `Batch`: spreads them over the pool's threads (one
 * task per thread, each writing its slice of one shared buffer; a single task hands its
 * buffer back transferred), drops failed samples from the batch and logs them as skips.
 *
 * Used by every file-backed split, and directly by a worker that received encoded bytes from
 * the coordinator (`load` with `{ bytes }` samples).
 *
 * Augmentation on the device (`augmentOn`, default auto = on webgpu): an augmented batch is
 * only decoded on the pool (gpu-decode.ts, same seeds and draws); the warp, colour draws and
 * normalisation run as tfjs ops when the trainer asks for the batch's input (gpu-augment.ts),
 * so the decoded pixels go to the GPU once and the augmented floats never exist on the CPU.
 */
import { sampleSeed } from './augment.ts';
import type { BatchTask, BatchTaskResult, TaskFailure } from './batch-task.ts';
import type { SampleInput } from './decode.ts';
import { augmentsOnDevice, warpOnDevice, type AugmentOn, type DeviceSample, type DeviceWarpConfig } from './gpu-augment.ts';
import type { DecodeForDeviceTask } from './gpu-decode.ts';
import { DatasetError } from '../errors.ts';
import type { PipelineConfig } from './pipeline-config.ts';
import type { DecodePool } from './pool.ts';
import type { SkipLog } from './skips.ts';
import type { Batch, InputShape } from './types.ts';

export interface LoadOptions {
  /** Draw augmentations (only if the pipeline has any). */
  augment?: boolean;
  epoch?: number;
  /** Sample ids (seed the augmentation; reported in `skipped`). Default: 0..n-1. */
  ids?: ArrayLike<number>;
  /** How each sample is named in skip logs. Default: its path, or "<source> #id". */
  describe?: (position: number) => string;
}

/** Fewest samples worth a task of their own: below it, messaging costs more than it saves. */
const MIN_SAMPLES_PER_TASK = 4;

/**
 * Copies a sample's bytes into a buffer of its own so it can be transferred to a thread (a
 * view into a larger buffer would otherwise clone the whole buffer). `transfer` null: inline.
 */
function detachable(input: SampleInput, transfer: ArrayBuffer[] | null): SampleInput {
  if ('path' in input || transfer === null) return input;
  if ('bytes' in input) {
    const bytes = input.bytes.slice();
    transfer.push(bytes.buffer);
    return { bytes };
  }
  const pixels = input.pixels.slice();
  transfer.push(pixels.buffer);
  return { pixels, width: input.width, height: input.height, channels: input.channels };
}

/** Batch buffers kept for reuse per byte size: enough for the prefetch queue and one in use. */
const FREE_BUFFERS_PER_SIZE = 4;

export interface BatchLoaderOptions {
  /** Where augmented batches are warped and normalised (default auto: the device on webgpu). */
  augmentOn?: AugmentOn;
}

export class BatchLoader {
  readonly shape: InputShape;
  readonly sampleSize: number;
  readonly augmentOn: AugmentOn;
  private readonly deviceConfig: DeviceWarpConfig;
  private readonly freeBuffers = new Map<number, ArrayBuffer[]>();
  private readonly freeShared = new Map<number, SharedArrayBuffer[]>();

  constructor(
    readonly pool: DecodePool,
    readonly pipeline: PipelineConfig,
    readonly skips: SkipLog,
    /** Names the split in skip logs, e.g. "flowers/train". */
    readonly source: string,
    /** Seed of the augmentation draws. */
    readonly seed: number,
    options: BatchLoaderOptions = {},
  ) {
    const { height, width, fill, fillValue, interpolation } = pipeline.geometry;
    this.shape = [height, width, pipeline.channels];
    this.sampleSize = height * width * pipeline.channels;
    this.augmentOn = options.augmentOn ?? 'auto';
    this.deviceConfig = { width, height, channels: pipeline.channels, fill, fillValue, interpolation, normalisation: pipeline.normalisation };
  }

  /** Splits n samples into consecutive task ranges, one per thread (one when inline or few). */
  private taskRanges(n: number): Array<[number, number]> {
    const parts = this.pool.threads <= 1 ? 1 : Math.max(1, Math.min(this.pool.threads, Math.floor(n / MIN_SAMPLES_PER_TASK)));
    const per = Math.max(1, Math.ceil(n / parts));
    const ranges: Array<[number, number]> = [];
    for (let start = 0; start < n; start += per) ranges.push([start, Math.min(n, start + per)]);
    return ranges;
  }

  async load(samples: readonly SampleInput[], labels: ArrayLike<number>, options: LoadOptions = {}): Promise<Batch> {
    const n = samples.length;
    const ids = options.ids;
    const epoch = options.epoch ?? 0;
    const augment = options.augment === true && this.pipeline.augment !== null;
    const seeds = augment ? Array.from({ length: n }, (_, i) => sampleSeed(this.seed, epoch, ids ? ids[i]! : i)) : null;
    if (seeds && augmentsOnDevice(this.augmentOn)) return this.loadForDevice(samples, labels, seeds, options);
    const parts = this.pool.threads <= 1 ? 1 : Math.max(1, Math.min(this.pool.threads, Math.floor(n / MIN_SAMPLES_PER_TASK)));
    const size = this.sampleSize;
    let x: Float32Array;
    const failures: TaskFailure[] = [];
    const bytes = n * size * Float32Array.BYTES_PER_ELEMENT;
    if (parts === 1) {
      const transfer: ArrayBuffer[] = [];
      const inline = this.pool.threads === 0;
      const task: BatchTask = { samples: samples.map((s) => detachable(s, inline ? null : transfer)), seeds, pipeline: this.pipeline };
      const reuse = this.freeBuffers.get(bytes)?.pop();
      if (reuse) {
        task.output = reuse;
        transfer.push(reuse);
      }
      const result: BatchTaskResult = await this.pool.run(task, transfer);
      x = result.x!;
      failures.push(...result.failures);
    } else {
      // One buffer for the whole batch, each task filling its own slice: no copies, no merge.
      const shared = this.freeShared.get(bytes)?.pop() ?? new SharedArrayBuffer(bytes);
      x = new Float32Array(shared);
      const per = Math.ceil(n / parts);
      const runs: Promise<TaskFailure[]>[] = [];
      for (let start = 0; start < n; start += per) {
        const end = Math.min(n, start + per);
        const transfer: ArrayBuffer[] = [];
        const task: BatchTask = {
          samples: samples.slice(start, end).map((s) => detachable(s, transfer)),
          seeds: seeds ? seeds.slice(start, end) : null,
          pipeline: this.pipeline,
          shared: { buffer: shared, offset: start * size },
        };
        runs.push(this.pool.run(task, transfer).then((r) => r.failures.map((f) => ({ ...f, index: f.index + start }))));
      }
      for (const part of await Promise.all(runs)) failures.push(...part);
    }
    const batch = this.assemble(x, samples, labels, failures, options);
    batch.release = this.releaser(x.buffer);
    return batch;
  }

  /**
   * Decode-only tasks on the pool; the batch's `input()` warps, colours and normalises on the
   * active backend. Failed samples are dropped and logged as on the CPU path.
   */
  private async loadForDevice(samples: readonly SampleInput[], labels: ArrayLike<number>, seeds: number[], options: LoadOptions): Promise<Batch> {
    const n = samples.length;
    const inline = this.pool.threads === 0;
    const decoded: (DeviceSample | null)[] = new Array<DeviceSample | null>(n).fill(null);
    const failures: TaskFailure[] = [];
    await Promise.all(
      this.taskRanges(n).map(async ([start, end]) => {
        const transfer: ArrayBuffer[] = [];
        const task: DecodeForDeviceTask = {
          samples: samples.slice(start, end).map((s) => detachable(s, inline ? null : transfer)),
          seeds: seeds.slice(start, end),
          pipeline: this.pipeline,
        };
        const result = await this.pool.runForDevice(task, transfer);
        result.samples.forEach((sample, i) => (decoded[start + i] = sample));
        for (const f of result.failures) failures.push({ ...f, index: f.index + start });
      }),
    );
    failures.sort((a, b) => a.index - b.index);
    const { failed, skipped, skipReasons } = this.recordSkips(samples, failures, options);
    let kept: DeviceSample[] | null = [];
    const y = new Int32Array(n - failed.size);
    for (let i = 0; i < n; i++) {
      if (failed.has(i)) continue;
      const sample = decoded[i];
      if (!sample) throw new DatasetError(`${this.source}: the decode task returned no pixels for sample ${i} and no failure`);
      y[kept.length] = labels[i]!;
      kept.push(sample);
    }
    const config = this.deviceConfig;
    const batch: Batch = {
      x: new Float32Array(0),
      y,
      n: y.length,
      shape: this.shape,
      input: () => {
        if (!kept) throw new DatasetError(`${this.source}: input() of a released batch (its decoded pixels are gone)`);
        return warpOnDevice(kept, config);
      },
      // Drops the decoded pixels: nothing of the batch is on the device until input() is called.
      release: () => {
        kept = null;
      },
    };
    if (failures.length > 0) Object.assign(batch, { skipped, skipReasons });
    return batch;
  }

  /** Logs failed samples as skips; returns their positions, ids and reasons (for the coordinator's log). */
  private recordSkips(
    samples: readonly SampleInput[],
    failures: readonly TaskFailure[],
    options: LoadOptions,
  ): { failed: Set<number>; skipped: number[]; skipReasons: NonNullable<Batch['skipReasons']> } {
    const failed = new Set<number>();
    const skipped: number[] = [];
    const skipReasons: NonNullable<Batch['skipReasons']> = [];
    const ids = options.ids;
    for (const f of failures) {
      failed.add(f.index);
      const id = ids ? ids[f.index]! : f.index;
      skipped.push(id);
      skipReasons.push({ id, reason: f.reason, ...(f.detail ? { detail: f.detail } : {}) });
      const sample = samples[f.index]!;
      const path = options.describe ? options.describe(f.index) : 'path' in sample ? sample.path : `${this.source} #${id}`;
      this.skips.record({ source: this.source, path, reason: f.reason, detail: f.detail, errno: f.errno, id });
    }
    return { failed, skipped, skipReasons };
  }

  /** A once-only callback that files `buffer` for reuse by a later batch of the same size. */
  private releaser(buffer: ArrayBufferLike): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const shared = typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer;
      const lists = (shared ? this.freeShared : this.freeBuffers) as Map<number, ArrayBufferLike[]>;
      let list = lists.get(buffer.byteLength);
      if (!list) lists.set(buffer.byteLength, (list = []));
      if (list.length < FREE_BUFFERS_PER_SIZE) list.push(buffer);
    };
  }

  /** Drops failed samples (moving the good ones down), logs and reports them. */
  private assemble(
    x: Float32Array,
    samples: readonly SampleInput[],
    labels: ArrayLike<number>,
    failures: TaskFailure[],
    options: LoadOptions,
  ): Batch {
    const n = samples.length;
    const size = this.sampleSize;
    if (failures.length === 0) {
      const y = new Int32Array(n);
      for (let i = 0; i < n; i++) y[i] = labels[i]!;
      return { x, y, n, shape: this.shape };
    }
    const { failed, skipped, skipReasons } = this.recordSkips(samples, failures, options);
    const kept = n - failed.size;
    const y = new Int32Array(kept);
    let k = 0;
    for (let i = 0; i < n; i++) {
      if (failed.has(i)) continue;
      if (k !== i) x.copyWithin(k * size, i * size, (i + 1) * size);
      y[k++] = labels[i]!;
    }
    return { x: x.subarray(0, kept * size), y, n: kept, shape: this.shape, skipped, skipReasons };
  }
}
