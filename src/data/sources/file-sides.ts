/**
 * What the image-file sources (folder, manifest) share: the training list, then validation as a
 * seeded per-class fraction of it or a second list, and an optional test list, each read with
 * the training list's class names.
 */
import { stratifiedHoldout } from '../holdout.ts';
import type { Pipelines } from '../pipeline-config.ts';
import type { SourceContext, SourceParts } from './source.ts';

/** One list of files as a source reads it. */
export interface FileRead {
  classNames: string[];
  paths: readonly string[];
  labels: Int32Array;
  /** Names sample i in errors (its path, or the manifest line). */
  describe(index: number): string;
}

export interface FileSidesSpec {
  path: string;
  seed: number;
  validation?: { fraction: number; seed?: number | undefined } | { path: string } | undefined;
  test?: { path: string } | undefined;
}

type Files = { paths: readonly string[]; labels: Int32Array };

function subset(files: Files, indices: Uint32Array): Files {
  return { paths: Array.from(indices, (i) => files.paths[i]!), labels: Int32Array.from(indices, (i) => files.labels[i]!) };
}

/**
 * Reads the spec's lists with `read(file, which, classNames)` and builds the splits;
 * `check` sees the training list first (e.g. the manifest's class sizes).
 */
export async function openFileSides(
  context: SourceContext,
  spec: FileSidesSpec,
  name: string,
  pipelines: Pipelines,
  read: (file: string, which: string, classNames?: string[]) => Promise<FileRead>,
  check?: (main: FileRead) => void,
): Promise<SourceParts> {
  const main = await read(spec.path, 'train');
  check?.(main);
  let train: Files = main;
  let validation: Files | undefined;
  if (spec.validation && 'fraction' in spec.validation) {
    const holdout = stratifiedHoldout(main.labels, spec.validation.fraction, spec.validation.seed ?? spec.seed);
    train = subset(main, holdout.train);
    validation = subset(main, holdout.validation);
  } else if (spec.validation) {
    validation = await read(spec.validation.path, 'validation', main.classNames);
  }
  const test = spec.test ? await read(spec.test.path, 'test', main.classNames) : undefined;
  return {
    name,
    classNames: main.classNames,
    inputShape: [pipelines.train.geometry.height, pipelines.train.geometry.width, pipelines.train.channels],
    train: context.fileSplit('train', train, pipelines),
    ...(validation ? { validation: context.fileSplit('validation', validation, pipelines) } : {}),
    ...(test ? { test: context.fileSplit('test', test, pipelines) } : {}),
  };
}
