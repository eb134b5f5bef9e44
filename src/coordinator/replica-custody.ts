import { ClusterError, DroverError, ProtocolError } from '../errors.ts';
import type { ClusterSpec } from '../job/cluster-spec.ts';
import { readWeights, weightManifest, writeWeights, type WeightSet } from '../model/weights.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { OptimizerSlot } from '../train/optimizers.ts';
import type { Trainer } from '../train/trainer.ts';
import type { CoordinatorMessage } from '../wire/generated/drover/v1/CoordinatorMessage.ts';
import type { StateReply__Output } from '../wire/generated/drover/v1/StateReply.ts';
import { envelope } from '../wire/protocol.ts';
import { tensorTransfer, type ReceivedTransfer } from '../wire/transfer.ts';
import type { Membership } from './membership.ts';
import type { WorkerLink } from './server.ts';

/** What replica custody needs from the coordinator around it. */
export interface CustodyHost {
  readonly jobId: string;
  readonly cluster: ClusterSpec;
  readonly log: Logger;
  /** The coordinator's model and optimizer: a copy of the replicas' state, pulled when needed. */
  readonly trainer: Trainer;
  readonly membership: Membership;
  link(workerId: string): WorkerLink | undefined;
  evict(workerId: string, reason: string, error: DroverError): void;
  /** The weights version workers compute on now. */
  version(): number;
  nextTransferId(): number;
}

/**
 * With the peer reduction the workers hold the model: each its weights and optimizer state,
 * identical across the group. This keeps track of which version each worker holds, gives a
 * worker that joins (or holds an old version) the current one as a full broadcast with the
 * optimizer state, and pulls that state from a worker that holds it (StateRequest) into the
 * coordinator's own trainer when the coordinator needs it: for joiners, checkpoints, export.
 */
export class ReplicaCustody {
  /** The weights version each worker holds with its optimizer state. */
  private readonly held = new Map<string, number>();
  /** The version the coordinator's trainer holds. */
  private coordinatorVersion: number;
  private requests = 0;
  private readonly pulls = new Map<number, { workerId: string; version: number; resolve: (state: PulledState) => void; reject: (error: Error) => void }>();
  private syncing: Promise<void> = Promise.resolve();

  constructor(private readonly host: CustodyHost) {
    this.coordinatorVersion = host.version();
  }

  /** Whether a worker holds weights version `version` and its optimizer state. */
  holds(workerId: string, version: number): boolean {
    return this.held.get(workerId) === version;
  }

  /** A worker's session opened or closed: it holds nothing this side knows of. */
  forget(workerId: string): void {
    this.held.delete(workerId);
    for (const [id, pull] of this.pulls) {
      if (pull.workerId !== workerId) continue;
      this.pulls.delete(id);
      pull.reject(new ClusterError(`worker ${workerId} left before sending its state`));
    }
  }

  /** A step was committed to `group`: they hold `version` once they apply it (stream order). */
  committed(group: readonly string[], version: number, samples: number): void {
    for (const id of group) if (this.held.get(id) === version - 1) this.held.set(id, version);
    if (samples === 0 && this.coordinatorVersion === version - 1) this.coordinatorVersion = version;
  }

  /** The coordinator's model was rewritten (best weights restored) as the current version: every worker gets it. */
  async rewritten(): Promise<void> {
    this.coordinatorVersion = this.host.version();
    this.held.clear();
    await this.syncJoiners();
  }

  /** Gives every live worker that does not hold the current version's state that state (one sync at a time). */
  syncJoiners(): Promise<void> {
    const run = this.syncing.then(() => this.syncOnce());
    this.syncing = run.catch(() => {});
    return run;
  }

  private async syncOnce(): Promise<void> {
    const version = this.host.version();
    const joiners = this.host.membership.live().filter((w) => this.held.get(w.id) !== version);
    if (joiners.length === 0) return;
    await this.refresh();
    const { trainer } = this.host;
    trainer.modelOptimizer.bind();
    const weights = await readWeights(trainer.model);
    const optimizer = await trainer.optimizer.getState();
    for (const worker of joiners) {
      const link = this.host.link(worker.id);
      if (!link) continue;
      link.send(this.stateMessages(version, weights, optimizer));
      this.held.set(worker.id, version);
      this.host.log.debug({ worker: worker.id, version }, `sent worker ${worker.id} the weights and optimizer state of v${version}`);
    }
  }

