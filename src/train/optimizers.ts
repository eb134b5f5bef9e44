import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { NonFiniteUpdateError, TrainingError, WeightsError } from '../errors.ts';
import { readFloat32 } from '../model/tensor-read.ts';
import { fusedUpdate, hasFusedUpdate, registerFusedUpdateKernels, type UpdateAttrs } from '../model/update-kernels.ts';

registerFusedUpdateKernels();

/** Optimizers as in Keras, with Keras' defaults. `momentum` is SGD with momentum 0.9. */
export const optimizerSpecSchema = z.discriminatedUnion('name', [
  z.strictObject({
    name: z.literal('sgd'),
    learningRate: z.number().positive().default(0.01),
    momentum: z.number().min(0).lt(1).default(0),
    nesterov: z.boolean().default(false),
  }),
  z.strictObject({
    name: z.literal('momentum'),
    learningRate: z.number().positive().default(0.01),
    momentum: z.number().min(0).lt(1).default(0.9),
    nesterov: z.boolean().default(false),
  }),
  z.strictObject({
    name: z.literal('adam'),
    learningRate: z.number().positive().default(0.001),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    epsilon: z.number().positive().default(1e-7),
  }),
  z.strictObject({
    name: z.literal('rmsprop'),
    learningRate: z.number().positive().default(0.001),
    rho: z.number().min(0).lt(1).default(0.9),
    momentum: z.number().min(0).lt(1).default(0),
    epsilon: z.number().positive().default(1e-7),
  }),
]);
export type OptimizerSpec = z.infer<typeof optimizerSpecSchema>;

/**
 * Whether the optimizer divides each gradient by a running estimate of its scale (Adam,
 * RMSProp): the learning rate then follows the batch by the square-root rule, not the linear one
 * (src/train/schedule.ts). A switch, so a new optimizer must be classified here.
 */
export function isAdaptiveOptimizer(name: OptimizerSpec['name']): boolean {
  switch (name) {
    case 'sgd':
    case 'momentum':
      return false;
    case 'adam':
    case 'rmsprop':
      return true;
  }
}

/** A named slot of optimizer state, flat, for checkpoints and the wire. */
export interface OptimizerSlot {
  name: string;
  values: Float32Array;
}

/**
 * Applies gradients to variables. drover's own (not tf.train's) so its state is explicit,
 * serialisable and the learning rate can change every step.
 */
export interface Optimizer {
  readonly spec: OptimizerSpec;
  /** Number of updates applied so far. */
  readonly iterations: number;
  /**
   * One step: vars[i] -= f(grads[i]), written at once with no read back (the per-step path).
   * Runs inside its own tidy; gradients are not disposed.
   */
  apply(vars: readonly tf.Variable[], grads: readonly tf.Tensor[], learningRate: number): void;
  /**
   * One step, checked: every new weight and slot value is computed first and its finiteness read
   * back (awaited: one read, which a GPU backend can only do asynchronously). A step that would
   * make any of them non-finite rejects with NonFiniteUpdateError and changes nothing, not even
   * the iteration count. The gradients are not disposed and must stay alive until it settles;
   * no other step or setState may start on this optimizer meanwhile (TrainingError).
   */
  applyVerified(vars: readonly tf.Variable[], grads: readonly tf.Tensor[], learningRate: number): Promise<void>;
  /** State for a checkpoint: every slot, plus `iterations` (read asynchronously: GPU backends). */
  getState(): Promise<{ iterations: number; slots: OptimizerSlot[] }>;
  /** Restores state taken by getState on an optimizer for the same variables. */
  setState(state: { iterations: number; slots: readonly OptimizerSlot[] }): void;
  /** Creates the state slots for these variables now (apply does so lazily). */
  bind(vars: readonly tf.Variable[]): void;
  dispose(): void;
}

export interface OptimizerOptions {
  /**
   * Use the fused update kernel where the backend has it (wasm, cpu): one pass per variable
   * instead of 8-15 ops. Default true; false keeps the separate tfjs ops (tests compare both).
   */
  fused?: boolean;
}

/** Creates the optimizer a spec describes. */
export function createOptimizer(spec: OptimizerSpec, options: OptimizerOptions = {}): Optimizer {
  return new SlotOptimizer(spec, options.fused ?? true);
}

/** The fused kernel's rule and constants for a spec at step t (1-based). */
function updateAttrs(spec: OptimizerSpec, learningRate: number, t: number): UpdateAttrs {
  switch (spec.name) {
    case 'sgd':
    case 'momentum':
      return { rule: spec.momentum === 0 ? 'sgd' : spec.nesterov ? 'nesterov' : 'momentum', lr: learningRate, a: spec.momentum, b: 0, epsilon: 0 };
    case 'adam':
      return { rule: 'adam', lr: (learningRate * Math.sqrt(1 - spec.beta2 ** t)) / (1 - spec.beta1 ** t), a: spec.beta1, b: spec.beta2, epsilon: spec.epsilon };
    case 'rmsprop':
      return { rule: spec.momentum > 0 ? 'rmsprop-momentum' : 'rmsprop', lr: learningRate, a: spec.rho, b: spec.momentum, epsilon: spec.epsilon };
  }
}

