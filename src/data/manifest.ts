/**
 * CSV / JSONL manifests: one sample per row, a path (relative to the manifest's folder or
 * `root`) and a label (a class name, or an index into `classNames`). A bad row is a counted,
 * logged skip naming its line; a manifest with no usable row is an error. A row whose path
 * resolves outside the root (`../../etc/passwd`, `/etc/shadow`, a symlink pointing out) is an
 * `outside_root` skip and is never opened: a manifest may come from someone else, and with
 * workers the coordinator would send the file's bytes over the network.
 */
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from '../errors.ts';
import type { SkipLog } from './skips.ts';

export interface ManifestRow {
  line: number;
  path: string;
  label: string | number;
}

export interface ParsedManifest {
  classNames: string[];
  paths: string[];
  labels: Int32Array;
  /** The manifest line of each sample (for messages that name rows). */
  lines: Int32Array;
}

export interface ManifestOptions {
  format?: 'csv' | 'jsonl';
  root?: string;
  classNames?: readonly string[];
  skips: SkipLog;
  source: string;
}

/** Splits CSV text into records (RFC 4180: quoted fields, doubled quotes, CRLF or LF). */
export function parseCsv(text: string): { line: number; fields: string[] }[] {
  const records: { line: number; fields: string[] }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let recordLine = 1;
  let any = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"' && field === '') {
      quoted = true;
      any = true;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
      any = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      if (any || field !== '') {
        fields.push(field);
        records.push({ line: recordLine, fields });
      }
      fields = [];
      field = '';
      any = false;
      line++;
      recordLine = line;
    } else {
      field += ch;
      any = true;
    }
  }
  if (any || field !== '') {
    fields.push(field);
    records.push({ line: recordLine, fields });
  }
  return records;
}

function csvRows(text: string, file: string, options: ManifestOptions): ManifestRow[] {
  const records = parseCsv(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  if (records.length === 0) throw new DatasetError(`manifest ${file} is empty`);
  const header = records[0]!.fields.map((h) => h.trim().toLowerCase());
  const pathCol = header.indexOf('path');
  const labelCol = header.indexOf('label');
  if (pathCol < 0 || labelCol < 0) {
    throw new DatasetError(`manifest ${file}: the first line must be a header naming a "path" and a "label" column, got "${records[0]!.fields.join(',')}"`);
  }
  const rows: ManifestRow[] = [];
  for (const record of records.slice(1)) {
    const p = record.fields[pathCol]?.trim();
    const label = record.fields[labelCol]?.trim();
    if (!p || label === undefined || label === '') {
      options.skips.record({ source: options.source, path: `${file}:${record.line}`, reason: 'bad_manifest_row', detail: 'missing path or label' });
      continue;
    }
    rows.push({ line: record.line, path: p, label });
  }
  return rows;
}

function jsonlRows(text: string, file: string, options: ManifestOptions): ManifestRow[] {
  const rows: ManifestRow[] = [];
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (cause) {
      options.skips.record({ source: options.source, path: where, reason: 'bad_manifest_row', detail: `not JSON: ${(cause as Error).message}` });
      continue;
    }
    const row = value as { path?: unknown; label?: unknown };
    const okLabel = typeof row?.label === 'string' ? row.label !== '' : Number.isInteger(row?.label);
    if (typeof row?.path !== 'string' || row.path === '' || !okLabel) {
      options.skips.record({ source: options.source, path: where, reason: 'bad_manifest_row', detail: 'needs a string "path" and a string or integer "label"' });
      continue;
    }
    rows.push({ line: i + 1, path: row.path, label: row.label as string | number });
  }
  return rows;
}

