/**
 * The GPU bench's training steps, built as drover builds them: the fmnist-cnn preset through
 * buildScratchModel, the MobileNetV2 transfer job through buildTransferModel (+ unfreezeFrom for
 * fine-tuning), and drover's own Adam (createOptimizer, the fused update where the backend has
 * one). The step is Trainer's (variableGrads of the mean cross-entropy, then optimizer.apply)
 * without its per-step reads: the bench reads the loss once, after the timed steps.
 * Input and labels are synthetic and stay on the device.
 */
import * as tf from '@tensorflow/tfjs';
import type { InputShape } from '../../src/data/types.ts';
import { buildScratchModel } from '../../src/model/build.ts';
import { PRESETS } from '../../src/model/presets.ts';
import { buildTransferModel, unfreezeFrom } from '../../src/model/transfer.ts';
import { createOptimizer, optimizerSpecSchema } from '../../src/train/optimizers.ts';
import { Trainer } from '../../src/train/trainer.ts';
import type { Batch } from '../../src/data/types.ts';
import { drawAugment, sampleAffine, type GeometryConfig } from '../../src/data/augment.ts';
import { warpOnDevice, type DeviceSample } from '../../src/data/gpu-augment.ts';
import { resolveNormalisation } from '../../src/data/pipeline-config.ts';
import { Rng } from '../../src/data/rng.ts';

export const MODELS = ['fmnist-cnn', 'mobilenetv2-frozen', 'mobilenetv2-finetune', 'gpu-augment'] as const;
export type ModelName = (typeof MODELS)[number];

/** Where fine-tuning starts: the top two inverted-residual blocks and the last 1x1 conv. */
const FINE_TUNE_FROM = 'block_15_expand';
/** MobileNetV2's feature layer (the cut nsfwjs' backbone uses). */
const FEATURE_LAYER = 'out_relu';
const CLASSES = 10;
const LEARNING_RATE = 1e-3;
const LOG_EPSILON = 1e-7;

export interface JobOptions {
  model: ModelName;
  batch: number;
  /** Transfer input size (square, RGB). */
  size: number;
  /** `nsfwjs:mobilenet_v2`, or a directory holding its model.json (the bundle's copy). */
  backbone: string;
}

export interface TrainingJob {
  input: InputShape;
  trainableParams: number;
  /** One training step; returns the loss tensor when asked to keep it (the caller disposes it). */
  step(keepLoss: boolean): tf.Scalar | undefined;
  dispose(): void;
}

/** The model of a training job, built as drover builds it. */
async function buildModel(options: JobOptions): Promise<{ model: tf.LayersModel; input: InputShape }> {
  if (options.model === 'fmnist-cnn') {
    const input: InputShape = [28, 28, 1];
    return { model: buildScratchModel({ layers: PRESETS['fmnist-cnn'].layers, inputShape: input, classes: CLASSES, seed: 1 }), input };
  }
  const input: InputShape = [options.size, options.size, 3];
  const cutAt = options.backbone.startsWith('nsfwjs:') ? {} : { cutAt: FEATURE_LAYER };
  const { model } = await buildTransferModel({ backbone: options.backbone, ...cutAt, head: { classes: CLASSES } }, { inputShape: input, seed: 1 });
  if (options.model === 'mobilenetv2-finetune') unfreezeFrom(model, FINE_TUNE_FROM);
  return { model, input };
}

export async function buildJob(options: JobOptions): Promise<TrainingJob> {
  if (options.model === 'gpu-augment') return buildAugmentJob(options.batch, options.size);
  const { model, input } = await buildModel(options);
  const optimizer = createOptimizer(optimizerSpecSchema.parse({ name: 'adam', learningRate: LEARNING_RATE }));
  const vars = (model.trainableWeights as unknown as { read(): tf.Variable }[]).map((w) => w.read());
  const trainableParams = vars.reduce((sum, v) => sum + v.size, 0);
  const x = tf.randomUniform([options.batch, ...input], 0, 1, 'float32', 1);
  const oneHot = tf.tidy(() => tf.oneHot(tf.randomUniform([options.batch], 0, CLASSES, 'int32', 2), CLASSES));
  return {
    input,
    trainableParams,
    step(keepLoss) {
      return tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const probs = model.apply(x, { training: true }) as tf.Tensor2D;
          // Trainer's loss: mean cross-entropy of the softmax output, clipped as Keras does.
          const picked = tf.sum(tf.mul(probs, oneHot), 1);
          return tf.neg(tf.mean(tf.log(tf.clipByValue(picked, LOG_EPSILON, 1)))) as tf.Scalar;
        }, vars);
        optimizer.apply(
          vars,
          vars.map((v) => grads[v.name]!),
          LEARNING_RATE,
        );
        return keepLoss ? value : undefined;
      });
    },
    dispose() {
      x.dispose();
      oneHot.dispose();
      optimizer.dispose();
      model.dispose();
    },
  };
}

