// Exact grids of the GGUF block types, for solvers that move one integer code at a time and
// must score exactly the value ggml will decode.
//
// Every group (a block of 32 for Q4_0..Q8_0; a sub-block of 16 for Q2_K, Q3_K, Q6_K and of 32
// for Q4_K, Q5_K) decodes code c in 0..maxq to
//
//     value(c) = a * f32(c - z) + b        (two float32 operations, nothing fused)
//
// with a fixed integer zero z per type and (a, b) per group, bit for bit what ggml's
// dequantize_row_* computes:
//   type  maxq  z    a                    b              ggml's expression
//   Q4_0   15   8    d                    -0             (q - 8) * d
//   Q5_0   31   16   d                    -0             (q - 16) * d
//   Q8_0  255   128  d                    -0             qs * d, qs = c - 128 (int8)
//   Q4_1   15   0    d                    m              q * d + m
//   Q5_1   31   0    d                    m              q * d + m
//   Q2_K    3   0    d * sc               -(dmin * mn)   (d * sc) * q - dmin * mn
//   Q3_K    7   4    d * (sc - 32)        -0             (d * (sc - 32)) * (q - 4)
//   Q4_K   15   0    d * sc               -(dmin * mn)   (d * sc) * q - dmin * mn
//   Q5_K   31   0    d * sc               -(dmin * mn)   (d * sc) * q - dmin * mn
//   Q6_K   63   32   d * sc (sc int8)     -0             (d * sc) * (q - 32)
// d, m, dmin are the stored halves widened to f32; sc, mn the sub-block integer codes. Adding
// b = -0 is the identity on every float (it keeps -0), and x - y is x + (-y) in IEEE
// arithmetic, so each row above is ggml's own expression. Each product above is exact in f32
// (a half has at most 11 significant bits, |sc| <= 128 at most 7, |c - z| <= 128 at most 7,
// and no type combines the widest two: Q6_K reaches 11 + 7 + 5 = 23 bits, Q8_0 11 + 7; no
// underflow: the smallest half is 2^-24), so the one rounding is the final addition:
// value(c) = round_f32(a * (c - z) + b) computed exactly (the tests check this in integers).
// Written as a * c + b' (b' = b - a * z), the symmetric types give the same real values but
// +0 where ggml gives -0 (a < 0, c = z), which is why z is kept separate.

import {
  fp16ToFp32, fp32ToFp16, imax, imin, loadB, loadF, loadH, nearestInt, storeB, storeF, storeH, toI8,
} from './common';
import {
  packQ3, packQ3Scales, packQ4K, packQ5K, packQ6K, pack2, packScaleMinK4, q3ScaleCode, scaleMinK4, kMin,
  unpack2, unpackQ3, unpackQ4K, unpackQ5K, unpackQ6K,
} from './kquants';
import { signedExtreme } from './legacy';
import { GROUP_MAX_EPS } from './search';

/** Elements per group of a block type's grid (0: not a block type). */
export function ggufGroupSize(type: i32): i32 {
  switch (type) {
    case 2: case 3: case 6: case 7: case 8: case 12: case 13: return 32;
    case 10: case 11: case 14: return 16;
    default: return 0;
  }
}

/** Largest code of a block type (codes are 0..maxq). */
export function ggufMaxq(type: i32): i32 {
  switch (type) {
    case 2: case 3: case 12: return 15;
    case 6: case 7: case 13: return 31;
    case 8: return 255;
    case 10: return 3;
    case 11: return 7;
    case 14: return 63;
    default: return 0;
  }
}

/** The fixed zero z of value(c) = a * (c - z) + b. */
export function ggufZero(type: i32): i32 {
  switch (type) {
    case 2: return 8;
    case 6: return 16;
    case 8: return 128;
    case 11: return 4;
    case 14: return 32;
    default: return 0;
  }
}

