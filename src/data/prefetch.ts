/**
 * A bounded prefetch queue: keeps up to `depth` loads in flight ahead of the consumer, in
 * order, and starts the next only when the consumer takes one (backpressure), so memory stays
 * bounded however slow the trainer is. Stopping early waits for the loads already started.
 *
 *   const sampler = new Sampler({ length: ds.train.length, batchSize: 64, seed });
 *   const steps = function* () { for (let s = 0; s < total; s++) yield sampler.next(); };
 *   for await (const batch of prefetch(steps(), (b) => ds.train.loadBatch(b.indices, { augment: true, epoch: b.epoch }))) {
 *     const x = tf.tensor4d(batch.x, [batch.n, ...batch.shape]);
 *     batch.release?.(); // the tensor holds a copy: the buffer can serve the next batch
 *     ...
 *   }
 */
import { ConfigError } from '../errors.ts';

export interface PrefetchOptions {
  /** Loads in flight ahead of the consumer (default 2). */
  depth?: number;
  /** Stops starting new loads once aborted; the iteration then ends with the signal's reason. */
  signal?: AbortSignal;
}

/** Yields `load(request)` for each request, in order, `depth` ahead. */
export async function* prefetch<R, T>(
  requests: Iterable<R> | AsyncIterable<R>,
  load: (request: R) => Promise<T>,
  options: PrefetchOptions = {},
): AsyncGenerator<T, void, undefined> {
  const depth = options.depth ?? 2;
  if (!Number.isInteger(depth) || depth < 1) throw new ConfigError(`prefetch depth must be an integer >= 1, got ${depth}`, 'depth');
  const iterator = Symbol.asyncIterator in requests
    ? (requests as AsyncIterable<R>)[Symbol.asyncIterator]()
    : (requests as Iterable<R>)[Symbol.iterator]();
  const inFlight: Promise<T>[] = [];
  let exhausted = false;
  const startNext = async (): Promise<void> => {
    if (exhausted) return;
    options.signal?.throwIfAborted();
    const next = await iterator.next();
    if (next.done) {
      exhausted = true;
      return;
    }
    const pending = load(next.value);
    // Rejections are delivered in order when the consumer reaches them; until then, keep
    // them from surfacing as unhandled.
    pending.catch(() => {});
    inFlight.push(pending);
  };
  try {
    while (inFlight.length < depth && !exhausted) await startNext();
    while (inFlight.length > 0) {
      const head = inFlight.shift()!;
      const value = await head;
      await startNext();
      yield value;
    }
  } finally {
    // Early exit or error: let started loads settle so nothing runs on after the consumer left.
    await Promise.allSettled(inFlight);
    if (!exhausted) await iterator.return?.();
  }
}
