import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../data/types.ts';
import type { WeightEntry } from '../model/weights.ts';
import { readFloat32 } from '../model/tensor-read.ts';
import { checkLoss, GradientModel, type GradientResult, type PredictionResult, type StepMetrics } from './gradient-model.ts';
import { ModelOptimizer } from './model-optimizer.ts';
import type { Optimizer, OptimizerSpec } from './optimizers.ts';

export type { GradientResult, PredictionResult, StepMetrics } from './gradient-model.ts';

export interface TrainerOptions {
  optimizer: OptimizerSpec;
  /**
   * Seed of the dropout masks: every training pass draws fresh masks from (seed, pass number),
   * so a seeded run repeats exactly. Absent: tfjs's unseeded stream.
   */
  dropoutSeed?: number;
  /** Training passes already run with these masks (a resumed run continues the mask sequence). Default 0. */
  passesDone?: number;
}

/**
 * A model that trains in this process: its GradientModel (loss, gradients, evaluation) and its
 * ModelOptimizer (the update) over the same weights. Code that needs only one half takes that
 * half: a worker or `drover evaluate` a GradientModel, whatever applies gradients computed
 * elsewhere a ModelOptimizer.
 */
export class Trainer {
  readonly gradientModel: GradientModel;
  readonly modelOptimizer: ModelOptimizer;

  constructor(model: tf.LayersModel, options: TrainerOptions) {
    this.gradientModel = new GradientModel(model, { dropoutSeed: options.dropoutSeed, passesDone: options.passesDone });
    this.modelOptimizer = new ModelOptimizer(model, options.optimizer);
  }

  get model(): tf.LayersModel {
    return this.gradientModel.model;
  }

  get optimizer(): Optimizer {
    return this.modelOptimizer.optimizer;
  }

  /** Manifest of the trainable weights, in gradient order. */
  get gradientManifest(): WeightEntry[] {
    return this.gradientModel.gradientManifest;
  }

  /** See GradientModel.computeGradients. */
  computeGradients(batch: Batch): Promise<GradientResult> {
    return this.gradientModel.computeGradients(batch);
  }

  /** See GradientModel.evaluate. */
  evaluate(batch: Batch): Promise<PredictionResult> {
    return this.gradientModel.evaluate(batch);
  }

  /** See ModelOptimizer.applyGradients. */
  applyGradients(grads: readonly Float32Array[], learningRate: number): Promise<void> {
    return this.modelOptimizer.applyGradients(grads, learningRate);
  }

  /**
   * One local step: gradients and update without leaving tensor land (single process). The loss
   * is read before the update, so a diverged step changes no weight.
   */
  async trainStep(batch: Batch, learningRate: number): Promise<StepMetrics> {
    const { loss, correct, grads } = this.gradientModel.gradientTensors(batch);
    try {
      const [[lossValue], [correctCount]] = await readFloat32([loss, correct]);
      const checked = checkLoss(lossValue!);
      this.modelOptimizer.applyGradientTensors(grads, learningRate);
      return { loss: checked, correct: correctCount!, n: batch.n };
    } finally {
      tf.dispose([loss, correct, ...grads]);
    }
  }
}
