// Original file: proto/drover.proto

export const SampleEncoding = {
  SAMPLE_ENCODING_UNSPECIFIED: 'SAMPLE_ENCODING_UNSPECIFIED',
  /**
   * Each sample is an image file's bytes (JPEG, PNG, ...), decoded by the worker's pool.
   */
  FILE_BYTES: 'FILE_BYTES',
  /**
   * Each sample is height x width x channels uint8 pixels (IDX, CIFAR).
   */
  RAW_PIXELS: 'RAW_PIXELS',
} as const;

export type SampleEncoding =
  | 'SAMPLE_ENCODING_UNSPECIFIED'
  | 0
  /**
   * Each sample is an image file's bytes (JPEG, PNG, ...), decoded by the worker's pool.
   */
  | 'FILE_BYTES'
  | 1
  /**
   * Each sample is height x width x channels uint8 pixels (IDX, CIFAR).
   */
  | 'RAW_PIXELS'
  | 2

export type SampleEncoding__Output = typeof SampleEncoding[keyof typeof SampleEncoding]
