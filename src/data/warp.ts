/**
 * The one geometric pass: every geometric augmentation (rotation, shift, shear, zoom, flips)
 * and the final resize / crop to the model's input are composed into a single affine map,
 * sampled once (bilinear or nearest) with the chosen fill mode, and written straight into the
 * batch's float32 buffer with the colour augmentation and normalisation applied in the same
 * loop. No intermediate images, one read and one write per output value.
 *
 * sharp allows one rotate per pipeline, fills rotations with a constant only and places
 * `affine` after the crop, so the composition (and reflect / nearest / wrap fills) lives here.
 */

/** Maps an output point (x, y) to source coordinates: sx = a x + b y + c, sy = d x + e y + f. */
export interface Affine {
  a: number;
  b: number;
  c: number;
  d: number;
  e: number;
  f: number;
}

/** How samples outside the source are filled (Keras' fill_mode). */
export type FillMode = 'constant' | 'nearest' | 'reflect' | 'wrap';
export type Interpolation = 'bilinear' | 'nearest';

/** Decoded pixels, interleaved HWC uint8. */
export interface PixelSource {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/**
 * Per-channel mapping from a sampled value v (0..255) to the float the model sees:
 * `out[perm[c]] = clamp(v * gain + shift[c]) * scale[c] + bias[c]`; clamping to 0..255 only
 * when `clamp` is set (a colour augmentation is active), as Keras clips after them.
 */
export interface PixelMap {
  scale: Float64Array;
  bias: Float64Array;
  gain: number;
  shift: Float64Array;
  clamp: boolean;
  /** Output slot of each source channel (e.g. [2, 1, 0] for BGR); identity when absent. */
  perm?: Int32Array;
}

export interface WarpOptions {
  fill: FillMode;
  /** Fill value for 'constant', in pixel units (0..255). */
  fillValue: number;
  interpolation: Interpolation;
}

/** Composes two affines: (p ∘ q)(x) = p(q(x)). */
export function composeAffine(p: Affine, q: Affine): Affine {
  return {
    a: p.a * q.a + p.b * q.d,
    b: p.a * q.b + p.b * q.e,
    c: p.a * q.c + p.b * q.f + p.c,
    d: p.d * q.a + p.e * q.d,
    e: p.d * q.b + p.e * q.e,
    f: p.d * q.c + p.e * q.f + p.f,
  };
}

/** Maps an integer index into 0..n-1 per fill mode; -1 means "use the fill value". */
function remap(i: number, n: number, fill: FillMode): number {
  if (i >= 0 && i < n) return i;
  switch (fill) {
    case 'constant':
      return -1;
    case 'nearest':
      return i < 0 ? 0 : n - 1;
    case 'reflect': {
      // d c b a | a b c d | d c b a (half-sample symmetric, as scipy / Keras 'reflect')
      const period = 2 * n;
      let m = i % period;
      if (m < 0) m += period;
      return m < n ? m : period - 1 - m;
    }
    case 'wrap': {
      let m = i % n;
      if (m < 0) m += n;
      return m;
    }
  }
}

/**
 * Integer x range [lo, hi] in 0..limit-1 where `f0 + k x` stays inside [min, max) with a margin
 * of one pixel each side, so the fast loop never needs a bounds check; float rounding at the
 * edges is left to the careful path.
 */
function insideRange(f0: number, k: number, min: number, max: number, limit: number): [number, number] {
  let lo: number;
  let hi: number;
  if (k === 0) {
    if (f0 >= min && f0 < max) return [0, limit - 1];
    return [0, -1];
  }
  if (k > 0) {
    lo = Math.ceil((min - f0) / k) + 1;
    hi = Math.floor((max - f0) / k) - 1;
  } else {
    lo = Math.ceil((max - f0) / k) + 1;
    hi = Math.floor((min - f0) / k) - 1;
  }
  return [Math.max(lo, 0), Math.min(hi, limit - 1)];
}

/** Maps one value through the pixel map into `out` (careful path only). */
function emit(out: Float32Array, o: number, c: number, v: number, map: PixelMap): void {
  let t = v * map.gain + map.shift[c]!;
  if (map.clamp) t = t < 0 ? 0 : t > 255 ? 255 : t;
  out[o + (map.perm ? map.perm[c]! : c)] = t * map.scale[c]! + map.bias[c]!;
}

/** Careful path for one output pixel: any coordinate, the fill mode applied per tap. */
function sampleCareful(src: PixelSource, options: WarpOptions, map: PixelMap, out: Float32Array, o: number, u: number, v: number): void {
  const { data, width: W, height: H, channels: C } = src;
  const { fill, fillValue } = options;
  const stride = W * C;
  if (fill === 'constant' && (u <= -1 || v <= -1 || u >= W || v >= H)) {
    // Entirely outside: every tap is the fill value (most of a rotation's corners).
    for (let c = 0; c < C; c++) emit(out, o, c, fillValue, map);
    return;
  }
  if (options.interpolation === 'bilinear') {
    const x0 = Math.floor(u);
    const y0 = Math.floor(v);
    const fx = u - x0;
    const fy = v - y0;
    const xa = remap(x0, W, fill);
    const xb = remap(x0 + 1, W, fill);
    const ya = remap(y0, H, fill);
    const yb = remap(y0 + 1, H, fill);
    for (let c = 0; c < C; c++) {
      const tl = xa < 0 || ya < 0 ? fillValue : data[ya * stride + xa * C + c]!;
      const tr = xb < 0 || ya < 0 ? fillValue : data[ya * stride + xb * C + c]!;
      const bl = xa < 0 || yb < 0 ? fillValue : data[yb * stride + xa * C + c]!;
      const br = xb < 0 || yb < 0 ? fillValue : data[yb * stride + xb * C + c]!;
      const top = tl + (tr - tl) * fx;
      const bottom = bl + (br - bl) * fx;
      emit(out, o, c, top + (bottom - top) * fy, map);
    }
  } else {
    const xi = remap(Math.floor(u + 0.5), W, fill);
    const yi = remap(Math.floor(v + 0.5), H, fill);
    for (let c = 0; c < C; c++) {
      emit(out, o, c, xi < 0 || yi < 0 ? fillValue : data[yi * stride + xi * C + c]!, map);
    }
  }
}

// Row kernels for the hot case (3 channels, bilinear), kept small and separate so V8 keeps
// every value in registers. Coordinates are 16.16 fixed point, weights 8-bit.
function rowBilinear3(
  data: Uint8Array, stride: number, out: Float32Array, o: number, n: number,
  U: number, V: number, KU: number, KV: number,
  m0: number, m1: number, m2: number, a0: number, a1: number, a2: number,
  p0: number, p1: number, p2: number,
): void {
  for (let i = 0; i < n; i++, U += KU, V += KV, o += 3) {
    const fx = (U & 0xffff) >> 8;
    const fy = (V & 0xffff) >> 8;
    const p = (V >> 16) * stride + (U >> 16) * 3;
    const q = p + stride;
    const gx = 256 - fx;
    const gy = 256 - fy;
    const wa = gx * gy, wb = fx * gy, wc = gx * fy, wd = fx * fy;
    out[o + p0] = (data[p]! * wa + data[p + 3]! * wb + data[q]! * wc + data[q + 3]! * wd) * m0 + a0;
    out[o + p1] = (data[p + 1]! * wa + data[p + 4]! * wb + data[q + 1]! * wc + data[q + 4]! * wd) * m1 + a1;
    out[o + p2] = (data[p + 2]! * wa + data[p + 5]! * wb + data[q + 2]! * wc + data[q + 5]! * wd) * m2 + a2;
  }
}

function rowBilinear3Clamped(
  data: Uint8Array, stride: number, out: Float32Array, o: number, n: number,
  U: number, V: number, KU: number, KV: number,
  g: number, h0: number, h1: number, h2: number, s0: number, s1: number, s2: number,
  b0: number, b1: number, b2: number, p0: number, p1: number, p2: number,
): void {
  for (let i = 0; i < n; i++, U += KU, V += KV, o += 3) {
    const fx = (U & 0xffff) >> 8;
    const fy = (V & 0xffff) >> 8;
    const p = (V >> 16) * stride + (U >> 16) * 3;
    const q = p + stride;
    const gx = 256 - fx;
    const gy = 256 - fy;
    const wa = gx * gy, wb = fx * gy, wc = gx * fy, wd = fx * fy;
    let r0 = (data[p]! * wa + data[p + 3]! * wb + data[q]! * wc + data[q + 3]! * wd) * g + h0;
    let r1 = (data[p + 1]! * wa + data[p + 4]! * wb + data[q + 1]! * wc + data[q + 4]! * wd) * g + h1;
    let r2 = (data[p + 2]! * wa + data[p + 5]! * wb + data[q + 2]! * wc + data[q + 5]! * wd) * g + h2;
    r0 = r0 < 0 ? 0 : r0 > 255 ? 255 : r0;
    r1 = r1 < 0 ? 0 : r1 > 255 ? 255 : r1;
    r2 = r2 < 0 ? 0 : r2 > 255 ? 255 : r2;
    out[o + p0] = r0 * s0 + b0;
    out[o + p1] = r1 * s1 + b1;
    out[o + p2] = r2 * s2 + b2;
  }
}

/** out value for every (channel, byte): 256 entries per channel, the pixel map applied. */
function valueTable(map: PixelMap): Float32Array {
  const channels = map.scale.length;
  const table = new Float32Array(256 * channels);
  for (let c = 0; c < channels; c++) {
    for (let v = 0; v < 256; v++) {
      let t = v * map.gain + map.shift[c]!;
      if (map.clamp) t = t < 0 ? 0 : t > 255 ? 255 : t;
      table[c * 256 + v] = t * map.scale[c]! + map.bias[c]!;
    }
  }
  return table;
}

function rowNearest3(
  data: Uint8Array, stride: number, out: Float32Array, o: number, n: number,
  U: number, V: number, KU: number, KV: number, lut: Float32Array,
  p0: number, p1: number, p2: number,
): void {
  for (let i = 0; i < n; i++, U += KU, V += KV, o += 3) {
    const p = (V >> 16) * stride + (U >> 16) * 3;
    out[o + p0] = lut[data[p]!]!;
    out[o + p1] = lut[256 + data[p + 1]!]!;
    out[o + p2] = lut[512 + data[p + 2]!]!;
  }
}

/** Output pixels [x0, x1) of a row outside the fast range: fill directly, or the careful path. */
function edge(
  src: PixelSource, options: WarpOptions, map: PixelMap, out: Float32Array, rowStart: number,
  x0: number, x1: number, u0: number, ku: number, v0: number, kv: number, fillOut: Float32Array | null,
): void {
  const C = src.channels;
  const W = src.width;
  const H = src.height;
  for (let x = x0; x < x1; x++) {
    const u = u0 + ku * x;
    const v = v0 + kv * x;
    const o = rowStart + x * C;
    if (fillOut !== null && (u <= -1 || v <= -1 || u >= W || v >= H)) {
      for (let c = 0; c < C; c++) out[o + c] = fillOut[c]!;
    } else {
      sampleCareful(src, options, map, out, o, u, v);
    }
  }
}

/**
 * Samples `src` through `m` into `out` at `offset` (outHeight x outWidth x channels floats),
 * applying `map` to every value.
 */
export function warpInto(
  src: PixelSource,
  m: Affine,
  out: Float32Array,
  offset: number,
  outWidth: number,
  outHeight: number,
  options: WarpOptions,
  map: PixelMap,
): void {
  const C = src.channels;
  const W = src.width;
  const H = src.height;
  const data = src.data;
  const bilinear = options.interpolation === 'bilinear';
  const stride = W * C;
  // Source index space: pixel i covers [i, i+1), its centre is i + 0.5; we sample at u = sx - 0.5.
  // Valid fast-path ranges: bilinear needs 0 <= u < W-1; nearest needs -0.5 <= u < W-0.5.
  const uMin = bilinear ? 0 : -0.5;
  const uMax = bilinear ? W - 1 : W - 0.5;
  const vMin = bilinear ? 0 : -0.5;
  const vMax = bilinear ? H - 1 : H - 0.5;
  const gain = map.gain;
  const clamp = map.clamp;
  const perm = map.perm;
  // Per-channel constants, copied into locals for the 1- and 3-channel fast paths.
  const s0 = map.scale[0]!, s1 = map.scale[1] ?? 0, s2 = map.scale[2] ?? 0;
  const b0 = map.bias[0]!, b1 = map.bias[1] ?? 0, b2 = map.bias[2] ?? 0;
  const h0 = map.shift[0]!, h1 = map.shift[1] ?? 0, h2 = map.shift[2] ?? 0;
  const p0 = perm ? perm[0]! : 0, p1 = perm ? perm[1]! : 1, p2 = perm ? perm[2]! : 2;

  let lut: Float32Array | undefined;
  // With a constant fill, pixels wholly outside the source (a rotation's corners) are one value.
  let fillOut: Float32Array | null = null;
  if (options.fill === 'constant') {
    fillOut = new Float32Array(C);
    for (let c = 0; c < C; c++) emit(fillOut, 0, c, options.fillValue, map);
  }
  const rowFloats = outWidth * C;
  for (let y = 0; y < outHeight; y++) {
    const Y = y + 0.5;
    const u0 = m.a * 0.5 + m.b * Y + m.c - 0.5;
    const v0 = m.d * 0.5 + m.e * Y + m.f - 0.5;
    const ku = m.a;
    const kv = m.d;
    const [ulo, uhi] = insideRange(u0, ku, uMin, uMax, outWidth);
    const [vlo, vhi] = insideRange(v0, kv, vMin, vMax, outWidth);
    const lo = Math.max(ulo, vlo);
    const hi = Math.min(uhi, vhi);
    const rowStart = offset + y * rowFloats;
    edge(src, options, map, out, rowStart, 0, Math.min(lo, outWidth), u0, ku, v0, kv, fillOut);
    if (hi >= lo) {
      if (C === 3 && bilinear && W < 16384 && H < 16384) {
        // 16.16 fixed-point coordinates and 8-bit weights: ~40% faster than floats in V8, and
        // exact enough (1/256 pixel) for augmentation.
        const KU = Math.round(ku * 65536);
        const KV = Math.round(kv * 65536);
        let U = Math.round((u0 + ku * lo) * 65536);
        let V = Math.round((v0 + kv * lo) * 65536);
        if (!clamp) {
          // No clipping needed: fold gain, shift, scale and bias into one multiply-add.
          rowBilinear3(data, stride, out, rowStart + lo * 3, hi - lo + 1, U, V, KU, KV,
            (gain * s0) / 65536, (gain * s1) / 65536, (gain * s2) / 65536,
            h0 * s0 + b0, h1 * s1 + b1, h2 * s2 + b2, p0, p1, p2);
        } else {
          rowBilinear3Clamped(data, stride, out, rowStart + lo * 3, hi - lo + 1, U, V, KU, KV,
            gain / 65536, h0, h1, h2, s0, s1, s2, b0, b1, b2, p0, p1, p2);
        }
      } else if (C === 3 && W < 16384 && H < 16384) {
        // Nearest: 16.16 fixed point, +0.5 to round, and a per-channel lookup table that
        // holds the whole value mapping (colour augmentation and normalisation included).
        lut ??= valueTable(map);
        rowNearest3(data, stride, out, rowStart + lo * 3, hi - lo + 1,
          Math.round((u0 + ku * lo + 0.5) * 65536), Math.round((v0 + kv * lo + 0.5) * 65536),
          Math.round(ku * 65536), Math.round(kv * 65536), lut, p0, p1, p2);
      } else if (C === 1 && bilinear) {
        for (let x = lo; x <= hi; x++) {
          const u = u0 + ku * x;
          const v = v0 + kv * x;
          const xi = u | 0;
          const yi = v | 0;
          const fx = u - xi;
          const p = yi * stride + xi;
          const q = p + stride;
          const t = data[p]! + (data[p + 1]! - data[p]!) * fx;
          const w = data[q]! + (data[q + 1]! - data[q]!) * fx;
          let r = (t + (w - t) * (v - yi)) * gain + h0;
          if (clamp) r = r < 0 ? 0 : r > 255 ? 255 : r;
          out[rowStart + x] = r * s0 + b0;
        }
      } else if (C === 1) {
        lut ??= valueTable(map);
        for (let x = lo; x <= hi; x++) {
          out[rowStart + x] = lut[data[((v0 + kv * x + 0.5) | 0) * stride + ((u0 + ku * x + 0.5) | 0)]!]!;
        }
      } else {
        for (let x = lo; x <= hi; x++) sampleCareful(src, options, map, out, rowStart + x * C, u0 + ku * x, v0 + kv * x);
      }
    }
    edge(src, options, map, out, rowStart, Math.max(hi + 1, lo, 0), outWidth, u0, ku, v0, kv, fillOut);
  }
}
