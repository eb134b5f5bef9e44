import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { layerSpecSchema } from '../model/layer-spec.ts';
import { transferSpecSchema } from '../model/transfer.ts';
import { dataSpecSchema } from '../data/sources/index.ts';
import { PRESET_NAMES } from '../model/presets.ts';
import { BACKEND_CHOICES } from '../model/backend.ts';
import { optimizerSpecSchema } from '../train/optimizers.ts';
import { scheduleSpecSchema } from '../train/schedule.ts';
import { clusterSpecSchema } from './cluster-spec.ts';

/** Where the samples come from: any source in the registry (src/data/sources/index.ts). */
export { dataSpecSchema, type DataSpec } from '../data/sources/index.ts';

/** A scratch model (a preset or a layer list) or a transfer model (backbone + head). */
const modelSchema = z
  .strictObject({
    preset: z.enum(PRESET_NAMES as [string, ...string[]]).optional(),
    layers: z.array(layerSpecSchema).min(1).optional(),
    transfer: transferSpecSchema.optional(),
    /** L2 factor on the kernels of a scratch model (and of a transfer model's head). */
    l2: z.number().min(0).default(0),
  })
  .refine((m) => [m.preset, m.layers, m.transfer].filter((x) => x !== undefined).length === 1, {
    message: 'give exactly one of model.preset, model.layers or model.transfer',
  });

const earlyStoppingSchema = z.strictObject({
  monitor: z.enum(['val_loss', 'val_accuracy']).default('val_loss'),
  patience: z.number().int().min(1).default(3),
  minDelta: z.number().min(0).default(0),
  restoreBest: z.boolean().default(true),
});

/** A training job as written in a YAML or JSON job file. Unknown fields are errors. */
export const jobSchema = z.strictObject({
  name: z.string().regex(/^[\w.-]+$/, 'letters, digits, dot, dash and underscore only').default('drover-job'),
  /** Weight initialisation, sample order and dropout masks: a single-process run repeats exactly. */
  seed: z.number().int().min(0).default(42),
  backend: z.enum(BACKEND_CHOICES as unknown as [string, ...string[]]).default('auto'),
  /** Compute threads: oneDNN's when its kernels are on, else the wasm backend's (tfjs-node threads on its own). */
  threads: z.number().int().min(1).max(8).default(1),
  data: dataSpecSchema.default({ kind: 'default' }),
  model: modelSchema.default({ preset: 'fmnist-cnn', l2: 0 }),
  train: z
    .strictObject({
      epochs: z.number().int().positive().default(5),
      batchSize: z.number().int().positive().default(64),
      optimizer: optimizerSpecSchema.default({ name: 'adam', learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }),
      schedule: scheduleSpecSchema.default({ type: 'constant', warmupEpochs: 0 }),
      earlyStopping: earlyStoppingSchema.optional(),
      /** Log a `step` event every N steps. */
      logEvery: z.number().int().positive().default(10),
      /** Also checkpoint every N steps (0: at each epoch's end and on stop only); single-process and distributed runs alike. */
      checkpointEvery: z.number().int().min(0).default(0),
    })
    .default({
      epochs: 5,
      batchSize: 64,
      optimizer: { name: 'adam', learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
      schedule: { type: 'constant', warmupEpochs: 0 },
      logEvery: 10,
      checkpointEvery: 0,
    }),
  output: z
    .strictObject({
      /** Folder for the exported model, checkpoints and the run log. */
      dir: z.string().min(1).optional(),
    })
    .default({}),
  /** Distributed training: coordinator address, workers, deadlines, secret, TLS (src/job/cluster-spec.ts). */
  cluster: clusterSpecSchema.optional(),
});

export type Job = z.infer<typeof jobSchema>;
export type JobInput = z.input<typeof jobSchema>;

/** Validates a parsed job object; throws a ConfigError naming the first bad field. */
export function parseJob(input: unknown, source = 'job'): Job {
  const result = jobSchema.safeParse(input ?? {});
  if (!result.success) throw configErrorFromZod(result.error, source);
  return withOneCheckpointInterval(result.data, source);
}

/**
 * train.checkpointEvery is the one checkpoint interval; cluster.checkpointEvery is its
 * deprecated alias (the distributed runs' own setting once). Whichever is set applies to both,
 * so `train --workers` and `coordinator` honour train.checkpointEvery and an older job file keeps
 * its interval; two different values are an error rather than a silent choice.
 */
function withOneCheckpointInterval(job: Job, source: string): Job {
  const own = job.train.checkpointEvery;
  const alias = job.cluster?.checkpointEvery ?? 0;
  if (own > 0 && alias > 0 && own !== alias) {
    throw new ConfigError(
      `${source}: cluster.checkpointEvery (${alias}) is a deprecated alias of train.checkpointEvery (${own}) and disagrees with it: keep only train.checkpointEvery`,
      'cluster.checkpointEvery',
    );
  }
  const every = own || alias;
  return { ...job, train: { ...job.train, checkpointEvery: every }, ...(job.cluster ? { cluster: { ...job.cluster, checkpointEvery: every } } : {}) };
}

/** Reads a .yaml/.yml/.json job file and validates it. */
export async function loadJobFile(file: string): Promise<Job> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read job file ${file}: ${(cause as Error).message}`, '(file)', { cause });
  }
  let parsed: unknown;
  try {
    parsed = path.extname(file).toLowerCase() === '.json' ? JSON.parse(text) : YAML.parse(text);
  } catch (cause) {
    throw new ConfigError(`job file ${file} is not valid ${path.extname(file) === '.json' ? 'JSON' : 'YAML'}: ${(cause as Error).message}`, '(file)', { cause });
  }
  return parseJob(parsed, file);
}

/** Turns zod issues into one ConfigError whose `field` is the dotted path of the first issue. */
export function configErrorFromZod(error: z.ZodError, source: string): ConfigError {
  const described = error.issues.map((issue) => {
    let field = formatPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      field = [field, issue.keys[0]].filter(Boolean).join('.');
      return { field, text: `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}` };
    }
    return { field: field || '(root)', text: issue.message };
  });
  const first = described[0]!;
  const message = `${source}: ${described.map((d) => `${d.field}: ${d.text}`).join('; ')}`;
  return new ConfigError(message, first.field);
}

/** `model.layers[0].filters` rather than `model.layers.0.filters`. */
function formatPath(segments: readonly PropertyKey[]): string {
  return segments.reduce<string>((out, segment) => {
    if (typeof segment === 'number') return `${out}[${segment}]`;
    return out ? `${out}.${String(segment)}` : String(segment);
  }, '');
}
