import * as tf from '@tensorflow/tfjs';
import { ProtocolError } from '../errors.ts';
import { readWeights } from '../model/weights.ts';
import type { Batch } from '../data/types.ts';
import { buildReplicaModel } from '../model/replica-model.ts';
import { weightManifest, writeWeightsAt, type WeightEntry } from '../model/weights.ts';
import { GradientModel } from '../train/gradient-model.ts';
import { modelVariables } from '../model/variables.ts';
import { readFloat32 } from '../model/tensor-read.ts';
import type { ReplicaSpec } from '../job/replica-spec.ts';
import { NonFiniteUpdateError } from '../errors.ts';
import { ModelOptimizer } from '../train/model-optimizer.ts';
import { optimizerSpecSchema } from '../train/optimizers.ts';
import type { PeerReplica, ReplicaEvaluation, ReplicaGradients, ReplicaState } from './compute-replica.ts';
import { placeWeightUpdate, type WeightUpdate } from './weight-update.ts';

/**
 * A worker's copy of the model. With the star it never applies updates itself: it computes on
 * the weights the coordinator broadcasts, so every replica holds the same version. With the
 * peer reduction it holds an optimizer and applies the group's reduced gradient.
 */
export class ModelReplica implements PeerReplica {
  readonly manifest: WeightEntry[];
  private readonly gradientModel: GradientModel;
  private readonly bufferVariables: tf.Variable[];
  private current: number | undefined;
  private optimizer: ModelOptimizer | undefined;
  /** Indices of the non-trainable weights whose statistics `train` reports. */
  private readonly bufferIndices: number[];

  /**
   * Builds the model the spec describes (a transfer backbone loads from this machine's install).
   * `passesDone`: training passes its dropout masks already drew (a resumed replica thread).
   */
  static async build(spec: Pick<ReplicaSpec, 'model' | 'weights'>, options: { passesDone?: number } = {}): Promise<ModelReplica> {
    return new ModelReplica(spec, await buildReplicaModel(spec.model), options.passesDone ?? 0);
  }

  private constructor(spec: Pick<ReplicaSpec, 'model' | 'weights'>, built: tf.LayersModel, passesDone: number) {
    // Gradients only, until enableOptimizer (peer reduction, replica threads).
    this.gradientModel = new GradientModel(built, { dropoutSeed: spec.model.seed, passesDone });
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
    this.bufferIndices = spec.model.kind === 'transfer' ? [] : this.manifest.flatMap((w, i) => (w.trainable ? [] : [i]));
  }

  get reportsBuffers(): boolean {
    return this.bufferVariables.length > 0;
  }

  enableOptimizer(optimizerJson: string): void {
    this.optimizer?.optimizer.dispose();
    const parsed = optimizerSpecSchema.safeParse(JSON.parse(optimizerJson));
    if (!parsed.success) throw new ProtocolError(`optimizer spec: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    this.optimizer = new ModelOptimizer(this.gradientModel.model, parsed.data);
  }

  async applyReduced(grads: readonly Float32Array[], buffers: readonly Float32Array[], lr: number, version: number): Promise<boolean> {
    if (!this.optimizer) throw new ProtocolError('a reduced step to apply, but this replica has no optimizer (not a peer-reduction job)');
    let applied = true;
    try {
      await this.optimizer.applyGradients(grads, lr);
      if (buffers.length > 0) writeWeightsAt(this.gradientModel.model, this.bufferIndices, buffers);
    } catch (error) {
      if (!(error instanceof NonFiniteUpdateError)) throw error;
      applied = false;
    }
    this.current = version;
    return applied;
  }

  /** The batch-norm statistics now (copies); empty without batch norm. */
  readStatistics(): Promise<Float32Array[]> {
    return readFloat32(this.bufferVariables);
  }

  /**
   * Writes batch-norm statistics without an update: a refused step's forward passes moved each
   * replica's own statistics, and replicas must not keep different ones.
   */
  setStatistics(buffers: readonly Float32Array[]): void {
    if (buffers.length > 0) writeWeightsAt(this.gradientModel.model, this.bufferIndices, buffers);
  }

  skipTo(version: number): void {
    this.current = version;
  }

  async readState(): Promise<ReplicaState> {
    const weights = await readWeights(this.gradientModel.model);
    const optimizer = this.optimizer ? await this.optimizer.optimizer.getState() : { iterations: 0, slots: [] };
    return { weights: weights.values, optimizer };
  }

  setOptimizerState(state: ReplicaState['optimizer']): void {
    if (!this.optimizer) throw new ProtocolError('optimizer state sent to a replica without an optimizer');
    this.optimizer.bind();
    this.optimizer.optimizer.setState(state);
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

  /**
   * train, with the gradients (then the statistics) handed to `use` as arrays valid only during
   * the call instead of copies returned: nothing model-sized is allocated per step.
   */
  async trainInto(batch: Batch, use: (parts: Float32Array[]) => void): Promise<{ loss: number; correct: number; n: number }> {
    if (this.bufferVariables.length === 0) return this.gradientModel.withGradients(batch, use);
    // Batch-norm statistics are read after the pass, and that read's allocations would outdate
    // views of the gradients: with statistics, the gradients are copied first.
    let grads: Float32Array[] = [];
    const metrics = await this.gradientModel.withGradients(batch, (views) => {
      grads = views.map((g) => g.slice());
    });
    use([...grads, ...(await readFloat32(this.bufferVariables))]);
    return metrics;
  }

  /** Counts a training pass that had no sample (its dropout masks are drawn as if it had run). */
  skipPass(): void {
    this.gradientModel.skipPass();
  }

  async evaluate(batch: Batch): Promise<ReplicaEvaluation> {
    const result = await this.gradientModel.evaluate(batch);
    return { lossSum: result.loss * result.n, correct: result.correct, n: result.n, predicted: Array.from(result.predicted) };
  }

  dispose(): void {
    this.optimizer?.optimizer.dispose();
    this.gradientModel.model.dispose();
  }
}
