import * as tf from '@tensorflow/tfjs';
import { TrainingError } from '../errors.ts';
import type { Batch } from '../data/types.ts';
import { weightManifest, type WeightEntry } from '../model/weights.ts';
import { readFloat32, withFloat32Views } from '../model/tensor-read.ts';
import { trainableVariables, type ModelVariable } from '../model/variables.ts';

/** Loss (mean over the batch), number of correct top-1 predictions, and batch size. */
export interface StepMetrics {
  loss: number;
  correct: number;
  n: number;
}

/** Gradients of the mean loss over one batch, one flat array per trainable weight. */
export interface GradientResult extends StepMetrics {
  grads: Float32Array[];
}

/** The predicted class index of each sample and the batch metrics (evaluation, confusion matrices). */
export interface PredictionResult extends StepMetrics {
  predicted: Int32Array;
}

/** A batch's loss, correct count (float32) and gradients, still tensors: the holder disposes them. */
export interface GradientTensors {
  loss: tf.Scalar;
  correct: tf.Scalar;
  grads: tf.Tensor[];
}

export interface GradientModelOptions {
  /**
   * Seed of the dropout masks: every training pass draws fresh masks from (seed, pass number),
   * so a seeded run repeats exactly. Absent: tfjs's unseeded stream.
   */
  dropoutSeed?: number;
  /** Training passes already run with these masks (a resumed run continues the mask sequence). Default 0. */
  passesDone?: number;
}

type SeededLayer = { seed?: number };

/** Dropout layers of a model, nested models included. */
function dropoutLayers(model: tf.LayersModel): SeededLayer[] {
  const found: SeededLayer[] = [];
  const visit = (layers: readonly tf.layers.Layer[]): void => {
    for (const layer of layers) {
      // tfjs' Dropout keeps its seed in a public field its declared type does not show.
      if (layer.getClassName() === 'Dropout') found.push(layer as unknown as SeededLayer);
      const nested = (layer as unknown as { layers?: tf.layers.Layer[] }).layers;
      if (Array.isArray(nested)) visit(nested);
    }
  };
  visit(model.layers);
  return found;
}

const LOG_EPSILON = 1e-7;

/**
 * A classifier and its loss (mean sparse categorical cross-entropy plus the layers' penalties):
 * gradients and evaluation on the current weights, never an update. Workers and `drover
 * evaluate` use it alone; Trainer pairs it with a ModelOptimizer. The tensor work of a call
 * happens synchronously inside a tidy that keeps only what is read back; reads are awaited (a
 * GPU backend cannot read synchronously) and release those tensors, so nothing leaks between
 * calls.
 */
export class GradientModel {
  /** Manifest of the trainable weights, in gradient order. */
  readonly gradientManifest: WeightEntry[];
  private readonly trainable: ModelVariable[];
  private readonly dropoutSeed: number | undefined;
  private readonly dropouts: SeededLayer[];
  /** Training passes so far: with dropoutSeed, picks each pass's masks. */
  private passes: number;

  constructor(
    readonly model: tf.LayersModel,
    options: GradientModelOptions = {},
  ) {
    this.dropoutSeed = options.dropoutSeed;
    this.passes = options.passesDone ?? 0;
    this.dropouts = options.dropoutSeed === undefined ? [] : dropoutLayers(model);
    this.trainable = trainableVariables(model);
    this.gradientManifest = weightManifest(model).filter((w) => w.trainable);
    if (this.trainable.length === 0) throw new TrainingError('the model has no trainable weights');
  }

  /** Loss, correct count and gradients of the mean loss, as flat arrays (for the wire). */
  async computeGradients(batch: Batch): Promise<GradientResult> {
    const { loss, correct, grads } = this.gradientTensors(batch);
    const [[lossValue], [correctCount], ...gradValues] = await readAndDispose([loss, correct, ...grads]);
    return { loss: checkLoss(lossValue!), correct: correctCount!, n: batch.n, grads: gradValues };
  }

  /**
   * Loss, correct count, and the gradients handed to `use` as arrays valid only during the call:
   * views of the backend's memory where it allows, so a caller that copies them anyway (replica
   * threads, into shared memory) allocates nothing per step for them.
   */
  async withGradients(batch: Batch, use: (grads: Float32Array[]) => void): Promise<StepMetrics> {
    const { loss, correct, grads } = this.gradientTensors(batch);
    try {
      const [[lossValue], [correctCount]] = await readFloat32([loss, correct]);
      const checked = checkLoss(lossValue!);
      await withFloat32Views(grads, use);
      return { loss: checked, correct: correctCount!, n: batch.n };
    } finally {
      tf.dispose([loss, correct, ...grads]);
    }
  }

  /**
   * The same as tensors, for a caller that applies them without reading them back (Trainer's
   * local step). Computed in a tidy that keeps only these; the caller disposes them.
   */
  gradientTensors(batch: Batch): GradientTensors {
    return tf.tidy(() => {
      const out = this.lossAndGradients(batch);
      return { loss: out.loss, correct: countAsFloat(out.correct), grads: out.grads };
    });
  }

