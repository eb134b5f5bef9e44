import type { MembershipRow } from './chart-rows.ts';

/**
 * Which workers were members of the run, and when: one row per interval. An active interval
 * lasts until the latest event; a worker that left (or failed) closes its row.
 */
export class Membership {
  /** Every interval, in the order they began. */
  readonly rows: MembershipRow[] = [];
  private active = new Map<string, MembershipRow>();
  private seen = new Set<string>();

  /** Workers that are members now. */
  get activeCount(): number {
    return this.active.size;
  }

  /** Workers this log has named. */
  get seenCount(): number {
    return this.seen.size;
  }

  /** Opens an interval; false (nothing changed) when the worker is a member already. */
  join(worker: string, at: number): boolean {
    this.seen.add(worker);
    if (this.active.has(worker)) return false;
    const row: MembershipRow = { key: this.rows.length, worker, start: at, end: at, state: 'active' };
    this.active.set(worker, row);
    this.rows.push(row);
    return true;
  }

  /** Closes the worker's interval as left or failed. */
  leave(worker: string, at: number, state: 'left' | 'failed', reason: string | undefined): void {
    const row = this.active.get(worker);
    if (row) {
      row.end = at;
      row.state = state;
      if (reason !== undefined) row.reason = reason;
      this.active.delete(worker);
    } else {
      // Left without a join in this log (the log started late): a zero-length mark.
      this.seen.add(worker);
      this.rows.push({ key: this.rows.length, worker, start: at, end: at, state, ...(reason !== undefined ? { reason } : {}) });
    }
  }

  /** Active intervals last until `until`; true when a row changed. */
  extendActive(until: number): boolean {
    let changed = false;
    for (const row of this.active.values()) {
      if (row.end !== until) {
        row.end = until;
        changed = true;
      }
    }
    return changed;
  }

  /** The job ended at `at`: members until the end stay 'active' (they did not leave, the job ended). */
  end(at: number): void {
    this.extendActive(at);
    this.active.clear();
  }
}
