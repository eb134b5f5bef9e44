import * as tf from '@tensorflow/tfjs';
import { ProtocolError } from '../errors.ts';
import type { Batch } from '../data/types.ts';
import { buildReplicaModel } from '../model/replica-model.ts';
import { weightManifest, writeWeightsAt, type WeightEntry } from '../model/weights.ts';
import { GradientModel } from '../train/gradient-model.ts';
import { modelVariables } from '../model/variables.ts';
import { readFloat32 } from '../model/tensor-read.ts';
import type { ReplicaSpec } from '../job/replica-spec.ts';
import type { ComputeReplica, ReplicaEvaluation, ReplicaGradients } from './compute-replica.ts';
import { placeWeightUpdate, type WeightUpdate } from './weight-update.ts';

/**
 * A worker's copy of the model. It never applies updates itself: it computes on the weights the
 * coordinator broadcasts, so every replica holds the same version.
 */
export class ModelReplica implements ComputeReplica {
  readonly manifest: WeightEntry[];
  private readonly gradientModel: GradientModel;
  private readonly bufferVariables: tf.Variable[];
  private current: number | undefined;

  /** Builds the model the spec describes (a transfer backbone loads from this machine's install). */
  static async build(spec: ReplicaSpec): Promise<ModelReplica> {
    return new ModelReplica(spec, await buildReplicaModel(spec.model));
  }

  private constructor(spec: ReplicaSpec, built: tf.LayersModel) {
    // Gradients only: the coordinator holds the only optimizer.
    this.gradientModel = new GradientModel(built, { dropoutSeed: spec.model.seed });
    this.manifest = weightManifest(built);
    const expected = spec.weights.map((w) => `${w.name}:${w.shape.join('x')}:${w.trainable}`).join(',');
    const mine = this.manifest.map((w) => `${w.name}:${w.shape.join('x')}:${w.trainable}`).join(',');
    if (expected !== mine) {
      built.dispose();
      throw new ProtocolError('this worker builds a different model than the coordinator (different drover versions?): weight manifests differ');
    }
    // A transfer backbone's batch norm runs in inference mode: no non-trainable weight moves in a
    // forward pass, so none goes back (a frozen MobileNetV2 would otherwise send all its weights).
    this.bufferVariables = spec.model.kind === 'transfer' ? [] : modelVariables(built).filter((w) => !w.trainable).map((w) => w.read());
  }

  get version(): number | undefined {
    return this.current;
  }

  /** The wasm backend copies tensor data into its heap; cpu and tensorflow may keep the array given. */
  get copiesWeights(): boolean {
    return tf.getBackend() === 'wasm';
  }

  setWeights(update: WeightUpdate): void {
    const at = placeWeightUpdate(this.manifest, this.current, update);
    // A partial update leaves the other weights as they are: on cpu they may still be views of
    // an earlier broadcast's buffer, which the session then never hands back to its pool.
    writeWeightsAt(this.gradientModel.model, at, update.tensors.map((t) => t.data as Float32Array));
    this.current = update.version;
  }

  async train(batch: Batch): Promise<ReplicaGradients> {
    const result = await this.gradientModel.computeGradients(batch);
    // The forward pass in training mode moved the batch-norm statistics: they go back too.
    const buffers = await readFloat32(this.bufferVariables);
    return { ...result, buffers };
  }

  async evaluate(batch: Batch): Promise<ReplicaEvaluation> {
    const result = await this.gradientModel.evaluate(batch);
    return { lossSum: result.loss * result.n, correct: result.correct, n: result.n, predicted: Array.from(result.predicted) };
  }

  dispose(): void {
    this.gradientModel.model.dispose();
  }
}
