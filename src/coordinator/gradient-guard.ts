import { WeightsError } from '../errors.ts';
import type { GradientGuardSpec } from '../job/cluster-spec.ts';

/**
 * Optional defences against gradients that are finite but wrong (a buggy or hostile worker, a
 * corrupt shard): a contribution whose L2 norm is far above the median of the recent accepted
 * ones is refused before it is summed, and the step's averaged gradient can be clipped to a
 * global norm. Both off unless `cluster.gradientGuard` asks for them.
 */
export class GradientGuard {
  private readonly norms: number[] = [];
  private next = 0;

  constructor(readonly spec: GradientGuardSpec) {}

  /** Whether contributions need their norm (the ratio check is on). */
  get checksContributions(): boolean {
    return this.spec.maxNormRatio !== undefined;
  }

  /**
   * Throws a WeightsError when a contribution's norm is more than maxNormRatio x the recent
   * median (after `warmup` accepted ones); otherwise records the norm.
   */
  checkContribution(grads: readonly ArrayLike<number>[], from: string): number {
    const norm = globalNorm(grads);
    const ratio = this.spec.maxNormRatio;
    if (ratio !== undefined && this.norms.length >= this.spec.warmup) {
      const median = medianOf(this.norms);
      if (norm > ratio * median) {
        throw new WeightsError(
          `${from}: gradient norm ${norm.toPrecision(3)} is ${(norm / median).toPrecision(3)} x the recent median ${median.toPrecision(3)} (cluster.gradientGuard.maxNormRatio ${ratio})`,
        );
      }
    }
    this.record(norm);
    return norm;
  }

  /** Scales `grads` in place to the clip norm when their global norm is above it; returns the norm before. */
  clip(grads: Float32Array[]): { norm: number; clipped: boolean } {
    const limit = this.spec.clipNorm;
    if (limit === undefined) return { norm: Number.NaN, clipped: false };
    const norm = globalNorm(grads);
    if (!(norm > limit)) return { norm, clipped: false };
    const scale = limit / norm;
    for (const g of grads) for (let j = 0; j < g.length; j++) g[j]! *= scale;
    return { norm, clipped: true };
  }

  private record(norm: number): void {
    if (this.norms.length < this.spec.window) this.norms.push(norm);
    else this.norms[this.next] = norm;
    this.next = (this.next + 1) % this.spec.window;
  }
}

/** L2 norm over every value of every tensor (in float64). */
export function globalNorm(tensors: readonly ArrayLike<number>[]): number {
  let sum = 0;
  for (const t of tensors) for (let j = 0; j < t.length; j++) sum += t[j]! * t[j]!;
  return Math.sqrt(sum);
}

function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
