import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Dataset } from '../data/types.ts';
import { Sampler, type SampledBatch, type SamplerPosition } from '../data/sampler.ts';
import type { WeightSet } from '../model/weights.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { batchScale, learningRateAt, type BatchScaling, type ScheduleSpec } from '../train/schedule.ts';
import type { EpochProgress } from './checkpoint.ts';
import { EarlyStopping, type EarlyStoppingSpec, type EarlyStoppingState } from './early-stopping.ts';
import type { StepEngine } from './step-engine.ts';
import { StepWindow } from './step-window.ts';

export interface TrainingLoopOptions {
  /** What takes the steps: in this process or on a cluster. */
  engine: StepEngine;
  dataset: Pick<Dataset, 'train' | 'validation' | 'classNames'>;
  /** Epochs of this phase. */
  epochs: number;
  /** Epochs and steps already run by an earlier phase (fine-tuning continues the count). */
  epochOffset?: number;
  stepOffset?: number;
  /** Epochs of the whole job, for progress; default offset + epochs. */
  totalEpochs?: number;
  /** The global batch of every step (and the sampler's reference size); see `perWorker`. */
  batchSize: number;
  /**
   * A per-worker batch instead: each step's global batch is perWorker x the engine's replicas,
   * decided when the step's batch is drawn (one step ahead, for prefetch), so steps per epoch vary
   * as workers come and go; the last batch of an epoch is what is left of it.
   */
  perWorker?: PerWorkerBatch;
  seed: number;
  schedule: ScheduleSpec;
  /** Base learning rate the schedule scales. */
  learningRate: number;
  /** Emit a `step` event every N steps (and at each epoch's last). */
  logEvery: number;
  earlyStopping?: EarlyStoppingSpec;
  log: Logger;
  /** Stops after the current step (or validation) when aborted (Ctrl-C), after a checkpoint. */
  signal?: AbortSignal;
  /** Where the job stands: continue from here (a resumed run, or the phase before this one). */
  resume?: TrainingProgress;
  /** Saves a checkpoint: each epoch, on stop, and every `checkpointEvery` steps. */
  checkpoint?: (progress: TrainingProgress) => Promise<void>;
  /** Steps between checkpoints inside an epoch (0: only at epoch ends and on stop). */
  checkpointEvery?: number;
}

export interface PerWorkerBatch {
  perWorker: number;
  /** Scale the learning rate with the global batch (linear or square-root rule, with warm-up); absent: no scaling. */
  scaling?: BatchScaling;
}

/**
 * What a checkpoint keeps of the loop (CheckpointState without the job's identity): with the
 * weights and the optimizer state, enough to continue exactly.
 */
export interface TrainingProgress {
  /** Steps taken in the whole job (a step whose batch had no usable sample counts too). */
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
  /** Wall time of the epoch, its validation included. */
  seconds: number;
  /** Training samples per second (validation excluded). */
  imgPerSec: number;
}

export interface TrainingResult {
  history: EpochRecord[];
  steps: number;
  status: 'completed' | 'early_stopped' | 'stopped';
  bestEpoch?: number;
}

/** A batch and where the sampler stands after it (what a checkpoint taken after its step saves). */
interface Planned {
  batch: SampledBatch;
  positionAfter: SamplerPosition;
}

const emptyProgress = (): EpochProgress => ({ lossSum: 0, correct: 0, seen: 0, seconds: 0 });

/**
 * The training loop of every run, single-process or distributed: epochs of seeded batches at the
 * schedule's learning rate, `step` and `epoch` events, validation, early stopping, checkpoints
 * (every K steps, each epoch, on stop) and resume from any of them. What takes a step is the
 * engine's business; the next batch is handed to it with each step so it can prefetch.
 */
