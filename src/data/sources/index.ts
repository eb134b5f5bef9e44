/**
 * The registry of data sources: every `kind` a job file's `data` section may name. The job
 * schema, `openDataset` / `openJobDataset` and the workers' decoders all read this list, so a new
 * source is one module (schema, open; see ./source.ts) plus its test and one line here.
 */
import { z } from 'zod';
import { ConfigError } from '../../errors.ts';
import { cifarSource } from './cifar.ts';
import { defaultSource } from './default.ts';
import { folderSource } from './folder.ts';
import { idxSource } from './idx.ts';
import { manifestSource } from './manifest.ts';
import { shapesSource } from './shapes.ts';
import type { DataSource } from './source.ts';

/** In the order error messages list the kinds. */
export const DATA_SOURCES = [defaultSource, shapesSource, folderSource, manifestSource, cifarSource, idxSource] as const;

type Sources = typeof DATA_SOURCES;
type SchemasOf<T extends readonly unknown[]> = T extends readonly [infer Head, ...infer Rest]
  ? Head extends { schema: infer S } ? [S, ...SchemasOf<Rest>] : SchemasOf<Rest>
  : [];
type PipelineSchemasOf<T extends readonly unknown[]> = T extends readonly [infer Head, ...infer Rest]
  ? Head extends { schema: infer S; pipeline: object } ? [S, ...PipelineSchemasOf<Rest>] : PipelineSchemasOf<Rest>
  : [];

/** A job file's `data` section: any registered source. */
export const dataSpecSchema = z.discriminatedUnion('kind', DATA_SOURCES.map((source) => source.schema) as unknown as SchemasOf<Sources>);
/** As validated (defaults filled in). */
export type DataSpec = z.output<typeof dataSpecSchema>;

/** A spec of a source whose samples run through the data pipeline (what `openDataset` opens). */
export const datasetSpecSchema = z.discriminatedUnion(
  'kind',
  (DATA_SOURCES as readonly DataSource[]).filter((source) => source.pipeline !== undefined).map((source) => source.schema) as unknown as PipelineSchemasOf<Sources>,
);
/** As written (defaults optional). */
export type DatasetSpecInput = z.input<typeof datasetSpecSchema>;
/** As validated (defaults filled in). */
export type DatasetSpec = z.output<typeof datasetSpecSchema>;

/** The registered source of a kind. */
export function sourceOf(kind: string): DataSource | undefined {
  return (DATA_SOURCES as readonly DataSource[]).find((source) => source.kind === kind);
}

/** Whether the spec's samples run through the data pipeline. */
export function isPipelineSpec(spec: DataSpec): spec is DatasetSpec {
  return sourceOf(spec.kind)?.pipeline !== undefined;
}

/**
 * Validates a pipeline dataset spec (defaults filled in); throws a ConfigError whose `field` is
 * the dotted path of the first bad field, prefixed with `field` (e.g. "data").
 */
export function parseDatasetSpec(input: unknown, field = ''): DatasetSpec {
  const result = datasetSpecSchema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => {
    const segments = [...(field ? [field] : []), ...issue.path.map(String)];
    if (issue.code === 'unrecognized_keys') segments.push(issue.keys[0]!);
    const where = segments.join('.') || '(root)';
    return { where, text: issue.code === 'unrecognized_keys' ? `unknown field ${issue.keys.join(', ')}` : issue.message };
  });
  const first = issues[0]!;
  throw new ConfigError(`dataset spec: ${issues.map((i) => `${i.where}: ${i.text}`).join('; ')}`, first.where);
}
