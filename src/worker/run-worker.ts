import os from 'node:os';
import { AuthError, ClusterError, ConfigError, DroverError, ProtocolError, ProtocolMismatchError, WeightsError } from '../errors.ts';
import type { BackendChoice } from '../model/backend.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ClientTlsFiles } from '../wire/credentials.ts';
import { wireEncodingFrom } from '../wire/tensor-encoding.ts';
import { parseReplicaSpec, type ReplicaSpec } from '../job/replica-spec.ts';
import { CoordinatorConnection } from './client.ts';
import { isPeerReplica, type ComputeReplica } from './compute-replica.ts';
import type { PeerParticipant, PeerParticipantOptions } from './peer-participant.ts';
import { SimulatedReplica } from './simulated-replica.ts';
import { WorkerSession } from './session.ts';
import { shardDecoder, type ShardDecoder } from './shard-decoder.ts';

export interface WorkerOptions {
  /** host:port of the coordinator. */
  coordinator: string;
  /** Shared secret (default: DROVER_TOKEN). */
  token?: string;
  /** TLS: trust this CA (or system roots with `{}`); plaintext when undefined. */
  tls?: ClientTlsFiles;
  /** Compute backend; default: auto (tfjs-node-gpu, a WebGPU GPU, tfjs-node, then wasm); webgpu with `gpu`. */
  backend?: BackendChoice;
  /** Bind to this WebGPU adapter (index of `drover gpus`): implies backend webgpu. */
  gpu?: number;
  /** Compute threads: oneDNN's when its kernels are on, else the wasm backend's (default 1). */
  threads?: number;
  /** Name shown in the coordinator's log. */
  name?: string;
  /** Join only this job ('' or undefined: whatever job the coordinator runs). */
  jobId?: string;
  /** Keep trying to reach (or rejoin) the coordinator this long before giving up. Default 60 s. */
  reconnectMs?: number;
  /** Benchmarks and scheduling tests: no tfjs; wait this long per task and return zero gradients (reduced with the peers in a peer-reduction job). */
  simulateComputeMs?: number;
  /** With simulateComputeMs: wait this much longer per sample of the shard. */
  simulateMsPerSample?: number;
  log: Logger;
  /**
   * When the coordinator stops the job before it completed (Ctrl-C, SIGTERM, a deleted pod: it
   * checkpoints), keep trying to rejoin for `reconnectMs` instead of returning 'dismissed', so a
   * restarted coordinator (`--resume auto`) finds its workers. Default false.
   */
  waitForResume?: boolean;
  /** Leave the job and return (Ctrl-C). */
  signal?: AbortSignal;
}

export interface WorkerResult {
  status: 'completed' | 'dismissed' | 'stopped';
  sessions: number;
  tasks: number;
}

/**
 * A worker's life: join, build the replica the coordinator describes, hold a session, and
 * rejoin when the session breaks (eviction, coordinator restart) until the job ends. Refusals
 * that retrying cannot fix (bad token, other job or protocol) end it with their error.
 */
