/**
 * `cluster.dataTransport: shared`: every node mounts the dataset, so a shard is only ids; the
 * worker opens the dataset itself and checks each label against the coordinator's.
 */
import { DatasetError } from '../../errors.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { dataSpecSchema, isPipelineSpec } from '../sources/index.ts';
import type { DataSplit, Dataset } from '../types.ts';
import type { ShardDecoder, WorkerSamples } from './shard.ts';

/** What a worker is told to open: the pipeline spec the coordinator opened, else the job's `data` section. */
export function sharedSamples(dataset: Dataset, jobData: Record<string, unknown>): WorkerSamples {
  return dataset.spec !== undefined && isPipelineSpec(dataset.spec)
    ? { decoder: 'pipeline', transport: 'shared', dataset: dataset.spec, inputShape: dataset.inputShape }
    : { decoder: 'job-data', transport: 'shared', data: jobData };
}

/** Shards given as ids into a dataset every node mounts. */
export function sharedDatasetDecoder(dataset: Dataset): ShardDecoder {
  const splits: Record<string, DataSplit | undefined> = { train: dataset.train, validation: dataset.validation, test: dataset.test };
  return {
    async decode(shard) {
      const split = splits[shard.split];
      if (!split) throw new DatasetError(`dataset ${dataset.name} has no ${shard.split} split`);
      for (let i = 0; i < shard.ids.length; i++) {
        if (split.label(shard.ids[i]!) !== shard.labels[i]) {
          throw new DatasetError(`sample ${shard.ids[i]} of the ${shard.split} split has label ${split.label(shard.ids[i]!)} here but ${shard.labels[i]} on the coordinator: the mounted datasets differ`);
        }
      }
      return split.loadBatch(shard.ids, { augment: shard.augment, epoch: shard.epoch });
    },
    close: () => dataset.close(),
  };
}

/** The worker's own copy of the dataset `samples` names (transport `shared`), as a decoder. */
export async function sharedDecoder(samples: WorkerSamples, log: Logger): Promise<ShardDecoder> {
  const { openDataset, openJobDataset } = await import('../open.ts');
  switch (samples.decoder) {
    case 'pipeline':
      return sharedDatasetDecoder(await openDataset(samples.dataset, { logger: log }));
    case 'job-data':
      return sharedDatasetDecoder(await openJobDataset(dataSpecSchema.parse(samples.data), log));
    case 'raw-u8':
      throw new DatasetError('raw-u8 samples are streamed, never read from a shared mount');
  }
}
