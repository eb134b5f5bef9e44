/**
 * The one place drover reads a model's weights as tf.Variables.
 *
 * tfjs-layers keeps each weight in a LayerVariable whose `read()` is declared to return a plain
 * Tensor, but it returns the tf.Variable the weight lives in (tfjs-layers 4.x variables.ts:
 * `read() { ...; return this.val; }`, `val` being a tf.Variable). drover needs that variable:
 * the optimizer assigns to it, tf.variableGrads differentiates by it, and reads must not copy.
 * So the cast below narrows the declared type to what the object is; it adds nothing that is
 * not there.
 */
import type * as tf from '@tensorflow/tfjs';

/** A model weight (tfjs-layers' LayerVariable) with `read()` typed as what it returns. */
export interface ModelVariable {
  /** Unique in this process: tfjs suffixes repeats (`_1`, `_2`). */
  readonly name: string;
  /** The name as the layer gave it, the same in every process. */
  readonly originalName: string;
  /** Concrete: a built model's weights have no unknown dimension. */
  readonly shape: number[];
  readonly dtype: tf.DataType;
  readonly trainable: boolean;
  /** The variable itself, not a copy. */
  read(): tf.Variable;
  write(value: tf.Tensor): void;
}

/** Every weight of the model, trainable and not, in `model.weights` order (the weight manifest's). */
export function modelVariables(model: tf.LayersModel): ModelVariable[] {
  return model.weights as unknown as ModelVariable[];
}

/** The trainable weights, in `model.trainableWeights` order (the gradient order). */
export function trainableVariables(model: tf.LayersModel): ModelVariable[] {
  return model.trainableWeights as unknown as ModelVariable[];
}
