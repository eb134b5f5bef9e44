import type { DataSplit } from '../data/types.ts';
import type { ClusterSpec } from '../job/cluster-spec.ts';
import type { CoordinatorMessage } from '../wire/generated/drover/v1/CoordinatorMessage.ts';
import type { Shard } from '../wire/generated/drover/v1/Shard.ts';
import { envelope } from '../wire/protocol.ts';
import { bytesTransfer, type OutgoingTransfer } from '../wire/transfer.ts';
import type { SplitName, Task } from './round.ts';
import { shardSource, type EncodedShard, type ShardSource } from './sample-source.ts';

/** Samples of a split: shipped as encoded bytes (stream) or named by id (shared mounts). */
export type SampleSource = { kind: 'stream'; shards: ShardSource } | { kind: 'shared'; split: DataSplit };

export function sampleSource(split: DataSplit, name: SplitName, transport: ClusterSpec['dataTransport']): SampleSource {
  return transport === 'stream' ? { kind: 'stream', shards: shardSource(split, `${name} split`) } : { kind: 'shared', split };
}

/** The split a source reads from. */
export function sourceSplit(source: SampleSource): DataSplit {
  return source.kind === 'stream' ? source.shards.split : source.split;
}

/** What a shard's samples look like on the wire. */
type ShardFields = Pick<Shard, 'sampleBytes' | 'encoding' | 'height' | 'width' | 'channels'>;

/** A task's samples as they go out: labels, and for the stream transport the encoded bytes. */
export interface TaskPayload {
  labels: number[];
  transfer: OutgoingTransfer | undefined;
  fields: ShardFields;
}

/** Labels of a shared-mount task: workers read the samples themselves. */
export function sharedPayload(split: DataSplit, ids: Uint32Array): TaskPayload {
  return { labels: Array.from(ids, (id) => split.label(id)), transfer: undefined, fields: { sampleBytes: [], encoding: 'SAMPLE_ENCODING_UNSPECIFIED' } };
}

/** An encoded shard as a task's payload, its bytes a transfer with id `transferId`. */
export function streamPayload(encoded: EncodedShard, transferId: number): TaskPayload {
  return {
    labels: encoded.labels,
    transfer: bytesTransfer(transferId, encoded.bytes),
    fields: {
      sampleBytes: encoded.sampleBytes,
      encoding: encoded.encoding,
      height: encoded.pixels?.height ?? 0,
      width: encoded.pixels?.width ?? 0,
      channels: encoded.pixels?.channels ?? 0,
    },
  };
}

/** The assignment of `task`, followed by its payload's chunks. */
export function taskMessages(jobId: string, task: Task, payload: TaskPayload): CoordinatorMessage[] {
  const jobEnvelope = envelope(jobId);
  const messages: CoordinatorMessage[] = [
    {
      envelope: jobEnvelope,
      task: {
        taskId: task.id,
        kind: task.kind === 'train' ? 'TRAIN' : 'EVALUATE',
        step: task.step,
        weightsVersion: task.weightsVersion,
        shard: {
          sampleIds: Array.from(task.ids),
          labels: payload.labels,
          split: task.split,
          payload: payload.transfer?.header ?? null,
          augment: task.augment,
          epoch: task.epoch,
          ...payload.fields,
        },
      },
    },
  ];
  for (const chunk of payload.transfer?.chunks ?? []) messages.push({ envelope: jobEnvelope, chunk });
  return messages;
}
