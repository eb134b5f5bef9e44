import type { Logger } from '../telemetry/logger.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Batch, Dataset } from '../data/types.ts';
import { Sampler } from '../data/sampler.ts';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { SamplerPosition } from '../data/sampler.ts';
import type { WeightSet } from '../model/weights.ts';
import { readWeights, writeWeights } from '../model/weights.ts';
import type { EpochProgress } from '../job/checkpoint.ts';
import { EarlyStopping, type EarlyStoppingState } from '../job/early-stopping.ts';
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
  /** Stops after the current step (or validation batch) when aborted (Ctrl-C), after a checkpoint. */
  signal?: AbortSignal;
  /** Where the job stands: continue from here (a resumed run, or the phase before this one). */
  resume?: FitProgress;
  /** Saves a checkpoint: each epoch, on stop, and every `checkpointEvery` steps. */
  checkpoint?: (progress: FitProgress) => Promise<void>;
  /** Steps between checkpoints inside an epoch (0: only at epoch ends and on stop). */
  checkpointEvery?: number;
}

/**
 * What a checkpoint keeps of the loop (the coordinator's CheckpointState without the job's
 * identity): with the weights and the optimizer state, enough to continue exactly.
 */
export interface FitProgress {
  /** Optimizer steps applied in the whole job. */
  step: number;
  /** Epochs completed (validation and early stopping included). */
  epoch: number;
  /** Where the sampler continues; an epoch past `epoch` means that epoch's steps are done but not its validation. */
  sampler: SamplerPosition;
  history: EpochRecord[];
  epochProgress: EpochProgress;
  earlyStopping?: EarlyStoppingState;
  bestWeights?: WeightSet;
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

/**
 * Single-process training loop: epochs of seeded batches, validation, early stopping,
 * checkpoints. It yields to the event loop after every step, so signals, the dashboard and
 * log writes are served while it trains.
 */
export async function fit(options: FitOptions): Promise<FitResult> {
  const { trainer, dataset, log, batchSize, signal } = options;
  const offset = options.epochOffset ?? 0;
  const stepOffset = options.stepOffset ?? 0;
  const epochs = options.totalEpochs ?? offset + options.epochs;
  const resume = options.resume;
  // A later phase draws the shuffles (and augmentation) of its own epoch numbers, as the distributed run does.
  const sampler = new Sampler({ length: dataset.train.length, batchSize, seed: options.seed, position: resume?.sampler ?? { epoch: offset, offset: 0 } });
  const stepsPerEpoch = sampler.stepsPerEpoch;
  const schedule = { baseRate: options.learningRate, stepsPerEpoch, totalSteps: stepsPerEpoch * options.epochs };
  const history: EpochRecord[] = [...(resume?.history ?? [])];
  const stopper = options.earlyStopping ? new EarlyStopping(options.earlyStopping, resume?.earlyStopping, resume?.bestWeights) : undefined;
  let step = resume?.step ?? stepOffset;
  let progress: EpochProgress = resume?.epochProgress ?? { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
  const firstEpoch = (resume?.epoch ?? offset) + 1;
  // Steps of the first epoch already run: all of them when only its validation is left.
  const resumedSteps = resume === undefined ? 0 : resume.sampler.epoch > resume.epoch ? stepsPerEpoch : Math.floor(resume.sampler.offset / batchSize);

  const save = async (position: SamplerPosition, epochsDone: number): Promise<void> => {
    await options.checkpoint?.({
      step,
      epoch: epochsDone,
      sampler: position,
      history: [...history],
      epochProgress: { ...progress },
      ...(stopper ? { earlyStopping: stopper.state } : {}),
      ...(stopper?.bestWeights ? { bestWeights: stopper.bestWeights } : {}),
    });
  };
  const stopped = async (position: SamplerPosition, epochsDone: number, epochStarted: number): Promise<FitResult> => {
    progress.seconds = (performance.now() - epochStarted) / 1000;
    await save(position, epochsDone);
    log.warn({ step }, `stop requested: stopped after step ${step}`);
    return { history, steps: step, status: 'stopped' };
  };
  const load = (): { batch: Promise<Batch>; positionAfter: SamplerPosition } => {
    const { indices, epoch } = sampler.next();
    return { batch: dataset.train.loadBatch(indices, { augment: true, epoch }), positionAfter: sampler.position };
  };

  for (let epoch = firstEpoch; epoch <= offset + options.epochs; epoch++) {
    const firstInEpoch = epoch === firstEpoch ? resumedSteps + 1 : 1;
    if (firstInEpoch === 1) progress = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
    logEvent(log, 'epoch_start', { epoch, epochs, steps: stepsPerEpoch }, `epoch ${epoch}/${epochs}`);
    const started = performance.now() - progress.seconds * 1000;
    let windowStart = performance.now();
    let windowImages = 0;
    let windowWait = 0;
    let windowCompute = 0;
    let lr = learningRateAt(options.schedule, Math.max(0, step - stepOffset - 1), schedule);
    // Prefetch: the next batch loads while this one computes.
    let pending = firstInEpoch <= stepsPerEpoch ? load() : undefined;
    for (let inEpoch = firstInEpoch; inEpoch <= stepsPerEpoch; inEpoch++) {
      const waitStart = performance.now();
      const current = pending!;
      const batch = await current.batch;
      const computeStart = performance.now();
      pending = inEpoch < stepsPerEpoch ? load() : undefined;
      lr = learningRateAt(options.schedule, step - stepOffset, schedule);
      if (batch.n === 0) {
        // Every sample of this batch was skipped (and logged as data_skip): nothing to learn from.
        log.warn({ epoch, stepInEpoch: inEpoch, skipped: batch.skipped?.length ?? 0 }, 'a batch had no decodable sample: step skipped');
        continue;
      }
      const metrics = await trainer.trainStep(batch, lr);
      batch.release?.();
      const done = performance.now();
      step++;
      progress.lossSum += metrics.loss * metrics.n;
      progress.correct += metrics.correct;
      progress.seen += metrics.n;
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
      // One turn of the event loop per step: a step is synchronous tensor work, and without
      // this a Ctrl-C or a dashboard request would wait for the whole run.
      await nextTurn();
      if (signal?.aborted) {
        pending?.batch.then((b) => b.release?.(), () => {});
        return stopped(current.positionAfter, epoch - 1, started);
      }
      if (options.checkpointEvery && step % options.checkpointEvery === 0 && inEpoch < stepsPerEpoch) {
        progress.seconds = (performance.now() - started) / 1000;
        await save(current.positionAfter, epoch - 1);
      }
    }
    const seen = progress.seen;
    const seconds = (performance.now() - started) / 1000;
    const record: EpochRecord = { epoch, loss: progress.lossSum / seen, accuracy: progress.correct / seen, lr, seconds, imgPerSec: seen / seconds };
    if (dataset.validation) {
      const val = await evaluateSplit(trainer, dataset.validation, dataset.classNames.length, { signal });
      // Stopped inside validation: the epoch's steps are saved, its validation runs again on resume.
      if (signal?.aborted) return stopped(sampler.position, epoch - 1, started);
      record.valLoss = val.loss;
      record.valAccuracy = val.accuracy;
    }
    history.push(record);
    logEvent(log, 'epoch', { epochs, ...record }, epochSummary(record, epochs));
    const stop = (await stopper?.update(epoch, record, () => readWeights(trainer.model))) ?? false;
    progress = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
    await save(sampler.position, epoch);
    if (stop) {
      const restored = options.earlyStopping!.restoreBest && stopper!.bestWeights !== undefined;
      if (restored) writeWeights(trainer.model, stopper!.bestWeights!);
      logEvent(
        log,
        'early_stop',
        { epoch, monitor: stopper!.spec.monitor, best: stopper!.best!, bestEpoch: stopper!.bestEpoch!, restored },
        `early stop at epoch ${epoch}: ${stopper!.spec.monitor} best ${stopper!.best!.toFixed(4)} at epoch ${stopper!.bestEpoch}`,
      );
      return { history, steps: step, status: 'early_stopped', bestEpoch: stopper!.bestEpoch };
    }
    if (signal?.aborted) {
      log.warn({ step }, `stop requested: stopped after epoch ${epoch}`);
      return { history, steps: step, status: 'stopped' };
    }
  }
  return { history, steps: step, status: 'completed', bestEpoch: stopper?.bestEpoch };
}

function epochSummary(r: EpochRecord, epochs: number): string {
  const val = r.valLoss === undefined ? '' : ` - val_loss: ${r.valLoss.toFixed(4)} - val_accuracy: ${r.valAccuracy!.toFixed(4)}`;
  return `epoch ${r.epoch}/${epochs} - ${r.seconds.toFixed(1)}s - loss: ${r.loss.toFixed(4)} - accuracy: ${r.accuracy.toFixed(4)}${val}`;
}
