import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { OnednnAddon } from './addon.ts';
import { FUSED_UPDATE, UPDATE_RULE_CODES, wasmUpdateKernel } from '../update-kernels.ts';

/**
 * tfjs kernels of the wasm backend computed by oneDNN, in place on the wasm heap. Each one
 * handles the float32 NHWC cases oneDNN covers and hands anything else (another dtype or data
 * format, PReLU, a bias that is not one value per channel, padding oneDNN cannot express) to
 * the kernel registered before it (tfjs's own or drover's composed one), so registering these
 * never removes a capability.
 *
 * Heap views are taken after the output is allocated: an allocation may grow the wasm memory,
 * which detaches every view made before it.
 */

type Activation = 'linear' | 'relu' | 'relu6' | 'leakyrelu' | 'sigmoid' | 'elu';
/** Codes of native/src/addon.cc's Activation enum. */
const ACTIVATION_CODES: Record<Activation, number> = { linear: 0, relu: 1, relu6: 2, leakyrelu: 3, sigmoid: 4, elu: 5 };

type ConvInfo = tf.backend_util.Conv2DInfo;

interface Fallback {
  kernelFunc: tf.KernelFunc;
  setupFunc?: tf.KernelSetupFunc;
}

function view(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

function allFloat32(...infos: (tf.TensorInfo | undefined)[]): boolean {
  return infos.every((t) => t === undefined || t.dtype === 'float32');
}

/** oneDNN requires out = floor((in + padBefore + padAfter - effectiveFilter) / stride) + 1. */
function paddingConsistent(info: ConvInfo): boolean {
  const { inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, effectiveFilterHeight, effectiveFilterWidth, padInfo } = info;
  const out = (size: number, before: number, after: number, filter: number, stride: number) => Math.floor((size + before + after - filter) / stride) + 1;
  return (
    info.dataFormat === 'channelsLast' &&
    [padInfo.top, padInfo.bottom, padInfo.left, padInfo.right].every((p) => p >= 0) &&
    out(inHeight, padInfo.top, padInfo.bottom, effectiveFilterHeight, strideHeight) === outHeight &&
    out(inWidth, padInfo.left, padInfo.right, effectiveFilterWidth, strideWidth) === outWidth
  );
}

/**
 * The padding after the input that oneDNN expects: exactly what the last window needs, negative
 * when the input has rows or columns no window reaches (oneDNN's backward-weights kernels
 * mis-handle those with the larger, equally consistent, padding tfjs gives).
 */
function tightPadding(info: ConvInfo): { top: number; left: number; bottom: number; right: number } {
  const { top, left } = info.padInfo;
  return {
    top,
    left,
    bottom: (info.outHeight - 1) * info.strideHeight + info.effectiveFilterHeight - info.inHeight - top,
    right: (info.outWidth - 1) * info.strideWidth + info.effectiveFilterWidth - info.inWidth - left,
  };
}

/** The Int32Array `sizes` of the addon's convolution entry points. */
function convSizes(info: ConvInfo, depthwise: boolean, activation: Activation, hasBias: boolean): Int32Array {
  const p = tightPadding(info);
  return Int32Array.from([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels,
    info.outHeight, info.outWidth, info.outChannels,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth,
    p.top, p.left, p.bottom, p.right,
    depthwise ? 1 : 0, ACTIVATION_CODES[activation], hasBias ? 1 : 0,
  ]);
}

interface ConvAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  activation?: string;
  leakyreluAlpha?: number;
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}

function convInfo(xShape: number[], filterShape: number[], attrs: ConvAttrs, depthwise: boolean): ConvInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
    depthwise,
    tf.backend_util.convertConv2DDataFormat(attrs.dataFormat ?? 'NHWC'),
  );
}

function fusableActivation(name: string | undefined): Activation | undefined {
  const activation = (name ?? 'linear') as Activation;
  return activation in ACTIVATION_CODES ? activation : undefined;
}

const nativeCalls = new Map<string, number>();

/** How many times each kernel ran natively (not through its fallback) in this process. */
export function nativeKernelCalls(): ReadonlyMap<string, number> {
  return nativeCalls;
}

