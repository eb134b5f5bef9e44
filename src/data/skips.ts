/**
 * Every skipped sample is counted and logged with its path: never a silent loss. The first
 * time a (path, reason) pair is met it is a `data_skip` line at warn level; repeats (the same
 * broken file met again next epoch) are counted and logged at debug level with `repeat: true`.
 */
import type { Logger } from '../telemetry/logger.ts';
import { SampleError } from '../errors.ts';

export interface SkipRecord {
  /** Dataset / split the sample belongs to, e.g. "flowers/train". */
  source: string;
  /** File path, or a description such as "manifest.csv:12" or "cifar train #31". */
  path: string;
  reason: string;
  detail?: string;
  errno?: string;
  /** Sample id within its split, when the sample has one. */
  id?: number;
  /** The worker that met it, when a worker decoded the sample for the coordinator. */
  worker?: string;
}

/** Running skip counts, by reason. */
export interface SkipCounts {
  /** Skips seen, repeats included. */
  total: number;
  /** Distinct (path, reason) pairs. */
  distinct: number;
  byReason: Record<string, number>;
}

const SKIP_CODE = new SampleError('', '').code;

export class SkipLog {
  private readonly seen = new Set<string>();
  private total = 0;
  private readonly byReason: Record<string, number> = {};

  constructor(private readonly logger: Logger) {}

  record(skip: SkipRecord): void {
    this.total++;
    this.byReason[skip.reason] = (this.byReason[skip.reason] ?? 0) + 1;
    const key = `${skip.reason}\u0000${skip.path}`;
    const repeat = this.seen.has(key);
    this.seen.add(key);
    const level = repeat ? 'debug' : 'warn';
    if (!this.logger.isLevelEnabled(level)) return;
    this.logger[level](
      {
        event: 'data_skip',
        source: skip.source,
        path: skip.path,
        reason: skip.reason,
        code: SKIP_CODE,
        ...(skip.errno ? { errno: skip.errno } : {}),
        ...(skip.id !== undefined ? { id: skip.id } : {}),
        ...(skip.worker !== undefined ? { worker: skip.worker } : {}),
        ...(skip.detail ? { detail: skip.detail } : {}),
        ...(repeat ? { repeat: true } : {}),
      },
      `skipped ${skip.path}: ${skip.reason}${skip.detail ? ` (${skip.detail})` : ''}`,
    );
  }

  counts(): SkipCounts {
    return { total: this.total, distinct: this.seen.size, byReason: { ...this.byReason } };
  }
}