// @ts-ignore: decorator
@inline function isK(type: i32): bool {
  return type >= 10;
}
// @ts-ignore: decorator
@inline function blockElems(type: i32): i32 {
  return isK(type) ? 256 : 32;
}
// Byte offsets of the stored halves: first (d), second (m or dmin; -1 when absent).
function halfA(type: i32): i32 {
  return type == 10 ? 80 : type == 11 ? 108 : type == 14 ? 208 : 0;
}
function halfB(type: i32): i32 {
  return type == 3 || type == 7 || type == 12 || type == 13 ? 2 : type == 10 ? 82 : -1;
}
function blockBytes(type: i32): i32 {
  switch (type) {
    case 2: return 18; case 3: return 20; case 6: return 22; case 7: return 24; case 8: return 34;
    case 10: return 84; case 11: return 110; case 12: return 144; case 13: return 176; default: return 210;
  }
}

/** value(c) = a * f32(c - z) + b: the one expression every type decodes with. */
// @ts-ignore: decorator
@inline export function gridValue(a: f32, z: i32, b: f32, code: i32): f32 {
  return a * <f32>(code - z) + b;
}

// ---- stored parameters <-> per-group affine maps ------------------------------------

/**
 * (a, b) of every group of one block from its stored parameters: halves h[0] = d,
 * h[1] = m/dmin (fp16 bits at hp), sub-block codes at sc and mn (k-quants).
 */
export function blockAffine(type: i32, hp: usize, sc: usize, mn: usize, ga: usize, gb: usize): void {
  const d = fp16ToFp32(<u32>load<u16>(hp));
  const second = fp16ToFp32(<u32>load<u16>(hp + 2));
  if (!isK(type)) {
    storeF(ga, 0, d);
    storeF(gb, 0, type == 3 || type == 7 ? second : <f32>-0.0);
    return;
  }
  const groups = 256 / ggufGroupSize(type);
  for (let j = 0; j < groups; j++) {
    const s = loadB(sc, j);
    if (type == 11) {
      storeF(ga, j, d * <f32>(s - 32));
      storeF(gb, j, <f32>-0.0);
    } else if (type == 14) {
      storeF(ga, j, d * <f32>toI8(s));
      storeF(gb, j, <f32>-0.0);
    } else {
      storeF(ga, j, d * <f32>s);
      storeF(gb, j, -(second * <f32>loadB(mn, j)));
    }
  }
}

/**
 * Per-group (a, b) for rows x cols of stored parameters: halves [rows * blocks * 2] u16,
 * subScales / subMins [rows * groups] u8 (k-quants; ignored otherwise), ga / gb
 * [rows * groups] f32.
 */
export function ggufGroupAffine(type: i32, halves: usize, subScales: usize, subMins: usize, rows: i32, cols: i32, ga: usize, gb: usize): void {
  const blocks = rows * (cols / blockElems(type));
  const gpb = blockElems(type) / ggufGroupSize(type); // groups per block
  for (let i = 0; i < blocks; i++) {
    const g = <usize>(i * gpb);
    blockAffine(type, halves + (<usize>i << 2), subScales + g, subMins + g, ga + (g << 2), gb + (g << 2));
  }
}

/** value(code) of every element: the grid's own evaluation of ggml's dequantization. */
export function ggufGridValues(type: i32, codes: usize, ga: usize, gb: usize, rows: i32, cols: i32, out: usize): void {
  const gs = ggufGroupSize(type), z = ggufZero(type);
  const n = rows * cols;
  for (let i = 0; i < n; i++) {
    const g = i / gs;
    storeF(out, i, gridValue(loadF(ga, g), z, loadF(gb, g), loadB(codes, i)));
  }
}

// ---- bytes <-> codes + stored parameters ---------------------------------------------

/**
 * Splits rows of `type` blocks at src into codes [rows * cols] u8 (0..maxq), halves
 * [rows * blocks * 2] u16 (d, then m/dmin or 0), subScales / subMins [rows * groups] u8
 * (k-quants: Q2_K 4-bit scale and min; Q3_K 6-bit scale code, value code - 32; Q4_K/Q5_K
 * 6-bit scale and min; Q6_K the int8 scale's byte), and the per-group (a, b) at ga / gb.
 */
