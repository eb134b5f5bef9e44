// Original file: proto/drover.proto

import type { Transfer as _drover_v1_Transfer, Transfer__Output as _drover_v1_Transfer__Output } from '../../drover/v1/Transfer.ts';
import type { SampleEncoding as _drover_v1_SampleEncoding, SampleEncoding__Output as _drover_v1_SampleEncoding__Output } from '../../drover/v1/SampleEncoding.ts';

/**
 * The samples of one task.
 */
export interface Shard {
  /**
   * Sample ids within the split (always sent; they seed per-sample augmentation).
   */
  'sampleIds'?: (number)[];
  'labels'?: (number)[];
  /**
   * Which split the ids index when the worker reads the data itself ("train", "validation", "test").
   */
  'split'?: (string);
  /**
   * Encoded bytes of each sample, concatenated, in `payload`; absent when every node mounts the
   * dataset (shared transport) and reads the ids itself.
   */
  'sampleBytes'?: (number)[];
  'payload'?: (_drover_v1_Transfer | null);
  'augment'?: (boolean);
  /**
   * Epoch number, mixed into the augmentation seed.
   */
  'epoch'?: (number);
  'encoding'?: (_drover_v1_SampleEncoding);
  /**
   * Size of every sample when encoding is RAW_PIXELS.
   */
  'height'?: (number);
  'width'?: (number);
  'channels'?: (number);
}

/**
 * The samples of one task.
 */
export interface Shard__Output {
  /**
   * Sample ids within the split (always sent; they seed per-sample augmentation).
   */
  'sampleIds': (number)[];
  'labels': (number)[];
  /**
   * Which split the ids index when the worker reads the data itself ("train", "validation", "test").
   */
  'split': (string);
  /**
   * Encoded bytes of each sample, concatenated, in `payload`; absent when every node mounts the
   * dataset (shared transport) and reads the ids itself.
   */
  'sampleBytes': (number)[];
  'payload': (_drover_v1_Transfer__Output | null);
  'augment': (boolean);
  /**
   * Epoch number, mixed into the augmentation seed.
   */
  'epoch': (number);
  'encoding': (_drover_v1_SampleEncoding__Output);
  /**
   * Size of every sample when encoding is RAW_PIXELS.
   */
  'height': (number);
  'width': (number);
  'channels': (number);
}
