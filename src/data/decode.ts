/**
 * Turns one sample (a file path, encoded bytes, or raw pixels) into interleaved uint8 pixels
 * with the wanted channel count, cheaply: sniff the format from magic bytes, let sharp decode
 * (shrinking on load only when the source is much larger than the model's input), and fix
 * channel counts in JS instead of asking libvips for a colourspace pass.
 *
 * Never throws for a bad sample: failures come back as a `SampleFailure` (reason + detail).
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import sharp from 'sharp';
import type { PixelSource } from './warp.ts';
import { PRESHRINK_MARGIN, type ResizeMode } from './augment.ts';

/** Where a sample's bytes come from. */
export type SampleInput =
  | { path: string }
  | { bytes: Uint8Array }
  | { pixels: Uint8Array; width: number; height: number; channels: number };

/** Why a sample was skipped (stable strings: logs and tests key on them). */
export type SkipReason =
  | 'unreadable' // the file cannot be opened or read (fs error code in `errno`)
  | 'not_a_file' // a directory, FIFO, socket or device where a file was expected
  | 'empty' // zero bytes
  | 'too_large' // over maxFileBytes or maxInputPixels (decompression bomb)
  | 'unsupported_format' // not JPEG, PNG, WebP, GIF or TIFF by its magic bytes
  | 'truncated' // the data ends early
  | 'corrupt' // the decoder failed on the data
  | 'bad_pixels'; // raw pixel input whose size does not match its dimensions

export interface SampleFailure {
  reason: SkipReason;
  detail: string;
  errno?: string;
}

export interface DecodeTarget {
  width: number;
  height: number;
  resize: ResizeMode;
  channels: 1 | 3;
  maxInputPixels: number;
  maxFileBytes: number;
  /**
   * Read files synchronously: right on a pool thread (small files, no libuv round trips for
   * open / stat / read / close, and libuv's pool stays free for sharp), wrong on the main one.
   */
  syncFileRead?: boolean;
}

export type DecodeOutcome = { ok: true; image: PixelSource } | { ok: false; failure: SampleFailure };

const fail = (reason: SkipReason, detail: string, errno?: string): DecodeOutcome => ({
  ok: false,
  failure: errno === undefined ? { reason, detail } : { reason, detail, errno },
});

/** The formats drover accepts, by magic bytes; everything else is skipped unparsed. */
export function sniffFormat(bytes: Uint8Array): 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | null {
  const b = bytes;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38) return 'gif';
  if (b.length >= 12 && b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 &&
      b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) return 'webp';
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && (b[2] === 0x2a || b[2] === 0x2b) && b[3] === 0) ||
      (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0 && (b[3] === 0x2a || b[3] === 0x2b)))) return 'tiff';
  return null;
}

/**
 * Reads a file without ever blocking on it: O_NONBLOCK so a FIFO does not hang the open, a
 * regular-file check before reading, and a size cap before allocating.
 */
export async function readSampleFile(file: string, maxBytes: number): Promise<{ ok: true; bytes: Uint8Array } | { ok: false; failure: SampleFailure }> {
  let handle;
  try {
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code ?? 'EIO';
    return { ok: false, failure: { reason: errno === 'EISDIR' ? 'not_a_file' : 'unreadable', detail: (cause as Error).message, errno } };
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return { ok: false, failure: { reason: 'not_a_file', detail: `${file} is not a regular file` } };
    if (stat.size === 0) return { ok: false, failure: { reason: 'empty', detail: `${file} is empty (0 bytes)` } };
    if (stat.size > maxBytes) {
      return { ok: false, failure: { reason: 'too_large', detail: `${file} holds ${stat.size} bytes, over the ${maxBytes}-byte limit (maxFileBytes)` } };
    }
    const bytes = new Uint8Array(stat.size);
    let filled = 0;
    while (filled < bytes.length) {
      const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return { ok: true, bytes: filled === bytes.length ? bytes : bytes.subarray(0, filled) };
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code ?? 'EIO';
    return { ok: false, failure: { reason: 'unreadable', detail: (cause as Error).message, errno } };
  } finally {
    await handle.close().catch(() => {});
  }
}

/** `readSampleFile` for pool threads: same checks, no libuv round trips. */
export function readSampleFileSync(file: string, maxBytes: number): { ok: true; bytes: Uint8Array } | { ok: false; failure: SampleFailure } {
  let fd: number;
  try {
    fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code ?? 'EIO';
    return { ok: false, failure: { reason: errno === 'EISDIR' ? 'not_a_file' : 'unreadable', detail: (cause as Error).message, errno } };
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) return { ok: false, failure: { reason: 'not_a_file', detail: `${file} is not a regular file` } };
    if (stat.size === 0) return { ok: false, failure: { reason: 'empty', detail: `${file} is empty (0 bytes)` } };
    if (stat.size > maxBytes) {
      return { ok: false, failure: { reason: 'too_large', detail: `${file} holds ${stat.size} bytes, over the ${maxBytes}-byte limit (maxFileBytes)` } };
    }
    const bytes = new Uint8Array(stat.size);
    let filled = 0;
    while (filled < bytes.length) {
      const read = readSync(fd, bytes, filled, bytes.length - filled, filled);
      if (read === 0) break;
      filled += read;
    }
    return { ok: true, bytes: filled === bytes.length ? bytes : bytes.subarray(0, filled) };
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code ?? 'EIO';
    return { ok: false, failure: { reason: 'unreadable', detail: (cause as Error).message, errno } };
  } finally {
    closeSync(fd);
  }
}

