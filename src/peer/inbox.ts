import { DeadlineError, ProtocolError, TransferLimitError } from '../errors.ts';
import { decodeBf16 } from '../wire/bf16.ts';
import { bytesPerValue, MAX_PEER_CHUNK_BYTES, type Encoding, type Phase } from './protocol.ts';

/** One range a receiver expects from one sender, written straight into `target`. */
export interface SlotSpec {
  phase: Phase;
  sender: number;
  /** scatter: the receiver's rank; gather: the sender's. */
  range: number;
  /** Exactly the range's values are written here, in order; its length is the range's length. */
  target: Float32Array;
}

/** Everything a receiver expects for one step of one membership generation. */
export interface Expectation {
  generation: number;
  step: number;
  /** The receiver's rank. */
  rank: number;
  /** Ranks in the group: senders must be below it. */
  size: number;
  encoding: Encoding;
  slots: readonly SlotSpec[];
}

/** The header fields of a chunk, decoded; `payload` holds `count` values in `encoding`. */
export interface InboundChunk {
  generation: number;
  step: number;
  phase: Phase;
  sender: number;
  range: number;
  offset: number;
  count: number;
  encoding: Encoding;
  payload: Uint8Array;
}

/** What the owner of an expectation hears. */
export interface ExpectationEvents {
  /** A slot's range is complete (called once per slot). */
  done(slot: SlotSpec): void;
}

/** What a stream holds after its first chunk: the slot it fills, or a wait for its step. */
export type Admission = { kind: 'slot'; slot: Slot } | { kind: 'park'; parked: ParkedStream };

export interface Slot {
  readonly spec: SlotSpec;
  readonly open: Opened;
  received: number;
  owner: object | undefined;
  done: boolean;
}

/** How a parked stream's wait ends: the slot of its first chunk, or the error that refuses it. */
export type ParkOutcome = { slot: Slot } | { error: Error };

/** A stream waiting for its step to open, holding its first chunk. */
export interface ParkedStream {
  readonly key: Key;
  readonly first: InboundChunk;
  /** Sets who hears the outcome (called at most once). */
  onSettle(handler: (outcome: ParkOutcome) => void): void;
  /** Ends the wait (the step opened, the wait timed out, the stream went away). */
  settle(outcome: ParkOutcome): void;
}

interface Key {
  generation: number;
  step: number;
}

interface Opened {
  readonly expectation: Expectation;
  readonly events: ExpectationEvents;
  readonly slots: Map<string, Slot>;
  closed: boolean;
}

export interface InboxOptions {
  /**
   * Streams that may wait at once for a step not opened yet (peers a step ahead); more are
   * refused. Default: twice the last opened group's size, at least 8 (each other rank may be one
   * step ahead). Each holds at most one chunk plus what gRPC buffers for a paused stream.
   */
  maxParked?: number;
  /** How long such a stream may wait before it is refused; at least the step deadline (peers compute at different speeds). Default 60 s. */
  parkMs?: number;
}

function slotName(phase: Phase, sender: number, range: number): string {
  return `${phase}:${sender}:${range}`;
}

/** -1, 0, 1 as `a` is before, at, or after `b` (generation first, then step). */
function compareKeys(a: Key, b: Key): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  return a.step === b.step ? 0 : a.step < b.step ? -1 : 1;
}

/**
 * The receive side of the peer reduction: which ranges of which step it expects, from whom,
 * and where their values go. Memory is bounded by what the receiver opened: a chunk lands only
 * in a slot of the open step (preallocated by the receiver), only at the slot's next offset
 * (no gaps, overlaps or duplicates), with exactly the bytes its count and encoding say, and
 * each slot is filled by one stream at a time. A stream whose step is not open yet (its sender
 * is a step ahead) waits, paused, holding one chunk; their number and wait are bounded. Any
 * refusal happens before a byte is written, and a stream that fails before its range is
 * complete gives its slot back (progress reset), so a refused or broken stream cannot change a
 * sum: the slot's values count only once it is filled end to end.
 */
export class PeerInbox {
  private current: Opened | undefined;
  private readonly parked = new Set<ParkedStream>();
  private readonly parkMs: number;

