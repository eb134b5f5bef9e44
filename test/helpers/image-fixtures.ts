/**
 * Image and dataset fixtures for the data-pipeline tests, generated with sharp into temp
 * folders that the test removes in teardown.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import type { ExecutionContext } from 'ava';
import sharp from 'sharp';
import pino, { type Logger } from 'pino';
import { Writable } from 'node:stream';

export type ImageFormat = 'jpg' | 'png' | 'webp' | 'gif' | 'tiff';

/** A temp folder removed when the test ends. */
export async function tempDir(t: ExecutionContext, prefix = 'drover-data-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Interleaved RGB pixels computed per position. */
export function rgbPixels(width: number, height: number, colour: (x: number, y: number) => [number, number, number]): Uint8Array {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = colour(x, y);
      const o = (y * width + x) * 3;
      data[o] = r;
      data[o + 1] = g;
      data[o + 2] = b;
    }
  }
  return data;
}

/** Encodes raw RGB pixels to a file in the given format (lossless where the format allows). */
export async function writeImage(file: string, pixels: Uint8Array, width: number, height: number, format: ImageFormat = 'png'): Promise<string> {
  let image = sharp(pixels, { raw: { width, height, channels: 3 } });
  switch (format) {
    case 'jpg':
      image = image.jpeg({ quality: 95 });
      break;
    case 'png':
      image = image.png();
      break;
    case 'webp':
      image = image.webp({ lossless: true });
      break;
    case 'gif':
      image = image.gif();
      break;
    case 'tiff':
      image = image.tiff({ compression: 'lzw' });
      break;
  }
  await mkdir(path.dirname(file), { recursive: true });
  await image.toFile(file);
  return file;
}

/** A solid-colour image file. */
export async function writeSolid(file: string, colour: [number, number, number], size = 16, format: ImageFormat = 'png'): Promise<string> {
  return writeImage(file, rgbPixels(size, size, () => colour), size, size, format);
}

/**
 * An image folder: `classes` maps class name to image count; image k of class c is a solid
 * colour encoding (class index, k) so tests can tell samples apart after decoding.
 */
export async function makeImageFolder(root: string, classes: Record<string, number>, size = 16, format: ImageFormat = 'png'): Promise<string[]> {
  const written: string[] = [];
  for (const [ci, [name, count]] of Object.entries(classes).entries()) {
    await mkdir(path.join(root, name), { recursive: true });
    for (let k = 0; k < count; k++) {
      written.push(await writeSolid(path.join(root, name, `${String(k).padStart(3, '0')}.${format}`), [ci * 40, k * 10, 128], size, format));
    }
  }
  return written;
}

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(Buffer.from(type, 'ascii'), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * A decompression bomb: a valid PNG header announcing width x height pixels (e.g. 100000^2
 * = 10 GP) over a few hundred bytes of zeros that would inflate to gigabytes.
 */
export function pngBomb(width: number, height: number): Uint8Array {
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const idat = deflateSync(new Uint8Array(64 * 1024));
  const signature = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk('IHDR', ihdr), pngChunk('IDAT', idat), pngChunk('IEND', new Uint8Array(0))]);
}

/** A pino logger whose JSON lines the test can read back. */
export function logSink(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, stream);
  return {
    logger,
    lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** IDX bytes (big-endian header) for unsigned-byte data. */
export function idxBytes(dims: number[], data: Uint8Array, gzip = false): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const out = Buffer.concat([header, data]);
  return gzip ? gzipSync(out) : out;
}

/** CIFAR binary records: label byte(s) then 1024 R, 1024 G, 1024 B. */
export function cifarRecords(images: { labels: number[]; rgb: (x: number, y: number) => [number, number, number] }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const image of images) {
    const record = new Uint8Array(image.labels.length + 3072);
    record.set(image.labels);
    const base = image.labels.length;
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        const [r, g, b] = image.rgb(x, y);
        record[base + y * 32 + x] = r;
        record[base + 1024 + y * 32 + x] = g;
        record[base + 2048 + y * 32 + x] = b;
      }
    }
    parts.push(record);
  }
  return Buffer.concat(parts);
}

export async function writeBytes(file: string, bytes: Uint8Array | string): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, bytes);
  return file;
}

/** Value at (x, y, c) of an NHWC batch. */
export function at(x: Float32Array, shape: readonly [number, number, number], n: number, py: number, px: number, c: number): number {
  const [h, w, ch] = shape;
  return x[((n * h + py) * w + px) * ch + c]!;
}
