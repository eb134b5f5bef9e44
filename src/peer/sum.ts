/**
 * out = parts[0] + parts[1] + ... in that order, every partial sum rounded to float32: exactly
 * what the loop `acc = c0; acc += c1; ...` over Float32Arrays gives, so the result depends only
 * on the order of the parts. Up to four parts are added per pass over `out` (Math.fround after
 * each addition keeps the float32 rounding of every step), as memory traffic is what costs.
 */
export function sumInOrder(out: Float32Array, parts: readonly Float32Array[]): Float32Array {
  for (const part of parts) {
    if (part.length !== out.length) throw new RangeError(`a part of ${part.length} values for a sum of ${out.length}`);
  }
  if (parts.length === 0) return out.fill(0);
  // The first pass reads the first two parts rather than copying one (one pass less over `out`).
  const first = parts[0]!;
  let k = 1;
  if (parts.length === 1) out.set(first);
  else {
    const second = parts[1]!;
    for (let j = 0; j < out.length; j++) out[j] = first[j]! + second[j]!;
    k = 2;
  }
  for (; k + 3 <= parts.length; k += 3) {
    const a = parts[k]!;
    const b = parts[k + 1]!;
    const c = parts[k + 2]!;
    for (let j = 0; j < out.length; j++) out[j] = Math.fround(Math.fround(out[j]! + a[j]!) + b[j]!) + c[j]!;
  }
  for (; k < parts.length; k++) {
    const a = parts[k]!;
    for (let j = 0; j < out.length; j++) out[j]! += a[j]!;
  }
  return out;
}
