/**
 * The contract between data sources and the trainer: a split is a list of samples with
 * labels; a batch is one NHWC float32 buffer plus labels, assembled for a list of sample ids.
 */
import type * as tf from '@tensorflow/tfjs';
import type { DataSpec } from './sources/index.ts';

/** [height, width, channels] of one decoded sample as the model sees it. */
export type InputShape = [number, number, number];

/**
 * One ready batch: x is NHWC float32 (n * h * w * c values), y holds class indices. A batch
 * augmented on the device instead carries `input` and an empty x.
 */
export interface Batch {
  x: Float32Array;
  /**
   * Present when the batch is warped, coloured and normalised on the device (augmentation on
   * a GPU backend): builds the [n, h, w, c] input on the active backend from the decoded
   * pixels, as tfjs ops; `x` is then empty. Call it inside the step's tidy, which disposes
   * the result; nothing is held on the device before the call.
   */
  input?(): tf.Tensor4D;
  y: Int32Array;
  n: number;
  shape: InputShape;
  /**
   * Ids of requested samples that could not be decoded and are not in this batch (n is
   * smaller by as many); each was counted and logged as a `data_skip`. Absent when none.
   */
  skipped?: number[];
  /** Why each skipped sample could not be decoded (same order as `skipped`). */
  skipReasons?: { id: number; reason: string; detail?: string }[];
  /**
   * Hands `x`'s buffer back to the loader for reuse once its values were copied (e.g. into a
   * tensor): saves allocating and page-faulting a fresh buffer per batch. `x` must not be
   * used afterwards. Optional to call; absent on sources that do not pool buffers.
   */
  release?(): void;
}

/** Options for assembling one batch. */
export interface BatchOptions {
  /** Apply the split's augmentation (training only). */
  augment?: boolean;
  /** Epoch number, mixed into the per-sample augmentation seed so reruns are identical. */
  epoch?: number;
}

/** One split (train / validation / test) of a dataset. */
export interface DataSplit {
  readonly length: number;
  /** Label of sample i (no decoding needed); used by samplers and stratified splits. */
  label(index: number): number;
  /** Decodes (and, for training, augments) the given samples into one batch. */
  loadBatch(indices: ArrayLike<number>, options?: BatchOptions): Promise<Batch>;
}

/** A dataset as the trainer sees it. */
export interface Dataset {
  readonly name: string;
  readonly classNames: string[];
  readonly inputShape: InputShape;
  readonly train: DataSplit;
  readonly validation?: DataSplit;
  readonly test?: DataSplit;
  /** The spec it was opened from (a job file's `data`); absent for a dataset built in code. */
  readonly spec?: DataSpec;
  /** Releases thread pools and file handles. */
  close(): Promise<void>;
  /** Running counts of skipped samples (bad files, bad rows), by reason. */
  skipCounts?(): { total: number; distinct: number; byReason: Record<string, number> };
}
