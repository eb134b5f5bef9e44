/** `kind: folder`: one sub-folder per class, like Keras' image_dataset_from_directory. */
import path from 'node:path';
import { z } from 'zod';
import { scanImageFolder } from '../folder.ts';
import { imageOptions, validationByFraction, validationByPath } from '../spec.ts';
import { openFileSides } from './file-sides.ts';
import type { DataSource } from './source.ts';

export const folderSpecSchema = z.strictObject({
  kind: z.literal('folder'),
  /** One sub-folder per class (sorted names become class indices), like Keras' image_dataset_from_directory. */
  path: z.string().min(1),
  /** A seeded, per-class fraction of `path`, or a separate folder with the same class sub-folders. */
  validation: z.union([validationByFraction, validationByPath]).optional(),
  test: validationByPath.optional(),
  ...imageOptions,
});
export type FolderSpec = z.output<typeof folderSpecSchema>;

export const folderSource = {
  kind: 'folder',
  schema: folderSpecSchema,
  pipeline: { nativeShape: () => null, inMemory: false, name: (spec) => path.basename(spec.path) },
  async open(spec, context) {
    const name = path.basename(spec.path, path.extname(spec.path));
    context.name = name;
    // Resolved before any file is read, so a bad option fails fast.
    const pipelines = context.pipelines(null);
    return openFileSides(context, spec, name, pipelines, async (file, which, classNames) => {
      const scanned = await scanImageFolder(file, { skips: context.skips, source: `${name}/${which}`, classNames });
      return { classNames: scanned.classNames, paths: scanned.paths, labels: scanned.labels, describe: (i) => scanned.paths[i]! };
    });
  },
} satisfies DataSource<'folder', typeof folderSpecSchema>;