export async function runTrainingLoop(options: TrainingLoopOptions): Promise<TrainingResult> {
  const { engine, dataset, log, batchSize, signal, perWorker } = options;
  const offset = options.epochOffset ?? 0;
  const stepOffset = options.stepOffset ?? 0;
  const lastEpoch = offset + options.epochs;
  const epochs = options.totalEpochs ?? lastEpoch;
  const resume = options.resume;
  const length = dataset.train.length;
  // A later phase draws the shuffles (and augmentation) of its own epoch numbers.
  const sampler = new Sampler({ length, batchSize, seed: options.seed, position: resume?.sampler ?? { epoch: offset, offset: 0 } });
  const globalBatch = (): number => (perWorker ? perWorker.perWorker * Math.max(1, engine.replicas?.() ?? 1) : batchSize);
  const lrOf = learningRates(options, length);
  const history: EpochRecord[] = [...(resume?.history ?? [])];
  const stopper = options.earlyStopping ? new EarlyStopping(options.earlyStopping, resume?.earlyStopping, resume?.bestWeights) : undefined;
  let step = resume?.step ?? stepOffset;
  let progress: EpochProgress = resume?.epochProgress ?? emptyProgress();
  const firstEpoch = (resume?.epoch ?? offset) + 1;

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
  const stopped = async (position: SamplerPosition, epochsDone: number, epochStarted: number, where: string): Promise<TrainingResult> => {
    progress.seconds = (performance.now() - epochStarted) / 1000;
    await save(position, epochsDone);
    log.warn({ step }, `stop requested: stopped after ${where} (checkpoint written)`);
    return { history, steps: step, status: 'stopped' };
  };
  const plan = (): Planned => ({ batch: sampler.next(globalBatch()), positionAfter: sampler.position });

  // Stopped before the engine could take a step (a cluster still waiting for workers): nothing to save.
  if (!(await engine.ready(signal))) return { history, steps: step, status: 'stopped' };

  for (let epoch = firstEpoch; epoch <= lastEpoch; epoch++) {
    // The sampler counts epochs from 0; when it is past this one, only its validation is left (a resume).
    const at = sampler.position;
    const stepsLeft = at.epoch === epoch - 1;
    const stepsDone = stepsLeft ? (at.step ?? Math.floor(at.offset / batchSize)) : 0;
    if (stepsLeft && stepsDone === 0) progress = emptyProgress();
    // With a per-worker batch the count is an estimate at today's global batch.
    const steps = perWorker ? stepsDone + Math.ceil((length - (stepsLeft ? at.offset : length)) / globalBatch()) : sampler.stepsPerEpoch;
    logEvent(log, 'epoch_start', { epoch, epochs, steps: Math.max(1, steps) }, `epoch ${epoch}/${epochs}`);
    const started = performance.now() - progress.seconds * 1000;
    const window = new StepWindow();
    let lr = lrOf.before(step, sampler.position, globalBatch());
    let next = stepsLeft ? plan() : undefined;
    while (next) {
      const current = next;
      const inEpoch = current.batch.step + 1;
      const lastInEpoch = current.positionAfter.epoch !== current.batch.epoch;
      // Prefetch: the engine may load the next batch while this one computes (not across epochs).
      next = lastInEpoch ? undefined : plan();
      lr = lrOf.at(step, current.batch);
      step++;
      const outcome = await engine.step(current.batch, { step, epoch, lr }, next?.batch);
      if (outcome.kind === 'empty') {
        // Every sample of the batch was skipped (each logged as data_skip): nothing to learn from.
        log.warn({ step, epoch, stepInEpoch: inEpoch }, `step ${step}: no sample of the batch could be decoded; the update is skipped`);
      } else if (outcome.kind === 'applied') {
        progress.lossSum += outcome.loss * outcome.n;
        progress.correct += outcome.correct;
        progress.seen += outcome.n;
        window.add(outcome.timing, outcome.n);
      }
      if (outcome.kind === 'applied' && (inEpoch % options.logEvery === 0 || lastInEpoch)) {
        logEvent(log, 'step', { epoch, step, stepInEpoch: inEpoch, lr, ...window.flush(outcome) });
      }
      // One turn of the event loop per step: an in-process step is synchronous tensor work, and
      // without this a Ctrl-C or a dashboard request would wait for the whole run. After the
      // step event, so a signal seen here stops the run with no step logged after it.
      await nextTurn();
      if (signal?.aborted) {
        engine.discardPrefetched();
        return stopped(current.positionAfter, epoch - 1, started, `step ${step}`);
      }
      if (options.checkpointEvery && step % options.checkpointEvery === 0 && !lastInEpoch) {
        progress.seconds = (performance.now() - started) / 1000;
        await save(current.positionAfter, epoch - 1);
      }
    }
    const seen = progress.seen;
    const trainSeconds = (performance.now() - started) / 1000;
    const record: EpochRecord = { epoch, loss: progress.lossSum / seen, accuracy: progress.correct / seen, lr, seconds: trainSeconds, imgPerSec: seen / trainSeconds };
    if (dataset.validation) {
      const val = await engine.evaluate('validation', dataset.validation, epoch, signal);
      // Stopped inside validation: the epoch's steps are saved, its validation runs again on resume.
      if (signal?.aborted) return stopped(sampler.position, epoch - 1, started, `the steps of epoch ${epoch}`);
      record.valLoss = val.loss;
      record.valAccuracy = val.accuracy;
      record.seconds = (performance.now() - started) / 1000;
      logEvent(log, 'evaluation', { split: 'validation', loss: val.loss, accuracy: val.accuracy, n: val.n, classNames: dataset.classNames, confusion: val.confusion, epoch });
    }
    history.push(record);
    logEvent(log, 'epoch', { epochs, ...record }, epochSummary(record, epochs));
    const stop = (await stopper?.update(epoch, record, () => engine.weights())) ?? false;
    progress = emptyProgress();
    await save(sampler.position, epoch);
    if (stop) {
      const restored = stopper!.spec.restoreBest && stopper!.bestWeights !== undefined;
      if (restored) await engine.setWeights(stopper!.bestWeights!);
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

/**
 * The learning rate of each step. A fixed batch follows the schedule step by step, as it always
 * did. A per-worker batch makes steps vary in size, so the schedule runs on the samples seen
 * (counted in steps of the reference batch: the same epochs-based shape) and the rate is scaled by
 * the step's global batch (its scaling rule, warm-up by fractional epochs of this phase). Both derive
 * from the sampler's position alone, so a resumed run repeats them exactly.
 */
function learningRates(options: TrainingLoopOptions, length: number) {
  const { perWorker, schedule, learningRate: baseRate, batchSize } = options;
  const phaseEpoch = options.epochOffset ?? 0;
  const stepOffset = options.stepOffset ?? 0;
  if (!perWorker) {
    const stepsPerEpoch = new Sampler({ length, batchSize, seed: 0 }).stepsPerEpoch;
    const context = { baseRate, stepsPerEpoch, totalSteps: stepsPerEpoch * options.epochs };
    return {
      at: (step: number): number => learningRateAt(schedule, step - stepOffset, context),
      /** The rate shown for an epoch that takes no step (only its validation was left). */
      before: (step: number, _position: SamplerPosition, _batch: number): number => learningRateAt(schedule, Math.max(0, step - stepOffset - 1), context),
    };
  }
  const reference = perWorker.scaling?.referenceBatch ?? batchSize;
  const stepsPerEpoch = Math.ceil(length / reference);
  const context = { baseRate, stepsPerEpoch, totalSteps: stepsPerEpoch * options.epochs };
  const rate = (epoch: number, offset: number, size: number): number => {
    const samples = (epoch - phaseEpoch) * length + offset;
    // The schedule's step index at this many samples, epoch boundaries exact (a whole epoch is
    // stepsPerEpoch reference steps even when the last one is short).
    const base = learningRateAt(schedule, Math.floor((samples * stepsPerEpoch) / length), context);
    return perWorker.scaling ? base * batchScale(size, samples / length, perWorker.scaling) : base;
  };
  return {
    at: (_step: number, batch: SampledBatch): number => rate(batch.epoch, batch.offset, batch.indices.length),
    before: (_step: number, position: SamplerPosition, size: number): number => rate(position.epoch, position.offset, size),
  };
}

export function epochSummary(r: EpochRecord, epochs: number): string {
  const val = r.valLoss === undefined ? '' : ` - val_loss: ${r.valLoss.toFixed(4)} - val_accuracy: ${r.valAccuracy!.toFixed(4)}`;
  return `epoch ${r.epoch}/${epochs} - ${r.seconds.toFixed(1)}s - loss: ${r.loss.toFixed(4)} - accuracy: ${r.accuracy.toFixed(4)}${val}`;
}
