import { mkdir, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { DatasetError } from '../errors.ts';
import { InMemorySplit } from './idx.ts';
import { Rng, deriveSeed } from './rng.ts';
import type { Dataset } from './types.ts';

/** The classes of the generated set: one sub-folder each. */
export const SHAPE_CLASSES = ['circle', 'square', 'triangle', 'cross'] as const;

export interface ShapesOptions {
  /** Images per class. */
  perClass: number;
  /** Side of the square PNGs in pixels. */
  size: number;
  seed?: number;
}

/** Default home of the generated set: a per-user cache, reused when complete. */
export function defaultShapesDir(options: ShapesOptions): string {
  return path.join(os.homedir(), '.cache', 'drover', `shapes-${options.size}px-${options.perClass}`);
}

/**
 * Writes a small image-folder dataset of coloured shapes on noisy backgrounds (one folder per
 * class, PNG), so the main job runs on any fresh machine. Idempotent: a complete folder is reused.
 */
export async function generateShapes(dir: string, options: ShapesOptions): Promise<string> {
  const { perClass, size } = options;
  if (await isComplete(dir, perClass)) return dir;
  const rng = new Rng(deriveSeed(options.seed ?? 7, size, perClass));
  for (const shape of SHAPE_CLASSES) {
    const classDir = path.join(dir, shape);
    await mkdir(classDir, { recursive: true });
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < perClass; i++) {
      const svg = shapeSvg(shape, size, rng);
      const file = path.join(classDir, `${shape}-${String(i).padStart(5, '0')}.png`);
      jobs.push(sharp(Buffer.from(svg)).png().toBuffer().then((png) => writeFile(file, png)));
      if (jobs.length >= 32) await Promise.all(jobs.splice(0));
    }
    await Promise.all(jobs);
  }
  return dir;
}

async function isComplete(dir: string, perClass: number): Promise<boolean> {
  try {
    for (const shape of SHAPE_CLASSES) {
      const files = await readdir(path.join(dir, shape));
      if (files.filter((f) => f.endsWith('.png')).length < perClass) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function colour(rng: Rng, lo: number, hi: number): string {
  const c = (): number => Math.round(rng.uniform(lo, hi));
  return `rgb(${c()},${c()},${c()})`;
}

function shapeSvg(shape: (typeof SHAPE_CLASSES)[number], size: number, rng: Rng): string {
  const r = rng.uniform(0.22, 0.38) * size;
  const cx = rng.uniform(r, size - r);
  const cy = rng.uniform(r, size - r);
  const angle = rng.uniform(0, 360);
  const fill = colour(rng, 120, 255);
  let body: string;
  switch (shape) {
    case 'circle':
      body = `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fill}"/>`;
      break;
    case 'square':
      body = `<rect x="${cx - r * 0.8}" y="${cy - r * 0.8}" width="${r * 1.6}" height="${r * 1.6}" fill="${fill}" transform="rotate(${angle} ${cx} ${cy})"/>`;
      break;
    case 'triangle': {
      const points = [0, 120, 240]
        .map((a) => ((a + angle) * Math.PI) / 180)
        .map((a) => `${cx + r * Math.cos(a)},${cy + r * Math.sin(a)}`)
        .join(' ');
      body = `<polygon points="${points}" fill="${fill}"/>`;
      break;
    }
    case 'cross': {
      const w = r * 0.45;
      body =
        `<g transform="rotate(${angle} ${cx} ${cy})" fill="${fill}">` +
        `<rect x="${cx - r}" y="${cy - w / 2}" width="${2 * r}" height="${w}"/>` +
        `<rect x="${cx - w / 2}" y="${cy - r}" width="${w}" height="${2 * r}"/></g>`;
      break;
    }
  }
  // A few faint distractor dots so the task is not trivially separable by mean colour.
  let noise = '';
  for (let k = 0; k < 6; k++) {
    noise += `<circle cx="${rng.uniform(0, size)}" cy="${rng.uniform(0, size)}" r="${rng.uniform(0.5, 2)}" fill="${colour(rng, 40, 140)}"/>`;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="100%" height="100%" fill="${colour(rng, 0, 70)}"/>${noise}${body}</svg>`;
}

/**
 * The generated set as a dataset: decoded once into memory (it is small), split 70 / 15 / 15
 * into train / validation / test with a fixed interleave so every split holds every class.
 */
export async function openShapesDataset(options: ShapesOptions & { dir?: string }): Promise<Dataset> {
  const dir = await generateShapes(options.dir ?? defaultShapesDir(options), options);
  const { size } = options;
  const sampleSize = size * size * 3;
  const total = SHAPE_CLASSES.length * options.perClass;
  const images = new Uint8Array(total * sampleSize);
  const labels = new Uint8Array(total);
  let k = 0;
  for (let i = 0; i < options.perClass; i++) {
    for (const [label, shape] of SHAPE_CLASSES.entries()) {
      const file = path.join(dir, shape, `${shape}-${String(i).padStart(5, '0')}.png`);
      const { data, info } = await sharp(file).removeAlpha().resize(size, size).raw().toBuffer({ resolveWithObject: true });
      if (info.channels !== 3 || data.length !== sampleSize) throw new DatasetError(`${file}: decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
      images.set(data, k * sampleSize);
      labels[k++] = label;
    }
  }
  const all = new InMemorySplit(images, labels, [size, size, 3]);
  const trainEnd = Math.round(total * 0.7);
  const valEnd = Math.round(total * 0.85);
  return {
    name: 'shapes',
    classNames: [...SHAPE_CLASSES],
    inputShape: [size, size, 3],
    train: all.slice(0, trainEnd),
    validation: all.slice(trainEnd, valEnd),
    test: all.slice(valEnd, total),
    close: async () => {},
  };
}
