import { ClusterError, ProtocolError, type DroverError } from '../errors.ts';
import { logEvent } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { envelope } from '../wire/protocol.ts';
import { Membership, type WorkerRecord } from './membership.ts';
import type { WorkerLink } from './server.ts';

/** What the sessions need from the coordinator around them. */
export interface SessionsHost {
  readonly jobId: string;
  readonly log: Logger;
  /** The last step applied (for logs). */
  step(): number;
  /** The error that failed the job, if it has. */
  fatal(): Error | undefined;
  fail(error: Error): void;
  /** A worker left the job: its outstanding tasks go to the others. */
  removed(workerId: string): void;
}

/** A worker that joined but opened no session within this long is dropped. */
const STALE_JOIN_MS = 60_000;

/**
 * The members of the job and their sessions: who joined, who is in session (and so takes tasks
 * and weights), removals with their events, dismissal at the end, and waits for workers.
 */
export class WorkerSessions {
  readonly membership: Membership;
  private readonly links = new Map<string, WorkerLink>();
  /** Workers sent Stop, and why: their sessions' end is a leave, not a loss. */
  private readonly dismissed = new Map<string, string>();
  private readyWaiters: (() => void)[] = [];
  private noWorkerTimer: NodeJS.Timeout | undefined;

  constructor(
    maxWorkers: number,
    private readonly host: SessionsHost,
  ) {
    this.membership = new Membership(maxWorkers);
  }

  /** The session of a worker in session. */
  link(workerId: string): WorkerLink | undefined {
    return this.links.get(workerId);
  }

  /** Sessions open now. */
  sessions(): Iterable<WorkerLink> {
    return this.links.values();
  }

  /** Workers now taking tasks. */
  live(): string[] {
    return this.membership.live().map((w) => w.id);
  }

  /** Binds a session to a member (authenticated by its key); throws when it has one already. */
  open(workerId: string, sessionKey: string, link: WorkerLink): WorkerRecord {
    const record = this.membership.authenticate(workerId, sessionKey);
    if (record.state === 'ready') throw new ProtocolError(`worker ${workerId} already has a session`);
    this.membership.markReady(workerId);
    this.links.set(workerId, link);
    const caps = record.capabilities;
    logEvent(this.host.log, 'worker_join', { worker: workerId, address: record.address, backend: caps.backend, step: this.host.step() },
      `worker ${workerId} joined (${caps.device || caps.backend}, ${caps.threads} compute thread${caps.threads === 1 ? '' : 's'}, ${caps.hostname}:${caps.pid}); ${this.membership.live().length} live`);
    this.clearNoWorkerTimer();
    return record;
  }

  /** Wakes whatever waits for workers (one joined, or the job failed). */
  wake(): void {
    this.readyWaiters.splice(0).forEach((wake) => wake());
  }

  /** A session ended (`link` is the one that ended). */
  closed(workerId: string, link: WorkerLink, error: DroverError | undefined): void {
    if (this.links.get(workerId) !== link) return;
    // Only a Leave RPC (or the end of a session the coordinator stopped) is a leave: a stream
    // that ends otherwise, even cleanly, lost a worker that never said goodbye (kill -9 can
    // close the stream before the connection error arrives).
    if (this.dismissed.has(workerId)) this.remove(workerId, 'leave', `stopped by the coordinator: ${this.dismissed.get(workerId)}`);
    else this.remove(workerId, 'fail', error ? error.message : 'session closed by the worker without leaving (process ended or connection lost)', error);
  }

  /** Takes a worker out of the job (ending its session) and hands its outstanding tasks on. */
  remove(workerId: string, kind: 'leave' | 'fail', reason: string, error?: DroverError): void {
    const record = this.membership.remove(workerId);
    if (!record) return;
    const link = this.links.get(workerId);
    this.links.delete(workerId);
    link?.close(error);
    const step = this.host.step();
    const fields = { worker: workerId, address: record.address, reason, step };
    if (kind === 'fail') logEvent(this.host.log, 'worker_fail', fields, `worker ${workerId} failed at step ${step}: ${reason}`);
    else logEvent(this.host.log, 'worker_leave', fields, `worker ${workerId} left at step ${step}: ${reason}`);
    this.host.removed(workerId);
  }

  /** Tells every worker the job is over and ends their sessions. */
  async dismiss(reason: string, completed: boolean, rejoin: boolean): Promise<void> {
    const links = [...this.links.values()];
    for (const link of links) this.dismissed.set(link.workerId, reason);
    for (const link of links) link.send([{ envelope: envelope(this.host.jobId), stop: { reason, jobCompleted: completed, rejoin } }]);
    await Promise.race([Promise.all(links.map((l) => l.flushed())), delay(2000)]);
    for (const link of links) link.close();
    this.links.clear();
  }

  /** Frees the slots of workers that joined but opened no session within STALE_JOIN_MS (they may join again). */
  dropStaleJoins(now: number): void {
    for (const worker of this.membership.stale(now - STALE_JOIN_MS)) {
      this.membership.remove(worker.id);
      this.host.log.warn({ worker: worker.id, address: worker.address }, `worker ${worker.id} joined but opened no session within ${STALE_JOIN_MS} ms: dropped`);
    }
  }

  /** Returns once `count` workers are live or the signal aborted (the caller checks which). */
  async waitFor(count: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const started = performance.now();
    const { log } = this.host;
    while (this.membership.live().length < count) {
      const fatal = this.host.fatal();
      if (fatal) throw fatal;
      if (signal?.aborted) return;
      const left = timeoutMs - (performance.now() - started);
      if (left <= 0) {
        throw new ClusterError(`only ${this.membership.live().length} of ${count} workers (cluster.minWorkers) joined within ${timeoutMs} ms`);
      }
      log.info({ live: this.membership.live().length, needed: count }, `waiting for workers: ${this.membership.live().length} of ${count}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 10_000));
        const onAbort = (): void => done();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.readyWaiters.push(done);
        function done(): void {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
      });
    }
  }

  /** Samples wait and no worker is live: the job fails unless one joins within `timeoutMs`. */
  armNoWorkerTimer(timeoutMs: number): void {
    if (this.noWorkerTimer) return;
    this.host.log.warn({ step: this.host.step() }, `no live worker: waiting up to ${timeoutMs} ms for one to join`);
    this.noWorkerTimer = setTimeout(() => {
      this.noWorkerTimer = undefined;
      if (this.membership.live().length === 0) this.host.fail(new ClusterError(`no live worker for ${timeoutMs} ms (cluster.joinTimeoutMs): the job cannot go on`));
    }, timeoutMs);
    this.noWorkerTimer.unref();
  }

  clearNoWorkerTimer(): void {
    if (this.noWorkerTimer) clearTimeout(this.noWorkerTimer);
    this.noWorkerTimer = undefined;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
