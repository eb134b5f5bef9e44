import { randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthError, ClusterError, UnknownWorkerError } from '../errors.ts';
import { updateThroughput, type ScheduledWorker } from './scheduler.ts';

/** What a worker told the coordinator when it joined. */
export interface WorkerCapabilities {
  backend: string;
  device: string;
  threads: number;
  hostname: string;
  pid: number;
}

/** `joined`: answered Join, has no session yet; `ready`: session open, takes tasks. */
export type WorkerState = 'joined' | 'ready';

export interface WorkerRecord extends ScheduledWorker {
  id: string;
  name: string;
  address: string;
  capabilities: WorkerCapabilities;
  state: WorkerState;
  joinedAt: number;
  /** performance.now() at Join. */
  joinedMono: number;
  /** When it last completed a task, or became ready (performance.now()): deadlines count from here. */
  progressAt: number;
  /** Secret issued at Join: only its holder may open this id's session or leave as this id. */
  sessionKey: string;
}

/**
 * Who is in the job. Ids are unique for the coordinator's lifetime (`w1`, `w2`, ..., with the
 * worker's name when it gave one), so a worker that comes back is a new member.
 */
export class Membership {
  private readonly workers = new Map<string, WorkerRecord>();
  private counter = 0;

  constructor(private readonly maxWorkers: number) {}

  /** Admits a worker; throws a ClusterError when the job is full. */
  admit(capabilities: WorkerCapabilities, name: string, address: string): WorkerRecord {
    if (this.workers.size >= this.maxWorkers) {
      throw new ClusterError(`job is full: ${this.workers.size} workers of at most ${this.maxWorkers} (cluster.maxWorkers)`);
    }
    this.counter++;
    const clean = name.replace(/[^\w.-]/g, '').slice(0, 40);
    const id = clean ? `w${this.counter}-${clean}` : `w${this.counter}`;
    const record: WorkerRecord = { id, name: name || id, address, capabilities, state: 'joined', joinedAt: Date.now(), joinedMono: performance.now(), progressAt: 0, throughput: undefined, sessionKey: randomBytes(24).toString('base64url') };
    this.workers.set(id, record);
    return record;
  }

  /** The member `id`; throws UnknownWorkerError when it is not (or no longer) one. */
  get(id: string): WorkerRecord {
    const record = this.workers.get(id);
    if (!record) throw new UnknownWorkerError(`worker ${id} is not a member of this job (it left, was evicted, or joined an earlier coordinator): join again`);
    return record;
  }

  /**
   * The member `id` when `key` is its session key; throws AuthError otherwise. Every worker holds
   * the cluster's token, so the token alone cannot say which worker a peer is.
   */
  authenticate(id: string, key: string): WorkerRecord {
    const record = this.get(id);
    const expected = Buffer.from(record.sessionKey);
    const given = Buffer.from(key);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new AuthError(`wrong or missing session key for worker ${id}: a worker may open only its own session and leave only as itself`);
    }
    return record;
  }

  has(id: string): boolean {
    return this.workers.has(id);
  }

  markReady(id: string): WorkerRecord {
    const record = this.get(id);
    record.state = 'ready';
    record.progressAt = performance.now();
    return record;
  }

  /** Removes a member; returns it, or undefined when it was already gone. */
  remove(id: string): WorkerRecord | undefined {
    const record = this.workers.get(id);
    this.workers.delete(id);
    return record;
  }

  /** Workers that take tasks, in join order. */
  live(): WorkerRecord[] {
    return [...this.workers.values()].filter((w) => w.state === 'ready');
  }

  /** Folds a measured shard (n samples in `ms`, assignment to result) into the worker's throughput estimate. */
  recordThroughput(id: string, n: number, ms: number): void {
    const record = this.workers.get(id);
    if (!record) return;
    // A newcomer was planned at the others' mean speed (see shareWeights): its first measurement
    // moves it from there by a bounded step too.
    const others = this.live().filter((w) => w.id !== id && w.throughput !== undefined).map((w) => w.throughput!);
    const prior = record.throughput ?? (others.length > 0 ? others.reduce((a, b) => a + b, 0) / others.length : undefined);
    record.throughput = updateThroughput(prior, n, ms);
  }

  /** Notes that a worker completed a task now. */
  recordProgress(id: string, now = performance.now()): void {
    const record = this.workers.get(id);
    if (record) record.progressAt = now;
  }

  /** When a worker last made progress (0 when unknown). */
  progressOf(id: string): number {
    return this.workers.get(id)?.progressAt ?? 0;
  }

  /** Members that joined but opened no session since `before` (performance.now()). */
  stale(before: number): WorkerRecord[] {
    return [...this.workers.values()].filter((w) => w.state === 'joined' && w.joinedMono < before);
  }
}
