/**
 * The contract between data sources and the trainer: a split is a list of samples with
 * labels; a batch is one NHWC float32 buffer plus labels, assembled for a list of sample ids.
 */

/** [height, width, channels] of one decoded sample as the model sees it. */
export type InputShape = [number, number, number];

/** One ready batch: x is NHWC float32 (n * h * w * c values), y holds class indices. */
export interface Batch {
  x: Float32Array;
  y: Int32Array;
  n: number;
  shape: InputShape;
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
  /** Releases thread pools and file handles. */
  close(): Promise<void>;
}