type SlotKind = 'velocity' | 'm' | 'v' | 'ms' | 'mom';

function slotKinds(spec: OptimizerSpec): SlotKind[] {
  switch (spec.name) {
    case 'sgd':
    case 'momentum':
      return spec.momentum > 0 ? ['velocity'] : [];
    case 'adam':
      return ['m', 'v'];
    case 'rmsprop':
      return spec.momentum > 0 ? ['ms', 'mom'] : ['ms'];
  }
}

/** A new value for a variable (weight or slot), named for messages. */
interface Write {
  target: tf.Variable;
  value: tf.Tensor;
  what: string;
}

/**
 * One flag per new value, stacked for a single read: 1 when every element is finite, else 0.
 * isFinite tests the bits (on webgpu too), so it does not depend on how a shader treats Inf x 0.
 */
function finiteFlags(writes: readonly Write[]): tf.Tensor1D {
  return tf.stack(writes.map(({ value }) => tf.min(tf.cast(tf.isFinite(value), 'float32')))) as tf.Tensor1D;
}

/** NonFiniteUpdateError naming the first value whose flag says it is not finite, if any. */
function nonFiniteError(writes: readonly Write[], flags: Float32Array): NonFiniteUpdateError | undefined {
  const bad = flags.findIndex((f) => f !== 1);
  if (bad < 0) return undefined;
  const what = writes[bad]!.what;
  return new NonFiniteUpdateError(`the update would make ${what} non-finite (a gradient too large for the optimizer): refused, nothing was written`, what);
}

class SlotOptimizer implements Optimizer {
  private slots: Map<SlotKind, tf.Variable[]> | undefined;
  private count = 0;
  /** True while applyVerified awaits its read. */
  private verifying = false;

  constructor(
    readonly spec: OptimizerSpec,
    private readonly fused: boolean,
  ) {}

  get iterations(): number {
    return this.count;
  }

  apply(vars: readonly tf.Variable[], grads: readonly tf.Tensor[], learningRate: number): void {
    this.assertIdle('apply');
    const slots = this.prepare(vars, grads);
    const t = this.count + 1;
    tf.tidy(() => {
      for (const { target, value } of this.updates(vars, grads, slots, learningRate, t)) target.assign(value);
    });
    this.count = t;
  }

  async applyVerified(vars: readonly tf.Variable[], grads: readonly tf.Tensor[], learningRate: number): Promise<void> {
    this.assertIdle('applyVerified');
    const slots = this.prepare(vars, grads);
    const t = this.count + 1;
    if (vars.length === 0) {
      this.count = t;
      return;
    }
    // The new values and their flags outlive the tidy (returned from it): kept until the read says
    // whether they may be written, then released either way.
    let writes: Write[] = [];
    const flags = tf.tidy(() => {
      writes = this.updates(vars, grads, slots, learningRate, t);
      const stacked = finiteFlags(writes);
      writes.forEach(({ value }) => tf.keep(value));
      return stacked;
    });
    this.verifying = true;
    try {
      const [values] = await readFloat32([flags]);
      const error = nonFiniteError(writes, values!);
      if (error) throw error;
      for (const { target, value } of writes) target.assign(value);
      this.count = t;
    } finally {
      this.verifying = false;
      tf.dispose([flags, ...writes.map((w) => w.value)]);
    }
  }

  /** Checks the counts and returns the slots (created on first use). */
  private prepare(vars: readonly tf.Variable[], grads: readonly tf.Tensor[]): Map<SlotKind, tf.Variable[]> {
    if (vars.length !== grads.length) {
      throw new WeightsError(`optimizer got ${grads.length} gradients for ${vars.length} variables`);
    }
    return this.ensureSlots(vars);
  }

  /**
   * A verified step holds new values computed from the current state until its read returns: a
   * step, restore or dispose in that window would be overwritten or would free what it holds.
   */
  private assertIdle(what: string): void {
    if (this.verifying) throw new TrainingError(`optimizer ${what} called while a verified step is still being checked (await applyVerified first)`);
  }