/** Decoded source side: what sharp hands over for a 224 px job (256 px photos, no preshrink). */
const AUGMENT_SOURCE = 256;

/**
 * Not training: the device augmentation path (src/data/gpu-augment.ts) on a batch of decoded
 * 256x256x3 images per step (upload included), rotation +-20 deg, shifts, zoom, flips,
 * brightness, 'reflect' fill, bilinear, to size x size, 'torch' normalisation.
 */
function buildAugmentJob(batch: number, size: number): TrainingJob {
  const geometry: GeometryConfig = { width: size, height: size, resize: 'cover', fill: 'reflect', fillValue: 0, interpolation: 'bilinear' };
  const augment = { rotation: 20, widthShift: 0.1, heightShift: 0.1, shear: 0, zoom: [0.9, 1.1] as [number, number], horizontalFlip: true, verticalFlip: false, brightness: [0.8, 1.2] as [number, number], channelShift: 0 };
  const rng = new Rng(7);
  const samples: DeviceSample[] = Array.from({ length: batch }, (_, i) => {
    const data = new Uint8Array(AUGMENT_SOURCE * AUGMENT_SOURCE * 3);
    for (let j = 0; j < data.length; j++) data[j] = (j * 31 + rng.int(64)) & 255;
    const image = { data, width: AUGMENT_SOURCE, height: AUGMENT_SOURCE, channels: 3 };
    const params = drawAugment(augment, 100 + i, size, size);
    return { image, affine: sampleAffine(params, geometry, AUGMENT_SOURCE, AUGMENT_SOURCE), colour: { brightness: params.brightness, channelShift: params.channelShift } };
  });
  const config = { width: size, height: size, channels: 3 as const, fill: geometry.fill, fillValue: 0, interpolation: geometry.interpolation, normalisation: resolveNormalisation('torch', 3) };
  return {
    input: [size, size, 3],
    trainableParams: 0,
    step(keep) {
      return tf.tidy(() => {
        const out = warpOnDevice(samples, config);
        return keep ? (tf.mean(out) as tf.Scalar) : undefined;
      });
    },
    dispose() {},
  };
}

/**
 * Times a job: `warmup` steps (shader compilation, buffer pools) and a read, then `steps` steps
 * and an awaited read of the last loss, so the device has really finished them.
 */
export async function timeJob(job: TrainingJob, warmup: number, steps: number): Promise<{ seconds: number; loss: number }> {
  for (let i = 0; i < warmup; i++) await readLoss(job.step(i === warmup - 1));
  const start = performance.now();
  let last: tf.Scalar | undefined;
  for (let i = 0; i < steps; i++) last = job.step(i === steps - 1);
  const loss = await readLoss(last);
  return { seconds: (performance.now() - start) / 1000, loss };
}

async function readLoss(loss: tf.Scalar | undefined): Promise<number> {
  if (!loss) return NaN;
  const value = (await loss.data())[0]!;
  loss.dispose();
  return value;
}

/**
 * drover's own loop: `await trainer.trainStep(batch)` per step, so each step uploads the batch
 * from host memory and waits for its loss and correct count (what `drover train` does today),
 * where the other jobs keep the input on the device and read once at the end.
 */
export async function timeTrainerJob(options: JobOptions, warmup: number, steps: number): Promise<{ seconds: number; loss: number; input: InputShape; trainableParams: number }> {
  const { model, input } = await buildModel(options);
  const trainer = new Trainer(model, { optimizer: optimizerSpecSchema.parse({ name: 'adam', learningRate: LEARNING_RATE }) });
  const size = input.reduce((a, b) => a * b, 1);
  const rng = new Rng(3);
  const batch: Batch = {
    x: Float32Array.from({ length: options.batch * size }, () => rng.next()),
    y: Int32Array.from({ length: options.batch }, (_, i) => (i * 7) % CLASSES),
    n: options.batch,
    shape: input,
  };
  for (let i = 0; i < warmup; i++) await trainer.trainStep(batch, LEARNING_RATE);
  const start = performance.now();
  let loss = NaN;
  for (let i = 0; i < steps; i++) loss = (await trainer.trainStep(batch, LEARNING_RATE)).loss;
  const seconds = (performance.now() - start) / 1000;
  const trainableParams = model.trainableWeights.reduce((sum, w) => sum + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
  trainer.optimizer.dispose();
  model.dispose();
  return { seconds, loss, input, trainableParams };
}