/** Converts interleaved pixels to 1 or 3 channels (grey <-> RGB, alpha dropped) in JS. */
export function toChannels(src: PixelSource, channels: 1 | 3): PixelSource {
  const { data, width, height, channels: from } = src;
  if (from === channels) return src;
  const n = width * height;
  const out = new Uint8Array(n * channels);
  if (channels === 3) {
    if (from <= 2) {
      // grey (+ alpha): replicate
      for (let i = 0, p = 0, o = 0; i < n; i++, p += from, o += 3) out[o] = out[o + 1] = out[o + 2] = data[p]!;
    } else {
      // RGBA (or more): drop the extra bands
      for (let i = 0, p = 0, o = 0; i < n; i++, p += from, o += 3) {
        out[o] = data[p]!;
        out[o + 1] = data[p + 1]!;
        out[o + 2] = data[p + 2]!;
      }
    }
  } else if (from <= 2) {
    for (let i = 0, p = 0; i < n; i++, p += from) out[i] = data[p]!;
  } else {
    // ITU-R 601 luma, as tf.image.rgb_to_grayscale
    for (let i = 0, p = 0; i < n; i++, p += from) {
      out[i] = Math.round(0.2989 * data[p]! + 0.587 * data[p + 1]! + 0.114 * data[p + 2]!);
    }
  }
  return { data: out, width, height, channels };
}

/** Classifies sharp's error messages into skip reasons. */
function classifySharpError(error: Error): SampleFailure {
  const message = error.message;
  if (/pixel limit/i.test(message)) return { reason: 'too_large', detail: `${message} (maxInputPixels)` };
  if (/unsupported image format/i.test(message)) return { reason: 'unsupported_format', detail: message };
  if (/premature end|truncat|unexpected end/i.test(message)) return { reason: 'truncated', detail: message };
  return { reason: 'corrupt', detail: message };
}

/** Decodes encoded bytes with sharp to pixels of the target channel count. */
export async function decodeBytes(bytes: Uint8Array, target: DecodeTarget): Promise<DecodeOutcome> {
  if (bytes.length === 0) return fail('empty', 'zero bytes');
  const format = sniffFormat(bytes);
  if (format === null) {
    return fail('unsupported_format', 'not a JPEG, PNG, WebP, GIF or TIFF image (magic bytes)');
  }
  try {
    let image = sharp(bytes, {
      limitInputPixels: target.maxInputPixels,
      // 'error' rejects truncated and corrupt data but tolerates benign warnings.
      failOn: 'error',
      autoOrient: true,
      sequentialRead: true,
    });
    // Shrink only what is much larger than needed: JPEG / WebP shrink-on-load makes that
    // cheap, and the warp does the rest of the scaling in the same pass as the augmentation.
    image = image.resize({
      width: Math.ceil(target.width * PRESHRINK_MARGIN),
      height: Math.ceil(target.height * PRESHRINK_MARGIN),
      fit: 'outside',
      withoutEnlargement: true,
    });
    if (target.channels === 1) image = image.removeAlpha().toColourspace('b-w');
    const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
    if (data.byteLength !== info.width * info.height * info.channels) {
      return fail('corrupt', `decoder returned ${data.byteLength} bytes for ${info.width}x${info.height}x${info.channels} (not 8-bit)`);
    }
    const pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { ok: true, image: toChannels({ data: pixels, width: info.width, height: info.height, channels: info.channels }, target.channels) };
  } catch (cause) {
    const failure = classifySharpError(cause as Error);
    return { ok: false, failure };
  }
}

/** Decodes any sample input; never throws for bad data. */
export async function decodeSample(input: SampleInput, target: DecodeTarget): Promise<DecodeOutcome> {
  if ('pixels' in input) {
    const { pixels, width, height, channels } = input;
    if (!(width > 0 && height > 0 && channels >= 1 && channels <= 4) || pixels.length !== width * height * channels) {
      return fail('bad_pixels', `raw sample of ${pixels.length} bytes does not match ${width}x${height}x${channels}`);
    }
    if (width * height > target.maxInputPixels) {
      return fail('too_large', `${width}x${height} exceeds ${target.maxInputPixels} pixels (maxInputPixels)`);
    }
    return { ok: true, image: toChannels({ data: pixels, width, height, channels }, target.channels) };
  }
  if ('bytes' in input) {
    if (input.bytes.length > target.maxFileBytes) {
      return fail('too_large', `${input.bytes.length} bytes, over the ${target.maxFileBytes}-byte limit (maxFileBytes)`);
    }
    return decodeBytes(input.bytes, target);
  }
  const read = target.syncFileRead ? readSampleFileSync(input.path, target.maxFileBytes) : await readSampleFile(input.path, target.maxFileBytes);
  if (!read.ok) return read;
  return decodeBytes(read.bytes, target);
}
