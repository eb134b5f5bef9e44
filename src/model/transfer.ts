/**
 * Transfer learning: a pretrained backbone, cut at a layer and frozen (all of it or up to a
 * layer), under a new classification head; then, optionally, a second phase that unfreezes
 * the top of the backbone at a lower learning rate.
 *
 * Batch normalisation in the backbone always runs in inference mode (see
 * backbones/inference-mode.ts), and by default its gamma/beta stay frozen even in layers that
 * are unfrozen, as Keras advises for fine-tuning. `batchNorm: 'trainable'` lets gamma/beta
 * train with their block; the moving statistics never change either way.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ModelError } from '../errors.ts';
import { parseTransferSpec, type BatchNormPolicy, type TransferSpec, type TransferSpecInput } from './transfer-spec.ts';
import type { PreprocessSpec } from '../data/spec.ts';
import type { InputShape } from '../data/types.ts';
import { loadBackbone } from './backbones/backbone.ts';
import { unknownLayerError } from './backbones/cut.ts';
import { isBatchNormalization, isPinnedToInference, pinInferenceMode } from './backbones/inference-mode.ts';

export { transferSpecSchema, parseTransferSpec, type TransferSpec, type TransferSpecInput, type BatchNormPolicy } from './transfer-spec.ts';

export interface TransferBuildOptions {
  /** [height, width, channels] of the input; default: what the backbone declares. */
  inputShape?: InputShape;
  /** Class count (from the dataset); must agree with head.classes when both are given. */
  classes?: number;
  /** Seed of the head's initial weights. */
  seed?: number;
}

export interface TransferModel {
  model: tf.LayersModel;
  /** Names of the backbone's layers in the model, input first. */
  backboneLayers: string[];
  /** The layer the backbone was cut at (undefined: kept whole). */
  cutAt: string | undefined;
  /** The preprocessing the backbone expects, when known: use it for the data. */
  preprocess: PreprocessSpec | undefined;
}

/** Prefix of every head layer, so head and backbone names never clash. */
export const HEAD_PREFIX = 'head_';

/** Builds backbone + head from a spec and freezes the backbone as the spec says. */
export async function buildTransferModel(input: TransferSpecInput, options: TransferBuildOptions = {}): Promise<TransferModel> {
  const spec = parseTransferSpec(input);
  const classes = options.classes ?? spec.head.classes;
  if (classes === undefined) throw new ConfigError('transfer.head.classes is required when the dataset does not give a class count', 'transfer.head.classes');
  if (spec.head.classes !== undefined && options.classes !== undefined && spec.head.classes !== options.classes) {
    throw new ConfigError(`transfer.head.classes is ${spec.head.classes} but the dataset has ${options.classes} classes`, 'transfer.head.classes');
  }
  const backbone = await loadBackbone(spec.backbone, {
    ...(spec.cutAt === undefined ? {} : { cutAt: spec.cutAt }),
    ...(options.inputShape === undefined ? {} : { inputShape: options.inputShape }),
  });
  const backboneLayers = backbone.model.layers.map((layer) => layer.name);
  const clash = backboneLayers.find((name) => name.startsWith(HEAD_PREFIX));
  if (clash) throw new ModelError(`backbone ${spec.backbone} has a layer named ${clash}; the prefix ${HEAD_PREFIX} is reserved for the head`);
  let model: tf.LayersModel;
  try {
    const frozenUpTo = freezeIndex(spec.freeze, backboneLayers);
    const output = buildHead(backbone.model.outputs[0]!, spec.head, classes, options.seed ?? 1, spec.backbone);
    model = tf.model({ inputs: backbone.model.inputs, outputs: output, name: 'drover_transfer' });
    for (const layer of model.layers) {
      if (backboneLayers.includes(layer.name) && isBatchNormalization(layer)) pinInferenceMode(layer);
    }
    applyFreeze(model, backboneLayers, frozenUpTo, spec.batchNorm);
  } catch (error) {
    backbone.model.dispose();
    throw error;
  }
  return { model, backboneLayers, cutAt: backbone.cutAt, preprocess: backbone.preprocess };
}

