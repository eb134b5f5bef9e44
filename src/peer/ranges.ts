/** A contiguous slice `[start, start + count)` of a flat vector. */
export interface Range {
  readonly start: number;
  readonly count: number;
}

/**
 * Splits `length` elements into `parts` contiguous ranges in order, balanced to within one
 * element (the first `length % parts` ranges hold one more). Depends only on its arguments, so
 * every rank computes the same ranges; a range is empty when there are fewer elements than parts.
 */
export function splitRanges(length: number, parts: number): Range[] {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`length must be a non-negative integer, got ${length}`);
  if (!Number.isSafeInteger(parts) || parts < 1) throw new RangeError(`parts must be a positive integer, got ${parts}`);
  const base = Math.floor(length / parts);
  const longer = length % parts;
  const ranges: Range[] = [];
  let start = 0;
  for (let r = 0; r < parts; r++) {
    const count = base + (r < longer ? 1 : 0);
    ranges.push({ start, count });
    start += count;
  }
  return ranges;
}
