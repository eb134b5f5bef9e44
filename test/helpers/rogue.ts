import type { ServiceError } from '@grpc/grpc-js';
import type { CoordinatorMessage__Output } from '../../src/wire/generated/drover/v1/CoordinatorMessage.ts';
import type { TaskAssignment__Output } from '../../src/wire/generated/drover/v1/TaskAssignment.ts';
import type { WorkerMessage } from '../../src/wire/generated/drover/v1/WorkerMessage.ts';
import { envelope } from '../../src/wire/protocol.ts';
import { parseReplicaSpec, type ReplicaSpec } from '../../src/job/replica-spec.ts';
import { tensorTransfer } from '../../src/wire/transfer.ts';
import { CoordinatorConnection } from '../../src/worker/client.ts';

/**
 * A worker written by hand over a real gRPC connection, holding the valid token: it joins,
 * opens its session and then sends whatever a test makes it send (a buggy or hostile peer).
 */
export interface Rogue {
  readonly workerId: string;
  readonly sessionKey: string;
  readonly jobId: string;
  readonly spec: ReplicaSpec;
  readonly connection: CoordinatorConnection;
  /** Resolves with the status the coordinator ended the session with. */
  readonly ended: Promise<ServiceError>;
  send(message: Omit<WorkerMessage, 'envelope'>): void;
  /** Every task assignment received, each once the weights it names were announced (until the session ends). */
  tasks(): AsyncGenerator<TaskAssignment__Output>;
  /** Sends a gradient result of `value` everywhere for a task (all its samples used). */
  answer(task: TaskAssignment__Output, options?: { value?: number; computeMs?: number }): void;
  /** Ends its side of the stream cleanly, without Leave. */
  halfClose(): void;
  close(): void;
}

let transferIds = 1000;

export async function joinRogue(address: string, token: string | undefined, name = 'rogue'): Promise<Rogue> {
  const connection = new CoordinatorConnection({ address, token });
  const reply = await connection.join({ name }, '');
  const call = connection.session();
  const jobId = reply.envelope!.jobId;
  const jobEnvelope = envelope(jobId);
  const spec = parseReplicaSpec(reply.replicaSpecJson);
  const assignments: TaskAssignment__Output[] = [];
  let wake: (() => void) | undefined;
  let over = false;
  let weights = -1;
  call.on('data', (m: CoordinatorMessage__Output) => {
    if (m.body === 'task') assignments.push(m.task!);
    if (m.body === 'weights') weights = Math.max(weights, m.weights!.version);
    wake?.();
  });
  const ended = new Promise<ServiceError>((resolve) => call.on('error', (e: ServiceError) => resolve(e)));
  void ended.then(() => {
    over = true;
    wake?.();
  });
  const send = (message: Omit<WorkerMessage, 'envelope'>): void => {
    if (!over) call.write({ envelope: jobEnvelope, ...message } as WorkerMessage);
  };
  send({ ready: { workerId: reply.workerId, sessionKey: reply.sessionKey } });
  const trainable = spec.weights.filter((w) => w.trainable);
  return {
    workerId: reply.workerId,
    sessionKey: reply.sessionKey,
    jobId,
    spec,
    connection,
    ended,
    send,
    async *tasks() {
      const done = new Set<TaskAssignment__Output>();
      while (!over) {
        // In arrival order, each once the weights it names were announced (as a real worker computes).
        for (const task of assignments) {
          if (done.has(task) || task.weightsVersion > weights) continue;
          done.add(task);
          yield task;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
    answer(task, options = {}) {
      const value = options.value ?? 0;
      const n = task.shard!.sampleIds.length;
      const transfer = tensorTransfer(++transferIds, trainable.map((w) => ({ name: w.name, shape: w.shape, data: new Float32Array(w.shape.reduce((a, b) => a * b, 1)).fill(value) })));
      send({
        gradient: {
          taskId: task.taskId, step: task.step, weightsVersion: task.weightsVersion, loss: 1, correct: 0, n,
          timings: { computeMs: options.computeMs ?? 1, dataWaitMs: 0, transferMs: 0, decodeMs: 0 },
          gradients: transfer.header, buffers: null, skipped: [], skipReasons: [],
        },
      });
      for (const chunk of transfer.chunks) send({ chunk });
    },
    halfClose() {
      call.end();
    },
    close() {
      over = true;
      wake?.();
      call.cancel();
      connection.close();
    },
  };
}
