// GGUF (ggml) tensor types: ids, block shapes, and the scalar conversions ggml's quantizers
// are built from, reproduced operation for operation so every byte matches llama.cpp
// (ggml/src/ggml-common.h, ggml-impl.h, ggml-quants.c).

// ggml_type ids (ggml.h).
export const GGML_F32: i32 = 0;
export const GGML_F16: i32 = 1;
export const GGML_Q4_0: i32 = 2;
export const GGML_Q4_1: i32 = 3;
export const GGML_Q5_0: i32 = 6;
export const GGML_Q5_1: i32 = 7;
export const GGML_Q8_0: i32 = 8;
export const GGML_Q2_K: i32 = 10;
export const GGML_Q3_K: i32 = 11;
export const GGML_Q4_K: i32 = 12;
export const GGML_Q5_K: i32 = 13;
export const GGML_Q6_K: i32 = 14;
export const GGML_BF16: i32 = 30;

/** Super-block size of the k-quants (QK_K). */
export const QK_K: i32 = 256;

/** Elements per block (1 for the float types), or 0 for a type this module does not know. */
export function ggufBlockElems(type: i32): i32 {
  switch (type) {
    case GGML_F32: case GGML_F16: case GGML_BF16: return 1;
    case GGML_Q4_0: case GGML_Q4_1: case GGML_Q5_0: case GGML_Q5_1: case GGML_Q8_0: return 32;
    case GGML_Q2_K: case GGML_Q3_K: case GGML_Q4_K: case GGML_Q5_K: case GGML_Q6_K: return QK_K;
    default: return 0;
  }
}

/** Bytes per block (sizeof the ggml-common.h struct), or 0 for an unknown type. */
export function ggufBlockBytes(type: i32): i32 {
  switch (type) {
    case GGML_F32: return 4;
    case GGML_F16: case GGML_BF16: return 2;
    case GGML_Q4_0: return 18; // d, qs[16]
    case GGML_Q4_1: return 20; // d, m, qs[16]
    case GGML_Q5_0: return 22; // d, qh[4], qs[16]
    case GGML_Q5_1: return 24; // d, m, qh[4], qs[16]
    case GGML_Q8_0: return 34; // d, qs[32]
    case GGML_Q2_K: return 84; // scales[16], qs[64], d, dmin
    case GGML_Q3_K: return 110; // hmask[32], qs[64], scales[12], d
    case GGML_Q4_K: return 144; // d, dmin, scales[12], qs[128]
    case GGML_Q5_K: return 176; // d, dmin, scales[12], qh[32], qs[128]
    case GGML_Q6_K: return 210; // ql[128], qh[64], scales[16], d
    default: return 0;
  }
}

/** GGML_FP32_TO_FP16 (ggml-impl.h, after Maratyszcza/FP16): round to nearest even. */
export function fp32ToFp16(f: f32): u32 {
  const scaleToInf = reinterpret<f32>(<u32>0x77800000); // 0x1.0p+112f
  const scaleToZero = reinterpret<f32>(<u32>0x08800000); // 0x1.0p-110f
  let base: f32 = (Mathf.abs(f) * scaleToInf) * scaleToZero;
  const w = reinterpret<u32>(f);
  const shl1w: u32 = w + w;
  const sign: u32 = w & 0x80000000;
  let bias: u32 = shl1w & 0xff000000;
  if (bias < 0x71000000) bias = 0x71000000;
  base = reinterpret<f32>((bias >> 1) + 0x07800000) + base;
  const bits = reinterpret<u32>(base);
  const expBits: u32 = (bits >> 13) & 0x00007c00;
  const mantissaBits: u32 = bits & 0x00000fff;
  return (sign >> 16) | (shl1w > 0xff000000 ? 0x7e00 : expBits + mantissaBits);
}

