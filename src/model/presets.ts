import type { LayerSpecInput } from './layer-spec.ts';
import type { InputShape } from '../data/types.ts';

/** A named scratch architecture: the layers before the classifier, and the input it was made for. */
export interface Preset {
  description: string;
  /** The input the recipe was designed for (the dataset's shape is used when it differs). */
  inputShape: InputShape;
  layers: LayerSpecInput[];
}

/**
 * Scratch presets after the field's classic recipes. The classifier (dense N, softmax) is
 * appended by the builder, with N taken from the dataset.
 */
export const PRESETS = {
  /** The Keras MNIST convnet: conv3x3 32, pool, conv3x3 64, pool, dense 128, dropout 0.25 (~225 k params for 10 classes). */
  'fmnist-cnn': {
    description: 'Keras MNIST-style CNN for 28x28 grey images',
    inputShape: [28, 28, 1],
    layers: [
      { type: 'conv2d', filters: 32, kernelSize: 3, padding: 'valid', activation: 'relu' },
      { type: 'maxPool', poolSize: 2 },
      { type: 'conv2d', filters: 64, kernelSize: 3, padding: 'valid', activation: 'relu' },
      { type: 'maxPool', poolSize: 2 },
      { type: 'flatten' },
      { type: 'dense', units: 128, activation: 'relu' },
      { type: 'dropout', rate: 0.25 },
    ],
  },
  /** VGG-style blocks with batch norm and growing dropout, the usual CIFAR-10 recipe. */
  'cifar-vgg': {
    description: 'VGG block net with batch norm and dropout for 32x32 RGB images',
    inputShape: [32, 32, 3],
    layers: [
      ...vggBlock(32, 0.2),
      ...vggBlock(64, 0.3),
      ...vggBlock(128, 0.4),
      { type: 'flatten' },
      { type: 'dense', units: 128, activation: 'linear' },
      { type: 'batchNorm' },
      { type: 'activation', activation: 'relu' },
      { type: 'dropout', rate: 0.5 },
    ],
  },
  /** Chollet's small convnet for ~150 px RGB photos (cats vs dogs): four conv/pool stages, dense 512 (~3.5 M params). */
  'small-convnet': {
    description: 'four conv/pool stages and dense 512 for ~150x150 RGB images',
    inputShape: [150, 150, 3],
    layers: [
      { type: 'conv2d', filters: 32, kernelSize: 3, padding: 'valid' },
      { type: 'maxPool', poolSize: 2 },
      { type: 'conv2d', filters: 64, kernelSize: 3, padding: 'valid' },
      { type: 'maxPool', poolSize: 2 },
      { type: 'conv2d', filters: 128, kernelSize: 3, padding: 'valid' },
      { type: 'maxPool', poolSize: 2 },
      { type: 'conv2d', filters: 128, kernelSize: 3, padding: 'valid' },
      { type: 'maxPool', poolSize: 2 },
      { type: 'flatten' },
      { type: 'dropout', rate: 0.5 },
      { type: 'dense', units: 512, activation: 'relu' },
    ],
  },
} satisfies Record<string, Preset>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

function vggBlock(filters: number, dropout: number): LayerSpecInput[] {
  const conv = (): LayerSpecInput[] => [
    { type: 'conv2d', filters, kernelSize: 3, padding: 'same', activation: 'linear' },
    { type: 'batchNorm' },
    { type: 'activation', activation: 'relu' },
  ];
  return [...conv(), ...conv(), { type: 'maxPool', poolSize: 2 }, { type: 'dropout', rate: dropout }];
}
