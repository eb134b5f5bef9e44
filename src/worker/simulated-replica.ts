import type { Batch } from '../data/types.ts';
import type { WeightEntry } from '../model/weights.ts';
import type { ReplicaSpec } from '../job/replica-spec.ts';
import type { ComputeReplica, ReplicaEvaluation, ReplicaGradients } from './compute-replica.ts';
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
 */
export class SimulatedReplica implements ComputeReplica {
  readonly manifest: WeightEntry[];
  /** Nothing of a broadcast is kept. */
  readonly copiesWeights = true;
  private readonly zeros: Float32Array[];
  private current: number | undefined;

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

  dispose(): void {}
}
