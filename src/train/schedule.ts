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
 * How the learning rate follows the global batch when it is k times the one the rate was tuned
 * for. `linear`: multiply by k, the rule for SGD (Goyal et al. 2017, "Accurate, Large Minibatch
 * SGD: Training ImageNet in 1 Hour", arXiv:1706.02677, section 2.1). `sqrt`: multiply by sqrt(k),
 * the rule for adaptive optimizers such as Adam and RMSProp (Malladi et al. 2022, "On the SDEs and
 * Scaling Rules for Adaptive Gradient Algorithms", arXiv:2205.10287): their update is divided by
 * the gradient's running scale, so keeping the training dynamics of their stochastic differential
 * equation at k times the batch takes sqrt(k) times the rate. The paper also scales 1 - beta by k
 * and epsilon by 1/sqrt(k); drover leaves those as the job sets them.
 */
export type ScalingRule = 'linear' | 'sqrt';

/**
 * The rule a job's `scaleLearningRate` asks for: `true` picks by optimizer (sqrt for adaptive
 * ones, linear otherwise), `false` none (undefined: the rate as it is).
 */
export function scalingRuleFor(setting: boolean | ScalingRule, adaptiveOptimizer: boolean): ScalingRule | undefined {
  if (setting === false) return undefined;
  if (setting === true) return adaptiveOptimizer ? 'sqrt' : 'linear';
  return setting;
}

/**
 * A scaling rule with gradual warm-up (Goyal et al., section 2.2): to get past the first unstable
 * epochs, start at the tuned rate (factor 1) and ramp linearly to the rule's factor over
 * `warmupEpochs`.
 */
export interface BatchScaling {
  rule: ScalingRule;
  /** The global batch the base learning rate was tuned for. */
  referenceBatch: number;
  /** Epochs over which the factor ramps from 1 to the rule's (0: at once). */
  warmupEpochs: number;
}

/** The factor on the learning rate for a step of `globalBatch` samples, `epochsDone` (fractional) epochs in. */
export function batchScale(globalBatch: number, epochsDone: number, scaling: BatchScaling): number {
  const k = globalBatch / scaling.referenceBatch;
  const factor = scaling.rule === 'sqrt' ? Math.sqrt(k) : k;
  if (scaling.warmupEpochs <= 0 || epochsDone >= scaling.warmupEpochs) return factor;
  return 1 + (factor - 1) * (Math.max(0, epochsDone) / scaling.warmupEpochs);
}
