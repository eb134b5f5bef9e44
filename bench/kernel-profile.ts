import * as tf from '@tensorflow/tfjs';

/**
 * Per-kernel time table of one training step, for the benches. tf.profile times every kernel
 * call, nested ones included: a composed kernel (drover's Conv2DBackpropInput runs Conv2D,
 * Transpose, ...) counts its inner kernels' time again, so its totals add up to more than the
 * step. Here every kernel of the backend is wrapped while `tf.profile` runs the step, and the
 * wrapper keeps a stack of running kernels: each row's `selfMs` leaves out the kernels it
 * called (they have their own rows), `totalMs` is tf.profile's inclusive figure.
 */

export interface KernelRow {
  name: string;
  calls: number;
  /** Time in the kernel itself, not in kernels it called. */
  selfMs: number;
  /** tf.profile's kernelTimeMs summed over the calls (nested kernels included). */
  totalMs: number;
}

export async function profileKernels(backendName: string, step: () => void | Promise<void>): Promise<KernelRow[]> {
  const rows = new Map<string, KernelRow>();
  const row = (name: string): KernelRow => {
    let r = rows.get(name);
    if (r === undefined) rows.set(name, (r = { name, calls: 0, selfMs: 0, totalMs: 0 }));
    return r;
  };
  // Time spent in the callees of each running kernel, innermost last.
  const childMs: number[] = [];
  const originals = tf.getKernelsForBackend(backendName);
  for (const config of originals) {
    const wrapped: tf.KernelConfig = {
      ...config,
      kernelFunc: (args) => {
        childMs.push(0);
        const start = performance.now();
        try {
          return config.kernelFunc(args);
        } finally {
          const ms = performance.now() - start;
          const inner = childMs.pop()!;
          if (childMs.length > 0) childMs[childMs.length - 1]! += ms;
          const r = row(config.kernelName);
          r.calls++;
          r.selfMs += ms - inner;
        }
      },
    };
    replaceKernel(wrapped);
  }
  try {
    const profile = await tf.profile(step);
    for (const k of profile.kernels) {
      if (rows.has(k.name)) row(k.name).totalMs += k.kernelTimeMs as number;
    }
  } finally {
    for (const config of originals) replaceKernel(config);
  }
  return [...rows.values()].sort((a, b) => b.selfMs - a.selfMs);
}

function replaceKernel(config: tf.KernelConfig): void {
  tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

/** The top rows as one line: "Conv2D 12.3 (x4), ...", self ms per step. */
export function formatKernelRows(rows: KernelRow[], top = 10): string {
  return rows
    .slice(0, top)
    .map((r) => `${r.name} ${r.selfMs.toFixed(2)} (x${r.calls})`)
    .join(', ');
}