export function ggufDecodeGrid(
  type: i32, src: usize, rows: i32, cols: i32,
  codes: usize, halves: usize, subScales: usize, subMins: usize, ga: usize, gb: usize,
): void {
  const be = blockElems(type), bb = blockBytes(type), gpb = be / ggufGroupSize(type);
  const blocks = rows * (cols / be);
  const ha = halfA(type), hb = halfB(type);
  for (let i = 0; i < blocks; i++) {
    const x = src + <usize>(i * bb);
    const L = codes + <usize>(i * be);
    const hp = halves + (<usize>i << 2);
    storeH(hp, 0, loadH(x, ha));
    storeH(hp, 2, hb >= 0 ? loadH(x, hb) : 0);
    const sc = subScales + <usize>(i * gpb), mn = subMins + <usize>(i * gpb);
    switch (type) {
      case 2: case 3: case 6: case 7: {
        const qs = x + (type == 2 ? 2 : type == 3 ? 4 : type == 6 ? 6 : 8);
        const qh: u32 = type == 6 || type == 7 ? load<u32>(x + (type == 6 ? 2 : 4)) : 0;
        for (let j = 0; j < 16; j++) {
          storeB(L, j, (loadB(qs, j) & 0xf) | <i32>(((qh >> j) & 1) << 4));
          storeB(L, j + 16, (loadB(qs, j) >> 4) | <i32>(((qh >> (j + 16)) & 1) << 4));
        }
        break;
      }
      case 8: {
        for (let j = 0; j < 32; j++) storeB(L, j, <i32>load<i8>(x + 2 + <usize>j) + 128);
        break;
      }
      case 10: {
        unpack2(x + 16, L);
        for (let j = 0; j < 16; j++) {
          storeB(sc, j, loadB(x, j) & 0xf);
          storeB(mn, j, loadB(x, j) >> 4);
        }
        break;
      }
      case 11: {
        unpackQ3(x, L);
        for (let j = 0; j < 16; j++) {
          storeB(sc, j, q3ScaleCode(x + 96, j));
          storeB(mn, j, 0);
        }
        break;
      }
      case 12: case 13: {
        if (type == 12) unpackQ4K(x + 16, L);
        else unpackQ5K(x, L);
        for (let j = 0; j < 8; j++) {
          storeB(sc, j, scaleMinK4(j, x + 4));
          storeB(mn, j, kMin);
        }
        break;
      }
      default: { // 14
        unpackQ6K(x, L);
        for (let j = 0; j < 16; j++) {
          storeB(sc, j, loadB(x, 192 + j));
          storeB(mn, j, 0);
        }
      }
    }
    blockAffine(type, hp, sc, mn, ga + (<usize>(i * gpb) << 2), gb + (<usize>(i * gpb) << 2));
  }
}

/** The inverse of ggufDecodeGrid: codes + stored parameters -> the blocks' bytes at dst.
 * Codes and sub-block codes must be in range (the caller checks). */