/** Runs `compute` on a fresh output, or frees it and defers to the fallback if oneDNN refuses. */
function withOutput(kernelName: string, args: Parameters<tf.KernelFunc>[0], fallback: Fallback, shape: number[], compute: (out: tf.TensorInfo, backend: BackendWasm) => void): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const out = backend.makeOutput(shape, 'float32');
  try {
    compute(out, backend);
    nativeCalls.set(kernelName, (nativeCalls.get(kernelName) ?? 0) + 1);
  } catch (err) {
    backend.disposeData(out.dataId);
    if (err instanceof Error && (err as { code?: string }).code === 'DROVER_ERR_NATIVE') return fallback.kernelFunc(args) as tf.TensorInfo;
    throw err;
  }
  return out;
}

function forwardConv(addon: OnednnAddon, depthwise: boolean, fused: boolean) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { x, filter, bias, preluActivationWeights } = args.inputs;
      const attrs = args.attrs as unknown as ConvAttrs;
      const activation = fused ? fusableActivation(attrs.activation) : 'linear';
      const info = convInfo(x!.shape, filter!.shape, attrs, depthwise);
      const biasFits = bias == null || (bias.shape.length === 1 && bias.shape[0] === info.outChannels);
      if (!allFloat32(x, filter, bias) || activation === undefined || preluActivationWeights != null || !biasFits || !paddingConsistent(info)) {
        return fallback.kernelFunc(args);
      }
      const sizes = convSizes(info, depthwise, activation, bias != null);
      return withOutput(kernelName, args, fallback, info.outShape, (out, backend) => {
        addon.conv2dForward(view(backend, x!), view(backend, filter!), bias == null ? null : view(backend, bias), view(backend, out), sizes, attrs.leakyreluAlpha ?? 0.2);
      });
    };
}

function convInputGrad(addon: OnednnAddon, depthwise: boolean) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { dy, filter } = args.inputs;
      const attrs = args.attrs as unknown as ConvAttrs;
      const info = convInfo(attrs.inputShape!, filter!.shape, attrs, depthwise);
      if (!allFloat32(dy, filter) || !paddingConsistent(info)) return fallback.kernelFunc(args);
      const sizes = convSizes(info, depthwise, 'linear', false);
      return withOutput(kernelName, args, fallback, info.inShape, (out, backend) => {
        addon.conv2dBackpropInput(view(backend, dy!), view(backend, filter!), view(backend, out), sizes);
      });
    };
}

function convFilterGrad(addon: OnednnAddon, depthwise: boolean) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { x, dy } = args.inputs;
      const attrs = args.attrs as unknown as ConvAttrs;
      const info = convInfo(x!.shape, attrs.filterShape!, attrs, depthwise);
      if (!allFloat32(x, dy) || !paddingConsistent(info)) return fallback.kernelFunc(args);
      const sizes = convSizes(info, depthwise, 'linear', false);
      return withOutput(kernelName, args, fallback, attrs.filterShape!, (out, backend) => {
        addon.conv2dBackpropFilter(view(backend, x!), view(backend, dy!), view(backend, out), sizes);
      });
    };
}

interface PoolAttrs {
  filterSize: number | [number, number];
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** MaxPoolGrad (inputs dy, input, output) and AvgPoolGrad (inputs dy, input). */
function poolGrad(addon: OnednnAddon, isMax: boolean) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { dy, input } = args.inputs;
      const attrs = args.attrs as unknown as PoolAttrs;
      const info = tf.backend_util.computePool2DInfo(input!.shape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
      const p = tightPadding(info);
      // oneDNN wants each padding smaller than the window.
      const padsFit = p.top < info.filterHeight && p.bottom < info.filterHeight && p.left < info.filterWidth && p.right < info.filterWidth;
      if (!allFloat32(dy, input) || !paddingConsistent(info) || !padsFit) return fallback.kernelFunc(args);
      const sizes = Int32Array.from([
        info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth,
        info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth,
        p.top, p.left, p.bottom, p.right, isMax ? 1 : 0,
      ]);
      return withOutput(kernelName, args, fallback, input!.shape, (out, backend) => {
        (isMax ? addon.maxPoolGrad : addon.poolGrad)(view(backend, input!), view(backend, dy!), view(backend, out), sizes);
      });
    };
}

