import { z } from 'zod';

/**
 * Learning-rate schedules, by epoch fraction so they do not depend on the batch size.
 * `warmupEpochs` ramps linearly from ~0 to the base rate first, whatever the type.
 */
export const scheduleSpecSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('constant'), warmupEpochs: z.number().min(0).default(0) }),
  z.strictObject({
    type: z.literal('step'),
    /** Multiply the rate by `gamma` every `everyEpochs` epochs. */
    everyEpochs: z.number().positive(),
    gamma: z.number().positive().max(1).default(0.1),
    warmupEpochs: z.number().min(0).default(0),
  }),
  z.strictObject({
    type: z.literal('cosine'),
    /** Floor as a fraction of the base rate. */
    minFactor: z.number().min(0).max(1).default(0),
    warmupEpochs: z.number().min(0).default(0),
  }),
]);
export type ScheduleSpec = z.infer<typeof scheduleSpecSchema>;

export interface ScheduleContext {
  baseRate: number;
  stepsPerEpoch: number;
  totalSteps: number;
}

/** Learning rate for 0-based global step `step`. */
export function learningRateAt(spec: ScheduleSpec, step: number, ctx: ScheduleContext): number {
  const warmupSteps = Math.round(spec.warmupEpochs * ctx.stepsPerEpoch);
  if (step < warmupSteps) return (ctx.baseRate * (step + 1)) / warmupSteps;
  switch (spec.type) {
    case 'constant':
      return ctx.baseRate;
    case 'step': {
      const epoch = step / ctx.stepsPerEpoch;
      return ctx.baseRate * spec.gamma ** Math.floor(epoch / spec.everyEpochs + 1e-9);
    }
    case 'cosine': {
      const span = Math.max(1, ctx.totalSteps - warmupSteps);
      const progress = Math.min(1, (step - warmupSteps) / span);
      const floor = ctx.baseRate * spec.minFactor;
      return floor + (ctx.baseRate - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
    }
  }
}

/**
 * The linear scaling rule with gradual warm-up (Goyal et al. 2017, "Accurate, Large Minibatch
 * SGD: Training ImageNet in 1 Hour", arXiv:1706.02677, sections 2.1-2.2): when the batch is k
 * times the one the learning rate was tuned for, multiply the rate by k; to get past the first
 * unstable epochs, start at the tuned rate (factor 1) and ramp linearly to k over `warmupEpochs`.
 */
export interface BatchScaling {
  /** The global batch the base learning rate was tuned for. */
  referenceBatch: number;
  /** Epochs over which the factor ramps from 1 to globalBatch / referenceBatch (0: at once). */
  warmupEpochs: number;
}

/** The factor on the learning rate for a step of `globalBatch` samples, `epochsDone` (fractional) epochs in. */
export function batchScale(globalBatch: number, epochsDone: number, scaling: BatchScaling): number {
  const k = globalBatch / scaling.referenceBatch;
  if (scaling.warmupEpochs <= 0 || epochsDone >= scaling.warmupEpochs) return k;
  return 1 + (k - 1) * (Math.max(0, epochsDone) / scaling.warmupEpochs);
}
