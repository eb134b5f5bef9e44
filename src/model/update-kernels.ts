import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { WeightsError } from '../errors.ts';

/**
 * Fused optimizer updates: one kernel call per variable reads the weight, its gradient and its
 * slots once and writes the new values, where the same rule as separate tfjs ops takes 8-15
 * kernel calls, each a pass over memory and a fresh allocation (Adam: 3 ms of a 16 ms step of
 * the reference CNN on wasm+oneDNN). Registered for the backends whose memory JavaScript can
 * read directly (wasm, cpu); elsewhere (tfjs-node) optimizers keep the separate ops.
 *
 * Arithmetic is float64 per element, stored as float32: the rules as Keras documents them.
 */
export const FUSED_UPDATE = 'DroverFusedUpdate';

/** Which update: `sgd` has no slot, `momentum`/`nesterov` and `rmsprop` one, `adam` and `rmsprop-momentum` two. */
export type UpdateRule = 'sgd' | 'momentum' | 'nesterov' | 'adam' | 'rmsprop' | 'rmsprop-momentum';

export interface UpdateAttrs {
  rule: UpdateRule;
  /** Learning rate; for adam, the bias-corrected rate of this step. */
  lr: number;
  /** momentum, or adam's beta1, or rmsprop's rho. */
  a: number;
  /** adam's beta2, or rmsprop-momentum's momentum. */
  b: number;
  epsilon: number;
}

/** The rule codes of native/src/addon.cc's fusedUpdate. */
export const UPDATE_RULE_CODES: Record<UpdateRule, number> = { sgd: 0, momentum: 1, nesterov: 2, adam: 3, rmsprop: 4, 'rmsprop-momentum': 5 };

/** Slots each rule keeps (and takes as inputs s1, s2; returns after the weight). */
export function slotCount(rule: UpdateRule): number {
  if (rule === 'sgd') return 0;
  return rule === 'adam' || rule === 'rmsprop-momentum' ? 2 : 1;
}

/** One pass over every element: new weight into `w2`, new slots into `t1`/`t2`. */
export function applyUpdate(attrs: UpdateAttrs, w: Float32Array, g: Float32Array, s1: Float32Array | undefined, s2: Float32Array | undefined, w2: Float32Array, t1: Float32Array | undefined, t2: Float32Array | undefined): void {
  const { lr, a, b, epsilon } = attrs;
  const n = w.length;
  switch (attrs.rule) {
    case 'sgd':
      for (let i = 0; i < n; i++) w2[i] = w[i]! - lr * g[i]!;
      return;
    case 'momentum':
    case 'nesterov': {
      // Keras: v = m*v - lr*g; w += v (nesterov: w += m*v - lr*g).
      const nesterov = attrs.rule === 'nesterov';
      for (let i = 0; i < n; i++) {
        const v = a * s1![i]! - lr * g[i]!;
        t1![i] = v;
        w2[i] = w[i]! + (nesterov ? a * v - lr * g[i]! : v);
      }
      return;
    }
    case 'adam':
      for (let i = 0; i < n; i++) {
        const gi = g[i]!;
        const m = a * s1![i]! + (1 - a) * gi;
        const v = b * s2![i]! + (1 - b) * gi * gi;
        t1![i] = m;
        t2![i] = v;
        w2[i] = w[i]! - (lr * m) / (Math.sqrt(v) + epsilon);
      }
      return;
    case 'rmsprop':
    case 'rmsprop-momentum': {
      const withMomentum = attrs.rule === 'rmsprop-momentum';
      for (let i = 0; i < n; i++) {
        const gi = g[i]!;
        const ms = a * s1![i]! + (1 - a) * gi * gi;
        t1![i] = ms;
        const scaled = (lr * gi) / (Math.sqrt(ms) + epsilon);
        if (withMomentum) {
          const mom = b * s2![i]! + scaled;
          t2![i] = mom;
          w2[i] = w[i]! - mom;
        } else {
          w2[i] = w[i]! - scaled;
        }
      }
      return;
    }
  }
}

function inputsOf(inputs: tf.NamedTensorInfoMap, rule: UpdateRule): tf.TensorInfo[] {
  const list = [inputs.w!, inputs.g!, inputs.s1, inputs.s2].slice(0, 2 + slotCount(rule));
  if (list.some((x) => x === undefined || x.dtype !== 'float32')) throw new WeightsError(`${FUSED_UPDATE}: needs float32 w, g and ${slotCount(rule)} slots for ${rule}`);
  const size = tf.util.sizeFromShape(list[0]!.shape);
  if (list.some((x) => tf.util.sizeFromShape(x!.shape) !== size)) throw new WeightsError(`${FUSED_UPDATE}: w, g and slots differ in size`);
  return list as tf.TensorInfo[];
}

/** The arrays of one update on the wasm heap: inputs w g s1 s2, outputs w2 t1 t2. */
export type HeapUpdate = typeof applyUpdate;

/** The wasm kernel, computing with `update` (this file's loop; the oneDNN addon swaps in its own). */
export function wasmUpdateKernel(update: HeapUpdate): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const wasm = backend as BackendWasm;
    const config = attrs as unknown as UpdateAttrs;
    const ins = inputsOf(inputs, config.rule);
    const outs = ins.filter((_, i) => i !== 1).map((x) => wasm.makeOutput(x.shape, 'float32'));
    // Views after every allocation: growing the wasm memory detaches the earlier ones.
    const view = (x: tf.TensorInfo): Float32Array => wasm.typedArrayFromHeap(x) as Float32Array;
    const [w, g, s1, s2] = ins.map(view);
    const [w2, t1, t2] = outs.map(view);
    update(config, w!, g!, s1, s2, w2!, t1, t2);
    return outs;
  };
}

type CpuBackend = tf.KernelBackend & {
  data: { get(dataId: tf.DataId): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
};

const cpuUpdate: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const cpu = backend as CpuBackend;
  const config = attrs as unknown as UpdateAttrs;
  const ins = inputsOf(inputs, config.rule);
  const [w, g, s1, s2] = ins.map((x) => cpu.data.get(x.dataId).values);
  const size = w!.length;
  const [w2, t1, t2] = ins.filter((_, i) => i !== 1).map(() => new Float32Array(size));
  applyUpdate(config, w!, g!, s1, s2, w2!, t1, t2);
  return [w2, t1, t2].flatMap((values) => (values === undefined ? [] : [cpu.makeTensorInfo(ins[0]!.shape, 'float32', values)]));
};

/** Registers the fused update for wasm and cpu (once; later calls do nothing). */
export function registerFusedUpdateKernels(): void {
  for (const [backendName, kernelFunc] of [['wasm', wasmUpdateKernel(applyUpdate)], ['cpu', cpuUpdate]] as const) {
    if (tf.getKernel(FUSED_UPDATE, backendName) === undefined) tf.registerKernel({ kernelName: FUSED_UPDATE, backendName, kernelFunc });
  }
}

/** True when the active backend has the fused update. */
export function hasFusedUpdate(): boolean {
  return tf.getKernel(FUSED_UPDATE, tf.getBackend()) !== undefined;
}

/**
 * Runs the fused update: returns the new weight and slots as tensors (the caller assigns them).
 */
export function fusedUpdate(attrs: UpdateAttrs, w: tf.Tensor, g: tf.Tensor, slots: readonly tf.Tensor[]): tf.Tensor[] {
  const inputs: tf.NamedTensorMap = { w, g };
  slots.forEach((s, i) => {
    inputs[`s${i + 1}`] = s;
  });
  return tf.engine().runKernel(FUSED_UPDATE, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
}