export function ggufEncodeGrid(
  type: i32, codes: usize, halves: usize, subScales: usize, subMins: usize, rows: i32, cols: i32, dst: usize,
): void {
  const be = blockElems(type), bb = blockBytes(type), gpb = be / ggufGroupSize(type);
  const blocks = rows * (cols / be);
  const ha = halfA(type), hb = halfB(type);
  const L = heap.alloc(256);
  for (let i = 0; i < blocks; i++) {
    const y = dst + <usize>(i * bb);
    memory.copy(L, codes + <usize>(i * be), <usize>be);
    const hp = halves + (<usize>i << 2);
    const sc = subScales + <usize>(i * gpb), mn = subMins + <usize>(i * gpb);
    storeH(y, ha, loadH(hp, 0));
    if (hb >= 0) storeH(y, hb, loadH(hp, 2));
    switch (type) {
      case 2: case 3: case 6: case 7: {
        const qs = y + (type == 2 ? 2 : type == 3 ? 4 : type == 6 ? 6 : 8);
        let qh: u32 = 0;
        for (let j = 0; j < 16; j++) {
          storeB(qs, j, (loadB(L, j) & 0xf) | ((loadB(L, j + 16) & 0xf) << 4));
          qh |= <u32>((loadB(L, j) >> 4) & 1) << j;
          qh |= <u32>((loadB(L, j + 16) >> 4) & 1) << (j + 16);
        }
        if (type == 6 || type == 7) store<u32>(y + (type == 6 ? 2 : 4), qh);
        break;
      }
      case 8: {
        for (let j = 0; j < 32; j++) storeB(y, 2 + j, loadB(L, j) - 128);
        break;
      }
      case 10: {
        for (let j = 0; j < 16; j++) storeB(y, j, loadB(sc, j) | (loadB(mn, j) << 4));
        pack2(L, y + 16);
        break;
      }
      case 11: {
        packQ3Scales(sc, y + 96);
        packQ3(L, y);
        break;
      }
      case 12: case 13: {
        packScaleMinK4(sc, mn, y + 4);
        if (type == 12) packQ4K(L, y + 16);
        else packQ5K(L, y);
        break;
      }
      default: { // 14
        for (let j = 0; j < 16; j++) storeB(y, 192 + j, loadB(sc, j));
        packQ6K(L, y);
      }
    }
  }
  heap.free(L);
}

// ---- round to nearest on a stored grid ---------------------------------------------------

/**
 * The code whose decoded value is nearest to x: the smallest |value(c) - x| (measured in f64,
 * exact for any two floats within 2^29 of each other in scale), ties to the code nearest z.
 * value(c) is monotone in c (a >= 0: non-decreasing; a < 0 handled by negating a, b and x,
 * which negates every value exactly), so the nearest values are the two around x, found by
 * walking from the rounded estimate; runs of equal values (possible when b dwarfs a) are
 * walked toward z.
 */
export function rtnCode(x: f32, a: f32, z: i32, b: f32, maxq: i32): i32 {
  if (a == 0) return z;
  if (a < 0) { a = -a; b = -b; x = -x; }
  let est = (<f64>x - <f64>b) / <f64>a + <f64>z;
  est = est < 0 ? 0 : est > <f64>maxq ? <f64>maxq : est;
  let c = <i32>nearest<f64>(est);
  // c becomes the first code with value >= x (maxq + 1 if none).
  if (gridValue(a, z, b, c) >= x) {
    while (c > 0 && gridValue(a, z, b, c - 1) >= x) c--;
  } else {
    while (c <= maxq && gridValue(a, z, b, c) < x) c++;
  }
  const below = c - 1, above = c;
  let pick: i32;
  if (below < 0) pick = above;
  else if (above > maxq) pick = below;
  else {
    const dLo = <f64>x - <f64>gridValue(a, z, b, below);
    const dHi = <f64>gridValue(a, z, b, above) - <f64>x;
    if (dLo < dHi) pick = below;
    else if (dHi < dLo) pick = above;
    else pick = z <= below ? below : above; // both values are nearest
  }
  // Walk the run of codes sharing pick's value toward z.
  const v = gridValue(a, z, b, pick);
  if (z > pick) {
    while (pick < maxq && pick < z && gridValue(a, z, b, pick + 1) == v) pick++;
  } else if (z < pick) {
    while (pick > 0 && pick > z && gridValue(a, z, b, pick - 1) == v) pick--;
  }
  return pick;
}