/** Reads a manifest into paths, labels and class names. */
export async function readManifest(file: string, options: ManifestOptions): Promise<ParsedManifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new DatasetError(`cannot read manifest ${file}: ${(cause as Error).message}`, { cause });
  }
  const ext = path.extname(file).toLowerCase();
  const format = options.format ?? (ext === '.jsonl' || ext === '.ndjson' ? 'jsonl' : ext === '.csv' ? 'csv' : undefined);
  if (!format) throw new DatasetError(`manifest ${file}: cannot tell csv from jsonl by its extension; set "format"`);
  const rows = format === 'csv' ? csvRows(text, file, options) : jsonlRows(text, file, options);
  const root = options.root ?? path.dirname(file);

  let classNames: string[];
  if (options.classNames) {
    classNames = [...options.classNames];
  } else {
    // Sorted distinct labels, as an image folder sorts its class folders. Numeric labels sort
    // numerically so "10" comes after "9".
    const distinct = [...new Set(rows.map((r) => String(r.label)))];
    const numeric = distinct.every((l) => /^\d+$/.test(l));
    classNames = numeric ? distinct.sort((a, b) => Number(a) - Number(b)) : distinct.sort();
  }
  const index = new Map(classNames.map((name, i) => [name, i]));
  const inside = await confineToRoot(rows, root, file, options);
  const paths: string[] = [];
  const labels: number[] = [];
  const lines: number[] = [];
  for (const [i, row] of rows.entries()) {
    const resolved = inside[i];
    if (resolved === undefined) continue;
    let label = index.get(String(row.label));
    if (label === undefined && options.classNames && /^\d+$/.test(String(row.label))) {
      const k = Number(row.label);
      if (k < classNames.length) label = k;
    }
    if (label === undefined) {
      options.skips.record({
        source: options.source, path: `${file}:${row.line}`, reason: 'unknown_label',
        detail: `label "${row.label}" is not one of the ${classNames.length} class names`,
      });
      continue;
    }
    paths.push(resolved);
    labels.push(label);
    lines.push(row.line);
  }
  if (paths.length === 0) throw new DatasetError(`manifest ${file} has no usable rows`);
  return { classNames, paths, labels: Int32Array.from(labels), lines: Int32Array.from(lines) };
}

/** Real paths looked up at once (a manifest may have a million rows). */
const REALPATH_CONCURRENCY = 64;

/**
 * Each row's absolute path when it lies under the root, else undefined (and an `outside_root`
 * skip). Checked twice: the path as written (`..`, absolute paths), then its real path, so a
 * symlink inside the root that points out of it does not count as inside. A file that does
 * not exist cannot be read anyway: it is left to the decoder, which skips it as unreadable.
 */
async function confineToRoot(rows: readonly ManifestRow[], root: string, file: string, options: ManifestOptions): Promise<(string | undefined)[]> {
  const rootAbs = path.resolve(root);
  let rootReal: string;
  try {
    rootReal = await realpath(rootAbs);
  } catch (cause) {
    throw new DatasetError(`manifest ${file}: its root folder ${rootAbs} cannot be read (${(cause as Error).message}); set data.root to the folder that holds the images`, { cause });
  }
  const outside = (row: ManifestRow, detail: string): undefined => {
    options.skips.record({ source: options.source, path: `${file}:${row.line}`, reason: 'outside_root', detail: `"${row.path}" ${detail}; only files under ${rootAbs} are read (data.root sets the folder)` });
    return undefined;
  };
  const result: (string | undefined)[] = new Array(rows.length);
  for (let start = 0; start < rows.length; start += REALPATH_CONCURRENCY) {
    const chunk = rows.slice(start, start + REALPATH_CONCURRENCY);
    const checked = await Promise.all(chunk.map(async (row) => {
      const resolved = path.resolve(rootAbs, row.path);
      if (!isInside(rootAbs, resolved)) return outside(row, 'is outside the root folder');
      let real: string;
      try {
        real = await realpath(resolved);
      } catch {
        return resolved;
      }
      return isInside(rootReal, real) ? resolved : outside(row, `is a link to ${real}, outside the root folder`);
    }));
    checked.forEach((value, k) => (result[start + k] = value));
  }
  return result;
}

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative !== '' && !relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative);
}
