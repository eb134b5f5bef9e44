import type { WeightSet } from '../model/weights.ts';

export interface EarlyStoppingSpec {
  monitor: 'val_loss' | 'val_accuracy';
  patience: number;
  minDelta: number;
  restoreBest: boolean;
}

/** What a checkpoint keeps of an early stopper (its best weights travel separately). */
export interface EarlyStoppingState {
  best: number | undefined;
  bestEpoch: number | undefined;
  wait: number;
}

/**
 * Keras' EarlyStopping, with state that survives a checkpoint: stop after `patience` epochs
 * without an improvement of at least `minDelta`; the best weights are kept to restore.
 */
export class EarlyStopping {
  best: number | undefined;
  bestEpoch: number | undefined;
  bestWeights: WeightSet | undefined;
  private wait = 0;

  constructor(
    readonly spec: EarlyStoppingSpec,
    state?: EarlyStoppingState,
    bestWeights?: WeightSet,
  ) {
    if (state) {
      this.best = state.best;
      this.bestEpoch = state.bestEpoch;
      this.wait = state.wait;
    }
    this.bestWeights = bestWeights;
  }

  get state(): EarlyStoppingState {
    return { best: this.best, bestEpoch: this.bestEpoch, wait: this.wait };
  }

  /** Records an epoch's validation metrics; returns true when training should stop. */
  async update(epoch: number, metrics: { valLoss?: number; valAccuracy?: number }, snapshot: () => Promise<WeightSet>): Promise<boolean> {
    const value = this.spec.monitor === 'val_loss' ? metrics.valLoss : metrics.valAccuracy;
    if (value === undefined || !Number.isFinite(value)) return false;
    const better =
      this.best === undefined ||
      (this.spec.monitor === 'val_loss' ? value < this.best - this.spec.minDelta : value > this.best + this.spec.minDelta);
    if (better) {
      this.best = value;
      this.bestEpoch = epoch;
      this.wait = 0;
      if (this.spec.restoreBest) this.bestWeights = await snapshot();
      return false;
    }
    this.wait++;
    return this.wait >= this.spec.patience;
  }
}