  constructor(private readonly options: InboxOptions = {}) {
    this.parkMs = options.parkMs ?? 60_000;
  }

  private get maxParked(): number {
    return this.options.maxParked ?? 2 * Math.max(4, this.current?.expectation.size ?? 0);
  }

  /** Streams waiting for a step not opened yet. */
  get parkedCount(): number {
    return this.parked.size;
  }

  /**
   * Starts expecting a step (closing the previous one); streams waiting for it proceed, those
   * for an older step are refused. Returns the function that closes it (step done or abandoned).
   */
  open(expectation: Expectation, events: ExpectationEvents): () => void {
    const slots = new Map<string, Slot>();
    const opened: Opened = { expectation, events, slots, closed: false };
    for (const spec of expectation.slots) {
      const slot: Slot = { spec, open: opened, received: 0, owner: undefined, done: false };
      slots.set(slotName(spec.phase, spec.sender, spec.range), slot);
    }
    this.closeCurrent();
    this.current = opened;
    for (const spec of expectation.slots) if (spec.target.length === 0) this.complete(slots.get(slotName(spec.phase, spec.sender, spec.range))!);
    for (const parked of [...this.parked]) {
      const order = compareKeys(parked.key, expectation);
      if (order > 0) continue;
      this.parked.delete(parked);
      if (order < 0) parked.settle({ error: stale(parked.key, expectation) });
      else {
        try {
          parked.settle({ slot: this.slotFor(parked.key, parked.first) });
        } catch (error) {
          parked.settle({ error: error as Error });
        }
      }
    }
    return () => {
      if (this.current === opened) this.closeCurrent();
    };
  }

  /**
   * Where a stream's first chunk goes: its slot (checked, not yet written: call `write`), or a
   * wait for its step. Throws the error that refuses the stream.
   */
  admit(chunk: InboundChunk): Admission {
    const key = { generation: chunk.generation, step: chunk.step };
    const open = this.current;
    const order = open ? compareKeys(key, open.expectation) : 1;
    if (order === 0 && !open!.closed) return { kind: 'slot', slot: this.slotFor(key, chunk) };
    if (order <= 0) throw stale(key, open!.expectation);
    if (this.parked.size >= this.maxParked) {
      throw new TransferLimitError(`${this.parked.size} streams already wait for steps not started here: step ${chunk.step} refused`);
    }
    return { kind: 'park', parked: this.park(key, chunk) };
  }

  /** Writes a chunk of a stream that holds `slot` (claiming it on the first chunk); throws, writing nothing, when it does not fit. */
  write(slot: Slot, owner: object, chunk: InboundChunk): void {
    const { expectation } = slot.open;
    if (slot.open.closed || slot.open !== this.current) throw new ProtocolError(`step ${chunk.step} is no longer expected here (finished or abandoned)`);
    if (compareKeys(chunk, expectation) !== 0 || chunk.phase !== slot.spec.phase || chunk.sender !== slot.spec.sender || chunk.range !== slot.spec.range) {
      throw new ProtocolError(`a chunk of step ${chunk.step} does not belong to ${describe(slot.spec)} of step ${expectation.step}`);
    }
    if (chunk.encoding !== expectation.encoding) throw new ProtocolError(`step ${expectation.step} travels in ${expectation.encoding}, the chunk is ${chunk.encoding}`);
    if (slot.owner !== undefined && slot.owner !== owner) throw new ProtocolError(`${describe(slot.spec)} is already being sent by another stream`);
    if (slot.done) throw new ProtocolError(`${describe(slot.spec)} is already complete`);
    checkChunk(slot, chunk);
    slot.owner = owner;
    const { target } = slot.spec;
    if (chunk.encoding === 'fp32') {
      new Uint8Array(target.buffer, target.byteOffset + chunk.offset * 4, chunk.count * 4).set(chunk.payload);
    } else {
      decodeBf16(uint16View(chunk.payload, chunk.count), target.subarray(chunk.offset, chunk.offset + chunk.count));
    }
    slot.received += chunk.count;
    if (slot.received === target.length) this.complete(slot);
  }

  /** A stream that held `slot` ended or failed: an incomplete range is given back, its progress reset. */
  release(slot: Slot, owner: object): void {
    if (slot.owner !== owner || slot.done) return;
    slot.owner = undefined;
    slot.received = 0;
  }