/** Sum (or Mean) of float32 tensors over a leading or a trailing block of axes (e.g. bias gradients, batch statistics). */
function sum(addon: OnednnAddon, mean: boolean) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { x } = args.inputs;
      const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      const rank = x!.shape.length;
      const axes = [...new Set(tf.util.parseAxisParam(axis, x!.shape))].sort((a, b) => a - b);
      const leading = axes.every((a, i) => a === i);
      const trailing = axes.every((a, i) => a === rank - axes.length + i);
      if (x!.dtype !== 'float32' || axes.length === 0 || x!.shape.some((d) => d === 0) || !(leading || trailing)) return fallback.kernelFunc(args);
      const split = leading ? axes.length : rank - axes.length;
      const outer = x!.shape.slice(0, split).reduce((a, b) => a * b, 1);
      const inner = x!.shape.slice(split).reduce((a, b) => a * b, 1);
      const kept = x!.shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const outShape = keepDims ? kept : x!.shape.filter((_, i) => !axes.includes(i));
      const sizes = Int32Array.from([outer, inner, leading ? 1 : 0]);
      return withOutput(kernelName, args, fallback, outShape, (out, backend) => {
        addon.sum(view(backend, x!), view(backend, out), sizes, mean ? 1 / (leading ? outer : inner) : 1);
      });
    };
}

/** Add of a float32 tensor and a per-channel vector (shape [C] or [1, ..., 1, C]), in either order. */
function biasAdd(addon: OnednnAddon) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { a, b } = args.inputs;
      const isBias = (v: tf.TensorInfo, of: tf.TensorInfo): boolean =>
        v.shape.length >= 1 && v.shape.length <= of.shape.length && v.shape.slice(0, -1).every((d) => d === 1) && v.shape.at(-1) === of.shape.at(-1) && of.shape.length >= 2;
      const [x, bias] = isBias(b!, a!) ? [a!, b!] : isBias(a!, b!) ? [b!, a!] : [undefined, undefined];
      if (x === undefined || bias === undefined || !allFloat32(a, b) || tf.util.sizeFromShape(x.shape) === 0 || tf.util.sizeFromShape(bias.shape) === tf.util.sizeFromShape(x.shape)) {
        return fallback.kernelFunc(args);
      }
      const inner = x.shape.at(-1)!;
      const sizes = Int32Array.from([tf.util.sizeFromShape(x.shape) / inner, inner]);
      return withOutput(kernelName, args, fallback, x.shape, (out, backend) => {
        addon.biasAdd(view(backend, x), view(backend, bias), view(backend, out), sizes);
      });
    };
}

/** drover's fused optimizer update, vectorised (and threaded on large tensors) by the addon. */
function fusedUpdate(addon: OnednnAddon) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc => {
    const native = addon.fusedUpdate?.bind(addon);
    if (native === undefined) return fallback.kernelFunc;
    return wasmUpdateKernel((config, w, g, s1, s2, w2, t1, t2) => {
      const params = Float64Array.of(UPDATE_RULE_CODES[config.rule], config.lr, config.a, config.b, config.epsilon);
      native(w, g, s1 ?? null, s2 ?? null, w2, t1 ?? null, t2 ?? null, params);
      nativeCalls.set(kernelName, (nativeCalls.get(kernelName) ?? 0) + 1);
    });
  };
}

