import { PeerTimeoutError, ProtocolError, type PeerFailure } from '../errors.ts';
import { roundArrayToBf16 } from '../wire/bf16.ts';
import type { PeerInbox, SlotSpec } from './inbox.ts';
import { PeerLink, wireBytes, type Push, type PeerLinkOptions } from './peer-client.ts';
import { bytesPerValue, type Encoding, type Phase } from './protocol.ts';
import { splitRanges } from './ranges.ts';
import { sumInOrder } from './sum.ts';

/** Who takes part in a step, as the coordinator assigned it. */
export interface PeerGroup {
  /**
   * Membership generation, raised by the coordinator whenever the group changes (ranks are then
   * renumbered): chunks of an abandoned attempt at a step never mix with its redo.
   */
  generation: number;
  /** This worker's rank: its index in `peers`. */
  rank: number;
  /** Every rank's Peer address ("host:port"), in rank order (this worker's own entry is not dialled). */
  peers: readonly string[];
}

export interface PeerCollectiveOptions extends PeerLinkOptions {
  jobId: string;
  /** The receive side: this worker's PeerServer's inbox. */
  inbox: PeerInbox;
  group: PeerGroup;
}

export interface ReduceOptions {
  /** Milliseconds from the call for every part of the step to arrive; then the call rejects naming who is missing. */
  deadlineMs: number;
  encoding: Encoding;
  signal?: AbortSignal;
}

/** Counters of this collective's traffic (payload bytes, without gRPC framing). */
export interface CollectiveStats {
  reductions: number;
  bytesSent: number;
  bytesReceived: number;
}

/**
 * The peer gradient reduction: reduce-scatter then all-gather over gRPC between the workers of
 * a group, so each moves 2(N-1)/N x the vector's bytes per step instead of the coordinator
 * moving 2N x.
 *
 * The flat vector is split into one contiguous range per rank (splitRanges). Every rank sends
 * range r of its vector to rank r; rank r sums the N contributions of its range in rank order,
 * exactly as the float32 loop `acc = c0; acc += c1; ...` would, and sends the sum to every rank.
 * The result therefore repeats bit for bit and is the same on every rank, whatever order the
 * bytes arrive in. It is a plain sum: weighting each contribution (e.g. by shard size / global
 * batch, as GradientReducer does) is the caller's, before the call.
 *
 * With bf16, every contribution is rounded to bfloat16 (the owner's own too) before the sum, and
 * the sum is rounded to bfloat16 on the owner as well as on the wire, so every rank still holds
 * identical values.
 *
 * It resolves as soon as this rank holds every range, without waiting for the peers to
 * acknowledge what it sent: a sum from rank r means r had every contribution to its range, so
 * once all sums are in, only this rank's own sums may still be on their way, and a peer that
 * never gets one names this rank itself (the coordinator commits only once every rank reported
 * the step reduced). Waiting for those acknowledgements cost a round trip through a busy peer's
 * event loop every step (10 to 50 ms on a loaded 2-core machine). Sends still under way then go
 * on, each until gRPC's deadline, on their own.
 *
 * Never hangs: after `deadlineMs`, or as soon as a peer turns out unreachable or refuses a range,
 * the call rejects with a PeerTimeoutError naming the ranks and the phase, and gives up
 * everything it had in flight; the coordinator evicts them, `rebuild`s the group, and the
 * smaller group redoes the step. One reduction at a time per collective.
 */
export class PeerCollective {
  private group: PeerGroup;
  private readonly links = new Map<string, PeerLink>();
  private busy = false;
  private spare: Float32Array[] = [];
  /** Result vectors handed back (`recycle`), for later reductions of the same length. */
  private spareResults: Float32Array[] = [];
  /** Pushes still under way per vector they send from: a recycled result is refilled only once its count is back to none. */
  private readonly sendingFrom = new Map<Float32Array, number>();
  private readonly counters: CollectiveStats = { reductions: 0, bytesSent: 0, bytesReceived: 0 };

  constructor(private readonly options: PeerCollectiveOptions) {
    this.group = checkGroup(options.group);
    this.connect();
  }

  get rank(): number {
    return this.group.rank;
  }

  get size(): number {
    return this.group.peers.length;
  }

  get generation(): number {
    return this.group.generation;
  }

  get stats(): Readonly<CollectiveStats> {
    return { ...this.counters };
  }

