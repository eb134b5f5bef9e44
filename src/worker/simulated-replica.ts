import type { Batch } from '../data/types.ts';
import type { WeightEntry } from '../model/weights.ts';
import type { ReplicaSpec } from '../job/replica-spec.ts';
import type { PeerReplica, ReplicaEvaluation, ReplicaGradients, ReplicaState } from './compute-replica.ts';
import { placeWeightUpdate, type WeightUpdate } from './weight-update.ts';

/** How long a simulated task takes: a fixed part and a part per sample. */
export interface SimulatedCompute {
  msPerTask: number;
  msPerSample?: number;
}

/**
 * A stand-in for benchmarks and scheduling tests: no tfjs; waits `msPerTask + msPerSample x n`
 * per task and returns zero gradients of the right shapes, so a step's time is the simulated
 * compute plus drover's own overhead.
 *
 * It also takes part in the peer reduction (cluster.reduction: peer): the PeerParticipant
 * reduces its zero gradients with the group over the real Peer service, so the bytes on the wire
 * and the protocol are the real ones; only the optimizer is left out (it holds no model, and a
 * zero gradient would leave the weights as they were anyway). Its state, for the coordinator's
 * checkpoints and joining peers, is zeros of the sizes the coordinator's state had.
 */
export class SimulatedReplica implements PeerReplica {
  readonly manifest: WeightEntry[];
  /** Nothing of a broadcast is kept. */
  readonly copiesWeights = true;
  /** No batch-norm statistics: the flat vector the peers reduce is the trainable weights'. */
  readonly reportsBuffers = false;
  private readonly zeros: Float32Array[];
  private current: number | undefined;
  /** The optimizer state's shape as the coordinator sent it with the weights (peer reduction). */
  private slots: { name: string; size: number }[] = [];
  private iterations = 0;

  constructor(spec: ReplicaSpec, private readonly compute: SimulatedCompute) {
    this.manifest = spec.weights.map((w) => ({ name: w.name, shape: w.shape, dtype: 'float32' as const, trainable: w.trainable }));
    this.zeros = this.manifest.filter((w) => w.trainable).map((w) => new Float32Array(w.shape.reduce((a, b) => a * b, 1)));
  }

  get version(): number | undefined {
    return this.current;
  }

  setWeights(update: WeightUpdate): void {
    placeWeightUpdate(this.manifest, this.current, update);
    this.current = update.version;
  }

  private wait(n: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.compute.msPerTask + (this.compute.msPerSample ?? 0) * n));
  }

  async train(batch: Batch): Promise<ReplicaGradients> {
    await this.wait(batch.n);
    return { loss: 1, correct: 0, n: batch.n, grads: this.zeros, buffers: [] };
  }

  async evaluate(batch: Batch): Promise<ReplicaEvaluation> {
    await this.wait(batch.n);
    return { lossSum: batch.n, correct: 0, n: batch.n, predicted: new Array<number>(batch.n).fill(0).map((_, i) => (batch.y[i] === 0 ? 1 : 0)) };
  }

  /** No optimizer: the reduced gradient is only received, never applied. */
  enableOptimizer(): void {}

  /** The step's reduced gradient arrived over the real peer exchange; holding its version is all a model-less replica does. */
  async applyReduced(_grads: readonly Float32Array[], _buffers: readonly Float32Array[], _lr: number, version: number): Promise<boolean> {
    this.iterations++;
    this.current = version;
    return true;
  }

  skipTo(version: number): void {
    this.current = version;
  }

  /** Zeros of every weight's and slot's size: a state transfer moves the bytes a real one would. */
  async readState(): Promise<ReplicaState> {
    return {
      weights: this.manifest.map((w) => new Float32Array(w.shape.reduce((a, b) => a * b, 1))),
      optimizer: { iterations: this.iterations, slots: this.slots.map((slot) => ({ name: slot.name, values: new Float32Array(slot.size) })) },
    };
  }

  setOptimizerState(state: ReplicaState['optimizer']): void {
    this.slots = state.slots.map((slot) => ({ name: slot.name, size: slot.values.length }));
    this.iterations = state.iterations;
  }

  dispose(): void {}
}
