/**
 * Image folders, as Keras' image_dataset_from_directory: one sub-folder per class (sorted
 * names give the class indices), images found recursively inside each. Only the listing
 * happens here; decoding waits for the batch, where a bad file is a counted skip.
 *
 * What makes the job impossible is an error (missing or unreadable root or class folder, no
 * class, no image at all); everything else is logged with its path and counted.
 */
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from '../errors.ts';
import type { SkipLog } from './skips.ts';

/** Extensions read as images (case-insensitive). */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff']);

export interface ScannedFolder {
  classNames: string[];
  paths: string[];
  labels: Int32Array;
  /** Images found per class, in class order. */
  perClass: number[];
}

export interface ScanOptions {
  skips: SkipLog;
  /** Source name for skip logs. */
  source: string;
  /**
   * The class names to use (a validation / test folder uses the training folder's); a
   * sub-folder not among them is an error, a missing one is an empty class.
   */
  classNames?: readonly string[];
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

async function listDir(dir: string): Promise<Dirent[]> {
  return readdir(dir, { withFileTypes: true });
}

/** Resolves a directory entry's real kind, following symbolic links. */
async function kindOf(dir: string, entry: Dirent): Promise<'dir' | 'file' | 'other' | 'broken'> {
  if (entry.isDirectory()) return 'dir';
  if (entry.isFile()) return 'file';
  if (!entry.isSymbolicLink()) return 'other';
  try {
    const s = await stat(path.join(dir, entry.name));
    return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other';
  } catch {
    return 'broken';
  }
}

/** Lists every image file under one class folder (recursively), logging what it leaves out. */
async function listClass(classDir: string, options: ScanOptions, out: string[]): Promise<void> {
  const pending: string[] = [classDir];
  const visited = new Set<string>();
  while (pending.length > 0) {
    const dir = pending.pop()!;
    let entries: Dirent[];
    try {
      const real = await stat(dir);
      const key = `${real.dev}:${real.ino}`;
      if (visited.has(key)) continue; // a symlink loop
      visited.add(key);
      entries = await listDir(dir);
    } catch (cause) {
      if (dir === classDir) {
        throw new DatasetError(`cannot read class folder ${classDir}: ${(cause as Error).message}; fix its permissions or remove it`, { cause });
      }
      options.skips.record({
        source: options.source, path: dir, reason: 'unreadable_folder',
        detail: (cause as Error).message, errno: (cause as NodeJS.ErrnoException).code,
      });
      continue;
    }
    const files: string[] = [];
    for (const entry of entries.sort((a, b) => byName(a.name, b.name))) {
      const full = path.join(dir, entry.name);
      const kind = await kindOf(dir, entry);
      if (kind === 'dir') {
        pending.push(full);
        continue;
      }
      const isImage = IMAGE_EXTENSIONS.has(path.extname(entry.name).toLowerCase());
      if (kind === 'file' && isImage) files.push(full);
      else if (kind === 'broken') options.skips.record({ source: options.source, path: full, reason: 'unreadable', detail: 'broken symbolic link' });
      else if (kind === 'other') options.skips.record({ source: options.source, path: full, reason: 'not_a_file', detail: 'not a regular file' });
      else options.skips.record({ source: options.source, path: full, reason: 'not_an_image', detail: `extension ${path.extname(entry.name) || '(none)'} is not one of ${[...IMAGE_EXTENSIONS].join(' ')}` });
    }
    out.push(...files);
  }
}

/** Scans `root`: class sub-folders, their images, and the class names. */
export async function scanImageFolder(root: string, options: ScanOptions): Promise<ScannedFolder> {
  let entries: Dirent[];
  try {
    entries = await listDir(root);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a folder' : `cannot be read (${(cause as Error).message})`;
    throw new DatasetError(`image folder ${root} ${why}`, { cause });
  }
  const classDirs: string[] = [];
  for (const entry of entries.sort((a, b) => byName(a.name, b.name))) {
    const full = path.join(root, entry.name);
    const kind = await kindOf(root, entry);
    if (kind === 'dir') {
      if (entry.name.startsWith('.')) {
        // .git, .ipynb_checkpoints and the like are not classes.
        options.skips.record({ source: options.source, path: full, reason: 'hidden_folder', detail: 'folders starting with "." are not classes' });
      } else {
        classDirs.push(entry.name);
      }
    } else if (kind === 'broken') {
      throw new DatasetError(`class folder ${full} is a broken symbolic link; fix or remove it`);
    } else {
      options.skips.record({ source: options.source, path: full, reason: 'outside_class_folder', detail: 'files must sit in a class sub-folder' });
    }
  }
  let classNames: string[];
  if (options.classNames) {
    classNames = [...options.classNames];
    const unknown = classDirs.filter((name) => !classNames.includes(name));
    if (unknown.length > 0) {
      throw new DatasetError(`${root} has class folder(s) ${unknown.join(', ')} that the training data does not have (classes: ${classNames.join(', ')})`);
    }
  } else {
    classNames = classDirs;
    if (classNames.length === 0) {
      throw new DatasetError(`image folder ${root} has no class sub-folders: put each class's images in a sub-folder named after the class`);
    }
  }
  const paths: string[] = [];
  const labelList: number[] = [];
  const perClass: number[] = [];
  for (const [label, name] of classNames.entries()) {
    const found: string[] = [];
    if (classDirs.includes(name)) await listClass(path.join(root, name), options, found);
    perClass.push(found.length);
    if (found.length === 0) {
      options.skips.record({ source: options.source, path: path.join(root, name), reason: 'empty_class', detail: `class "${name}" has no images; it keeps its index` });
    }
    for (const file of found) {
      paths.push(file);
      labelList.push(label);
    }
  }
  if (paths.length === 0) {
    throw new DatasetError(`image folder ${root} holds no images (${[...IMAGE_EXTENSIONS].join(' ')}) in its ${classDirs.length} class folder(s)`);
  }
  return { classNames, paths, labels: Int32Array.from(labelList), perClass };
}
