import test from 'ava';
import sharp from 'sharp';
import { drawAugment, NO_AUGMENT, sampleAffine, sampleSeed, type AugmentParams, type GeometryConfig } from '../src/data/augment.ts';
import { runBatchTask } from '../src/data/batch-task.ts';
import { resolvePipelines } from '../src/data/pipeline-config.ts';
import { pixelMapFor, resolveAugment, resolveNormalisation } from '../src/data/pipeline-config.ts';
import { parseDatasetSpec } from '../src/data/sources/index.ts';
import { warpInto, type FillMode, type Interpolation, type PixelSource } from '../src/data/warp.ts';
import { Rng } from '../src/data/rng.ts';

/** A source whose every value is distinct enough to tell pixels apart: v = (7x + 13y + 50c) mod 256. */
function pattern(width: number, height: number, channels = 3): PixelSource {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < channels; c++) {
    data[(y * width + x) * channels + c] = (7 * x + 13 * y + 50 * c) % 256;
  }
  return { data, width, height, channels };
}

const px = (s: PixelSource, x: number, y: number, c: number): number => s.data[(y * s.width + x) * s.channels + c]!;

function geometry(width: number, height: number, fill: FillMode = 'constant', interpolation: Interpolation = 'bilinear', fillValue = 0): GeometryConfig {
  return { width, height, resize: 'cover', fill, fillValue, interpolation };
}

/** Warps with raw pixel values out (preprocess 'none'), so expectations read in 0..255. */
function warp(src: PixelSource, params: Partial<AugmentParams>, g: GeometryConfig): Float32Array {
  const p = { ...NO_AUGMENT, ...params };
  const out = new Float32Array(g.width * g.height * src.channels);
  const map = pixelMapFor(resolveNormalisation('none', src.channels), p, src.channels);
  warpInto(src, sampleAffine(p, g, src.width, src.height), out, 0, g.width, g.height, g, map);
  return out;
}

const outAt = (out: Float32Array, g: GeometryConfig, channels: number, x: number, y: number, c: number): number =>
  out[(y * g.width + x) * channels + c]!;

