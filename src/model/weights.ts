import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../errors.ts';
import { readFloat32 } from './tensor-read.ts';
import { modelVariables, type ModelVariable } from './variables.ts';

/** One weight of a model as it travels: name, shape, dtype, and whether SGD updates it. */
export interface WeightEntry {
  name: string;
  shape: number[];
  dtype: 'float32';
  trainable: boolean;
}

/** All weights of a model as flat typed arrays, in `model.weights` order. */
export interface WeightSet {
  manifest: WeightEntry[];
  values: Float32Array[];
}


/**
 * Stable name of a weight: its original (un-suffixed) name. tfjs appends `_1`, `_2` to names
 * that repeat within a process, so the suffixed name differs between processes.
 */
function stableName(variable: ModelVariable): string {
  return variable.originalName ?? variable.name;
}

/** Manifest of every weight (trainable and not) of a model. */
export function weightManifest(model: tf.LayersModel): WeightEntry[] {
  return modelVariables(model).map((v) => ({
    name: stableName(v),
    shape: [...v.shape],
    dtype: 'float32',
    trainable: v.trainable,
  }));
}

/**
 * Reads every weight (trainable and not, e.g. batch-norm moving statistics) as flat arrays,
 * asynchronously (GPU backends cannot read synchronously).
 */
export async function readWeights(model: tf.LayersModel): Promise<WeightSet> {
  const vars = modelVariables(model);
  for (const v of vars) {
    if (v.dtype !== 'float32') throw new WeightsError(`weight ${stableName(v)} has dtype ${v.dtype}; only float32 is supported`);
  }
  const manifest = weightManifest(model);
  const read = await readFloat32(vars.map((v) => v.read()));
  // Copies: the snapshot must not alias backend memory that later steps reuse (cpu).
  return { manifest, values: tf.getBackend() === 'cpu' ? read.map((a) => new Float32Array(a)) : read };
}

/** Checks that a weight set fits a manifest: same names, sizes and finite values. */
export function checkWeightSet(expected: readonly WeightEntry[], set: WeightSet, what = 'weights'): void {
  if (set.values.length !== expected.length || set.manifest.length !== expected.length) {
    throw new WeightsError(`${what}: got ${set.values.length} arrays for ${expected.length} weights`);
  }
  expected.forEach((entry, i) => {
    const got = set.manifest[i]!;
    if (got.name !== entry.name) throw new WeightsError(`${what}[${i}]: name ${got.name} does not match ${entry.name}`);
    const size = entry.shape.reduce((a, b) => a * b, 1);
    if (got.shape.join('x') !== entry.shape.join('x') || set.values[i]!.length !== size) {
      throw new WeightsError(`${what}[${i}] ${entry.name}: shape [${got.shape}] with ${set.values[i]!.length} values, expected [${entry.shape}]`);
    }
    assertFinite(set.values[i]!, `${what}[${i}] ${entry.name}`);
  });
}

/** Throws a WeightsError naming the first NaN or infinite value. */
export function assertFinite(values: Float32Array, what: string): void {
  for (let j = 0; j < values.length; j++) {
    if (!Number.isFinite(values[j]!)) throw new WeightsError(`${what}: value ${j} is ${values[j]}`);
  }
}

/** Writes a full weight set into a model after checking it fits. */
export function writeWeights(model: tf.LayersModel, set: WeightSet): void {
  const vars = modelVariables(model);
  checkWeightSet(weightManifest(model), set);
  tf.tidy(() => {
    vars.forEach((v, i) => v.write(tf.tensor(set.values[i]!, v.shape, 'float32')));
  });
}

/**
 * Writes some weights of a model: values[k] into weight indices[k] (a partial broadcast).
 * Checks sizes and finiteness; names and shapes are the caller's to have matched.
 */
export function writeWeightsAt(model: tf.LayersModel, indices: readonly number[], values: readonly Float32Array[]): void {
  const vars = modelVariables(model);
  if (indices.length !== values.length) throw new WeightsError(`${values.length} arrays for ${indices.length} weights`);
  indices.forEach((i, k) => {
    const v = vars[i];
    if (!v) throw new WeightsError(`the model has no weight ${i}`);
    const size = v.shape.reduce((a, b) => a * b, 1);
    if (values[k]!.length !== size) throw new WeightsError(`${stableName(v)}: ${values[k]!.length} values, expected ${size}`);
    assertFinite(values[k]!, stableName(v));
  });
  tf.tidy(() => {
    indices.forEach((i, k) => vars[i]!.write(tf.tensor(values[k]!, vars[i]!.shape, 'float32')));
  });
}
