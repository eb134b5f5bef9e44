import type * as tf from '@tensorflow/tfjs';
import type { ModelSpec } from './model-spec.ts';
import { buildScratchModel } from './build.ts';
import { buildTransferModel, unfreezeFrom } from './transfer.ts';

/**
 * Builds the model a spec describes, the same way on every machine. Workers build their replica
 * with it from the spec they get on join; the weights then come from the coordinator's
 * broadcasts, and the weight manifest check catches a worker whose build differs.
 */
export async function buildReplicaModel(spec: ModelSpec): Promise<tf.LayersModel> {
  if (spec.kind === 'scratch') {
    return buildScratchModel({ layers: spec.layers, inputShape: spec.inputShape, classes: spec.classes, l2: spec.l2, seed: spec.seed });
  }
  const { model } = await buildTransferModel(spec.transfer, { inputShape: spec.inputShape, classes: spec.classes, seed: spec.seed });
  try {
    if (spec.trainableFrom !== null) unfreezeFrom(model, spec.trainableFrom, { batchNorm: spec.transfer.batchNorm });
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}
