import { Sampler, type SampledBatch } from '../data/sampler.ts';
import type { Checkpoint, EpochProgress } from '../job/checkpoint.ts';
import { checkpointPath, saveCheckpoint } from '../job/checkpoint.ts';
import { EarlyStopping } from '../job/early-stopping.ts';
import type { StepEngine } from '../job/step-engine.ts';
import { guardWrite } from '../io/write-guard.ts';
import { logEvent } from '../telemetry/events.ts';
import type { EpochRecord } from '../job/training-loop.ts';
import { learningRateAt } from '../train/schedule.ts';
import type { CoordinatorOptions, CoordinatorResult } from './coordinator.ts';
import { StepWindow } from './step-stats.ts';

/** The engine as the epoch loop drives it: its steps, plus what checkpoints name. */
export interface EpochEngine extends StepEngine {
  readonly jobId: string;
  /** Optimizer steps applied so far (resumed ones included). */
  readonly stepsDone: number;
}

/**
 * The coordinator's epochs over its StepEngine: epoch and step events, validation, checkpoints
 * (every cluster.checkpointEvery steps, at each epoch's end and at a stop), early stopping.
 * Trains until the last epoch, an early stop, an abort, or a fatal error. Kept until the one
 * training loop (src/job/training-loop.ts) drives the coordinator too.
 */
