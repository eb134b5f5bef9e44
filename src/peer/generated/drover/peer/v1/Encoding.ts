// Original file: proto/peer.proto

/**
 * How the payload encodes float32 values.
 */
export const Encoding = {
  ENCODING_UNSPECIFIED: 'ENCODING_UNSPECIFIED',
  /**
   * Little-endian IEEE float32: 4 bytes a value.
   */
  ENCODING_FP32: 'ENCODING_FP32',
  /**
   * Little-endian bfloat16 (the high 16 bits of a float32, rounded to nearest even): 2 bytes a value.
   */
  ENCODING_BF16: 'ENCODING_BF16',
} as const;

/**
 * How the payload encodes float32 values.
 */
export type Encoding =
  | 'ENCODING_UNSPECIFIED'
  | 0
  /**
   * Little-endian IEEE float32: 4 bytes a value.
   */
  | 'ENCODING_FP32'
  | 1
  /**
   * Little-endian bfloat16 (the high 16 bits of a float32, rounded to nearest even): 2 bytes a value.
   */
  | 'ENCODING_BF16'
  | 2

/**
 * How the payload encodes float32 values.
 */
export type Encoding__Output = typeof Encoding[keyof typeof Encoding]