  /**
   * Takes a new membership (after an eviction or a join) for the following steps, including a
   * redo of the failed one. Its generation must be higher than the current one's. Links to
   * peers that left are closed; those to peers that stay are kept.
   */
  rebuild(group: PeerGroup): void {
    if (this.busy) throw new ProtocolError('cannot change the peer group while a reduction is under way');
    const next = checkGroup(group);
    if (next.generation <= this.group.generation) {
      throw new ProtocolError(`the new peer group's generation ${next.generation} is not after the current ${this.group.generation}`);
    }
    this.group = next;
    this.connect();
  }

  /**
   * Hands back a vector this collective resolved with, once the caller no longer reads it nor
   * holds views of it: a later reduction of the same length fills it again instead of
   * allocating (and the kernel zeroing) a new one, once the sums it was sending from it went
   * out. Recycling is optional; a vector recycled twice is kept once.
   */
  recycle(vector: Float32Array): void {
    if (this.spareResults.includes(vector)) return;
    this.spareResults = [...this.spareResults.filter((v) => v.length === vector.length), vector].slice(-2);
  }

  /** Closes every link (the server, and its inbox, are the caller's). */
  close(): void {
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }

  /**
   * Sums `flat` over the group (see the class comment) and resolves with the full summed vector
   * once this rank has every range. Every rank must call it for the same step with vectors of the
   * same length. `flat` and the result must not change afterwards while sends may still be under
   * way (ranges are sent from them without a copy): pass a new vector each step.
   */
  async reduceScatterAllGather(step: number, flat: Float32Array, options: ReduceOptions): Promise<Float32Array> {
    if (this.busy) throw new ProtocolError(`a reduction is already under way (step ${step} asked)`);
    if (!(options.deadlineMs > 0)) throw new RangeError(`deadlineMs must be positive, got ${options.deadlineMs}`);
    options.signal?.throwIfAborted();
    this.counters.reductions++;
    if (this.size === 1) return Float32Array.from(flat);
    this.busy = true;
    try {
      return await this.reduce(step, flat, options);
    } finally {
      this.busy = false;
    }
  }

