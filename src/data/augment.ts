/**
 * Per-sample augmentation, seeded: the parameters of sample `id` at `epoch` depend on nothing
 * else, so a rerun, a resumed run or another thread draws the same ones. The geometric ones
 * become one affine map (see warp.ts); the colour ones become the warp's pixel map.
 */
import { composeAffine, type Affine, type FillMode, type Interpolation } from './warp.ts';
import { deriveSeed, Rng } from './rng.ts';

/** Resolved augmentation ranges (Keras ImageDataGenerator semantics, camelCased). */
export interface AugmentConfig {
  /** Degrees; the angle is uniform in [-rotation, rotation]. */
  rotation: number;
  /** Fraction of the width if < 1, else pixels; uniform in [-v, v]. */
  widthShift: number;
  /** Fraction of the height if < 1, else pixels. */
  heightShift: number;
  /** Shear angle in degrees, uniform in [-shear, shear]. */
  shear: number;
  /** Zoom factors [lo, hi]; < 1 zooms in, > 1 zooms out; x and y drawn independently. */
  zoom: [number, number];
  horizontalFlip: boolean;
  verticalFlip: boolean;
  /** Brightness factors [lo, hi], or null for none. */
  brightness: [number, number] | null;
  /** One intensity uniform in [-v, v] (pixel units) added to every channel, then clipped. */
  channelShift: number;
}

/** How a decoded image becomes the model's input box. */
export type ResizeMode = 'cover' | 'stretch' | 'contain';

/** Everything the geometric pass needs besides the random draws. */
export interface GeometryConfig {
  height: number;
  width: number;
  resize: ResizeMode;
  fill: FillMode;
  fillValue: number;
  interpolation: Interpolation;
}

/** One sample's drawn parameters. */
export interface AugmentParams {
  angle: number;
  tx: number;
  ty: number;
  shear: number;
  zx: number;
  zy: number;
  flipH: boolean;
  flipV: boolean;
  brightness: number;
  channelShift: number;
}

export const NO_AUGMENT: AugmentParams = {
  angle: 0, tx: 0, ty: 0, shear: 0, zx: 1, zy: 1, flipH: false, flipV: false, brightness: 1, channelShift: 0,
};

/** The per-sample seed: a function of the run's seed, the epoch and the sample's id only. */
export function sampleSeed(seed: number, epoch: number, id: number): number {
  return deriveSeed(seed, epoch, id, 0xa06);
}

/**
 * Draws one sample's parameters. Every draw happens in a fixed order whether or not its range
 * is active, so enabling one augmentation does not change the others' values.
 */
export function drawAugment(config: AugmentConfig, seed: number, outWidth: number, outHeight: number): AugmentParams {
  const rng = new Rng(seed);
  const angle = rng.uniform(-config.rotation, config.rotation);
  const sx = rng.uniform(-config.widthShift, config.widthShift);
  const sy = rng.uniform(-config.heightShift, config.heightShift);
  const shear = rng.uniform(-config.shear, config.shear);
  const zx = rng.uniform(config.zoom[0], config.zoom[1]);
  const zy = rng.uniform(config.zoom[0], config.zoom[1]);
  const flipH = rng.chance(0.5);
  const flipV = rng.chance(0.5);
  const brightness = rng.uniform(config.brightness?.[0] ?? 1, config.brightness?.[1] ?? 1);
  const channelShift = rng.uniform(-config.channelShift, config.channelShift);
  return {
    angle,
    tx: config.widthShift < 1 ? sx * outWidth : sx,
    ty: config.heightShift < 1 ? sy * outHeight : sy,
    shear,
    zx: config.zoom[0] === config.zoom[1] ? config.zoom[0] : zx,
    zy: config.zoom[0] === config.zoom[1] ? config.zoom[0] : zy,
    flipH: config.horizontalFlip && flipH,
    flipV: config.verticalFlip && flipV,
    brightness: config.brightness ? brightness : 1,
    channelShift: config.channelShift > 0 ? channelShift : 0,
  };
}

/**
 * The affine from output pixel coordinates to source pixel coordinates for a source of
 * `srcWidth` x `srcHeight`: centre the output, flip, zoom, shear, shift, rotate (Keras' order:
 * rotation · shift · shear · zoom), then scale into the source per the resize mode.
 */
export function sampleAffine(params: AugmentParams, geometry: GeometryConfig, srcWidth: number, srcHeight: number): Affine {
  const outW = geometry.width;
  const outH = geometry.height;
  let sx = srcWidth / outW;
  let sy = srcHeight / outH;
  if (geometry.resize === 'cover') sx = sy = Math.min(sx, sy);
  else if (geometry.resize === 'contain') sx = sy = Math.max(sx, sy);
  const t = (params.angle * Math.PI) / 180;
  const s = (params.shear * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  const centre: Affine = { a: 1, b: 0, c: -outW / 2, d: 0, e: 1, f: -outH / 2 };
  const flip: Affine = { a: params.flipH ? -1 : 1, b: 0, c: 0, d: 0, e: params.flipV ? -1 : 1, f: 0 };
  const zoom: Affine = { a: params.zx, b: 0, c: 0, d: 0, e: params.zy, f: 0 };
  const shear: Affine = { a: 1, b: -Math.sin(s), c: 0, d: 0, e: Math.cos(s), f: 0 };
  const shift: Affine = { a: 1, b: 0, c: params.tx, d: 0, e: 1, f: params.ty };
  const rotate: Affine = { a: cos, b: -sin, c: 0, d: sin, e: cos, f: 0 };
  const place: Affine = { a: sx, b: 0, c: srcWidth / 2, d: 0, e: sy, f: srcHeight / 2 };
  let m = composeAffine(flip, centre);
  m = composeAffine(zoom, m);
  m = composeAffine(shear, m);
  m = composeAffine(shift, m);
  m = composeAffine(rotate, m);
  return composeAffine(place, m);
}

/**
 * How much the source may be larger than needed before the decoder shrinks it: bilinear
 * sampling stays alias-free enough up to ~1.5x, and skipping libvips' resize for mild
 * downscales (256 -> 224) is the single largest saving on the common path.
 */
export const PRESHRINK_MARGIN = 1.5;