/** RTN codes of rows x cols values at x on the grids (ga, gb) (one pair per group). */
export function ggufRtnCodes(type: i32, x: usize, ga: usize, gb: usize, rows: i32, cols: i32, codes: usize): void {
  const gs = ggufGroupSize(type), z = ggufZero(type), maxq = ggufMaxq(type);
  const n = rows * cols;
  for (let i = 0; i < n; i++) {
    const g = i / gs;
    storeB(codes, i, rtnCode(loadF(x, i), loadF(ga, g), z, loadF(gb, g), maxq));
  }
}

// ---- storable grids from ranges ----------------------------------------------------------

/** Bytes of the per-block range scratch storeBlockGrid reads and writes: lo, hi, ext (the
 * groups' ranges, filled by the caller), scale and min (its own), 16 f32 each. */
export const RANGE_SCRATCH: usize = 5 * 64;

// @ts-ignore: decorator
@inline function rangeLo(r: usize): usize { return r; }
// @ts-ignore: decorator
@inline function rangeHi(r: usize): usize { return r + 64; }
// @ts-ignore: decorator
@inline function rangeExt(r: usize): usize { return r + 128; }
// @ts-ignore: decorator
@inline function rangeScale(r: usize): usize { return r + 192; }
// @ts-ignore: decorator
@inline function rangeMin(r: usize): usize { return r + 256; }

/** Q2_K / Q4_K / Q5_K: a sub-block's min-max scale from its range, as make_qkx2_quants
 * computes it before its search: min = min(lo, 0), scale = 1 / (nmax / (hi - min)), 0 for an
 * empty range. Never NaN for finite lo <= hi (an overflowing hi - min gives 0). */
// @ts-ignore: decorator
@inline export function asymUnitScale(nmax: i32, lo: f32, hi: f32): f32 {
  if (lo > 0) lo = 0;
  return hi != lo ? <f32>1 / (<f32>nmax / (hi - lo)) : <f32>0;
}
/** The same sub-block's stored min, -min(lo, 0) (-0 when lo > 0). */
// @ts-ignore: decorator
@inline export function asymUnitMin(lo: f32): f32 {
  return -(lo > 0 ? <f32>0 : lo);
}
/** Q3_K / Q6_K: a sub-block's signed scale from its signed extreme, as make_q3_quants /
 * make_qx_quants start: 1 / (-nmax / ext), 0 below GROUP_MAX_EPS. */
// @ts-ignore: decorator
@inline export function symUnitScale(nmax: i32, ext: f32): f32 {
  return Mathf.abs(ext) < GROUP_MAX_EPS ? <f32>0 : <f32>1 / (<f32>(-nmax) / ext);
}
/** Q3_K's 6-bit code of sub-scale s under iscale = -32 / (the signed largest sub-scale). */
// @ts-ignore: decorator
@inline export function q3SubCode(iscale: f32, s: f32): i32 {
  return imax(-32, imin(31, toI8(nearestInt(iscale * s)))) + 32;
}
/** Q6_K's int8 sub-scale of s under iscale = -128 / (the signed largest sub-scale). */
// @ts-ignore: decorator
@inline export function q6SubCode(iscale: f32, s: f32): i32 {
  return imax(-128, imin(127, nearestInt(iscale * s)));
}
/** Q2_K / Q4_K / Q5_K: the integer code (at most `top`) of scale or min v under its
 * super-scale's reciprocal is (top / the largest; 0 when that is 0), stored as ggml's uint8_t. */
// @ts-ignore: decorator
@inline export function kSubCode(top: i32, is: f32, v: f32): i32 {
  return imin(top, nearestInt(is * v) & 0xff);
}

/** Q4_0..Q8_0: the stored halves (d | m << 16) of a block whose range is lo, hi (signed
 * extreme ext), by storeBlockGrid's rule. */
export function legacyHalves(type: i32, lo: f32, hi: f32, ext: f32): u32 {
  let d: f32, m: f32 = 0;
  if (type == 2) d = ext / <f32>-8;
  else if (type == 6) d = ext / <f32>-16;
  else if (type == 8) {
    const l = Mathf.abs(lo), h = Mathf.abs(hi);
    d = (l > h ? l : h) / <f32>127;
  } else {
    d = (hi - lo) / <f32>(type == 3 ? 15 : 31);
    m = lo;
  }
  return fp32ToFp16(d) | ((type == 3 || type == 7 ? fp32ToFp16(m) : 0) << 16);
}