  private reduce(step: number, flat: Float32Array, options: ReduceOptions): Promise<Float32Array> {
    const { rank, generation, peers } = this.group;
    const size = peers.length;
    const { encoding } = options;
    const ranges = splitRanges(flat.length, size);
    const own = ranges[rank]!;
    const result = this.resultVector(flat.length);
    const ownSum = result.subarray(own.start, own.start + own.count);
    const contributions = this.contributionBuffers(rank, size, own.count);
    const mine = flat.subarray(own.start, own.start + own.count);
    contributions[rank] = encoding === 'bf16' ? roundArrayToBf16(Float32Array.from(mine)) : mine;

    const slots: SlotSpec[] = [];
    for (let r = 0; r < size; r++) {
      if (r === rank) continue;
      slots.push({ phase: 'scatter', sender: r, range: rank, target: contributions[r]! });
      slots.push({ phase: 'gather', sender: r, range: r, target: result.subarray(ranges[r]!.start, ranges[r]!.start + ranges[r]!.count) });
    }
    const missing: Record<Phase, Set<number>> = { scatter: new Set(), gather: new Set() };
    for (const slot of slots) missing[slot.phase].add(slot.sender);
    const started = Date.now();

    return new Promise<Float32Array>((resolve, reject) => {
      const pending = new Set<Push>();
      let gathering = false;
      let finished = false;
      let close: () => void = () => undefined;

      const finish = (error?: Error): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        close();
        if (error) {
          for (const push of pending) push.cancel();
          reject(error);
        } else resolve(result);
      };
      const fail = (failure: PeerFailure, detail: string, cause?: unknown): void => {
        const who = failure.ranks.length === 1 ? `rank ${failure.ranks[0]}` : `ranks ${failure.ranks.join(', ')}`;
        finish(new PeerTimeoutError(`rank ${rank}, step ${step} (${failure.phase}): ${who} ${detail}`, failure, { cause }));
      };
      // Every range in: done, whatever is still on its way out (see the class comment).
      const maybeDone = (): void => {
        if (gathering && missing.scatter.size === 0 && missing.gather.size === 0) finish();
      };
      const send = (to: number, phase: Phase, range: number, bytes: Uint8Array, source: Float32Array): void => {
        const push = this.links.get(peers[to]!)!.push(
          { jobId: this.options.jobId, generation, step, phase, sender: rank, range },
          bytes,
          // gRPC's own deadline a little later than the call's, so the call's names who was missing.
          { encoding, deadline: started + options.deadlineMs + 1000 },
        );
        pending.add(push);
        this.counters.bytesSent += bytes.byteLength;
        this.sendingFrom.set(source, (this.sendingFrom.get(source) ?? 0) + 1);
        void push.done.then((outcome) => {
          pending.delete(push);
          const left = this.sendingFrom.get(source)! - 1;
          if (left > 0) this.sendingFrom.set(source, left);
          else this.sendingFrom.delete(source);
          if (finished || outcome.ok) return;
          const reason = outcome.unreachable ? 'unreachable' : 'refused';
          fail({ ranks: [to], phase, step, reason }, `${reason === 'unreachable' ? 'is unreachable' : 'refused its range'}: ${outcome.error.message}`, outcome.error);
        });
      };
      const gather = (): void => {
        sumInOrder(ownSum, contributions);
        if (encoding === 'bf16') roundArrayToBf16(ownSum);
        gathering = true;
        const bytes = wireBytes(ownSum, encoding);
        for (let r = 0; r < size; r++) if (r !== rank) send(r, 'gather', rank, bytes, result);
        maybeDone();
      };
      const onAbort = (): void => finish(options.signal!.reason instanceof Error ? options.signal!.reason : new Error(String(options.signal!.reason)));
      const timer = setTimeout(() => {
        // Something is missing (the call ends as soon as nothing is): scatter contributions first.
        const phase: Phase = missing.scatter.size > 0 ? 'scatter' : 'gather';
        const what = `did not deliver ${phase === 'scatter' ? 'its contribution to' : 'the sum of'} its range`;
        fail({ ranks: [...missing[phase]].sort((a, b) => a - b), phase, step, reason: 'deadline' }, `${what} within ${options.deadlineMs} ms`);
      }, options.deadlineMs);
      options.signal?.addEventListener('abort', onAbort, { once: true });

      // Expect before sending: a fast peer's contribution may arrive before ours leave.
      close = this.options.inbox.open(
        { generation, step, rank, size, encoding, slots },
        {
          done: (slot) => {
            this.counters.bytesReceived += slot.target.length * bytesPerValue(encoding);
            missing[slot.phase].delete(slot.sender);
            if (finished) return;
            if (slot.phase === 'scatter' && missing.scatter.size === 0) gather();
            else maybeDone();
          },
        },
      );
      if (finished) return;
      for (let r = 0; r < size; r++) if (r !== rank) send(r, 'scatter', r, wireBytes(flat.subarray(ranges[r]!.start, ranges[r]!.start + ranges[r]!.count), encoding), flat);
      if (!gathering && missing.scatter.size === 0) gather();
    });
  }

  /** A recycled vector of `length` values that nothing sends from any more, or a new one. Every value is overwritten by the reduction. */
  private resultVector(length: number): Float32Array {
    const free = this.spareResults.findIndex((v) => v.length === length && !this.sendingFrom.has(v));
    if (free < 0) return new Float32Array(length);
    const [vector] = this.spareResults.splice(free, 1);
    return vector!;
  }

  /** Receive buffers for the other ranks' contributions, kept from the last step when the size matches. */
  private contributionBuffers(rank: number, size: number, count: number): Float32Array[] {
    const fits = this.spare.length === size && this.spare.every((buffer, r) => r === rank || buffer.length === count);
    if (!fits) this.spare = Array.from({ length: size }, (_, r) => (r === rank ? new Float32Array(0) : new Float32Array(count)));
    return [...this.spare];
  }

  /** Opens links to the group's peers (other than this rank), keeping open ones, closing the rest. */
  private connect(): void {
    const { rank, peers } = this.group;
    const wanted = new Set(peers.filter((_, r) => r !== rank));
    for (const [address, link] of this.links) {
      if (!wanted.has(address)) {
        link.close();
        this.links.delete(address);
      }
    }
    for (const address of wanted) if (!this.links.has(address)) this.links.set(address, new PeerLink(address, this.options));
  }
}

function checkGroup(group: PeerGroup): PeerGroup {
  const { rank, peers, generation } = group;
  if (peers.length === 0) throw new ProtocolError('a peer group needs at least one rank');
  if (!Number.isInteger(rank) || rank < 0 || rank >= peers.length) throw new ProtocolError(`rank ${rank} is outside a group of ${peers.length}`);
  if (!Number.isSafeInteger(generation) || generation < 0) throw new ProtocolError(`generation must be a non-negative integer, got ${generation}`);
  if (new Set(peers).size !== peers.length) throw new ProtocolError('two ranks of the peer group share an address');
  return { rank, generation, peers: [...peers] };
}
