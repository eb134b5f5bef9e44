import type { Logger } from '../telemetry/logger.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Batch, Dataset } from '../data/types.ts';
import { Sampler } from '../data/sampler.ts';
import type { WeightSet } from '../model/weights.ts';
import { readWeights, writeWeights } from '../model/weights.ts';
import type { ScheduleSpec } from './schedule.ts';
import { learningRateAt } from './schedule.ts';
import type { Trainer } from './trainer.ts';
import { evaluateSplit } from './evaluate.ts';

export interface EarlyStoppingOptions {
  monitor: 'val_loss' | 'val_accuracy';
  patience: number;
  minDelta: number;
  restoreBest: boolean;
}

export interface FitOptions {
  trainer: Trainer;
  dataset: Dataset;
  epochs: number;
  /** Epochs and steps already run by an earlier phase (fine-tuning continues the count). */
  epochOffset?: number;
  stepOffset?: number;
  /** Epochs of the whole job, for progress; default offset + epochs. */
  totalEpochs?: number;
  batchSize: number;
  seed: number;
  schedule: ScheduleSpec;
  /** Base learning rate the schedule scales. */
  learningRate: number;
  /** Emit a `step` event every N steps. */
  logEvery: number;
  earlyStopping?: EarlyStoppingOptions;
  log: Logger;
  /** Stops after the current step when aborted (Ctrl-C). */
  signal?: AbortSignal;
}

export interface EpochRecord {
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
  lr: number;
  seconds: number;
  imgPerSec: number;
}

export interface FitResult {
  history: EpochRecord[];
  steps: number;
  status: 'completed' | 'early_stopped' | 'stopped';
  bestEpoch?: number;
}

