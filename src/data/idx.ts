import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { access } from 'node:fs/promises';
import { DatasetError } from '../errors.ts';
import type { Batch, BatchOptions, DataSplit, Dataset, InputShape } from './types.ts';

/** A decoded IDX file: unsigned-byte tensors as used by MNIST and Fashion-MNIST. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

const IDX_UBYTE = 0x08;
const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;

/** Parses an IDX buffer (gzipped or raw). Only the unsigned-byte type is supported. */
export function parseIdx(buffer: Uint8Array, source = 'idx buffer'): IdxArray {
  let bytes = buffer;
  if (bytes.length >= 2 && bytes[0] === GZIP_MAGIC_0 && bytes[1] === GZIP_MAGIC_1) {
    try {
      bytes = gunzipSync(bytes);
    } catch (cause) {
      throw new DatasetError(`${source}: gzip stream is corrupt or truncated`, { cause });
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DatasetError(`${source}: not an IDX file (bad magic number)`);
  }
  const type = bytes[2]!;
  const rank = bytes[3]!;
  if (type !== IDX_UBYTE) {
    throw new DatasetError(`${source}: IDX element type 0x${type.toString(16)} is not supported (only unsigned byte, 0x08)`);
  }
  if (rank < 1 || bytes.length < 4 + 4 * rank) {
    throw new DatasetError(`${source}: IDX header is truncated`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * rank;
  if (bytes.length - start < count) {
    throw new DatasetError(`${source}: IDX data is truncated: header promises ${count} bytes, file has ${bytes.length - start}`);
  }
  return { dims, data: bytes.subarray(start, start + count) };
}

/** Reads and parses one IDX file from disk. */
export async function readIdxFile(file: string): Promise<IdxArray> {
  let buffer: Buffer;
  try {
    buffer = await readFile(file);
  } catch (cause) {
    throw new DatasetError(`cannot read IDX file ${file}: ${(cause as Error).message}`, { cause });
  }
  return parseIdx(buffer, file);
}

/**
 * An in-memory split of uint8 images (N x H x W x C) and labels; batches are scaled to [0, 1].
 * Small enough for MNIST-sized sets to stay resident, so batches cost one copy.
 */
export class InMemorySplit implements DataSplit {
  readonly length: number;
  private readonly sampleSize: number;

  constructor(
    readonly images: Uint8Array,
    readonly labels: Uint8Array | Int32Array,
    readonly shape: InputShape,
  ) {
    this.sampleSize = shape[0] * shape[1] * shape[2];
    this.length = labels.length;
    if (images.length !== this.length * this.sampleSize) {
      throw new DatasetError(`image data holds ${images.length} bytes, expected ${this.length} x ${this.sampleSize}`);
    }
  }

  label(index: number): number {
    return this.labels[index]!;
  }

  async loadBatch(indices: ArrayLike<number>, _options: BatchOptions = {}): Promise<Batch> {
    const n = indices.length;
    const size = this.sampleSize;
    const x = new Float32Array(n * size);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const id = indices[i]!;
      if (!(id >= 0 && id < this.length)) throw new DatasetError(`sample index ${id} is out of range 0..${this.length - 1}`);
      const offset = id * size;
      const out = i * size;
      for (let j = 0; j < size; j++) x[out + j] = this.images[offset + j]! / 255;
      y[i] = this.labels[id]!;
    }
    return { x, y, n, shape: this.shape };
  }

  /** A view of the samples [start, end) as their own split (no copy). */
  slice(start: number, end: number): InMemorySplit {
    return new InMemorySplit(
      this.images.subarray(start * this.sampleSize, end * this.sampleSize),
      this.labels.subarray(start, end),
      this.shape,
    );
  }
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

export interface IdxDatasetOptions {
  /** Folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. */
  dir: string;
  /** Dataset name for logs; default: the folder name. */
  name?: string;
  /** Class names; default: Fashion-MNIST's when the folder name says so, else the digits. */
  classNames?: string[];
  /** Samples taken from the end of the training set for validation; default 5000. */
  validationSize?: number;
  /** Use only the first N training samples (before the validation cut); for quick runs. */
  limitTrain?: number;
  /** Use only the first N test samples. */
  limitTest?: number;
}

async function findIdx(dir: string, stem: string): Promise<string> {
  for (const candidate of [`${stem}.gz`, stem]) {
    const file = path.join(dir, candidate);
    try {
      await access(file);
      return file;
    } catch {
      // try the next spelling
    }
  }
  throw new DatasetError(`IDX file ${stem}[.gz] not found in ${dir}`);
}

async function readPair(dir: string, prefix: string, source: string): Promise<InMemorySplit> {
  const images = await readIdxFile(await findIdx(dir, `${prefix}-images-idx3-ubyte`));
  const labels = await readIdxFile(await findIdx(dir, `${prefix}-labels-idx1-ubyte`));
  if (images.dims.length !== 3 && images.dims.length !== 4) {
    throw new DatasetError(`${source}: ${prefix} images have rank ${images.dims.length}, expected 3 (N, H, W) or 4 (N, H, W, C)`);
  }
  if (labels.dims.length !== 1 || labels.dims[0] !== images.dims[0]) {
    throw new DatasetError(`${source}: ${prefix} has ${images.dims[0]} images but ${labels.dims[0]} labels`);
  }
  const shape: InputShape = [images.dims[1]!, images.dims[2]!, images.dims[3] ?? 1];
  return new InMemorySplit(images.data, labels.data, shape);
}

/** Opens an MNIST-style IDX folder as a dataset with train / validation / test splits. */
export async function openIdxDataset(options: IdxDatasetOptions): Promise<Dataset> {
  const dir = options.dir;
  const name = options.name ?? path.basename(dir);
  const classNames = options.classNames ?? (/fashion/i.test(name) ? FASHION_MNIST_CLASSES : MNIST_CLASSES);
  let train = await readPair(dir, 'train', name);
  const test = await readPair(dir, 't10k', name);
  for (let i = 0; i < train.length; i++) {
    if (train.label(i) >= classNames.length) {
      throw new DatasetError(`${name}: label ${train.label(i)} of training sample ${i} exceeds the ${classNames.length} class names`);
    }
  }
  if (options.limitTrain !== undefined) train = train.slice(0, Math.min(options.limitTrain, train.length));
  const validationSize = Math.min(options.validationSize ?? 5000, Math.floor(train.length / 2));
  const cut = train.length - validationSize;
  const testSplit = options.limitTest !== undefined ? test.slice(0, Math.min(options.limitTest, test.length)) : test;
  return {
    name,
    classNames,
    inputShape: train.shape,
    train: train.slice(0, cut),
    validation: validationSize > 0 ? train.slice(cut, train.length) : undefined,
    test: testSplit,
    close: async () => {},
  };
}
