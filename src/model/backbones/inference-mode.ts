/**
 * Batch normalisation of a pretrained backbone stays in inference mode, also while the model
 * trains. Keras does this for BN layers with `trainable = false` (and advises calling the base
 * with `training=False` when fine-tuning): with the small batches of transfer learning, batch
 * statistics are noisy, and updating the moving statistics would undo what the backbone
 * learnt. tfjs' BatchNormalization ignores `trainable` and follows only the `training` flag, so
 * drover pins such layers: their `call` always runs with `training: false`. Their moving mean
 * and variance never change, so there is nothing to synchronise between workers for them.
 */
import type * as tf from '@tensorflow/tfjs';
import { ModelError } from '../../errors.ts';

type Layer = tf.layers.Layer;
type CallArgs = Parameters<Layer['call']>;

const pinned = new WeakSet<Layer>();

/** Makes a layer ignore `training: true`; idempotent. */
export function pinInferenceMode(layer: Layer): void {
  if (pinned.has(layer)) return;
  const call = layer.call.bind(layer);
  // An own property shadows the prototype's call; serialisation (getConfig) is unaffected.
  layer.call = (inputs: CallArgs[0], kwargs: CallArgs[1]) => call(inputs, { ...kwargs, training: false });
  pinned.add(layer);
}

/** Whether pinInferenceMode was applied to this layer. */
export function isPinnedToInference(layer: Layer): boolean {
  return pinned.has(layer);
}

/** Names of a model's pinned layers (saved in drover's model metadata, re-applied on load). */
export function pinnedLayerNames(model: tf.LayersModel): string[] {
  return model.layers.filter((layer) => pinned.has(layer)).map((layer) => layer.name);
}

/** Pins the named layers of a model, e.g. after loading it; unknown names are an error. */
export function pinLayersByName(model: tf.LayersModel, names: readonly string[], where: string): void {
  for (const name of names) {
    const layer = model.layers.find((candidate) => candidate.name === name);
    if (!layer) throw new ModelError(`${where}: layer "${name}" listed for inference mode is not in the model`);
    pinInferenceMode(layer);
  }
}

/** True for the layer classes whose training behaviour differs from inference (BN). */
export function isBatchNormalization(layer: Layer): boolean {
  return layer.getClassName() === 'BatchNormalization';
}
