// Bit-exact conversions between float32 and the 16-bit float formats (IEEE half, bfloat16).
// Everything goes through the float32 bit pattern so results never depend on how a runtime
// rounds doubles; f32 -> 16-bit rounds to nearest, ties to even, like numpy and PyTorch.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** True on little-endian hosts (all current targets); the readers fall back to DataView otherwise. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

export function bitsF32(b: number): number {
  u32[0] = b >>> 0;
  return f32[0];
}

/** float32 (any number is first rounded to float32) -> IEEE half bits, round-to-nearest-even. */
export function f32ToF16Bits(x: number): number {
  const b = f32Bits(x);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) {
    // Keep NaN a NaN even when its payload lives only in the low 13 bits.
    return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00;
  }
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or rounds up to the smallest normal, which the carry encodes).
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, up to infinity: exactly right.
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

let f16Table: Float32Array | null = null;

/** All 65536 half values as float32 (exact: every half is a float32), built once (256 KB). */
export function f16Table32(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  const bits = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      t[h] = (mant * 2 ** -24) * (sign ? -1 : 1);
    } else if (exp === 0x1f) {
      bits[h] = sign | 0x7f800000 | (mant << 13);
    } else {
      bits[h] = sign | ((exp + 112) << 23) | (mant << 13);
    }
  }
  f16Table = t;
  return t;
}

export function f16BitsToF32(h: number): number {
  return f16Table32()[h & 0xffff];
}

/** float32 -> bfloat16 bits, round-to-nearest-even; NaN stays NaN (quiet). */
export function f32ToBf16Bits(x: number): number {
  const b = f32Bits(x);
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) return (b >>> 16) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) / 65536) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  return bitsF32((h & 0xffff) << 16);
}

export function f32ArrayToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}

export function f32ArrayToBf16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(src[i]);
  return out;
}

export function f16ArrayToF32(src: Uint16Array): Float32Array {
  const t = f16Table32();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}

export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const ob = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) ob[i] = src[i] << 16;
  return out;
}