/**
 * The stored parameters of one block from its groups' ranges (lo/hi/ext at `ranges`, see
 * RANGE_SCRATCH), by the format's min-max rule:
 *   Q4_0 / Q5_0: d = ext / -8 (-16): the extreme lands on code 0 (ggml's quantize_row_*_ref)
 *   Q8_0:        d = max(|lo|, |hi|) / 127
 *   Q4_1 / Q5_1: d = (hi - lo) / 15 (31), m = lo
 * each stored as fp16. k-quants: each sub-block's min-max scale first, as make_qkx2_quants
 * computes it without its search (Q2_K, Q4_K, Q5_K: asymUnitScale / asymUnitMin) or
 * make_q3_quants / make_qx_quants without theirs (Q3_K, Q6_K: symUnitScale); then the
 * super-block step of ggml's reference quantizer: the largest sub-scale (and sub-min) sets the
 * fp16 super-scale so every integer sub-code fits (Q4_K/Q5_K: d = max/63, code = kSubCode;
 * Q2_K: /15; Q3_K: d = 1/(-32/ext), code = q3SubCode; Q6_K: d = 1/(-128/ext), code =
 * q6SubCode, ext the signed largest: the first of the largest magnitude).
 */
export function storeBlockGrid(type: i32, ranges: usize, hp: usize, sc: usize, mn: usize): void {
  const gLo = rangeLo(ranges), gHi = rangeHi(ranges), gExt = rangeExt(ranges);
  const gScale = rangeScale(ranges), gMin = rangeMin(ranges);
  if (!isK(type)) {
    store<u32>(hp, legacyHalves(type, loadF(gLo, 0), loadF(gHi, 0), loadF(gExt, 0)));
    return;
  }
  const groups = 256 / ggufGroupSize(type);
  if (type == 11 || type == 14) {
    const nmax = type == 11 ? 4 : 32;
    let maxScale: f32 = 0, amax: f32 = 0;
    for (let j = 0; j < groups; j++) {
      const s = symUnitScale(nmax, loadF(gExt, j));
      storeF(gScale, j, s);
      if (Mathf.abs(s) > amax) { amax = Mathf.abs(s); maxScale = s; }
    }
    storeH(hp, 2, 0);
    if (type == 11) {
      if (maxScale != 0) {
        const iscale: f32 = <f32>-32 / maxScale;
        for (let j = 0; j < 16; j++) storeB(sc, j, q3SubCode(iscale, loadF(gScale, j)));
        storeH(hp, 0, fp32ToFp16(<f32>1 / iscale));
      } else {
        for (let j = 0; j < 16; j++) storeB(sc, j, 0);
        storeH(hp, 0, fp32ToFp16(0));
      }
    } else {
      if (amax < GROUP_MAX_EPS) {
        for (let j = 0; j < 16; j++) storeB(sc, j, 0);
        storeH(hp, 0, 0);
      } else {
        const iscale: f32 = <f32>-128 / maxScale;
        storeH(hp, 0, fp32ToFp16(<f32>1 / iscale));
        for (let j = 0; j < 16; j++) storeB(sc, j, q6SubCode(iscale, loadF(gScale, j)));
      }
    }
    for (let j = 0; j < groups; j++) storeB(mn, j, 0);
    return;
  }
  const nmax = type == 10 ? 3 : type == 12 ? 15 : 31;
  let maxScale: f32 = 0, maxMin: f32 = 0;
  for (let j = 0; j < groups; j++) {
    const s = asymUnitScale(nmax, loadF(gLo, j), loadF(gHi, j));
    const m = asymUnitMin(loadF(gLo, j));
    storeF(gScale, j, s);
    storeF(gMin, j, m);
    if (s > maxScale) maxScale = s;
    if (m > maxMin) maxMin = m;
  }
  const top = type == 10 ? 15 : 63; // largest sub-code: 4 bits (Q2_K) or 6 bits
  const iS: f32 = maxScale > 0 ? <f32>top / maxScale : <f32>0;
  const iM: f32 = maxMin > 0 ? <f32>top / maxMin : <f32>0;
  for (let j = 0; j < groups; j++) {
    storeB(sc, j, kSubCode(top, iS, loadF(gScale, j)));
    storeB(mn, j, kSubCode(top, iM, loadF(gMin, j)));
  }
  storeH(hp, 0, fp32ToFp16(maxScale > 0 ? maxScale / <f32>top : <f32>0));
  storeH(hp, 2, fp32ToFp16(maxMin > 0 ? maxMin / <f32>top : <f32>0));
}

