import { ReplicaThreadError } from '../../errors.ts';

/** Control words: arrivals, generation, aborted, then one flag per replica. */
const ARRIVED = 0;
const GENERATION = 1;
const ABORTED = 2;
const FLAGS = 3;

/**
 * The meeting point of replica threads inside a step, in shared memory: each blocks in
 * `arrive` until all have arrived (Atomics.wait, so no message goes through the main thread).
 * A replica that fails, or the engine when a thread dies, aborts the barrier: every waiter then
 * throws instead of waiting for a replica that will never come.
 */
export class StepBarrier {
  private readonly control: Int32Array;

  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly replicas: number,
  ) {
    this.control = new Int32Array(buffer);
    if (this.control.length < FLAGS + replicas) throw new RangeError(`barrier buffer too small for ${replicas} replicas`);
  }

  static allocate(replicas: number): StepBarrier {
    return new StepBarrier(new SharedArrayBuffer((FLAGS + replicas) * 4), replicas);
  }

  /** Blocks until every replica arrived; throws if the barrier was aborted. */
  arrive(rank: number): void {
    const control = this.control;
    const generation = Atomics.load(control, GENERATION);
    this.check(rank);
    if (Atomics.add(control, ARRIVED, 1) === this.replicas - 1) {
      Atomics.store(control, ARRIVED, 0);
      Atomics.add(control, GENERATION, 1);
      Atomics.notify(control, GENERATION);
      return;
    }
    while (Atomics.load(control, GENERATION) === generation) {
      this.check(rank);
      // Woken by the last arrival or by abort(); the timeout only bounds how often the abort flag is read.
      Atomics.wait(control, GENERATION, generation, 1000);
    }
    this.check(rank);
  }

  /** Makes every present and future `arrive` throw (a replica failed: the step cannot complete). */
  abort(): void {
    Atomics.store(this.control, ABORTED, 1);
    Atomics.add(this.control, GENERATION, 1);
    Atomics.notify(this.control, GENERATION);
  }

  get aborted(): boolean {
    return Atomics.load(this.control, ABORTED) !== 0;
  }

  /** Replica `rank`'s flag for this step (what every replica reads after the next arrive). */
  setFlag(rank: number, value: number): void {
    Atomics.store(this.control, FLAGS + rank, value);
  }

  flags(): number[] {
    return Array.from({ length: this.replicas }, (_, r) => Atomics.load(this.control, FLAGS + r));
  }

  private check(rank: number): void {
    if (this.aborted) throw new ReplicaThreadError(`replica ${rank}: the step was abandoned (another replica failed)`, rank);
  }
}
