import * as tf from '@tensorflow/tfjs';
import { TrainingError, WeightsError } from '../errors.ts';
import { weightManifest, type WeightEntry } from '../model/weights.ts';
import { trainableVariables, type ModelVariable } from '../model/variables.ts';
import { createOptimizer, type Optimizer, type OptimizerSpec } from './optimizers.ts';

/**
 * An optimizer bound to one model's trainable weights: applies gradients, computes none. The
 * coordinator applies the averaged gradients of its workers with it; Trainer, the gradients of
 * its own GradientModel. The trainable set is fixed at construction: after unfreezing layers,
 * build a new one (and a new optimizer).
 */
export class ModelOptimizer {
  readonly optimizer: Optimizer;
  /** Manifest of the trainable weights, in gradient order: what applyGradients expects. */
  readonly gradientManifest: WeightEntry[];
  private readonly trainable: ModelVariable[];

  constructor(
    readonly model: tf.LayersModel,
    spec: OptimizerSpec,
  ) {
    this.trainable = trainableVariables(model);
    if (this.trainable.length === 0) throw new TrainingError('the model has no trainable weights');
    this.gradientManifest = weightManifest(model).filter((w) => w.trainable);
    this.optimizer = createOptimizer(spec);
  }

  /**
   * Applies gradients (already averaged over the global batch) with the optimizer. Each array
   * is checked for size and finiteness first; a bad one rejects (WeightsError) before any weight
   * changes. A step whose gradients are large enough to overflow a weight or slot is verified
   * first (one awaited read) and rejects with NonFiniteUpdateError, writing nothing, if it would;
   * every other step is written before this returns its promise, with no read back.
   */
  async applyGradients(grads: readonly Float32Array[], learningRate: number): Promise<void> {
    if (grads.length !== this.trainable.length) {
      throw new WeightsError(`got ${grads.length} gradients for ${this.trainable.length} trainable weights`);
    }
    let largest = 0;
    grads.forEach((g, i) => {
      const entry = this.gradientManifest[i]!;
      const size = entry.shape.reduce((a, b) => a * b, 1);
      if (g.length !== size) throw new WeightsError(`gradient ${i} (${entry.name}) has ${g.length} values, expected ${size}`);
      largest = Math.max(largest, largestMagnitude(g, `gradient ${i} (${entry.name})`));
    });
    const upload = (): tf.Tensor[] => grads.map((g, i) => tf.tensor(g, this.gradientManifest[i]!.shape, 'float32'));
    // Moderate gradients cannot overflow float32 weights or slots: only a step with a large one
    // pays for computing every new value and reading whether it is finite before writing it.
    if (largest * Math.max(1, Math.abs(learningRate)) <= SAFE_UPDATE_MAGNITUDE) {
      tf.tidy(() => this.optimizer.apply(this.variables(), upload(), learningRate));
      return;
    }
    const tensors = tf.tidy(upload);
    try {
      await this.optimizer.applyVerified(this.variables(), tensors, learningRate);
    } finally {
      tf.dispose(tensors);
    }
  }

  /**
   * Applies gradients that are still tensors, in trainable-weights order, unchecked and with no
   * read back (the local step, whose loss was checked first). The gradients are not disposed.
   */
  applyGradientTensors(grads: readonly tf.Tensor[], learningRate: number): void {
    tf.tidy(() => this.optimizer.apply(this.variables(), grads, learningRate));
  }

  /** Creates the optimizer's slots for the model's weights now (before restoring its state). */
  bind(): void {
    this.optimizer.bind(this.variables());
  }

  private variables(): tf.Variable[] {
    return this.trainable.map((w) => w.read());
  }
}

/**
 * Above this (largest |gradient| x max(1, learning rate)) an optimizer step is checked before it
 * is written. Below it, no rule drover has can overflow float32 (3.4e38): Adam's and RMSprop's
 * second moments stay under 1e20, SGD and momentum move a weight by at most lr x 1e10 per step.
 */
const SAFE_UPDATE_MAGNITUDE = 1e10;

/** The largest |value|; throws a WeightsError naming the first NaN or infinite one. */
function largestMagnitude(values: Float32Array, what: string): number {
  let largest = 0;
  // Math.abs and a rarely taken branch: testing the sign and finiteness of each value with
  // branches made this scan 3.5x slower on random-signed gradients (mispredictions).
  for (let j = 0; j < values.length; j++) {
    const magnitude = Math.abs(values[j]!);
    if (magnitude > largest) largest = magnitude;
    else if (magnitude !== magnitude) largest = Number.NaN;
  }
  if (!Number.isFinite(largest)) {
    const j = values.findIndex((v) => !Number.isFinite(v));
    throw new WeightsError(`${what}: value ${j} is ${values[j]}`);
  }
  return largest;
}