  /** Refuses every waiting stream (server shutting down). */
  close(): void {
    this.closeCurrent();
    for (const parked of [...this.parked]) parked.settle({ error: new ProtocolError('the peer is shutting down') });
    this.parked.clear();
  }

  private complete(slot: Slot): void {
    slot.done = true;
    slot.open.events.done(slot.spec);
  }

  private closeCurrent(): void {
    if (this.current) this.current.closed = true;
  }

  private slotFor(key: Key, chunk: InboundChunk): Slot {
    const open = this.current!;
    const { expectation } = open;
    if (chunk.sender >= expectation.size || chunk.sender === expectation.rank) {
      throw new ProtocolError(`sender rank ${chunk.sender} is not a peer of rank ${expectation.rank} in a group of ${expectation.size} (step ${key.step})`);
    }
    const slot = open.slots.get(slotName(chunk.phase, chunk.sender, chunk.range));
    if (!slot) throw new ProtocolError(`no ${chunk.phase} of range ${chunk.range} from rank ${chunk.sender} is expected at step ${key.step}`);
    if (slot.owner !== undefined) throw new ProtocolError(`${describe(slot.spec)} is already being sent by another stream`);
    if (slot.done) throw new ProtocolError(`${describe(slot.spec)} is already complete`);
    if (chunk.encoding !== expectation.encoding) throw new ProtocolError(`step ${key.step} travels in ${expectation.encoding}, the chunk is ${chunk.encoding}`);
    checkChunk(slot, chunk);
    return slot;
  }

  private park(key: Key, first: InboundChunk): ParkedStream {
    let settle: (outcome: ParkOutcome) => void = () => undefined;
    let settled = false;
    const parked: ParkedStream = {
      key,
      first,
      settle: (outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.parked.delete(parked);
        settle(outcome);
      },
      onSettle: (handler) => {
        settle = handler;
      },
    };
    const timer = setTimeout(() => parked.settle({ error: new DeadlineError(`step ${key.step} (generation ${key.generation}) was not started here within ${this.parkMs} ms`) }), this.parkMs);
    timer.unref();
    this.parked.add(parked);
    return parked;
  }
}

function stale(key: Key, open: Key): ProtocolError {
  return new ProtocolError(`step ${key.step} of generation ${key.generation} is not expected here: this peer is at step ${open.step} of generation ${open.generation}`);
}

function describe(spec: SlotSpec): string {
  return `the ${spec.phase} of range ${spec.range} from rank ${spec.sender}`;
}

/** The chunk continues the slot exactly: next offset, positive count within the range, payload of the declared size. */
function checkChunk(slot: Slot, chunk: InboundChunk): void {
  const { spec } = slot;
  const bpv = bytesPerValue(chunk.encoding);
  if (!Number.isSafeInteger(chunk.count) || chunk.count <= 0 || chunk.count * bpv > MAX_PEER_CHUNK_BYTES) {
    throw new TransferLimitError(`a chunk of ${describe(spec)} declares ${chunk.count} values: 1..${MAX_PEER_CHUNK_BYTES / bpv} allowed`);
  }
  if (chunk.offset !== slot.received) throw new ProtocolError(`a chunk of ${describe(spec)} starts at ${chunk.offset}, expected ${slot.received}`);
  if (chunk.offset + chunk.count > spec.target.length) {
    throw new TransferLimitError(`a chunk of ${describe(spec)} ends at ${chunk.offset + chunk.count}, the range holds ${spec.target.length} values`);
  }
  if (chunk.payload.byteLength !== chunk.count * bpv) {
    throw new ProtocolError(`a chunk of ${describe(spec)} carries ${chunk.payload.byteLength} bytes for ${chunk.count} ${chunk.encoding} values`);
  }
}

/** The payload as 16-bit values: a view when aligned, else a copy. */
function uint16View(payload: Uint8Array, count: number): Uint16Array {
  if (payload.byteOffset % 2 === 0) return new Uint16Array(payload.buffer, payload.byteOffset, count);
  const copy = new Uint16Array(count);
  new Uint8Array(copy.buffer).set(payload);
  return copy;
}
