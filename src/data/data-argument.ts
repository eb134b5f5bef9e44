/**
 * `--data PATH` of `drover train` and `drover evaluate`: what a path holds, told from the path
 * itself, so a user need not write a dataset spec for the common cases.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { ConfigError } from '../errors.ts';

const IDX_TRAIN_IMAGES = /^train-images-idx3-ubyte(\.gz)?$/;
const CIFAR_BATCH = /^(data_batch_\d+|train)\.bin$/;
const SPEC_FILE = new Set(['.yaml', '.yml', '.json']);
const MANIFEST_FILE = new Set(['.csv', '.jsonl', '.ndjson']);

/**
 * The dataset spec a `--data` value names: inline JSON (`{"kind": ...}`); a YAML / JSON file
 * holding a dataset spec or a whole job file (its `data`); a .csv / .jsonl manifest; an IDX
 * folder (MNIST, Fashion-MNIST); a folder of CIFAR binary batches; else an image folder with
 * one sub-folder per class. Paths inside a spec file are taken as written.
 */
export async function resolveDataArgument(arg: string): Promise<Record<string, unknown>> {
  if (arg.trimStart().startsWith('{')) return specFromText(arg, '(inline)');
  const info = await stat(arg).catch(() => undefined);
  if (info === undefined) throw new ConfigError(`--data ${arg}: no such file or folder`, 'data');
  const ext = path.extname(arg).toLowerCase();
  if (info.isFile()) {
    if (MANIFEST_FILE.has(ext)) return { kind: 'manifest', path: arg };
    if (SPEC_FILE.has(ext)) return specFromText(await readFile(arg, 'utf8'), arg);
    throw new ConfigError(`--data ${arg}: expected a folder, a .csv / .jsonl manifest or a .yaml / .json dataset spec`, 'data');
  }
  if (!info.isDirectory()) throw new ConfigError(`--data ${arg}: not a file or folder`, 'data');
  const entries = await readdir(arg);
  if (entries.some((name) => IDX_TRAIN_IMAGES.test(name))) return { kind: 'idx', dir: arg };
  if (entries.some((name) => CIFAR_BATCH.test(name)) || entries.some((name) => /^cifar-(10|100)-(batches-)?bin(ary)?$/.test(name))) {
    return { kind: 'cifar', path: arg };
  }
  return { kind: 'folder', path: arg };
}

function specFromText(text: string, where: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = YAML.parse(text);
  } catch (cause) {
    throw new ConfigError(`--data ${where}: not valid YAML / JSON: ${(cause as Error).message}`, 'data', { cause });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`--data ${where}: expected a dataset spec object`, 'data');
  const record = value as Record<string, unknown>;
  return !('kind' in record) && record.data !== null && typeof record.data === 'object' ? (record.data as Record<string, unknown>) : record;
}
