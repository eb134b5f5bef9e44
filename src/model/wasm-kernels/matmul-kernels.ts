import * as tf from '@tensorflow/tfjs';
import { matMulByConvolution } from './convolve.ts';

/**
 * BatchMatMul and _FusedMatMul for the wasm backend, for the single-matrix products dense
 * layers make (their forward pass and both gradients), routed through XNNPACK's convolution.
 * The stock kernels send a transposed operand (dense backprop: dW = x^T dy, dx = dy W^T) to a
 * naive C++ triple loop, and plain products to XNNPACK's fully-connected operator, which packs
 * the weights through a slow transposing path whenever they are a new tensor (every step,
 * since optimizers replace variables' data). Batched products and non-float32 inputs go to the
 * stock BatchMatMul. Fused products we cannot map to one XNNPACK call (batched, PReLU, biases
 * not of rank 1) are composed from BatchMatMul, Add and the activation: the stock
 * _FusedMatMul adds bias[min(i * N + j, N - 1)] instead of bias[j] to row i on its non-XNNPACK
 * path (transposed or batched operands), a wrong result for every row but the first.
 */

type Activation = 'linear' | 'relu' | 'relu6' | 'prelu' | 'leakyrelu' | 'sigmoid' | 'elu';
const FUSABLE = new Set<Activation>(['linear', 'relu', 'relu6', 'leakyrelu', 'sigmoid', 'elu']);

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  activation?: Activation;
  leakyreluAlpha?: number;
}

function tensorOf(info: tf.TensorInfo): tf.Tensor {
  return info instanceof tf.Tensor ? info : tf.engine().makeTensorFromTensorInfo(info);
}

/** Both operands float32 matrices, possibly with leading dimensions of size 1. */
function isSingleProduct(a: tf.TensorInfo, b: tf.TensorInfo): boolean {
  const single = (t: tf.TensorInfo) => t.dtype === 'float32' && t.shape.length >= 2 && t.shape.slice(0, -2).every((d) => d === 1);
  return single(a) && single(b);
}

/** The operands as [M, K] and [K, N] matrices, and the stock kernel's output shape. */
function operands(a: tf.Tensor, b: tf.Tensor, { transposeA, transposeB }: MatMulAttrs): { left: tf.Tensor2D; right: tf.Tensor2D; outShape: number[] } {
  const matrix = (t: tf.Tensor, transpose: boolean): tf.Tensor2D => {
    const [rows, cols] = t.shape.slice(-2) as [number, number];
    const m = tf.reshape<tf.Rank.R2>(t, [rows, cols]);
    return transpose ? tf.transpose(m) : m;
  };
  const left = matrix(a, transposeA);
  const right = matrix(b, transposeB);
  const lead = (a.shape.length >= b.shape.length ? a.shape : b.shape).slice(0, -2);
  return { left, right, outShape: [...lead, left.shape[0], right.shape[1]] };
}

/** Configs wrapping the stock kernels registered for wasm now (call once, before replacing them). */
export function matMulKernelConfigs(): tf.KernelConfig[] {
  const stockMatMul = tf.getKernel(tf.BatchMatMul, 'wasm');
  const stockFused = tf.getKernel(tf._FusedMatMul, 'wasm');
  if (stockMatMul === undefined || stockFused === undefined) return [];
  const batchMatMul: tf.KernelConfig = {
    kernelName: tf.BatchMatMul,
    backendName: 'wasm',
    // The stock kernel binds its wasm entry point at backend start; we still call it.
    setupFunc: stockMatMul.setupFunc,
    kernelFunc: (args) => {
      const { a, b } = args.inputs;
      if (!isSingleProduct(a!, b!)) return stockMatMul.kernelFunc(args);
      return tf.tidy(() => {
        const { left, right, outShape } = operands(tensorOf(a!), tensorOf(b!), args.attrs as unknown as MatMulAttrs);
        return tf.reshape(matMulByConvolution(left, right), outShape);
      });
    },
  };
  const fusedMatMul: tf.KernelConfig = {
    kernelName: tf._FusedMatMul,
    backendName: 'wasm',
    setupFunc: stockFused.setupFunc,
    kernelFunc: (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs;
      const attrs = args.attrs as unknown as MatMulAttrs;
      const activation = attrs.activation ?? 'linear';
      const n = b!.shape[b!.shape.length - (attrs.transposeB ? 2 : 1)]!;
      const biasFits = bias == null || (bias.shape.length === 1 && bias.shape[0] === n);
      if (a!.dtype !== 'float32' || b!.dtype !== 'float32') return stockFused.kernelFunc(args);
      if (!isSingleProduct(a!, b!) || !FUSABLE.has(activation) || preluActivationWeights != null || !biasFits) {
        return tf.tidy(() => composedFusedMatMul(args.inputs, attrs));
      }
      return tf.tidy(() => {
        const { left, right, outShape } = operands(tensorOf(a!), tensorOf(b!), attrs);
        const [m, k] = left.shape;
        // A 1x1 FusedConv2D: XNNPACK adds the bias and clamps (relu/relu6) in the same pass.
        const inputs: tf.NamedTensorMap = { x: tf.reshape(left, [1, 1, m, k]), filter: tf.reshape(right, [1, 1, k, n]) };
        if (bias != null) inputs['bias'] = tensorOf(bias);
        const convAttrs = { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: 1, activation, leakyreluAlpha: attrs.leakyreluAlpha ?? 0.2 };
        const out = tf.engine().runKernel(tf.FusedConv2D, inputs, convAttrs as unknown as tf.NamedAttrMap) as tf.Tensor;
        return tf.reshape(out, outShape);
      });
    },
  };
  return [batchMatMul, fusedMatMul];
}

/** _FusedMatMul as BatchMatMul, then Add (broadcast bias), then the activation. */
function composedFusedMatMul(inputs: tf.NamedTensorInfoMap, attrs: MatMulAttrs): tf.Tensor {
  const { a, b, bias, preluActivationWeights } = inputs;
  const product = { transposeA: attrs.transposeA, transposeB: attrs.transposeB };
  let out = tf.engine().runKernel(tf.BatchMatMul, { a: tensorOf(a!), b: tensorOf(b!) }, product as unknown as tf.NamedAttrMap) as tf.Tensor;
  if (bias != null) out = tf.add(out, tensorOf(bias));
  switch (attrs.activation ?? 'linear') {
    case 'linear':
      return out;
    case 'relu':
      return tf.relu(out);
    case 'relu6':
      return tf.relu6(out);
    case 'prelu':
      return tf.prelu(out, tensorOf(preluActivationWeights!));
    case 'leakyrelu':
      return tf.leakyRelu(out, attrs.leakyreluAlpha ?? 0.2);
    case 'sigmoid':
      return tf.sigmoid(out);
    case 'elu':
      return tf.elu(out);
  }
}