export async function trainEpochs(engine: EpochEngine, options: CoordinatorOptions, history: EpochRecord[]): Promise<CoordinatorResult> {
  const { dataset, cluster, signal, resume, log } = options;
  const sampler = new Sampler({ length: dataset.train.length, batchSize: options.batchSize, seed: options.seed, position: resume?.state.sampler });
  const stepsPerEpoch = sampler.stepsPerEpoch;
  const phaseStart = options.phaseStart ?? { step: 0, epoch: 0 };
  const jobEpochs = options.jobEpochs ?? options.epochs;
  const scheduleContext = { baseRate: options.learningRate, stepsPerEpoch, totalSteps: stepsPerEpoch * (options.epochs - phaseStart.epoch) };
  const stopper = options.earlyStopping ? new EarlyStopping(options.earlyStopping, resume?.state.earlyStopping, resume?.bestWeights) : undefined;
  let progress: EpochProgress = resume?.state.epochProgress ?? { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
  const save = (position: { epoch: number; offset: number }, epoch: number): Promise<void> =>
    checkpoint(engine, options, { position, epoch, history, progress, stopper });

  // Stopped before enough workers came (a pod deleted while its workers are pending): a stop
  // like any other, so the CLI exits 128 + signal and a Job does not count a failure.
  if (!(await engine.ready(signal))) return { status: 'stopped', history, steps: engine.stepsDone };
  /** A batch drawn from the sampler, and the sampler's position after it (what a checkpoint after its step saves). */
  type Drawn = { batch: SampledBatch; position: { epoch: number; offset: number } };
  const draw = (): Drawn => ({ batch: sampler.next(), position: sampler.position });
  let next: Drawn | undefined;
  for (let epoch = sampler.position.epoch + 1; epoch <= options.epochs; epoch++) {
    const firstInEpoch = Math.floor(sampler.position.offset / options.batchSize) + 1;
    if (firstInEpoch === 1) progress = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
    logEvent(log, 'epoch_start', { epoch, epochs: jobEpochs, steps: stepsPerEpoch }, `epoch ${epoch}/${jobEpochs}`);
    const epochStarted = performance.now() - progress.seconds * 1000;
    let lr = options.learningRate;
    const window = new StepWindow();
    for (let inEpoch = firstInEpoch; inEpoch <= stepsPerEpoch; inEpoch++) {
      const step = engine.stepsDone + 1;
      const current = next ?? draw();
      // Prefetch: the next shard goes out with this step, so workers decode it while this step computes.
      next = inEpoch < stepsPerEpoch ? draw() : undefined;
      lr = learningRateAt(options.schedule, step - 1 - phaseStart.step, scheduleContext);
      const outcome = await engine.step(current.batch, { step, epoch, lr }, next?.batch);
      if (outcome.kind !== 'applied') continue;
      progress.lossSum += outcome.loss * outcome.n;
      progress.correct += outcome.correct;
      progress.seen += outcome.n;
      window.add(outcome.timing, outcome.n);
      if (inEpoch % options.logEvery === 0 || inEpoch === stepsPerEpoch) {
        logEvent(log, 'step', { epoch, step, stepInEpoch: inEpoch, lr, ...window.flush(outcome) });
      }
      const everyK = cluster.checkpointEvery > 0 && step % cluster.checkpointEvery === 0 && inEpoch < stepsPerEpoch;
      if (everyK || signal?.aborted) {
        progress.seconds = (performance.now() - epochStarted) / 1000;
        await save(current.position, epoch - 1);
      }
      if (signal?.aborted) {
        log.warn({ step }, 'stop requested: stopped after this step (checkpoint written)');
        engine.discardPrefetched();
        return { status: 'stopped', history, steps: engine.stepsDone };
      }
    }
    const seen = progress.seen;
    const seconds = (performance.now() - epochStarted) / 1000;
    const record: EpochRecord = { epoch, loss: progress.lossSum / seen, accuracy: progress.correct / seen, lr, seconds, imgPerSec: seen / seconds };
    if (dataset.validation) {
      const val = await engine.evaluate('validation', dataset.validation, epoch);
      record.valLoss = val.loss;
      record.valAccuracy = val.accuracy;
      record.seconds = (performance.now() - epochStarted) / 1000;
      logEvent(log, 'evaluation', { split: 'validation', loss: val.loss, accuracy: val.accuracy, n: val.n, classNames: dataset.classNames, confusion: val.confusion, epoch });
    }
    history.push(record);
    logEvent(log, 'epoch', { epochs: jobEpochs, ...record }, epochSummary(record, jobEpochs));
    const stop = (await stopper?.update(epoch, record, () => engine.weights())) ?? false;
    progress = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
    await save(sampler.position, epoch);
    if (stop) {
      const restored = options.earlyStopping!.restoreBest && stopper!.bestWeights !== undefined;
      if (restored) await engine.setWeights(stopper!.bestWeights!);
      logEvent(log, 'early_stop', { epoch, monitor: stopper!.spec.monitor, best: stopper!.best!, bestEpoch: stopper!.bestEpoch!, restored },
        `early stop at epoch ${epoch}: ${stopper!.spec.monitor} best ${stopper!.best!.toFixed(4)} at epoch ${stopper!.bestEpoch}`);
      return { status: 'early_stopped', history, steps: engine.stepsDone, bestEpoch: stopper!.bestEpoch };
    }
    if (signal?.aborted) return { status: 'stopped', history, steps: engine.stepsDone };
  }
  return { status: 'completed', history, steps: engine.stepsDone, bestEpoch: stopper?.bestEpoch };
}

/** Writes the job's checkpoint: sampler position, history, epoch progress, weights and optimizer state. */
async function checkpoint(
  engine: EpochEngine,
  options: CoordinatorOptions,
  at: { position: { epoch: number; offset: number }; epoch: number; history: EpochRecord[]; progress: EpochProgress; stopper: EarlyStopping | undefined },
): Promise<void> {
  const { position, epoch, history, progress, stopper } = at;
  const file = checkpointPath(options.outputDir);
  const step = engine.stepsDone;
  const optimizer = await engine.optimizerState();
  const checkpoint: Checkpoint = {
    state: {
      jobId: engine.jobId,
      jobName: options.jobName,
      step,
      epoch,
      sampler: position,
      seed: options.seed,
      history,
      epochProgress: { ...progress },
      ...(stopper ? { earlyStopping: stopper.state } : {}),
      savedAt: new Date().toISOString(),
    },
    weights: await engine.weights(),
    optimizer: { iterations: optimizer.iterations, slots: optimizer.slots.map((s) => ({ name: s.name, values: new Float32Array(s.values) })) },
    ...(stopper?.bestWeights ? { bestWeights: stopper.bestWeights } : {}),
  };
  // Guarded: a second Ctrl-C (or SIGTERM) waits for the write instead of cutting it in half.
  const { bytes } = await guardWrite(() => {
    options.log.info({ step, path: file }, `writing checkpoint at step ${step}`);
    return saveCheckpoint(file, checkpoint);
  });
  logEvent(options.log, 'checkpoint', { step, epoch, path: file, bytes }, `checkpoint at step ${step} -> ${file}`);
}

function epochSummary(r: EpochRecord, epochs: number): string {
  const val = r.valLoss === undefined ? '' : ` - val_loss: ${r.valLoss.toFixed(4)} - val_accuracy: ${r.valAccuracy!.toFixed(4)}`;
  return `epoch ${r.epoch}/${epochs} - ${r.seconds.toFixed(1)}s - loss: ${r.loss.toFixed(4)} - accuracy: ${r.accuracy.toFixed(4)}${val}`;
}