  /** Counts a training pass without running it (a replica with no sample this step), so the mask sequence stays in step with the pass count. */
  skipPass(): void {
    this.passes++;
  }

  /** Loss and correct count in inference mode, plus the predicted class of each sample. */
  async evaluate(batch: Batch): Promise<PredictionResult> {
    const { loss, correct, predicted } = tf.tidy(() => {
      const x = batchInput(batch);
      const probs = this.model.apply(x, { training: false }) as tf.Tensor2D;
      const argMax = tf.argMax(probs, 1);
      return {
        loss: crossEntropy(probs, batch.y),
        correct: tf.sum(tf.cast(tf.equal(argMax, tf.tensor1d(batch.y, 'int32')), 'float32')),
        // Class indices are exact in float32 (< 2^24): one read for all three.
        predicted: tf.cast(argMax, 'float32'),
      };
    });
    const [[lossValue], [correctCount], predictedValues] = await readAndDispose([loss, correct, predicted]);
    return { loss: lossValue!, correct: correctCount!, n: batch.n, predicted: Int32Array.from(predictedValues!) };
  }

  private lossAndGradients(batch: Batch): { loss: tf.Scalar; correct: tf.Scalar; grads: tf.Tensor[] } {
    if (batch.n === 0) throw new TrainingError('cannot compute gradients of an empty batch');
    const x = batchInput(batch);
    const labels = tf.tensor1d(batch.y, 'int32');
    // Kept out of variableGrads' scope (and so out of every tidy): countAsFloat releases it.
    let correct: tf.Scalar | undefined;
    const vars = this.trainable.map((w) => w.read());
    this.seedDropouts();
    let value: tf.Scalar;
    let grads: tf.NamedTensorMap;
    try {
      ({ value, grads } = tf.variableGrads(() => {
        const probs = this.model.apply(x, { training: true }) as tf.Tensor2D;
        correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), labels), 'int32')) as tf.Scalar);
        let loss: tf.Tensor = crossEntropy(probs, batch.y);
        // Regularisation penalties (L2 on kernels) of the layers, as Keras adds them.
        for (const penalty of regularizationLosses(this.model)) loss = tf.add(loss, penalty);
        return loss as tf.Scalar;
      }, vars));
    } finally {
      // Unseeded again, so that a saved model's config does not carry a step's seed.
      for (const layer of this.dropouts) layer.seed = undefined;
    }
    // variableGrads returns a map keyed by variable name; keep the trainable-weights order.
    return { loss: value, correct: correct!, grads: vars.map((v) => grads[v.name]!) };
  }

  /**
   * Gives every dropout layer this pass's seed. A fixed seed would draw the same mask on every
   * pass (tfjs seeds each draw afresh), so the seed moves with the pass number.
   */
  private seedDropouts(): void {
    if (this.dropoutSeed === undefined) return;
    const pass = this.passes++;
    this.dropouts.forEach((layer, i) => {
      layer.seed = (this.dropoutSeed! * 1_000_003 + pass * 101 + i) % 2_147_483_647;
    });
  }
}

/** The batch's input tensor: built on the device when the batch augments there, else uploaded from x. */
function batchInput(batch: Batch): tf.Tensor4D {
  return batch.input ? batch.input() : tf.tensor4d(batch.x, [batch.n, ...batch.shape]);
}

/** Mean sparse categorical cross-entropy of softmax outputs (clipped as Keras does). */
function crossEntropy(probs: tf.Tensor2D, labels: Int32Array): tf.Scalar {
  const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), probs.shape[1]);
  const picked = tf.sum(tf.mul(probs, oneHot), 1);
  return tf.neg(tf.mean(tf.log(tf.clipByValue(picked, LOG_EPSILON, 1)))) as tf.Scalar;
}

/**
 * Penalties (L2 on kernels) of every layer. Asked of each layer, because a Sequential's own
 * calculateLosses() walks an empty node map and returns none.
 */
export function regularizationLosses(model: tf.LayersModel): tf.Scalar[] {
  return model.layers.flatMap((layer) => layer.calculateLosses());
}

/** The kept correct count as float32 (read with the loss in one go); releases the kept one. */
function countAsFloat(correct: tf.Scalar): tf.Scalar {
  const asFloat = tf.cast(correct, 'float32');
  correct.dispose();
  return asFloat;
}

/** Reads tensors back (one GPU read on webgpu) and releases them. */
async function readAndDispose(tensors: tf.Tensor[]): Promise<Float32Array[]> {
  try {
    return await readFloat32(tensors);
  } finally {
    tf.dispose(tensors);
  }
}

/** The loss, or a TrainingError when it is not finite (training diverged). */
export function checkLoss(loss: number): number {
  if (!Number.isFinite(loss)) {
    throw new TrainingError(`loss is ${loss}: training diverged (lower the learning rate, check the input scaling)`);
  }
  return loss;
}
