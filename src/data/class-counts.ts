/**
 * Samples per class, and the check that catches a mistyped label: without `classNames`, every
 * distinct label becomes a class, so "catt" on one row would silently be a class of its own.
 */
import { DatasetError } from '../errors.ts';

/** Samples per class index. */
export function classCounts(labels: ArrayLike<number>, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
  return counts;
}

export interface ClassSizeCheck {
  classNames: readonly string[];
  labels: ArrayLike<number>;
  /** data.minClassSamples */
  min: number;
  /** The dataset, for the message: "manifest photos.csv", "folder ./photos". */
  where: string;
  /** Names sample i for the message: a manifest row ("photos.csv:14") or a file path. */
  describe: (i: number) => string;
}

/** Rows named per class in the message; the rest are counted. */
const ROWS_NAMED = 5;

/**
 * Throws a DatasetError naming every class that has samples but fewer than `min` of them, and
 * their rows. Classes with no sample at all only come from an explicit class list, which
 * was written on purpose: they pass.
 */
export function assertClassSizes(check: ClassSizeCheck): void {
  const counts = classCounts(check.labels, check.classNames.length);
  const small = counts.flatMap((n, label) => (n > 0 && n < check.min ? [label] : []));
  if (small.length === 0) return;
  const rows = new Map<number, string[]>(small.map((label) => [label, []]));
  for (let i = 0; i < check.labels.length; i++) {
    const named = rows.get(check.labels[i]!);
    if (named && named.length < ROWS_NAMED) named.push(check.describe(i));
  }
  const parts = small.map((label) => {
    const n = counts[label]!;
    const named = rows.get(label)!;
    return `"${check.classNames[label]}" has ${n} sample${n === 1 ? '' : 's'} (${named.join(', ')}${n > named.length ? `, ... ${n - named.length} more` : ''})`;
  });
  throw new DatasetError(
    `${check.where}: ${parts.join('; ')}; every class needs at least data.minClassSamples = ${check.min}. ` +
      'A mistyped label becomes a class of its own: fix the label, list the classes in data.classNames (unknown labels are then skipped), or lower data.minClassSamples.',
  );
}