/** The range of group g (gs values at x): min, max and signed extreme (the first value of the
 * largest magnitude, as ggml picks it), each times the shrink factor p, into slot j of
 * `ranges`. p = 1 leaves them as they are. */
export function groupRange(x: usize, gs: i32, p: f32, ranges: usize, j: i32): void {
  let lo = loadF(x, 0), hi = lo;
  for (let k = 1; k < gs; k++) {
    const v = loadF(x, k);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  storeF(rangeLo(ranges), j, p * lo);
  storeF(rangeHi(ranges), j, p * hi);
  storeF(rangeExt(ranges), j, p * signedExtreme(x, gs));
}

/**
 * Stored parameters for rows x cols from per-group ranges lo / hi [rows * groups] f32. The
 * symmetric types use the range's signed extreme: hi if |hi| > |lo|, else lo.
 */
export function ggufGridFromRanges(
  type: i32, lo: usize, hi: usize, rows: i32, cols: i32, halves: usize, subScales: usize, subMins: usize,
): void {
  const be = blockElems(type), gpb = be / ggufGroupSize(type);
  const blocks = rows * (cols / be);
  const ranges = heap.alloc(RANGE_SCRATCH);
  for (let i = 0; i < blocks; i++) {
    for (let j = 0; j < gpb; j++) {
      const l = loadF(lo, i * gpb + j), h = loadF(hi, i * gpb + j);
      storeF(rangeLo(ranges), j, l);
      storeF(rangeHi(ranges), j, h);
      storeF(rangeExt(ranges), j, Mathf.abs(h) > Mathf.abs(l) ? h : l);
    }
    storeBlockGrid(type, ranges, halves + (<usize>i << 2), subScales + <usize>(i * gpb), subMins + <usize>(i * gpb));
  }
  heap.free(ranges);
}

/**
 * Candidate grids of OWC for rows x cols of weights at x: each group's own range shrunk by its
 * factor p [rows * groups] f32 (p * min, p * max; symmetric types p * their signed extreme,
 * first occurrence of the largest magnitude as ggml picks it), then stored as
 * ggufGridFromRanges stores. With p = 1 the legacy types get exactly the d (and m) of ggml's
 * quantize_row_*_ref.
 */
export function ggufCandidateGrid(
  type: i32, x: usize, p: usize, rows: i32, cols: i32, halves: usize, subScales: usize, subMins: usize,
): void {
  const be = blockElems(type), gs = ggufGroupSize(type), gpb = be / gs;
  const blocks = rows * (cols / be);
  const ranges = heap.alloc(RANGE_SCRATCH);
  for (let i = 0; i < blocks; i++) {
    for (let j = 0; j < gpb; j++) {
      const g = i * gpb + j;
      groupRange(x + (<usize>(g * gs) << 2), gs, loadF(p, g), ranges, j);
    }
    storeBlockGrid(type, ranges, halves + (<usize>i << 2), subScales + <usize>(i * gpb), subMins + <usize>(i * gpb));
  }
  heap.free(ranges);
}