/** Straightforward reference: float coordinates, per-tap fill, no fast paths. */
function reference(src: PixelSource, params: Partial<AugmentParams>, g: GeometryConfig): Float32Array {
  const p = { ...NO_AUGMENT, ...params };
  const m = sampleAffine(p, g, src.width, src.height);
  const C = src.channels;
  const out = new Float32Array(g.width * g.height * C);
  const remap = (i: number, n: number): number => {
    if (i >= 0 && i < n) return i;
    if (g.fill === 'constant') return -1;
    if (g.fill === 'nearest') return Math.min(Math.max(i, 0), n - 1);
    if (g.fill === 'wrap') return ((i % n) + n) % n;
    const m2 = ((i % (2 * n)) + 2 * n) % (2 * n);
    return m2 < n ? m2 : 2 * n - 1 - m2;
  };
  const tap = (x: number, y: number, c: number): number => {
    const xi = remap(x, src.width);
    const yi = remap(y, src.height);
    return xi < 0 || yi < 0 ? g.fillValue : px(src, xi, yi, c);
  };
  for (let y = 0; y < g.height; y++) for (let x = 0; x < g.width; x++) {
    const X = x + 0.5;
    const Y = y + 0.5;
    const u = m.a * X + m.b * Y + m.c - 0.5;
    const v = m.d * X + m.e * Y + m.f - 0.5;
    for (let c = 0; c < C; c++) {
      let value: number;
      if (g.interpolation === 'nearest') {
        value = tap(Math.floor(u + 0.5), Math.floor(v + 0.5), c);
      } else {
        const x0 = Math.floor(u);
        const y0 = Math.floor(v);
        const fx = u - x0;
        const fy = v - y0;
        const top = tap(x0, y0, c) * (1 - fx) + tap(x0 + 1, y0, c) * fx;
        const bottom = tap(x0, y0 + 1, c) * (1 - fx) + tap(x0 + 1, y0 + 1, c) * fx;
        value = top * (1 - fy) + bottom * fy;
      }
      out[(y * g.width + x) * C + c] = value;
    }
  }
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

test('a horizontal flip mirrors every row exactly', (t) => {
  const src = pattern(12, 9);
  const g = geometry(12, 9);
  const out = warp(src, { flipH: true }, g);
  for (let y = 0; y < 9; y++) for (let x = 0; x < 12; x++) for (let c = 0; c < 3; c++) {
    t.is(outAt(out, g, 3, x, y, c), px(src, 11 - x, y, c));
  }
});

test('a vertical flip mirrors every column exactly', (t) => {
  const src = pattern(12, 9);
  const g = geometry(12, 9, 'constant', 'nearest');
  const out = warp(src, { flipV: true }, g);
  for (let y = 0; y < 9; y++) for (let x = 0; x < 12; x++) t.is(outAt(out, g, 3, x, y, 1), px(src, x, 8 - y, 1));
});

test('a 90 degree rotation turns the image counter-clockwise, pixel for pixel', (t) => {
  const src = pattern(10, 10);
  const g = geometry(10, 10);
  const out = warp(src, { angle: 90 }, g);
  for (let y = 0; y < 10; y++) for (let x = 0; x < 10; x++) {
    t.true(Math.abs(outAt(out, g, 3, x, y, 0) - px(src, 9 - y, x, 0)) < 1e-3, `at ${x},${y}`);
  }
});

test('each fill mode fills the uncovered border as named (shift by 3 pixels)', (t) => {
  const src = pattern(10, 6, 1);
  const expected: Record<FillMode, (x: number) => number> = {
    constant: () => 77,
    nearest: () => 9,
    reflect: (x) => 9 - (x + 3 - 10), // d c b a | a b c d
    wrap: (x) => x + 3 - 10,
  };
  for (const fill of ['constant', 'nearest', 'reflect', 'wrap'] as const) {
    const g = geometry(10, 6, fill, 'bilinear', 77);
    const out = warp(src, { tx: 3 }, g);
    for (let x = 0; x < 10; x++) {
      const want = x + 3 < 10 ? px(src, x + 3, 2, 0) : fill === 'constant' ? 77 : px(src, expected[fill](x), 2, 0);
      t.is(outAt(out, g, 1, x, 2, 0), want, `${fill} at x=${x}`);
    }
  }
});

test('a rotation keeps the fill mode: corners are filled, not wrapped or black', (t) => {
  const src = pattern(32, 32);
  for (const fill of ['constant', 'nearest', 'reflect', 'wrap'] as const) {
    const g = geometry(32, 32, fill, 'bilinear', 200);
    const out = warp(src, { angle: 45 }, g);
    t.true(maxDiff(out, reference(src, { angle: 45 }, g)) <= 2.5, fill);
    if (fill === 'constant') t.is(outAt(out, g, 3, 0, 0, 0), 200);
    else t.not(outAt(out, g, 3, 0, 0, 0), 200);
  }
  // nearest fill: a corner takes the closest edge pixel's value
  const g = geometry(32, 32, 'nearest', 'nearest');
  const out = warp(src, { angle: 45 }, g);
  const corner = outAt(out, g, 3, 0, 0, 0);
  const edges = new Set<number>();
  for (let i = 0; i < 32; i++) for (const [x, y] of [[i, 0], [0, i], [31, i], [i, 31]]) edges.add(px(src, x!, y!, 0));
  t.true(edges.has(corner));
});

test('the fast paths agree with the reference on random affines, both interpolations, 1 and 3 channels', (t) => {
  const rng = new Rng(99);
  for (let k = 0; k < 60; k++) {
    const channels = k % 2 === 0 ? 3 : 1;
    const src = pattern(20 + rng.int(40), 20 + rng.int(40), channels);
    const fill = (['constant', 'nearest', 'reflect', 'wrap'] as const)[k % 4]!;
    const interpolation = k % 3 === 0 ? 'nearest' : 'bilinear';
    const g = { ...geometry(8 + rng.int(40), 8 + rng.int(40), fill, interpolation, 31), resize: (['cover', 'stretch', 'contain'] as const)[k % 3]! };
    const params: Partial<AugmentParams> = {
      angle: rng.uniform(-180, 180), shear: rng.uniform(-30, 30), zx: rng.uniform(0.5, 1.6), zy: rng.uniform(0.5, 1.6),
      tx: rng.uniform(-5, 5), ty: rng.uniform(-5, 5), flipH: rng.chance(0.5), flipV: rng.chance(0.5),
    };
    const got = warp(src, params, g);
    const want = reference(src, params, g);
    // 8-bit weights: at most ~2 levels off; nearest may pick the neighbour exactly at a half pixel.
    const bad = got.reduce((n, v, i) => n + (Math.abs(v - want[i]!) > 2.5 ? 1 : 0), 0);
    t.true(bad <= (interpolation === 'nearest' ? got.length * 0.01 : 0), `case ${k}: ${bad} values off`);
  }
});

test('zoom < 1 enlarges around the centre; shear and shift move content as the matrix says', (t) => {
  const src = pattern(40, 40, 1);
  const g = geometry(40, 40, 'constant', 'bilinear');
  const zoomed = warp(src, { zx: 0.5, zy: 0.5 }, g);
  // output pixel x samples source centre + (x + 0.5 - 20) * 0.5
  t.true(Math.abs(outAt(zoomed, g, 1, 30, 20, 0) - reference(src, { zx: 0.5, zy: 0.5 }, g)[20 * 40 + 30]!) <= 2.5);
  // pixel 20's centre (20.5) sits 0.5 right of the centre -> source 20 + 0.25 -> u = 19.75
  const want = 0.0625 * px(src, 19, 19, 0) + 0.1875 * px(src, 20, 19, 0) + 0.1875 * px(src, 19, 20, 0) + 0.5625 * px(src, 20, 20, 0);
  t.true(Math.abs(outAt(zoomed, g, 1, 20, 20, 0) - want) <= 2.5);
  const shifted = warp(src, { ty: -4 }, g);
  t.is(outAt(shifted, g, 1, 7, 10, 0), px(src, 7, 6, 0));
  const sheared = warp(src, { shear: 20 }, g);
  t.true(maxDiff(sheared, reference(src, { shear: 20 }, g)) <= 2.5);
});

test('brightness scales and clips; channel shift adds one intensity to every channel and clips', (t) => {
  const src: PixelSource = { data: Uint8Array.from([100, 200, 10]), width: 1, height: 1, channels: 3 };
  const g = geometry(1, 1);
  t.deepEqual([...warp(src, { brightness: 1.5 }, g)], [150, 255, 15]);
  t.deepEqual([...warp(src, { channelShift: -20 }, g)], [80, 180, 0]);
  t.deepEqual([...warp(src, { channelShift: 60, brightness: 1.2 }, g)], [180, 255, 72]);
});

test('preprocess presets map 0..255 as their backbones expect', (t) => {
  const src: PixelSource = { data: Uint8Array.from([0, 128, 255]), width: 1, height: 1, channels: 3 };
  const g = geometry(1, 1);
  const run = (spec: Parameters<typeof resolveNormalisation>[0]): number[] => {
    const out = new Float32Array(3);
    const map = pixelMapFor(resolveNormalisation(spec, 3), NO_AUGMENT, 3);
    warpInto(src, sampleAffine(NO_AUGMENT, g, 1, 1), out, 0, 1, 1, g, map);
    return [...out];
  };
  const close = (a: number[], b: number[]): boolean => a.every((v, i) => Math.abs(v - b[i]!) < 1e-4);
  t.true(close(run('rescale'), [0, 128 / 255, 1]));
  t.true(close(run('mobilenet'), [-1, 128 / 127.5 - 1, 1]));
  // caffe: BGR order, ImageNet means subtracted, no scaling
  t.true(close(run('caffe'), [255 - 103.939, 128 - 116.779, 0 - 123.68]));
  t.true(close(run('torch'), [(0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225]));
  t.true(close(run({ mean: [0.5], std: [0.5] }), [-1, (128 / 255 - 0.5) / 0.5, 1]));
});

test('resize modes: cover crops the centre, stretch squeezes, contain pads with the fill', (t) => {
  const src = pattern(20, 10, 1);
  const base = geometry(10, 10, 'constant', 'bilinear', 99);
  const cover = warp(src, {}, { ...base, resize: 'cover' });
  t.is(outAt(cover, base, 1, 0, 0, 0), px(src, 5, 0, 0));
  const stretch = warp(src, {}, { ...base, resize: 'stretch' });
  t.is(outAt(stretch, base, 1, 3, 4, 0), (px(src, 6, 4, 0) + px(src, 7, 4, 0)) / 2);
  const contain = warp(src, {}, { ...base, resize: 'contain' });
  t.is(outAt(contain, base, 1, 5, 0, 0), 99, 'padding above');
  t.is(outAt(contain, base, 1, 5, 9, 0), 99, 'padding below');
  t.not(outAt(contain, base, 1, 5, 5, 0), 99);
});

test('augmentation draws depend on seed, epoch and sample id only, stay in range, and do not shift when another is enabled', (t) => {
  const config = resolveAugment(parseDatasetSpec({ kind: 'folder', path: 'x', augment: { rotationRange: 20, horizontalFlip: true, zoomRange: 0.1 } }).augment)!;
  const a = drawAugment(config, sampleSeed(1, 2, 3), 100, 100);
  t.deepEqual(drawAugment(config, sampleSeed(1, 2, 3), 100, 100), a);
  t.notDeepEqual(drawAugment(config, sampleSeed(1, 2, 4), 100, 100), a);
  t.notDeepEqual(drawAugment(config, sampleSeed(1, 3, 3), 100, 100), a);
  let flips = 0;
  for (let id = 0; id < 500; id++) {
    const p = drawAugment(config, sampleSeed(1, 0, id), 100, 100);
    t.true(Math.abs(p.angle) <= 20 && p.zx >= 0.9 && p.zx <= 1.1 && !p.flipV && p.tx === 0);
    if (p.flipH) flips++;
  }
  t.true(flips > 200 && flips < 300);
  const withShift = resolveAugment(parseDatasetSpec({ kind: 'folder', path: 'x', augment: { rotationRange: 20, horizontalFlip: true, zoomRange: 0.1, widthShiftRange: 0.2 } }).augment)!;
  t.is(drawAugment(withShift, sampleSeed(1, 2, 3), 100, 100).angle, a.angle);
});

test('the batch task flips a decoded image exactly when its seed says so, and reruns identically', async (t) => {
  const size = 24;
  const raw = pattern(size, size).data;
  const png = await sharp(raw, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
  const spec = parseDatasetSpec({ kind: 'folder', path: 'x', imageSize: [size, size], augment: { horizontalFlip: true }, preprocess: 'none' });
  const { train } = resolvePipelines(spec, null);
  const seeds = Array.from({ length: 40 }, (_, id) => sampleSeed(0, 0, id));
  const flipped = seeds.map((s) => drawAugment(train.augment!, s, size, size).flipH);
  t.true(flipped.includes(true) && flipped.includes(false));
  const samples = seeds.map(() => ({ bytes: new Uint8Array(png) }));
  const plain = await runBatchTask({ samples, seeds: null, pipeline: train });
  const augmented = await runBatchTask({ samples, seeds, pipeline: train });
  const again = await runBatchTask({ samples, seeds, pipeline: train });
  t.deepEqual([...again.x!], [...augmented.x!]);
  const per = size * size * 3;
  for (const [n, flip] of flipped.entries()) {
    let same = true;
    for (let y = 0; y < size && same; y++) for (let x = 0; x < size && same; x++) for (let c = 0; c < 3; c++) {
      const want = plain.x![n * per + (y * size + (flip ? size - 1 - x : x)) * 3 + c];
      if (augmented.x![n * per + (y * size + x) * 3 + c] !== want) same = false;
    }
    t.true(same, `sample ${n} (flip ${flip})`);
  }
  t.is(plain.x![(5 * size + 7) * 3 + 1], px({ data: raw, width: size, height: size, channels: 3 }, 7, 5, 1));
});
