/**
 * The piscina task: decode + augment many samples into one NHWC float32 buffer. Runs in a pool
 * thread (export `decodeBatch`) or inline (`runBatchTask`, same code). While one sample is
 * warped on this thread, the next ones decode on libuv's pool, so both stay busy.
 *
 * The buffer either comes back transferred (not copied) or is written in place into a
 * SharedArrayBuffer the caller split among several tasks.
 */
import { Piscina } from 'piscina';
import sharp from 'sharp';
import { drawAugment, NO_AUGMENT, sampleAffine } from './augment.ts';
import type { SampleFailure, SampleInput } from './decode.ts';
import { decodeInLanes, poolDecodeTarget } from './decode-lanes.ts';
import { pixelMapFor, type PipelineConfig } from './pipeline-config.ts';
import { warpInto } from './warp.ts';

export interface BatchTask {
  samples: SampleInput[];
  /** Per-sample augmentation seeds, or null for no augmentation. */
  seeds: number[] | null;
  pipeline: PipelineConfig;
  /** Write into this buffer from float `offset` on, instead of returning a new one. */
  shared?: { buffer: SharedArrayBuffer; offset: number };
  /** A buffer to fill and hand back (transferred both ways), reused across batches. */
  output?: ArrayBuffer;
  /** Samples in flight at once within this task (default 2). */
  concurrency?: number;
}

export interface TaskFailure extends SampleFailure {
  /** Position of the sample within the task. */
  index: number;
}

export interface BatchTaskResult {
  /** One slot per sample (failed slots hold garbage); null when written into `shared`. */
  x: Float32Array | null;
  failures: TaskFailure[];
}

if (Piscina.isWorkerThread) {
  // libvips' operation cache only costs memory when every input differs.
  sharp.cache(false);
}

/** Decodes, augments and normalises `task.samples` into consecutive NHWC slots. */
export async function runBatchTask(task: BatchTask): Promise<BatchTaskResult> {
  const { pipeline, samples, seeds } = task;
  const { geometry, channels } = pipeline;
  const sampleSize = geometry.height * geometry.width * channels;
  let out: Float32Array;
  let base = 0;
  if (task.shared) {
    out = new Float32Array(task.shared.buffer);
    base = task.shared.offset;
  } else if (task.output && task.output.byteLength === samples.length * sampleSize * 4) {
    out = new Float32Array(task.output);
  } else {
    out = new Float32Array(samples.length * sampleSize);
  }
  const target = poolDecodeTarget(pipeline);
  const warpOptions = { fill: geometry.fill, fillValue: geometry.fillValue, interpolation: geometry.interpolation };
  const failures = await decodeInLanes(samples, target, task.concurrency, (i, image) => {
    const params = seeds && pipeline.augment
      ? drawAugment(pipeline.augment, seeds[i]!, geometry.width, geometry.height)
      : NO_AUGMENT;
    const affine = sampleAffine(params, geometry, image.width, image.height);
    warpInto(image, affine, out, base + i * sampleSize, geometry.width, geometry.height, warpOptions, pixelMapFor(pipeline.normalisation, params, channels));
  });
  return { x: task.shared ? null : out, failures };
}

/** Piscina entry: like `runBatchTask`, with the batch buffer transferred back, not copied. */
export async function decodeBatch(task: BatchTask): Promise<BatchTaskResult> {
  const result = await runBatchTask(task);
  if (!result.x) return result;
  const transferable = {
    [Piscina.transferableSymbol]: [result.x.buffer],
    [Piscina.valueSymbol]: result,
  };
  return Piscina.move(transferable as never) as unknown as BatchTaskResult;
}
