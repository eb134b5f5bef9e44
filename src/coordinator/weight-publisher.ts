import type * as tf from '@tensorflow/tfjs';
import type { WeightEntry } from '../model/weights.ts';
import { readFloat32 } from '../model/tensor-read.ts';
import { modelVariables } from '../model/variables.ts';
import type { CoordinatorMessage } from '../wire/generated/drover/v1/CoordinatorMessage.ts';
import { envelope, MAX_CHUNK_BYTES } from '../wire/protocol.ts';
import { tensorTransfer } from '../wire/transfer.ts';
import type { WorkerLink } from './server.ts';

/**
 * Sends the coordinator model's weights to the workers: versions, full and partial broadcasts,
 * and the host copy of every weight that a joining worker gets.
 */
export class WeightPublisher {
  /** Version of the last broadcast (undefined before the first); workers in session hold it. */
  private publishedVersion: number | undefined;
  /** The last full broadcast, for workers that join: rebuilt when partial ones have moved past it. */
  private fullBroadcast: { version: number; messages: CoordinatorMessage[] } | undefined;
  /** Host copy of every weight as of the published version, read back after each publish. */
  private readonly hostWeights: Float32Array[] = [];

  constructor(
    private readonly jobId: string,
    private readonly model: tf.LayersModel,
    /** Every weight of the model, in broadcast order. */
    private readonly manifest: readonly WeightEntry[],
    /** Workers in session, to send to. */
    private readonly sessions: () => Iterable<WorkerLink>,
    /** Transfer ids are unique per session across weights and task payloads. */
    private readonly nextTransferId: () => number,
  ) {}

  /** Version of the last broadcast; undefined before the first. */
  get published(): number | undefined {
    return this.publishedVersion;
  }

  /**
   * Sends the weights as `version` to every worker in session. After a rewrite of every weight
   * ('all': a run's start, restoring the best weights), all of them; after an optimizer step, only
   * those a step can change (trainable weights, and batch-norm statistics when workers reported
   * them) as a partial broadcast on top of the last version sent. A frozen backbone's weights
   * change only in rewrites, so they go out once per worker, not once per step.
   */
  async publish(version: number, changed: 'all' | { buffers: boolean }): Promise<void> {
    const indices = changed === 'all' || this.publishedVersion === undefined
      ? this.manifest.map((_, i) => i)
      : this.manifest.flatMap((w, i) => (w.trainable || changed.buffers ? [i] : []));
    const partial = indices.length < this.manifest.length;
    // Read asynchronously (a GPU backend cannot read synchronously) into the host copy that
    // joining workers get; until it is in, they get the last version published, which the
    // partial broadcast below then builds on.
    const variables = modelVariables(this.model);
    const values = await readFloat32(indices.map((i) => variables[i]!.read()));
    indices.forEach((i, k) => {
      this.hostWeights[i] = values[k]!;
    });
    const messages = this.weightMessages(indices, version, partial ? this.publishedVersion : undefined);
    this.fullBroadcast = partial ? undefined : { version, messages };
    this.publishedVersion = version;
    for (const link of this.sessions()) link.send(messages);
  }

  /** A full broadcast of the published weights, for a worker that joins (built once per version); undefined before the first publish. */
  currentFullBroadcast(): CoordinatorMessage[] | undefined {
    const version = this.publishedVersion;
    if (version === undefined) return undefined;
    if (this.fullBroadcast?.version !== version) {
      this.fullBroadcast = { version, messages: this.weightMessages(this.manifest.map((_, i) => i), version, undefined) };
    }
    return this.fullBroadcast.messages;
  }

  /**
   * The host copy of the weights at `indices` as the message sequence of one broadcast of
   * `version` (partial when `base` is set). A publish replaces host arrays rather than changing
   * them (reads hand back copies, or on cpu data a later update replaces), so the snapshot stays
   * valid while queued.
   */
  private weightMessages(indices: readonly number[], version: number, base: number | undefined): CoordinatorMessage[] {
    const tensors = indices.map((i) => ({ name: this.manifest[i]!.name, shape: this.manifest[i]!.shape, data: this.hostWeights[i]! }));
    // fp32 whatever cluster.wire says: a worker that joins must hold bit for bit the weights the
    // others hold (partial broadcasts build on them), and workers evaluate on them.
    const transfer = tensorTransfer(this.nextTransferId(), tensors, MAX_CHUNK_BYTES, 'fp32');
    const jobEnvelope = envelope(this.jobId);
    const header = { version, weights: transfer.header, partial: base !== undefined, baseVersion: base ?? 0 };
    return [{ envelope: jobEnvelope, weights: header }, ...transfer.chunks.map((chunk) => ({ envelope: jobEnvelope, chunk }))];
  }
}
