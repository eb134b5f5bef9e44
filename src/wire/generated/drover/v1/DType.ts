// Original file: proto/drover.proto

export const DType = {
  DTYPE_UNSPECIFIED: 'DTYPE_UNSPECIFIED',
  FLOAT32: 'FLOAT32',
  UINT8: 'UINT8',
  INT32: 'INT32',
} as const;

export type DType =
  | 'DTYPE_UNSPECIFIED'
  | 0
  | 'FLOAT32'
  | 1
  | 'UINT8'
  | 2
  | 'INT32'
  | 3

export type DType__Output = typeof DType[keyof typeof DType]