/** GGML_FP16_TO_FP32 (ggml-impl.h): exact for every half. */
export function fp16ToFp32(h: u32): f32 {
  const w: u32 = (h & 0xffff) << 16;
  const sign: u32 = w & 0x80000000;
  const twoW: u32 = w + w;
  const expOffset: u32 = 0xe0 << 23;
  const expScale = reinterpret<f32>(<u32>0x07800000); // 0x1.0p-112f
  const normalized: f32 = reinterpret<f32>((twoW >> 4) + expOffset) * expScale;
  const denormalized: f32 = reinterpret<f32>((twoW >> 17) | (<u32>126 << 23)) - <f32>0.5;
  const denormalizedCutoff: u32 = 1 << 27;
  return reinterpret<f32>(sign | (twoW < denormalizedCutoff ? reinterpret<u32>(denormalized) : reinterpret<u32>(normalized)));
}

/** True when half bits h hold Inf or NaN. */
// @ts-ignore: decorator
@inline export function fp16NonFinite(h: u32): bool {
  return (h & 0x7c00) == 0x7c00;
}

/** ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet. */
export function fp32ToBf16(f: f32): u32 {
  const i = reinterpret<u32>(f);
  if ((i & 0x7fffffff) > 0x7f800000) return ((i >> 16) | 64) & 0xffff;
  return ((i + (0x7fff + ((i >> 16) & 1))) >> 16) & 0xffff;
}

/**
 * nearest_int (ggml-quants.c): adds 1.5 * 2^23 and reads the low mantissa bits. Round half to
 * even for |x| <= 4194303; outside that range llama.cpp's release build (NDEBUG, so no assert)
 * returns these same wrapped bits, and so do we.
 */
// @ts-ignore: decorator
@inline export function nearestInt(x: f32): i32 {
  return (reinterpret<i32>(x + <f32>12582912.0) & 0x007fffff) - 0x00400000;
}

/**
 * C's float -> integer conversion as x86-64 executes it (cvttss2si): truncation, and for NaN or
 * values outside int32 the "integer indefinite" 0x80000000. llama.cpp relies on this only when
 * a block's scale is a float32 subnormal (its reciprocal is Inf); its casts to int8_t/uint8_t
 * then keep the low byte of this 32-bit result, which is what callers do with it here.
 */
export function truncX86(x: f32): i32 {
  if (!(x >= <f32>-2147483648.0 && x < <f32>2147483648.0)) return i32.MIN_VALUE;
  return <i32>x; // in range: plain truncation
}

/** C roundf: nearest, halves away from zero (x - trunc(x) is exact). */
export function roundAway(x: f32): f32 {
  const t = Mathf.trunc(x);
  const frac = x - t;
  if (frac >= <f32>0.5) return t + 1;
  if (frac <= <f32>-0.5) return t - 1;
  return t;
}

/** Signed 8-bit wrap of an int (C's conversion to int8_t on two's-complement targets). */
// @ts-ignore: decorator
@inline export function toI8(v: i32): i32 {
  return (v << 24) >> 24;
}

// @ts-ignore: decorator
@inline export function imin(a: i32, b: i32): i32 {
  return a < b ? a : b;
}

// @ts-ignore: decorator
@inline export function imax(a: i32, b: i32): i32 {
  return a > b ? a : b;
}

// @ts-ignore: decorator
@inline export function loadF(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}

// @ts-ignore: decorator
@inline export function storeF(p: usize, i: i32, v: f32): void {
  store<f32>(p + (<usize>i << 2), v);
}

// @ts-ignore: decorator
@inline export function loadB(p: usize, i: i32): i32 {
  return <i32>load<u8>(p + <usize>i);
}

// @ts-ignore: decorator
@inline export function storeB(p: usize, i: i32, v: i32): void {
  store<u8>(p + <usize>i, <u8>v);
}

// @ts-ignore: decorator
@inline export function loadH(p: usize, off: i32): u32 {
  return <u32>load<u16>(p + <usize>off);
}

// @ts-ignore: decorator
@inline export function storeH(p: usize, off: i32, h: u32): void {
  store<u16>(p + <usize>off, <u16>h);
}