/** FusedBatchNorm with statistics, offset and scale of one value per channel (last axis). */
function batchNorm(addon: OnednnAddon) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { x, mean, variance, offset, scale } = args.inputs;
      const { varianceEpsilon } = args.attrs as unknown as { varianceEpsilon: number };
      const channels = x!.shape.at(-1) ?? 0;
      const perChannel = (t: tf.TensorInfo | undefined): boolean => t == null || (t.shape.at(-1) === channels && tf.util.sizeFromShape(t.shape) === channels);
      if (!allFloat32(x, mean, variance, offset, scale) || channels === 0 || tf.util.sizeFromShape(x!.shape) === 0 || ![mean, variance, offset, scale].every(perChannel)) {
        return fallback.kernelFunc(args);
      }
      const sizes = Int32Array.from([tf.util.sizeFromShape(x!.shape) / channels, channels]);
      return withOutput(kernelName, args, fallback, x!.shape, (out, backend) => {
        addon.batchNorm(
          view(backend, x!),
          view(backend, mean!),
          view(backend, variance!),
          offset == null ? null : view(backend, offset),
          scale == null ? null : view(backend, scale),
          view(backend, out),
          sizes,
          varianceEpsilon,
        );
      });
    };
}

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  activation?: string;
  leakyreluAlpha?: number;
}

/** BatchMatMul and _FusedMatMul whose operands have the same leading (batch) dimensions. */
function matMul(addon: OnednnAddon, fused: boolean) {
  return (fallback: Fallback, kernelName: string): tf.KernelFunc =>
    (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs;
      const attrs = args.attrs as unknown as MatMulAttrs;
      const activation = fused ? fusableActivation(attrs.activation) : 'linear';
      const aRank = a!.shape.length;
      const bRank = b!.shape.length;
      const lead = a!.shape.slice(0, -2);
      const sameBatch = aRank === bRank && aRank >= 2 && lead.every((d, i) => d === b!.shape[i]);
      const m = a!.shape[aRank - (attrs.transposeA ? 1 : 2)]!;
      const k = a!.shape[aRank - (attrs.transposeA ? 2 : 1)]!;
      const n = b!.shape[bRank - (attrs.transposeB ? 2 : 1)]!;
      const kB = b!.shape[bRank - (attrs.transposeB ? 1 : 2)]!;
      const biasFits = bias == null || (bias.shape.length === 1 && bias.shape[0] === n);
      if (!allFloat32(a, b, bias) || activation === undefined || preluActivationWeights != null || !biasFits || !sameBatch || k !== kB || m * n * k === 0) {
        return fallback.kernelFunc(args);
      }
      const batch = lead.reduce((x, y) => x * y, 1);
      const sizes = Int32Array.from([batch, m, k, n, attrs.transposeA ? 1 : 0, attrs.transposeB ? 1 : 0, ACTIVATION_CODES[activation], bias != null ? 1 : 0]);
      return withOutput(kernelName, args, fallback, [...lead, m, n], (out, backend) => {
        addon.matMul(view(backend, a!), view(backend, b!), bias == null ? null : view(backend, bias), view(backend, out), sizes, attrs.leakyreluAlpha ?? 0.2);
      });
    };
}

/** Kernel name -> a factory of its kernelFunc around the kernel it replaces. */
export function nativeKernelFactories(addon: OnednnAddon): Record<string, (fallback: Fallback, kernelName: string) => tf.KernelFunc> {
  return {
    [tf.Conv2D]: forwardConv(addon, false, false),
    [tf.FusedConv2D]: forwardConv(addon, false, true),
    [tf.Conv2DBackpropInput]: convInputGrad(addon, false),
    [tf.Conv2DBackpropFilter]: convFilterGrad(addon, false),
    [tf.DepthwiseConv2dNative]: forwardConv(addon, true, false),
    [tf.FusedDepthwiseConv2D]: forwardConv(addon, true, true),
    [tf.DepthwiseConv2dNativeBackpropInput]: convInputGrad(addon, true),
    [tf.DepthwiseConv2dNativeBackpropFilter]: convFilterGrad(addon, true),
    [tf.MaxPoolGrad]: poolGrad(addon, true),
    [tf.AvgPoolGrad]: poolGrad(addon, false),
    [tf.Sum]: sum(addon, false),
    [tf.Mean]: sum(addon, true),
    [tf.FusedBatchNorm]: batchNorm(addon),
    [tf.Add]: biasAdd(addon),
    [FUSED_UPDATE]: fusedUpdate(addon),
    [tf.BatchMatMul]: matMul(addon, false),
    [tf._FusedMatMul]: matMul(addon, true),
  };
}

export type { Fallback as NativeFallback };