/** Single-process training loop: epochs of seeded batches, validation, early stopping. */
export async function fit(options: FitOptions): Promise<FitResult> {
  const { trainer, dataset, log, batchSize } = options;
  const offset = options.epochOffset ?? 0;
  const epochs = options.totalEpochs ?? offset + options.epochs;
  // A later phase draws the shuffles (and augmentation) of its own epoch numbers, as the distributed run does.
  const sampler = new Sampler({ length: dataset.train.length, batchSize, seed: options.seed, position: { epoch: offset, offset: 0 } });
  const stepsPerEpoch = sampler.stepsPerEpoch;
  const schedule = { baseRate: options.learningRate, stepsPerEpoch, totalSteps: stepsPerEpoch * options.epochs };
  const history: EpochRecord[] = [];
  const stopper = options.earlyStopping ? new EarlyStopper(options.earlyStopping) : undefined;
  let step = options.stepOffset ?? 0;
  let phaseStep = 0;

  const load = (): Promise<Batch> => {
    const { indices, epoch } = sampler.next();
    return dataset.train.loadBatch(indices, { augment: true, epoch });
  };

  for (let epoch = offset + 1; epoch <= offset + options.epochs; epoch++) {
    logEvent(log, 'epoch_start', { epoch, epochs, steps: stepsPerEpoch }, `epoch ${epoch}/${epochs}`);
    const started = performance.now();
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    let windowStart = performance.now();
    let windowImages = 0;
    let windowWait = 0;
    let windowCompute = 0;
    let lr = options.learningRate;
    // Prefetch: the next batch loads while this one computes.
    let pending = load();
    for (let inEpoch = 1; inEpoch <= stepsPerEpoch; inEpoch++) {
      const waitStart = performance.now();
      const batch = await pending;
      const computeStart = performance.now();
      if (inEpoch < stepsPerEpoch) pending = load();
      lr = learningRateAt(options.schedule, phaseStep, schedule);
      if (batch.n === 0) {
        // Every sample of this batch was skipped (and logged as data_skip): nothing to learn from.
        log.warn({ epoch, stepInEpoch: inEpoch, skipped: batch.skipped?.length ?? 0 }, 'a batch had no decodable sample: step skipped');
        continue;
      }
      const metrics = await trainer.trainStep(batch, lr);
      batch.release?.();
      const done = performance.now();
      step++;
      phaseStep++;
      lossSum += metrics.loss * metrics.n;
      correct += metrics.correct;
      seen += metrics.n;
      windowImages += metrics.n;
      windowWait += computeStart - waitStart;
      windowCompute += done - computeStart;
      if (inEpoch % options.logEvery === 0 || inEpoch === stepsPerEpoch) {
        const steps = inEpoch % options.logEvery || options.logEvery;
        logEvent(log, 'step', {
          epoch,
          step,
          stepInEpoch: inEpoch,
          loss: metrics.loss,
          accuracy: metrics.correct / metrics.n,
          lr,
          n: metrics.n,
          imgPerSec: windowImages / ((done - windowStart) / 1000),
          dataWaitMs: windowWait / steps,
          computeMs: windowCompute / steps,
          transferMs: 0,
          reduceMs: 0,
        });
        windowStart = done;
        windowImages = 0;
        windowWait = 0;
        windowCompute = 0;
      }
      if (options.signal?.aborted) {
        log.warn({ step }, 'stop requested: finished the current step');
        return { history, steps: step, status: 'stopped' };
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const record: EpochRecord = {
      epoch,
      loss: lossSum / seen,
      accuracy: correct / seen,
      lr,
      seconds,
      imgPerSec: seen / seconds,
    };
    if (dataset.validation) {
      const val = await evaluateSplit(trainer, dataset.validation, dataset.classNames.length);
      record.valLoss = val.loss;
      record.valAccuracy = val.accuracy;
    }
    history.push(record);
    logEvent(log, 'epoch', { epochs, ...record }, epochSummary(record, epochs));
    if (stopper && (await stopper.update(record, () => readWeights(trainer.model)))) {
      const best = stopper.best!;
      if (options.earlyStopping!.restoreBest) writeWeights(trainer.model, best.weights);
      logEvent(
        log,
        'early_stop',
        { epoch, monitor: stopper.monitor, best: best.value, bestEpoch: best.epoch, restored: options.earlyStopping!.restoreBest },
        `early stop at epoch ${epoch}: ${stopper.monitor} best ${best.value.toFixed(4)} at epoch ${best.epoch}`,
      );
      return { history, steps: step, status: 'early_stopped', bestEpoch: best.epoch };
    }
  }
  return { history, steps: step, status: 'completed', bestEpoch: stopper?.best?.epoch };
}

function epochSummary(r: EpochRecord, epochs: number): string {
  const val = r.valLoss === undefined ? '' : ` - val_loss: ${r.valLoss.toFixed(4)} - val_accuracy: ${r.valAccuracy!.toFixed(4)}`;
  return `epoch ${r.epoch}/${epochs} - ${r.seconds.toFixed(1)}s - loss: ${r.loss.toFixed(4)} - accuracy: ${r.accuracy.toFixed(4)}${val}`;
}

/** Keras' EarlyStopping: stop after `patience` epochs without improvement of the monitor. */
class EarlyStopper {
  readonly monitor: EarlyStoppingOptions['monitor'];
  best: { value: number; epoch: number; weights: WeightSet } | undefined;
  private wait = 0;

  constructor(private readonly options: EarlyStoppingOptions) {
    this.monitor = options.monitor;
  }

  /** Records an epoch; returns true when training should stop. */
  async update(record: EpochRecord, snapshot: () => Promise<WeightSet>): Promise<boolean> {
    const value = this.monitor === 'val_loss' ? record.valLoss : record.valAccuracy;
    if (value === undefined) return false;
    const better =
      this.best === undefined ||
      (this.monitor === 'val_loss' ? value < this.best.value - this.options.minDelta : value > this.best.value + this.options.minDelta);
    if (better) {
      this.best = { value, epoch: record.epoch, weights: await snapshot() };
      this.wait = 0;
      return false;
    }
    this.wait++;
    return this.wait >= this.options.patience;
  }
}
