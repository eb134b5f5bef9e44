import * as tf from '@tensorflow/tfjs';

/**
 * Shared code for comparing kernels across backends: seeded inputs as plain arrays (so each
 * backend builds its own tensors), a run-on-backend wrapper, and the error measure.
 */

/** Seeded uniform values in [-1, 1) (mulberry32), reproducible across runs and backends. */
export function seededValues(size: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** The values of a tensor of this shape, seeded. */
export function seededTensorValues(shape: readonly number[], seed: number): { shape: number[]; values: Float32Array } {
  return { shape: [...shape], values: seededValues(shape.reduce((a, b) => a * b, 1), seed) };
}

/**
 * Switches to `backend`, runs `compute` in a tidy and returns the values of what it returns,
 * leaving no tensor behind.
 */
export async function valuesOn(backend: string, compute: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to initialise`);
  const outputs = tf.tidy(compute);
  const list = Array.isArray(outputs) ? outputs : [outputs];
  // Asynchronous reads: a GPU backend (webgpu) cannot read synchronously.
  try {
    return await Promise.all(list.map(async (t) => Float32Array.from(await t.data())));
  } finally {
    tf.dispose(list);
  }
}

/**
 * rel = max|a - b| / max(1e-6, max|b|): the largest deviation, relative to the reference's
 * largest magnitude (so that near-zero entries do not blow it up). Mismatched lengths: Infinity.
 */
export function relativeError(actual: Float32Array, reference: Float32Array): number {
  if (actual.length !== reference.length) return Number.POSITIVE_INFINITY;
  let deviation = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    const d = Math.abs(actual[i]! - reference[i]!);
    // NaN anywhere must fail the comparison, so keep it rather than let Math.max drop it.
    deviation = Number.isNaN(d) ? Number.NaN : Math.max(deviation, d);
    scale = Math.max(scale, Math.abs(reference[i]!));
  }
  return Number.isNaN(deviation) ? Number.POSITIVE_INFINITY : deviation / Math.max(1e-6, scale);
}

/**
 * The filter a dilated convolution effectively applies: taps spread `dilation` apart with zeros
 * between ([fH, fW, a, b] -> [(fH - 1) * d + 1, (fW - 1) * d + 1, a, b]). A stride-1 dilated
 * convolution equals an undilated one with this filter, which gives a reference for backends
 * whose gradient kernels ignore dilation (tfjs-backend-cpu's depthwise ones do).
 */
export function spreadFilter(filter: tf.Tensor4D, dilation: number): tf.Tensor4D {
  if (dilation === 1) return filter;
  const [fh, fw, a, b] = filter.shape;
  const spaced = tf.pad(tf.reshape(filter, [fh, 1, fw, 1, a, b]), [
    [0, 0],
    [0, dilation - 1],
    [0, 0],
    [0, dilation - 1],
    [0, 0],
    [0, 0],
  ]);
  return tf.slice(tf.reshape<tf.Rank.R4>(spaced, [fh * dilation, fw * dilation, a, b]), 0, [(fh - 1) * dilation + 1, (fw - 1) * dilation + 1, a, b]);
}

/** Inverse of spreadFilter for a gradient: the taps at multiples of `dilation`. */
export function gatherDilatedTaps(spread: tf.Tensor4D, dilation: number): tf.Tensor4D {
  if (dilation === 1) return spread;
  const [h, w, a, b] = spread.shape;
  return tf.stridedSlice(spread, [0, 0, 0, 0], [h, w, a, b], [dilation, dilation, 1, 1]) as tf.Tensor4D;
}

/**
 * The kernels the threaded-wasm test compares with cpu: large enough that XNNPACK splits the
 * work across threads (a 2-D convolution's input and filter gradients, a depthwise one's).
 */
export function threadedKernelRuns(): tf.Tensor[] {
  const t = (shape: [number, number, number, number], seed: number) => tf.tensor4d(seededValues(shape.reduce((a, b) => a * b, 1), seed), shape);
  const x = t([8, 16, 16, 8], 1);
  const filter = t([3, 3, 8, 16], 2);
  const dy = t([8, 8, 8, 16], 3);
  const depthwiseFilter = t([3, 3, 8, 2], 4);
  const conv = { strides: 2, pad: 'same', dataFormat: 'NHWC' };
  const depthwise = { strides: 2, pad: 'same', dilations: 1 };
  return [
    tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter }, { ...conv, inputShape: x.shape }) as tf.Tensor,
    tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, { ...conv, filterShape: filter.shape }) as tf.Tensor,
    tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: depthwiseFilter }, { ...depthwise, inputShape: x.shape }) as tf.Tensor,
    tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { ...depthwise, filterShape: depthwiseFilter.shape }) as tf.Tensor,
    tf.conv2d(x, filter, 1, 'same'),
  ];
}

/**
 * The case grid both kernel suites (composed wasm, native oneDNN) compare with cpu: every
 * kernel must agree to rel <= TOLERANCE (relativeError above).
 */
export const TOLERANCE = 1e-4;

export type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
export type Shape4 = [number, number, number, number];

export const EXPLICIT: tf.backend_util.ExplicitPadding = [
  [0, 0],
  [1, 2],
  [2, 0],
  [0, 0],
];
export const PADS: Pad[] = ['same', 'valid', 1, EXPLICIT];
// Batch 1 and odd sizes, odd spatial sizes, 1/3/8 channels.
export const INPUTS: Shape4[] = [
  [1, 7, 9, 3],
  [3, 8, 8, 1],
  [2, 11, 10, 8],
  [1, 9, 6, 3],
];
export const OUT_CHANNELS = [8, 3, 1, 5];

export interface ConvCase {
  label: string;
  xShape: Shape4;
  filterShape: Shape4;
  strides: number;
  dilations: number;
  pad: Pad;
  info: tf.backend_util.Conv2DInfo;
}

/**
 * Every (kernel size 1/3/5, stride 1/2/3, padding) combination, cycling through the input
 * shapes; with `dilated`, also 3x3 filters at dilation 2 and 3 (stride 1: tfjs requires it).
 * Depthwise cases get channel multipliers 1 and 2, regular ones OUT_CHANNELS in turn.
 */
export function convCases(depthwise: boolean, { dilated }: { dilated: boolean }): ConvCase[] {
  const cases: ConvCase[] = [];
  let i = 0;
  const add = (k: number, strides: number, dilations: number, pad: Pad): void => {
    const xShape = INPUTS[i % INPUTS.length]!;
    const out = depthwise ? 1 + (i % 2) : OUT_CHANNELS[i % OUT_CHANNELS.length]!;
    i++;
    const filterShape: Shape4 = [k, k, xShape[3], out];
    const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, dilations, pad, undefined, depthwise, 'channelsLast');
    if (info.outHeight <= 0 || info.outWidth <= 0) return;
    const label = `x ${xShape.join('x')} f ${filterShape.join('x')} s${strides} d${dilations} pad ${JSON.stringify(pad)}`;
    cases.push({ label, xShape, filterShape, strides, dilations, pad, info });
  };
  for (const k of [1, 3, 5]) {
    for (const s of [1, 2, 3]) {
      for (const pad of PADS) add(k, s, 1, pad);
    }
  }
  if (dilated) {
    for (const d of [2, 3]) {
      for (const pad of PADS) add(3, 1, d, pad);
    }
  }
  return cases;
}

export function tensor4(spec: { shape: number[]; values: Float32Array }): tf.Tensor4D {
  return tf.tensor4d(spec.values, spec.shape as Shape4);
}

/** Seeded inputs of a depthwise case's backprops (the seeds both kernel test files use). */
export interface DepthwiseGradInputs {
  x: { shape: number[]; values: Float32Array };
  filter: { shape: number[]; values: Float32Array };
  dy: { shape: number[]; values: Float32Array };
}

export function depthwiseGradInputs(c: ConvCase, index: number): DepthwiseGradInputs {
  return {
    x: seededTensorValues(c.xShape, 50 + index),
    filter: seededTensorValues(c.filterShape, 250 + index),
    dy: seededTensorValues(c.info.outShape, 450 + index),
  };
}

/** Input and filter gradients of a depthwise case, by the kernels of the active backend. */
export function depthwiseGrads(c: ConvCase, { x, filter, dy }: DepthwiseGradInputs): tf.Tensor[] {
  const attrs = { strides: c.strides, pad: c.pad, dilations: c.dilations };
  return [
    tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropInput, { dy: tensor4(dy), filter: tensor4(filter) }, { ...attrs, inputShape: c.xShape }) as tf.Tensor,
    tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropFilter, { x: tensor4(x), dy: tensor4(dy) }, { ...attrs, filterShape: c.filterShape }) as tf.Tensor,
  ];
}

/**
 * The same gradients as the reference computes them: tfjs-backend-cpu's depthwise gradient
 * kernels ignore dilations, so with d > 1 it is the undilated gradient for the spread filter
 * (equal by construction).
 */
export function depthwiseGradsReference(c: ConvCase, { x, filter, dy }: DepthwiseGradInputs): tf.Tensor[] {
  const attrs = { strides: c.strides, pad: c.pad, dilations: 1 };
  const spreadShape: Shape4 = [c.info.effectiveFilterHeight, c.info.effectiveFilterWidth, c.filterShape[2], c.filterShape[3]];
  return [
    tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropInput, { dy: tensor4(dy), filter: spreadFilter(tensor4(filter), c.dilations) }, { ...attrs, inputShape: c.xShape }) as tf.Tensor,
    gatherDilatedTaps(tf.engine().runKernel(tf.DepthwiseConv2dNativeBackpropFilter, { x: tensor4(x), dy: tensor4(dy) }, { ...attrs, filterShape: spreadShape }) as tf.Tensor4D, c.dilations),
  ];
}

/** conv s2 -> relu -> depthwise (multiplier 2) s2 -> relu -> conv 3x3 valid -> mean square. */
export function smallNetGradients(specs: { shape: number[]; values: Float32Array }[]): tf.Tensor[] {
  const [x, w1, dw, w2] = specs.map(tensor4) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
  const loss = (xi: tf.Tensor, a: tf.Tensor, b: tf.Tensor, c: tf.Tensor): tf.Scalar => {
    const h1 = tf.relu(tf.conv2d(xi as tf.Tensor4D, a as tf.Tensor4D, 2, 'same'));
    const h2 = tf.relu(tf.depthwiseConv2d(h1, b as tf.Tensor4D, 2, 'same'));
    return tf.mean(tf.square(tf.conv2d(h2, c as tf.Tensor4D, 1, 'valid')));
  };
  return tf.grads(loss)([x, w1, dw, w2]);
}

/** The small net's seeded input and filters. */
export const SMALL_NET = [
  seededTensorValues([3, 13, 11, 3], 1),
  seededTensorValues([3, 3, 3, 8], 2),
  seededTensorValues([3, 3, 8, 2], 3),
  seededTensorValues([3, 3, 16, 5], 4),
];
