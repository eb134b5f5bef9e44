/** Task failures in a row (no task done between) after which a worker is evicted. */
export const MAX_FAILURES_IN_A_ROW = 3;

/** Messages about tasks a worker does not hold after which it is evicted (a late one at a stop is normal). */
export const MAX_PROTOCOL_VIOLATIONS = 3;

/**
 * Counts what makes a worker unhealthy (task failures in a row, messages about tasks it does not
 * hold) and keeps the clock that fails the job when no healthy worker is left.
 */
export class WorkerHealth {
  /** Task failures in a row, per worker. */
  private readonly failuresInARow = new Map<string, number>();
  /** Messages about tasks a worker did not hold, per worker. */
  private readonly violations = new Map<string, number>();
  /**
   * Since when no healthy worker is left (the last one was evicted for failing its tasks or
   * breaking the protocol) and no task was done: the job fails once this is older than the
   * step deadline.
   */
  private unhealthySince: { at: number; reason: string } | undefined;

  /** A worker completed a task: its failure streak ends, and a healthy worker exists. */
  taskDone(workerId: string): void {
    this.failuresInARow.delete(workerId);
    this.unhealthySince = undefined;
  }

  /** A worker could not do a task; returns its failures in a row. */
  taskFailed(workerId: string): number {
    const inARow = (this.failuresInARow.get(workerId) ?? 0) + 1;
    this.failuresInARow.set(workerId, inARow);
    return inARow;
  }

  /** A worker sent a message about a task it does not hold; returns its count. */
  violation(workerId: string): number {
    const count = (this.violations.get(workerId) ?? 0) + 1;
    this.violations.set(workerId, count);
    return count;
  }

  /** A worker was evicted as unhealthy; with `live` workers left. With none, the clock starts. */
  evicted(workerId: string, reason: string, live: number): void {
    if (live === 0 && this.unhealthySince === undefined) {
      this.unhealthySince = { at: performance.now(), reason: `worker ${workerId} was evicted: ${reason}` };
    }
  }

  /** Why no healthy worker has been left for longer than `ms` (undefined while there is one, or not that long). */
  unhealthyFor(ms: number, now = performance.now()): string | undefined {
    return this.unhealthySince && now - this.unhealthySince.at > ms ? this.unhealthySince.reason : undefined;
  }
}
