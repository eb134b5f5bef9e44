/**
 * bfloat16: the high 16 bits of an IEEE float32 (sign, 8-bit exponent, 7-bit mantissa). Same
 * range as float32 at about 3 significant digits, so gradients travel in half the bytes and a
 * decoded value is exactly a float32.
 */

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** The bfloat16 bits of a float32's bits, rounded to nearest, ties to even; NaN stays a NaN. */
export function bf16BitsOf(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
    // Truncating could clear every mantissa bit left (a NaN would become infinity): set the quiet bit.
    return ((bits >>> 16) | 0x0040) & 0xffff;
  }
  // Adding 0x7fff (+1 when the kept part is odd) carries into the kept bits exactly when the
  // dropped half is above one half (or at one half with an odd kept part). Overflow gives infinity, as it should.
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** One value rounded to bfloat16 and back. */
export function roundToBf16(value: number): number {
  scratch[0] = value;
  scratchBits[0] = bf16BitsOf(scratchBits[0]!) << 16;
  return scratch[0]!;
}

/** Encodes `values` as bfloat16 into `out` (a new array when not given). */
export function encodeBf16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  if (out.length < values.length) throw new RangeError(`bf16 output holds ${out.length} values, ${values.length} given`);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let j = 0; j < bits.length; j++) {
    const b = bits[j]!;
    out[j] = (b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0 ? (b >>> 16) | 0x0040 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Decodes bfloat16 values into `out` (exact: every bfloat16 is a float32). */
export function decodeBf16(values: Uint16Array, out: Float32Array = new Float32Array(values.length)): Float32Array {
  if (out.length < values.length) throw new RangeError(`float32 output holds ${out.length} values, ${values.length} given`);
  const bits = new Uint32Array(out.buffer, out.byteOffset, values.length);
  for (let j = 0; j < values.length; j++) bits[j] = values[j]! << 16;
  return out;
}

/** Rounds every value to the nearest bfloat16 in place: what a value holds after a bf16 round trip. */
export function roundArrayToBf16(values: Float32Array): Float32Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let j = 0; j < bits.length; j++) bits[j] = bf16BitsOf(bits[j]!) << 16;
  return values;
}
