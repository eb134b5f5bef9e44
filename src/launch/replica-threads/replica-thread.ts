/**
 * The body of one replica thread (`drover train --workers N`): a ModelReplica on its own tfjs
 * backend, answering the engine's requests in order. Gradients go through SharedGradients, so a
 * step moves no gradient through messages.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { Batch } from '../../data/types.ts';
import { initBackend, type BackendChoice } from '../../model/backend.ts';
import { firstNonFinite } from '../../wire/finite-check.ts';
import { ModelReplica } from '../../worker/replica.ts';
import { SharedGradients } from './shared-gradients.ts';
import { StepBarrier } from './step-barrier.ts';
import type { ReplicaThreadData, ThreadBatch, ThreadMessage, ThreadReplies, ThreadRequest } from './thread-messages.ts';

const { rank, backend } = workerData as ReplicaThreadData;
const port = parentPort!;

interface Phase {
  replica: ModelReplica;
  shared?: SharedGradients;
  barrier?: StepBarrier;
  gradientSizes: number[];
  bufferSizes: number[];
}

let phase: Phase | undefined;

function current(): Phase {
  if (!phase) throw new Error(`replica thread ${rank}: a request before the phase was set`);
  return phase;
}

function sharedMemory(): { shared: SharedGradients; barrier: StepBarrier } {
  const { shared, barrier } = current();
  if (!shared || !barrier) throw new Error(`replica thread ${rank}: a step before the phase's shared memory was set`);
  return { shared, barrier };
}

/**
 * One step on this replica. Any failure before the sum is applied aborts the barrier, so the
 * other replicas stop waiting and fail the step too (the job stops; --resume continues).
 */
async function step(request: Extract<ThreadRequest, { kind: 'step' }>): Promise<ThreadReplies['step']> {
  const { replica, gradientSizes, bufferSizes } = current();
  const { shared, barrier } = sharedMemory();
  try {
    const started = performance.now();
    let metrics = { loss: 0, correct: 0, n: 0 };
    // The statistics before this step's forward pass: what every replica goes back to if the
    // step is refused with statistics that are not finite.
    const statisticsBefore = bufferSizes.length > 0 ? await replica.readStatistics() : [];
    if (request.batch.n === 0) {
      // Its pass still counts: a resumed run sets every replica's pass count from the step.
      replica.skipPass();
      shared.writeZeros(rank);
    } else {
      metrics = await replica.trainInto(asBatch(request.batch), (parts) => shared.writeScaled(rank, parts, request.scale));
    }
    const computed = performance.now();
    barrier.arrive(rank);
    barrier.setFlag(rank, shared.reduceRange(rank));
    barrier.arrive(rank);
    // Every replica reads the same flags, so all refuse a non-finite sum alike.
    const nonFinite = barrier.flags().find((flag) => flag >= 0) ?? -1;
    let applied = false;
    const buffers = bufferSizes.length > 0 ? shared.sumParts(bufferSizes, gradientSizes.reduce((a, b) => a + b, 0)) : [];
    if (nonFinite >= 0) {
      // Refused alike everywhere; the statistics are averaged all the same, or restored when the
      // average is not finite, so that replicas never hold different ones.
      replica.setStatistics(buffers.every((b) => firstNonFinite(b) < 0) ? buffers : statisticsBefore);
      replica.skipTo(request.version);
    } else {
      applied = await replica.applyReduced(shared.sumParts(gradientSizes), buffers, request.lr, request.version);
    }
    return { ...metrics, computeMs: computed - started, reduceMs: performance.now() - computed, nonFinite, applied };
  } catch (error) {
    barrier.abort();
    throw error;
  }
}

function asBatch(batch: ThreadBatch): Batch {
  return { x: batch.x, y: batch.y, n: batch.n, shape: batch.shape };
}

const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

async function handle(request: ThreadRequest): Promise<{ value: ThreadReplies[ThreadRequest['kind']]; transfer?: ArrayBuffer[] }> {
  switch (request.kind) {
    case 'phase': {
      phase?.replica.dispose();
      phase = undefined;
      const replica = await ModelReplica.build({ model: request.model, weights: request.manifest }, { passesDone: request.passesDone });
      try {
        replica.enableOptimizer(request.optimizerJson);
        replica.setWeights({ version: 0, tensors: request.manifest.map((w, i) => ({ name: w.name, shape: w.shape, dtype: 'float32', data: request.weights[i]! })) });
        if (request.optimizerState) replica.setOptimizerState(request.optimizerState);
      } catch (error) {
        replica.dispose();
        throw error;
      }
      const gradientSizes = replica.manifest.filter((w) => w.trainable).map((w) => sizeOf(w.shape));
      const bufferSizes = replica.reportsBuffers ? replica.manifest.filter((w) => !w.trainable).map((w) => sizeOf(w.shape)) : [];
      phase = { replica, gradientSizes, bufferSizes };
      return { value: { manifest: replica.manifest, sharedLength: [...gradientSizes, ...bufferSizes].reduce((a, b) => a + b, 0) } };
    }
    case 'share':
      current().shared = new SharedGradients(request.shared, request.length, request.replicas);
      current().barrier = new StepBarrier(request.barrier, request.replicas);
      return { value: {} };
    case 'step':
      return { value: await step(request) };
    case 'evaluate': {
      const result = await current().replica.evaluate(asBatch(request.batch));
      const predicted = Int32Array.from(result.predicted);
      return { value: { loss: result.n ? result.lossSum / result.n : 0, correct: result.correct, n: result.n, predicted }, transfer: [predicted.buffer] };
    }
    case 'state': {
      const state = await current().replica.readState();
      // Copies: the replica may reuse what it read on the next step.
      const weights = state.weights.map((w) => new Float32Array(w));
      const slots = state.optimizer.slots.map((s) => ({ name: s.name, values: new Float32Array(s.values) }));
      return { value: { weights, optimizer: { iterations: state.optimizer.iterations, slots } }, transfer: [...weights, ...slots.map((s) => s.values)].map((a) => a.buffer as ArrayBuffer) };
    }
    case 'set-weights': {
      const { replica } = current();
      replica.setWeights({ version: replica.version ?? 0, tensors: replica.manifest.map((w, i) => ({ name: w.name, shape: w.shape, dtype: 'float32', data: request.weights[i]! })) });
      return { value: {} };
    }
    case 'tensors':
      return { value: { count: tf.memory().numTensors } };
  }
}

const ready = initBackend(backend as BackendChoice, undefined, { threads: 1 });
// One request at a time, in arrival order: a step's requests depend on the ones before.
let queue: Promise<void> = Promise.resolve();
port.on('message', (message: { id: number; request: ThreadRequest }) => {
  queue = queue.then(async () => {
    let reply: ThreadMessage;
    let transfer: ArrayBuffer[] = [];
    try {
      await ready;
      const handled = await handle(message.request);
      reply = { id: message.id, ok: true, value: handled.value };
      transfer = handled.transfer ?? [];
    } catch (error) {
      const e = error as Error & { code?: unknown };
      reply = { id: message.id, ok: false, error: { name: e.name ?? 'Error', message: e.message ?? String(error), ...(typeof e.code === 'string' ? { code: e.code } : {}) } };
    }
    port.postMessage(reply, transfer);
  });
});
