/** `kind: manifest`: a CSV or JSONL list of image paths and labels. */
import path from 'node:path';
import { z } from 'zod';
import { assertClassSizes } from '../class-counts.ts';
import { readManifest } from '../manifest.ts';
import { imageOptions, positiveInt, validationByFraction, validationByPath } from '../spec.ts';
import { openFileSides, type FileRead } from './file-sides.ts';
import type { DataSource } from './source.ts';

export const manifestSpecSchema = z.strictObject({
  kind: z.literal('manifest'),
  /** A .csv (header with `path` and `label` columns) or .jsonl file ({"path", "label"} per line). */
  path: z.string().min(1),
  format: z.enum(['csv', 'jsonl']).optional(),
  /** Folder relative paths resolve against; default: the manifest's folder. */
  root: z.string().min(1).optional(),
  /** Class names in index order; labels may then be names or indices. Default: sorted distinct labels. */
  classNames: z.array(z.string().min(1)).min(1).optional(),
  validation: z.union([validationByFraction, validationByPath]).optional(),
  test: validationByPath.optional(),
  /** A class with fewer training samples than this (but at least one) is an error naming its rows: most often a mistyped label. */
  minClassSamples: positiveInt.default(2),
  ...imageOptions,
});
export type ManifestSpec = z.output<typeof manifestSpecSchema>;

export const manifestSource = {
  kind: 'manifest',
  schema: manifestSpecSchema,
  pipeline: { nativeShape: () => null, inMemory: false, name: (spec) => path.basename(spec.path) },
  async open(spec, context) {
    const name = path.basename(spec.path, path.extname(spec.path));
    context.name = name;
    // Resolved before any file is read, so a bad option fails fast.
    const pipelines = context.pipelines(null);
    const read = async (file: string, which: string, classNames?: string[]): Promise<FileRead> => {
      const parsed = await readManifest(file, { format: spec.format, root: spec.root, classNames: classNames ?? spec.classNames, skips: context.skips, source: `${name}/${which}` });
      return { classNames: parsed.classNames, paths: parsed.paths, labels: parsed.labels, describe: (i) => `${file}:${parsed.lines[i]}` };
    };
    // Labels are typed by hand: without a class list a typo becomes a class of its own (with
    // one it is an unknown_label skip).
    const check = spec.classNames !== undefined ? undefined : (main: FileRead) =>
      assertClassSizes({ classNames: main.classNames, labels: main.labels, min: spec.minClassSamples, where: `manifest ${spec.path}`, describe: main.describe });
    return openFileSides(context, spec, name, pipelines, read, check);
  },
} satisfies DataSource<'manifest', typeof manifestSpecSchema>;
