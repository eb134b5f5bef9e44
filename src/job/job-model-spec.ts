import type { Dataset } from '../data/types.ts';
import type { LayerSpecInput } from '../model/layer-spec.ts';
import type { ModelSpec } from '../model/model-spec.ts';
import { PRESETS, type PresetName } from '../model/presets.ts';
import type { Job } from './job-file.ts';

/**
 * The model a job trains, as a spec any replica (a worker process, a replica thread) builds the
 * same way: the coordinator sends it on join, `drover train --workers N` to its threads.
 */
export function jobModelSpec(job: Job, dataset: Dataset, trainableFrom: string | null): ModelSpec {
  const classes = dataset.classNames.length;
  if (job.model.transfer) return { kind: 'transfer', transfer: job.model.transfer, inputShape: dataset.inputShape, classes, seed: job.seed, trainableFrom };
  const layers: LayerSpecInput[] = job.model.preset ? PRESETS[job.model.preset as PresetName].layers : job.model.layers!;
  return { kind: 'scratch', layers: layers as Extract<ModelSpec, { kind: 'scratch' }>['layers'], inputShape: dataset.inputShape, classes, l2: job.model.l2, seed: job.seed };
}