export async function runWorker(options: WorkerOptions): Promise<WorkerResult> {
  const { log, signal } = options;
  const token = options.token ?? process.env.DROVER_TOKEN;
  const connection = new CoordinatorConnection({ address: options.coordinator, token, tls: options.tls });
  let replica: ComputeReplica | undefined;
  let replicaKey = '';
  let decoder: ShardDecoder | undefined;
  let decoderKey = '';
  let jobId = options.jobId ?? '';
  let sessions = 0;
  let tasks = 0;
  let fruitless = 0;
  let backendName = 'simulated';
  let device = `simulated compute (${options.simulateComputeMs} ms per task, ${options.simulateMsPerSample ?? 0} ms per sample)`;
  // What the worker computes with: libtensorflow threads on its own over every core.
  let computeThreads = options.threads ?? 1;
  try {
    if (options.simulateComputeMs === undefined) {
      // Before joining, so the coordinator learns the real device; loaded lazily so simulated workers never load tfjs.
      const { initBackend } = await import('../model/backend.ts');
      if (options.gpu !== undefined && options.backend !== undefined && options.backend !== 'auto' && options.backend !== 'webgpu') {
        throw new ConfigError(`--gpu ${options.gpu} binds a WebGPU adapter: it needs --backend webgpu (or auto), not ${options.backend}`, 'gpu');
      }
      const backend = options.gpu !== undefined ? 'webgpu' : (options.backend ?? 'auto');
      const info = await initBackend(backend, log, { threads: options.threads ?? 1, ...(options.gpu !== undefined ? { gpu: options.gpu } : {}) });
      backendName = info.name;
      device = info.description;
      if (info.name === 'tensorflow') computeThreads = os.availableParallelism();
    }
    while (!signal?.aborted) {
      // Join the job --job names, else whichever job the coordinator runs now: one restarted
      // before its first checkpoint runs the same job under a new id.
      const reply = await joinWithRetry(connection, { backend: backendName, device, threads: computeThreads, name: options.name ?? '', jobId: options.jobId ?? '' }, options.reconnectMs ?? 60_000, log, signal);
      if (!reply) break;
      jobId = reply.envelope?.jobId ?? jobId;
      const spec = parseReplicaSpec(reply.replicaSpecJson);
      const key = reply.replicaSpecJson;
      if (!replica || key !== replicaKey) {
        replica?.dispose();
        replica = undefined;
        replica = options.simulateComputeMs !== undefined ? new SimulatedReplica(spec, { msPerTask: options.simulateComputeMs, msPerSample: options.simulateMsPerSample }) : await buildReplica(spec);
        replicaKey = key;
        // A new phase of the same job changes the model, not the samples: keep the decoder (and its pool).
        const samplesKey = JSON.stringify(spec.samples);
        if (!decoder || samplesKey !== decoderKey) {
          await decoder?.close();
          decoder = undefined;
          decoder = await shardDecoder(spec.samples, log);
          decoderKey = samplesKey;
        }
      }
      sessions++;
      log.info({ worker: reply.workerId, job: jobId, coordinator: options.coordinator }, `joined job ${jobId} as ${reply.workerId}`);
      const workerLog = log.child({ worker: reply.workerId });
      const gradientEncoding = wireEncodingFrom(reply.gradientEncoding, 'join reply');
      const peer = reply.peer ? await startPeer(replica, { jobId, token, config: reply.peer, log: workerLog }) : undefined;
      const session = new WorkerSession({ call: connection.session(), jobId, workerId: reply.workerId, sessionKey: reply.sessionKey, replica, decoder: decoder!, gradientEncoding, log: workerLog, peer });
      const onAbort = (): void => {
        void connection.leave(jobId, reply.workerId, reply.sessionKey, 'worker stopped (signal)').catch(() => {}).finally(() => session.close());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const end = await session.done;
      // Its port is free again before the next session binds it (a fixed cluster.peerPort).
      await peer?.close();
      signal?.removeEventListener('abort', onAbort);
      tasks += session.tasksDone;
      if (end.kind === 'stopped') {
        if (signal?.aborted) return { status: 'stopped', sessions, tasks };
        if (end.rejoin) {
          // The coordinator starts the job's next phase on the same port: join it at once.
          log.info({ worker: reply.workerId, reason: end.reason }, `coordinator ended this phase: ${end.reason}`);
          fruitless = 0;
          continue;
        }
        if (options.waitForResume && !end.jobCompleted) {
          log.info({ worker: reply.workerId, reason: end.reason }, `coordinator stopped the job before it completed (${end.reason}); waiting for it to resume`);
          fruitless = 0;
          continue;
        }
        log.info({ worker: reply.workerId, reason: end.reason }, `coordinator stopped this worker: ${end.reason}`);
        return { status: end.jobCompleted ? 'completed' : 'dismissed', sessions, tasks };
      }
      if (isFatal(end.error)) throw end.error;
      // A session that broke before doing anything may break again at once: do not hammer the coordinator.
      fruitless = session.tasksDone === 0 ? fruitless + 1 : 0;
      const pause = Math.min(10_000, fruitless === 0 ? 0 : 250 * 2 ** fruitless);
      log.warn({ worker: reply.workerId, code: end.error.code, pauseMs: pause }, `session ended: ${end.error.message}; joining again`);
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    }
    return { status: 'stopped', sessions, tasks };
  } finally {
    replica?.dispose();
    await decoder?.close();
    connection.close();
  }
}

/** Refusals a retry cannot fix: wrong secret, other job or protocol, a model this worker cannot hold. */
function isFatal(error: DroverError): boolean {
  return error instanceof AuthError || error instanceof ProtocolMismatchError || error instanceof WeightsError;
}

/** This session's part in the peer reduction (a job with cluster.reduction: peer). */
async function startPeer(replica: ComputeReplica, options: Omit<PeerParticipantOptions, 'replica'>): Promise<PeerParticipant> {
  if (!isPeerReplica(replica)) throw new ConfigError('this job reduces gradients among workers (cluster.reduction: peer): this replica applies no updates', 'cluster.reduction');
  const { PeerParticipant } = await import('./peer-participant.ts');
  return PeerParticipant.start({ ...options, replica });
}

async function buildReplica(spec: ReplicaSpec): Promise<ComputeReplica> {
  const { ModelReplica } = await import('./replica.ts');
  return ModelReplica.build(spec);
}

async function joinWithRetry(
  connection: CoordinatorConnection,
  who: { backend: string; device: string; threads: number; name: string; jobId: string },
  reconnectMs: number,
  log: Logger,
  signal: AbortSignal | undefined,
): Promise<Awaited<ReturnType<CoordinatorConnection['join']>> | undefined> {
  const started = performance.now();
  let wait = 200;
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) return undefined;
    try {
      return await connection.join(
        { name: who.name, capabilities: { backend: who.backend, device: who.device, threads: who.threads, hostname: os.hostname(), pid: process.pid } },
        who.jobId,
      );
    } catch (error) {
      const droverError = error instanceof DroverError ? error : new ProtocolError(String(error));
      if (isFatal(droverError)) throw droverError;
      if (performance.now() - started > reconnectMs) {
        throw new ClusterError(`cannot join the coordinator within ${reconnectMs} ms: ${droverError.message}`, { cause: error });
      }
      if (attempt === 1 || attempt % 10 === 0) log.info({ attempt, code: droverError.code }, `coordinator not reachable yet (${droverError.message}); retrying`);
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(2000, wait * 2);
    }
  }
}