  /** Makes the coordinator's trainer hold the current version's state, pulled from a worker that holds it. */
  async refresh(): Promise<void> {
    const version = this.host.version();
    if (this.coordinatorVersion === version) return;
    const holders = this.host.membership.live().filter((w) => this.held.get(w.id) === version);
    for (const worker of holders) {
      try {
        const state = await this.pull(worker.id, version);
        const { trainer } = this.host;
        writeWeights(trainer.model, { manifest: weightManifest(trainer.model), values: state.weights });
        trainer.modelOptimizer.bind();
        trainer.optimizer.setState(state.optimizer);
        this.coordinatorVersion = version;
        return;
      } catch (error) {
        const droverError = error instanceof DroverError ? error : new ClusterError(String(error), { cause: error });
        this.host.evict(worker.id, `could not send its state: ${droverError.message}`, droverError);
      }
    }
    // The coordinator's copy is older: going on from it under the current label would silently
    // drop the steps since. The job fails instead, and resumes from its last checkpoint.
    throw new ClusterError(`no live worker holds the weights and optimizer state of v${version} (the coordinator's copy is of v${this.coordinatorVersion}): the job stops; resume it from its last checkpoint`);
  }

  private pull(workerId: string, version: number): Promise<PulledState> {
    const link = this.host.link(workerId);
    if (!link) return Promise.reject(new ClusterError(`worker ${workerId} is not in session`));
    const requestId = ++this.requests;
    return new Promise<PulledState>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pulls.delete(requestId);
        reject(new ClusterError(`worker ${workerId} did not send its state within ${this.host.cluster.stepDeadlineMs} ms`));
      }, this.host.cluster.stepDeadlineMs);
      this.pulls.set(requestId, {
        workerId,
        version,
        resolve: (state) => { clearTimeout(timer); resolve(state); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      link.send([{ envelope: envelope(this.host.jobId), stateRequest: { requestId } }]);
    });
  }

  /** A StateReply: completes the pull that asked for it. */
  async state(workerId: string, reply: StateReply__Output, weightsDone: Promise<ReceivedTransfer>, slotsDone: Promise<ReceivedTransfer>): Promise<void> {
    const pull = this.pulls.get(reply.requestId);
    let transfers: ReceivedTransfer[] = [];
    try {
      transfers = await Promise.all([weightsDone, slotsDone]);
    } catch (error) {
      pull?.reject(error as Error);
      return;
    } finally {
      this.pulls.delete(reply.requestId);
    }
    const [weights, slots] = transfers as [ReceivedTransfer, ReceivedTransfer];
    try {
      if (!pull || pull.workerId !== workerId) throw new ProtocolError(`worker ${workerId} sent state ${reply.requestId}, which it was not asked for`);
      if (reply.version !== pull.version) {
        pull.reject(new ClusterError(`worker ${workerId} sent the state of v${reply.version}, v${pull.version} was asked for`));
        return;
      }
      pull.resolve({
        weights: weights.tensors.map((t) => Float32Array.from(t.data as Float32Array)),
        optimizer: { iterations: reply.optimizerIterations, slots: slots.tensors.map((t) => ({ name: t.name, values: Float32Array.from(t.data as Float32Array) })) },
      });
    } catch (error) {
      this.host.evict(workerId, (error as Error).message, error as DroverError);
    } finally {
      weights.release();
      slots.release();
    }
  }

  /** A full weight broadcast of `version` carrying the optimizer state. */
  private stateMessages(version: number, weights: WeightSet, optimizer: { iterations: number; slots: OptimizerSlot[] }): CoordinatorMessage[] {
    const weightTransfer = tensorTransfer(this.host.nextTransferId(), weights.manifest.map((w, i) => ({ name: w.name, shape: w.shape, data: weights.values[i]! })));
    const slotTransfer = tensorTransfer(this.host.nextTransferId(), optimizer.slots.map((s) => ({ name: s.name, shape: [s.values.length], data: s.values })));
    const jobEnvelope = envelope(this.host.jobId);
    return [
      { envelope: jobEnvelope, weights: { version, weights: weightTransfer.header, partial: false, baseVersion: 0, hasOptimizerState: true, optimizerIterations: optimizer.iterations, optimizerSlots: slotTransfer.header } },
      ...[...weightTransfer.chunks, ...slotTransfer.chunks].map((chunk) => ({ envelope: jobEnvelope, chunk })),
    ];
  }
}

interface PulledState {
  weights: Float32Array[];
  optimizer: { iterations: number; slots: OptimizerSlot[] };
}
