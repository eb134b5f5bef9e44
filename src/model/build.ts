import * as tf from '@tensorflow/tfjs';

import { ModelError } from '../errors.ts';
import type { InputShape } from '../data/types.ts';
import type { LayerSpec } from './layer-spec.ts';
import { layerSpecSchema } from './layer-spec.ts';
import type { LayerSpecInput } from './layer-spec.ts';

type Initializer = ReturnType<typeof tf.initializers.glorotUniform>;
type Regularizer = ReturnType<typeof tf.regularizers.l2>;

export interface ScratchModelOptions {
  layers: readonly LayerSpecInput[];
  inputShape: InputShape;
  classes: number;
  /** L2 factor on every conv and dense kernel (Keras' kernel_regularizer=l2(x)); 0 = none. */
  l2?: number;
  /** Seed for weight initialisation, so the same job starts from the same weights. */
  seed?: number;
  name?: string;
}

/**
 * Builds a sequential classifier from a layer list, then appends dense(classes, softmax).
 * Layer names are deterministic (`conv2d_1`, `dense_2`, ...), so weight manifests match across
 * processes that build the same job.
 */
export function buildScratchModel(options: ScratchModelOptions): tf.LayersModel {
  const { inputShape, classes } = options;
  if (!(classes >= 2)) throw new ModelError(`a classifier needs at least 2 classes, got ${classes}`);
  const l2 = options.l2 ?? 0;
  const seed = options.seed ?? 1;
  const counters = new Map<string, number>();
  const nameFor = (kind: string): string => {
    const next = (counters.get(kind) ?? 0) + 1;
    counters.set(kind, next);
    return `${kind}_${next}`;
  };
  let seedOffset = 0;
  const init = (): Initializer => tf.initializers.glorotUniform({ seed: seed * 1000 + seedOffset++ });
  const regularizer = l2 > 0 ? tf.regularizers.l2({ l2 }) : undefined;

  const model = tf.sequential({ name: options.name ?? 'drover_scratch' });
  model.add(tf.layers.inputLayer({ inputShape: [...inputShape], name: 'input' }));
  options.layers.forEach((raw, index) => {
    const parsed = layerSpecSchema.safeParse(raw);
    if (!parsed.success) {
      throw new ModelError(`model.layers[${index}]: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'layer'}: ${i.message}`).join('; ')}`);
    }
    try {
      model.add(makeLayer(parsed.data, nameFor, init, regularizer));
    } catch (cause) {
      throw new ModelError(`model.layers[${index}] (${parsed.data.type}) does not fit: ${(cause as Error).message}`, { cause });
    }
  });
  if (model.outputs[0]!.shape.length !== 2) {
    model.add(tf.layers.flatten({ name: nameFor('flatten') }));
  }
  model.add(
    tf.layers.dense({ units: classes, activation: 'softmax', name: 'classifier', kernelInitializer: init(), kernelRegularizer: regularizer }),
  );
  return model;
}

function makeLayer(
  spec: LayerSpec,
  nameFor: (kind: string) => string,
  init: () => Initializer,
  regularizer: Regularizer | undefined,
): tf.layers.Layer {
  switch (spec.type) {
    case 'conv2d':
      return tf.layers.conv2d({
        name: nameFor('conv2d'),
        filters: spec.filters,
        kernelSize: spec.kernelSize,
        strides: spec.strides,
        padding: spec.padding,
        dilationRate: spec.dilation,
        activation: spec.activation,
        kernelInitializer: init(),
        kernelRegularizer: regularizer,
      });
    case 'batchNorm':
      return tf.layers.batchNormalization({ name: nameFor('batch_norm'), momentum: spec.momentum, epsilon: spec.epsilon });
    case 'activation':
      return tf.layers.activation({ name: nameFor('activation'), activation: spec.activation });
    case 'maxPool':
      return tf.layers.maxPooling2d({ name: nameFor('max_pool'), poolSize: spec.poolSize, strides: spec.strides, padding: spec.padding });
    case 'avgPool':
      return tf.layers.averagePooling2d({ name: nameFor('avg_pool'), poolSize: spec.poolSize, strides: spec.strides, padding: spec.padding });
    case 'globalAvgPool':
      return tf.layers.globalAveragePooling2d({ name: nameFor('global_avg_pool') });
    case 'dropout':
      // No seed here: a fixed dropout seed in tfjs draws the same mask on every step. The
      // gradient computation seeds each pass instead (GradientModel's dropoutSeed, src/train/).
      return tf.layers.dropout({ name: nameFor('dropout'), rate: spec.rate });
    case 'flatten':
      return tf.layers.flatten({ name: nameFor('flatten') });
    case 'dense':
      return tf.layers.dense({
        name: nameFor('dense'),
        units: spec.units,
        activation: spec.activation,
        kernelInitializer: init(),
        kernelRegularizer: regularizer,
      });
  }
}

/** Number of weights (trainable and not) in a model. */
export function countParams(model: tf.LayersModel): number {
  return model.weights.reduce((sum, w) => sum + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}