  /** The step's new values, computed and not yet written (weights and their slots). */
  private updates(vars: readonly tf.Variable[], grads: readonly tf.Tensor[], slots: Map<SlotKind, tf.Variable[]>, learningRate: number, t: number): Write[] {
    const spec = this.spec;
    const writes: Write[] = [];
    const write = (target: tf.Variable, value: tf.Tensor, what: string): void => {
      writes.push({ target, value, what });
    };
    if (this.fused && hasFusedUpdate()) {
      const attrs = updateAttrs(spec, learningRate, t);
      const kinds = slotKinds(spec);
      vars.forEach((variable, i) => {
        const slotVars = kinds.map((kind) => slots.get(kind)![i]!);
        const [weight, ...slotValues] = fusedUpdate(attrs, variable, grads[i]!, slotVars);
        write(variable, weight!, `weight ${variable.name}`);
        slotVars.forEach((slot, j) => write(slot, slotValues[j]!, `slot ${kinds[j]}/${i} (of ${variable.name})`));
      });
      return writes;
    }
    vars.forEach((variable, i) => {
      const g = grads[i]!;
      const name = variable.name;
      switch (spec.name) {
        case 'sgd':
        case 'momentum': {
          if (spec.momentum === 0) {
            write(variable, tf.sub(variable, tf.mul(g, learningRate)), `weight ${name}`);
            break;
          }
          // Keras: v = m*v - lr*g; w += v (nesterov: w += m*v - lr*g).
          const velocity = slots.get('velocity')![i]!;
          const v = tf.sub(tf.mul(velocity, spec.momentum), tf.mul(g, learningRate));
          write(velocity, v, `slot velocity/${i} (of ${name})`);
          const step = spec.nesterov ? tf.sub(tf.mul(v, spec.momentum), tf.mul(g, learningRate)) : v;
          write(variable, tf.add(variable, step), `weight ${name}`);
          break;
        }
        case 'adam': {
          const m = slots.get('m')![i]!;
          const v = slots.get('v')![i]!;
          const mNew = tf.add(tf.mul(m, spec.beta1), tf.mul(g, 1 - spec.beta1));
          const vNew = tf.add(tf.mul(v, spec.beta2), tf.mul(tf.square(g), 1 - spec.beta2));
          write(m, mNew, `slot m/${i} (of ${name})`);
          write(v, vNew, `slot v/${i} (of ${name})`);
          const lrT = (learningRate * Math.sqrt(1 - spec.beta2 ** t)) / (1 - spec.beta1 ** t);
          write(variable, tf.sub(variable, tf.div(tf.mul(mNew, lrT), tf.add(tf.sqrt(vNew), spec.epsilon))), `weight ${name}`);
          break;
        }
        case 'rmsprop': {
          const ms = slots.get('ms')![i]!;
          const msNew = tf.add(tf.mul(ms, spec.rho), tf.mul(tf.square(g), 1 - spec.rho));
          write(ms, msNew, `slot ms/${i} (of ${name})`);
          const scaled = tf.div(tf.mul(g, learningRate), tf.add(tf.sqrt(msNew), spec.epsilon));
          if (spec.momentum > 0) {
            const mom = slots.get('mom')![i]!;
            const momNew = tf.add(tf.mul(mom, spec.momentum), scaled);
            write(mom, momNew, `slot mom/${i} (of ${name})`);
            write(variable, tf.sub(variable, momNew), `weight ${name}`);
          } else {
            write(variable, tf.sub(variable, scaled), `weight ${name}`);
          }
          break;
        }
      }
    });
    return writes;
  }

  async getState(): Promise<{ iterations: number; slots: OptimizerSlot[] }> {
    const iterations = this.count;
    const entries = [...(this.slots ?? [])].flatMap(([kind, list]) => list.map((variable, i) => ({ name: `${kind}/${i}`, variable })));
    const values = await readFloat32(entries.map((e) => e.variable));
    return { iterations, slots: entries.map((e, k) => ({ name: e.name, values: values[k]! })) };
  }

  setState(state: { iterations: number; slots: readonly OptimizerSlot[] }): void {
    this.assertIdle('setState');
    if (!this.slots) {
      if (state.slots.length > 0) {
        throw new WeightsError('optimizer state can be restored only after the optimizer has seen its variables (call bind first)');
      }
      this.count = state.iterations;
      return;
    }
    const byName = new Map(state.slots.map((s) => [s.name, s.values]));
    for (const [kind, list] of this.slots) {
      list.forEach((variable, i) => {
        const name = `${kind}/${i}`;
        const values = byName.get(name);
        if (!values) throw new WeightsError(`optimizer state lacks slot ${name}`);
        if (values.length !== variable.size) {
          throw new WeightsError(`optimizer slot ${name} has ${values.length} values, expected ${variable.size}`);
        }
        tf.tidy(() => variable.assign(tf.tensor(values, variable.shape, 'float32')));
      });
    }
    this.count = state.iterations;
  }

  bind(vars: readonly tf.Variable[]): void {
    this.ensureSlots(vars);
  }

  dispose(): void {
    this.assertIdle('dispose');
    for (const list of this.slots?.values() ?? []) list.forEach((v) => v.dispose());
    this.slots = undefined;
  }

  private ensureSlots(vars: readonly tf.Variable[]): Map<SlotKind, tf.Variable[]> {
    if (this.slots) {
      const first = this.slots.values().next().value as tf.Variable[] | undefined;
      if (first && first.length !== vars.length) {
        throw new WeightsError(`optimizer was built for ${first.length} variables, got ${vars.length}`);
      }
      return this.slots;
    }
    const slots = new Map<SlotKind, tf.Variable[]>();
    for (const kind of slotKinds(this.spec)) {
      slots.set(kind, vars.map((v) => tf.tidy(() => tf.variable(tf.zeros(v.shape), false))));
    }
    this.slots = slots;
    return slots;
  }
}