/**
 * Second phase: the named layer and every layer after it (in the model's topological order)
 * become trainable; layers before it keep their state. Backbone batch norm follows `batchNorm`
 * (default 'frozen'). The set of trainable weights changes: build the gradient computation and
 * the optimizer (a Trainer) anew after calling this. Returns the names of the layers that now train.
 */
export function unfreezeFrom(model: tf.LayersModel, fromLayer: string, options: { batchNorm?: BatchNormPolicy } = {}): string[] {
  const names = model.layers.map((layer) => layer.name);
  const start = names.indexOf(fromLayer);
  if (start < 0) throw unknownLayerError(fromLayer, names, `model ${model.name}`);
  const batchNorm = options.batchNorm ?? 'frozen';
  const training: string[] = [];
  for (const layer of model.layers.slice(start)) {
    const frozenNorm = batchNorm === 'frozen' && isPinnedToInference(layer);
    layer.trainable = !frozenNorm;
    if (!frozenNorm && layer.trainableWeights.length > 0) training.push(layer.name);
  }
  return training;
}

function buildHead(features: tf.SymbolicTensor, head: TransferSpec['head'], classes: number, seed: number, source: string): tf.SymbolicTensor {
  const rank = features.shape.length;
  let x = features;
  if (head.pooling === 'avg' || head.pooling === 'max') {
    if (rank !== 4) {
      throw new ModelError(`head.pooling "${head.pooling}" needs [batch, h, w, c] features, but backbone ${source} gives [${features.shape.join(', ')}]: cut it at a convolutional layer (cutAt)`);
    }
    const pool = head.pooling === 'avg' ? tf.layers.globalAveragePooling2d({ name: `${HEAD_PREFIX}pool` }) : tf.layers.globalMaxPooling2d({ name: `${HEAD_PREFIX}pool` });
    x = pool.apply(x) as tf.SymbolicTensor;
  } else if (rank > 2) {
    x = tf.layers.flatten({ name: `${HEAD_PREFIX}flatten` }).apply(x) as tf.SymbolicTensor;
  }
  let seedOffset = 0;
  const init = () => tf.initializers.glorotUniform({ seed: seed * 1000 + seedOffset++ });
  const dropout = (index: number): void => {
    // No seed: a fixed dropout seed in tfjs draws the same mask on every step.
    if (head.dropout > 0) x = tf.layers.dropout({ rate: head.dropout, name: `${HEAD_PREFIX}dropout_${index}` }).apply(x) as tf.SymbolicTensor;
  };
  head.dense.forEach((units, i) => {
    x = tf.layers.dense({ units, activation: 'relu', kernelInitializer: init(), name: `${HEAD_PREFIX}dense_${i + 1}` }).apply(x) as tf.SymbolicTensor;
    dropout(i + 1);
  });
  if (head.dense.length === 0) dropout(1);
  return tf.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: init(), name: `${HEAD_PREFIX}classifier` }).apply(x) as tf.SymbolicTensor;
}

/** Index of the last frozen backbone layer: -1 freezes none, Infinity all. */
function freezeIndex(freeze: TransferSpec['freeze'], backboneLayers: readonly string[]): number {
  if (freeze === 'all') return Infinity;
  if (freeze === 'none') return -1;
  const index = backboneLayers.indexOf(freeze.upTo);
  if (index < 0) throw unknownLayerError(freeze.upTo, backboneLayers, 'the backbone (transfer.freeze.upTo)');
  return index;
}

function applyFreeze(model: tf.LayersModel, backboneLayers: readonly string[], frozenUpTo: number, batchNorm: BatchNormPolicy): void {
  backboneLayers.forEach((name, index) => {
    const layer = model.getLayer(name);
    const frozenNorm = batchNorm === 'frozen' && isPinnedToInference(layer);
    layer.trainable = index > frozenUpTo && !frozenNorm;
  });
}
