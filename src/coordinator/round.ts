import { ProtocolError } from '../errors.ts';

export type TaskKind = 'train' | 'evaluate';
export type SplitName = 'train' | 'validation' | 'test';

export interface RoundOptions {
  kind: TaskKind;
  /** Global step the round computes (train) or follows (evaluation). */
  step: number;
  weightsVersion: number;
  split: SplitName;
  epoch: number;
  augment: boolean;
  /** Samples the round must cover. */
  expected: number;
}

/** Samples given to one worker within a round (with the round's kind, step, split...). */
export interface Task extends Omit<RoundOptions, 'expected'> {
  id: string;
  ids: Uint32Array;
  /** Its place in the round (1, 2, ...): contributions are summed in this order, whatever order they arrive in. */
  rank: number;
  /** The worker computing it; undefined while it waits for one. */
  workerId: string | undefined;
  /** When it was handed to its current worker (ms, performance.now()). */
  assignedAt: number;
}

/**
 * The tasks of one step (or one evaluation pass) and which samples are in. Every sample of the
 * round belongs to exactly one outstanding task until its result is taken; a worker that fails
 * hands its tasks back (`release`), and they are planned again within the same round, so no
 * sample is dropped or counted twice.
 */
export class Round {
  readonly kind: TaskKind;
  readonly step: number;
  readonly weightsVersion: number;
  readonly split: SplitName;
  readonly epoch: number;
  readonly augment: boolean;
  readonly expected: number;
  /** When the weights it needs went out: deadlines count from here (or from a later assignment). */
  startedAt: number | undefined;
  private readonly open = new Map<string, Task>();
  private covered = 0;
  private sequence = 0;

  constructor(options: RoundOptions) {
    this.kind = options.kind;
    this.step = options.step;
    this.weightsVersion = options.weightsVersion;
    this.split = options.split;
    this.epoch = options.epoch;
    this.augment = options.augment;
    this.expected = options.expected;
  }

  get done(): boolean {
    return this.covered === this.expected && this.open.size === 0;
  }

  /** A new outstanding task for `ids`, given to `workerId` (or to nobody yet). */
  addTask(ids: Uint32Array, workerId: string | undefined, now = performance.now()): Task {
    const task: Task = {
      id: `${this.kind === 'train' ? 's' : 'e'}${this.step}-${++this.sequence}`,
      kind: this.kind,
      step: this.step,
      weightsVersion: this.weightsVersion,
      split: this.split,
      epoch: this.epoch,
      augment: this.augment,
      ids,
      rank: this.sequence,
      workerId,
      assignedAt: now,
    };
    this.open.set(task.id, task);
    return task;
  }

  /** The worker holding an outstanding task (undefined: waiting for one, or not outstanding). */
  holder(taskId: string): string | undefined {
    return this.open.get(taskId)?.workerId;
  }

  /** Whether a task is still outstanding. */
  isOpen(taskId: string): boolean {
    return this.open.has(taskId);
  }

  /** The outstanding task `taskId` if `workerId` holds it; throws otherwise (late, foreign or forged). */
  find(taskId: string, workerId: string): Task {
    const task = this.open.get(taskId);
    if (!task) throw new ProtocolError(`task ${taskId} is not outstanding in step ${this.step} (done, reassigned or unknown)`);
    if (task.workerId !== workerId) throw new ProtocolError(`task ${taskId} belongs to ${task.workerId ?? 'nobody'}, not ${workerId}`);
    return task;
  }

  /** Marks a task's result as in: its samples (used or skipped as undecodable) are covered. */
  complete(task: Task): void {
    if (!this.open.delete(task.id)) throw new ProtocolError(`task ${task.id} was already completed`);
    this.covered += task.ids.length;
  }

  /** Counts samples dropped before any task (unreadable at the source) as covered. */
  skip(count: number): void {
    this.covered += count;
  }

  /** Withdraws one outstanding task (its samples will be planned again). */
  cancel(task: Task): void {
    this.open.delete(task.id);
  }

  /** Takes back the outstanding tasks of a worker (it died, left or missed the deadline). */
  release(workerId: string): Task[] {
    const tasks = [...this.open.values()].filter((t) => t.workerId === workerId);
    for (const task of tasks) this.open.delete(task.id);
    return tasks;
  }

  /** Tasks waiting for a worker. */
  unassigned(): Task[] {
    return [...this.open.values()].filter((t) => t.workerId === undefined);
  }

  /** Removes unassigned tasks so they can be planned again over the workers now live. */
  takeUnassigned(): Task[] {
    const tasks = this.unassigned();
    for (const task of tasks) this.open.delete(task.id);
    return tasks;
  }

  /** Gives the oldest waiting task to `workerId`; undefined when none waits. */
  handOut(workerId: string, now = performance.now()): Task | undefined {
    for (const task of this.open.values()) {
      if (task.workerId !== undefined) continue;
      task.workerId = workerId;
      task.assignedAt = now;
      return task;
    }
    return undefined;
  }

  /** Outstanding tasks held by `workerId`. */
  heldBy(workerId: string): number {
    let count = 0;
    for (const task of this.open.values()) if (task.workerId === workerId) count++;
    return count;
  }

  outstanding(): Task[] {
    return [...this.open.values()];
  }

  /**
   * Workers holding a task that passed the deadline. A worker computes its tasks one after
   * another, so the clock runs from the latest of: the round's start, the task's assignment,
   * and the worker's last completed task (`progressOf`).
   */
  overdueWorkers(now: number, deadlineMs: number, progressOf: (workerId: string) => number = () => 0): string[] {
    if (this.startedAt === undefined) return [];
    const late = new Set<string>();
    for (const task of this.open.values()) {
      if (task.workerId === undefined) continue;
      const since = Math.max(this.startedAt, task.assignedAt, progressOf(task.workerId));
      if (now - since > deadlineMs) late.add(task.workerId);
    }
    return [...late];
  }
}
