// Original file: proto/drover.proto

/**
 * How a tensor's values travel. The receiver always gets values of the tensor's dtype.
 */
export const TensorEncoding = {
  /**
   * The dtype's own little-endian bytes (float32: 4 bytes a value).
   */
  TENSOR_ENCODING_RAW: 'TENSOR_ENCODING_RAW',
  /**
   * FLOAT32 only: each value as bfloat16 (the high 16 bits of the float32, rounded to nearest
   * even, NaN kept a NaN), 2 bytes a value, little-endian. Decoding is exact: every bfloat16 is
   * a float32.
   */
  TENSOR_ENCODING_BF16: 'TENSOR_ENCODING_BF16',
} as const;

/**
 * How a tensor's values travel. The receiver always gets values of the tensor's dtype.
 */
export type TensorEncoding =
  /**
   * The dtype's own little-endian bytes (float32: 4 bytes a value).
   */
  | 'TENSOR_ENCODING_RAW'
  | 0
  /**
   * FLOAT32 only: each value as bfloat16 (the high 16 bits of the float32, rounded to nearest
   * even, NaN kept a NaN), 2 bytes a value, little-endian. Decoding is exact: every bfloat16 is
   * a float32.
   */
  | 'TENSOR_ENCODING_BF16'
  | 1

/**
 * How a tensor's values travel. The receiver always gets values of the tensor's dtype.
 */
export type TensorEncoding__Output = typeof TensorEncoding[keyof typeof TensorEncoding]
