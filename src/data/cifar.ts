/**
 * CIFAR-10 / CIFAR-100 binary batches (https://www.cs.toronto.edu/~kriz/cifar.html): records
 * of label byte(s) + 3072 bytes of 32x32 planar RGB. Read once into memory as interleaved HWC.
 */
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from '../errors.ts';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const SIDE = 32;
const PIXELS = SIDE * SIDE;
const IMAGE_BYTES = 3 * PIXELS;

export interface CifarPart {
  /** N x 32 x 32 x 3, interleaved. */
  images: Uint8Array;
  labels: Uint8Array;
}

export interface CifarData {
  variant: 10 | 100;
  classNames: string[];
  train: CifarPart;
  test: CifarPart | null;
}

export interface CifarOptions {
  variant?: 10 | 100;
  labels?: 'fine' | 'coarse';
}

/** Parses concatenated records; `labelBytes` 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine). */
export function parseCifarRecords(buffers: { name: string; bytes: Uint8Array }[], labelBytes: 1 | 2, labelOffset: 0 | 1): CifarPart {
  const record = labelBytes + IMAGE_BYTES;
  let count = 0;
  for (const { name, bytes } of buffers) {
    if (bytes.length === 0 || bytes.length % record !== 0) {
      throw new DatasetError(
        `${name}: ${bytes.length} bytes is not a whole number of ${record}-byte CIFAR-${labelBytes === 1 ? 10 : 100} records (truncated, or the other CIFAR variant?)`,
      );
    }
    count += bytes.length / record;
  }
  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let n = 0;
  for (const { bytes } of buffers) {
    for (let r = 0; r < bytes.length; r += record, n++) {
      labels[n] = bytes[r + labelOffset]!;
      // planar R, G, B -> interleaved RGB
      const src = r + labelBytes;
      const dst = n * IMAGE_BYTES;
      for (let p = 0; p < PIXELS; p++) {
        images[dst + 3 * p] = bytes[src + p]!;
        images[dst + 3 * p + 1] = bytes[src + PIXELS + p]!;
        images[dst + 3 * p + 2] = bytes[src + 2 * PIXELS + p]!;
      }
    }
  }
  return { images, labels };
}

async function readAll(dir: string, names: string[]): Promise<{ name: string; bytes: Uint8Array }[]> {
  return Promise.all(
    names.map(async (name) => {
      const file = path.join(dir, name);
      try {
        return { name: file, bytes: await readFile(file) };
      } catch (cause) {
        throw new DatasetError(`cannot read CIFAR batch ${file}: ${(cause as Error).message}`, { cause });
      }
    }),
  );
}

async function readNames(file: string): Promise<string[] | null> {
  try {
    const names = (await readFile(file, 'utf8')).split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
    return names.length > 0 ? names : null;
  } catch {
    return null;
  }
}

/** Finds the batches in `dir` (or its cifar-10-batches-bin / cifar-100-binary sub-folder) and reads them. */
export async function readCifar(dir: string, options: CifarOptions = {}): Promise<CifarData> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (cause) {
    throw new DatasetError(`CIFAR folder ${dir} cannot be read: ${(cause as Error).message}`, { cause });
  }
  for (const sub of ['cifar-10-batches-bin', 'cifar-100-binary']) {
    if (entries.includes(sub) && !entries.some((e) => /^data_batch_\d+\.bin$/.test(e) || e === 'train.bin')) {
      return readCifar(path.join(dir, sub), options);
    }
  }
  const trainBatches = entries.filter((e) => /^data_batch_\d+\.bin$/.test(e)).sort((a, b) => Number(a.match(/\d+/)![0]) - Number(b.match(/\d+/)![0]));
  const detected: 10 | 100 | undefined = trainBatches.length > 0 ? 10 : entries.includes('train.bin') ? 100 : undefined;
  const variant = options.variant ?? detected;
  if (variant === undefined) {
    throw new DatasetError(`${dir} holds no CIFAR binary batches (data_batch_N.bin for CIFAR-10, train.bin for CIFAR-100)`);
  }
  if (variant === 10) {
    if (trainBatches.length === 0) throw new DatasetError(`${dir} has no data_batch_N.bin (CIFAR-10)`);
    const train = parseCifarRecords(await readAll(dir, trainBatches), 1, 0);
    const test = entries.includes('test_batch.bin') ? parseCifarRecords(await readAll(dir, ['test_batch.bin']), 1, 0) : null;
    const classNames = (await readNames(path.join(dir, 'batches.meta.txt'))) ?? CIFAR10_CLASSES;
    checkLabels(train, classNames.length, dir);
    if (test) checkLabels(test, classNames.length, dir);
    return { variant, classNames, train, test };
  }
  if (!entries.includes('train.bin')) throw new DatasetError(`${dir} has no train.bin (CIFAR-100)`);
  const coarse = options.labels === 'coarse';
  const train = parseCifarRecords(await readAll(dir, ['train.bin']), 2, coarse ? 0 : 1);
  const test = entries.includes('test.bin') ? parseCifarRecords(await readAll(dir, ['test.bin']), 2, coarse ? 0 : 1) : null;
  const count = coarse ? 20 : 100;
  const classNames = (await readNames(path.join(dir, coarse ? 'coarse_label_names.txt' : 'fine_label_names.txt'))) ??
    Array.from({ length: count }, (_, i) => `${coarse ? 'superclass' : 'class'}_${i}`);
  checkLabels(train, classNames.length, dir);
  if (test) checkLabels(test, classNames.length, dir);
  return { variant, classNames, train, test };
}

function checkLabels(part: CifarPart, classes: number, dir: string): void {
  for (let i = 0; i < part.labels.length; i++) {
    if (part.labels[i]! >= classes) {
      throw new DatasetError(`${dir}: record ${i} has label ${part.labels[i]}, but there are only ${classes} classes (wrong variant?)`);
    }
  }
}
