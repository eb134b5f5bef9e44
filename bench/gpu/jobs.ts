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

export const MODELS = ['fmnist-cnn', 'mobilenetv2-frozen', 'mobilenetv2-finetune'] as const;
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

export async function buildJob(options: JobOptions): Promise<TrainingJob> {
  let model: tf.LayersModel;
  let input: InputShape;
  if (options.model === 'fmnist-cnn') {
    input = [28, 28, 1];
    model = buildScratchModel({ layers: PRESETS['fmnist-cnn'].layers, inputShape: input, classes: CLASSES, seed: 1 });
  } else {
    input = [options.size, options.size, 3];
    const cutAt = options.backbone.startsWith('nsfwjs:') ? {} : { cutAt: FEATURE_LAYER };
    ({ model } = await buildTransferModel({ backbone: options.backbone, ...cutAt, head: { classes: CLASSES } }, { inputShape: input, seed: 1 }));
    if (options.model === 'mobilenetv2-finetune') unfreezeFrom(model, FINE_TUNE_FROM);
  }
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
