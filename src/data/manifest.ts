/**
 * CSV / JSONL manifests: one sample per row, a path (relative to the manifest's folder or
 * `root`) and a label (a class name, or an index into `classNames`). A bad row is a counted,
 * logged skip naming its line; a manifest with no usable row is an error.
 */
import { readFile } from 'node:fs/promises';
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
  const paths: string[] = [];
  const labels: number[] = [];
  for (const row of rows) {
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
    paths.push(path.resolve(root, row.path));
    labels.push(label);
  }
  if (paths.length === 0) throw new DatasetError(`manifest ${file} has no usable rows`);
  return { classNames, paths, labels: Int32Array.from(labels) };
}
