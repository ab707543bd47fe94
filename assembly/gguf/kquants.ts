// The k-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (ggml-quants.c): super-blocks of 256 with
// sub-block scales stored as small integers under fp16 super-scales. The reference quantizers
// (quantize_row_*_ref: no importance matrix), the importance-weighted ones
// (quantize_row_*_impl), the dequantizers, and the code/scale (un)packing shared with grid.ts.
//
// Layouts (ggml-common.h):
//   Q2_K  84 B: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin
//   Q3_K 110 B: hmask[32], qs[64], scales[12] (16 x 6 bits), d
//   Q4_K 144 B: d, dmin, scales[12] (8 scales + 8 mins, 6 bits each), qs[128]
//   Q5_K 176 B: d, dmin, scales[12], qh[32], qs[128]
//   Q6_K 210 B: ql[128], qh[64], scales[16] (int8), d

import {
  QK_K, fp16ToFp32, fp32ToFp16, imax, imin, loadB, loadF, loadH, nearestInt, storeB, storeF, storeH, toI8,
} from './common';
import { GROUP_MAX_EPS, makeQ3Quants, makeQkxQuants, makeQpQuants, makeQxQuants, theMin } from './search';

// ---- code and scale packing (bijective: every byte pattern is some codes + scales) ------

/** 256 codes (bytes at L) -> 2-bit fields of qs[64] (Q2_K, and Q3_K's low bits):
 * element j + 32*s + 128*h sits at bits 2s of qs[32h + j]. */
export function pack2(L: usize, qs: usize): void {
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      storeB(qs, j / 4 + l,
        loadB(L, j + l) | (loadB(L, j + l + 32) << 2) | (loadB(L, j + l + 64) << 4) | (loadB(L, j + l + 96) << 6));
    }
  }
}
export function unpack2(qs: usize, L: usize): void {
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      const b = loadB(qs, j / 4 + l);
      for (let s = 0; s < 4; s++) storeB(L, j + l + 32 * s, (b >> (2 * s)) & 3);
    }
  }
}

/** Q3_K codes 0..7 -> hmask (bit 2 of element j at bit j/32 of hmask[j%32]) and qs. Uses
 * L as scratch (its high bits are cleared, as in ggml). */
export function packQ3(L: usize, y: usize): void {
  for (let m = 0; m < 32; m++) storeB(y, m, 0);
  let m = 0, hm = 1;
  for (let j = 0; j < QK_K; j++) {
    if (loadB(L, j) > 3) {
      storeB(y, m, loadB(y, m) | hm);
      storeB(L, j, loadB(L, j) - 4);
    }
    if (++m == QK_K / 8) { m = 0; hm <<= 1; }
  }
  pack2(L, y + 32);
}
export function unpackQ3(y: usize, L: usize): void {
  unpack2(y + 32, L);
  for (let j = 0; j < QK_K; j++) {
    if (loadB(y, j & 31) & (1 << (j >> 5))) storeB(L, j, loadB(L, j) + 4);
  }
}

/** Q3_K's sixteen 6-bit scales (bytes 0..63 at ls) -> scales[12]. */
export function packQ3Scales(ls: usize, sc: usize): void {
  for (let j = 0; j < 12; j++) storeB(sc, j, 0);
  for (let j = 0; j < 16; j++) {
    let l = loadB(ls, j);
    if (j < 8) storeB(sc, j, l & 0xf);
    else storeB(sc, j - 8, loadB(sc, j - 8) | ((l & 0xf) << 4));
    l >>= 4;
    storeB(sc, j % 4 + 8, loadB(sc, j % 4 + 8) | (l << (2 * (j / 4))));
  }
}
/** scales[12] -> the sixteen 6-bit codes (the stored scale is code - 32). */
export function q3ScaleCode(sc: usize, j: i32): i32 {
  const low = j < 8 ? loadB(sc, j) & 0xf : loadB(sc, j - 8) >> 4;
  return low | (((loadB(sc, 8 + j % 4) >> (2 * (j / 4))) & 3) << 4);
}

/** Q4_K/Q5_K: eight 6-bit scales and mins -> scales[12] (as the quantizers pack them). */
export function packScaleMinK4(ls: usize, lm: usize, q: usize): void {
  for (let j = 0; j < 8; j++) {
    const s = loadB(ls, j), m = loadB(lm, j);
    if (j < 4) {
      storeB(q, j, s);
      storeB(q, j + 4, m);
    } else {
      storeB(q, j + 4, (s & 0xf) | ((m & 0xf) << 4));
      storeB(q, j - 4, loadB(q, j - 4) | ((s >> 4) << 6));
      storeB(q, j, loadB(q, j) | ((m >> 4) << 6));
    }
  }
}
/** get_scale_min_k4: sub-block j's 6-bit scale (return) and min (kMin). */
export let kMin: i32 = 0;
export function scaleMinK4(j: i32, q: usize): i32 {
  if (j < 4) {
    kMin = loadB(q, j + 4) & 63;
    return loadB(q, j) & 63;
  }
  kMin = (loadB(q, j + 4) >> 4) | ((loadB(q, j) >> 6) << 4);
  return (loadB(q, j + 4) & 0xf) | ((loadB(q, j - 4) >> 6) << 4);
}

/** Q4_K codes 0..15: elements 64k + l and 64k + 32 + l share byte qs[32k + l]. */
export function packQ4K(L: usize, q: usize): void {
  for (let j = 0; j < QK_K; j += 64) {
    for (let l = 0; l < 32; l++) storeB(q, j / 2 + l, loadB(L, j + l) | (loadB(L, j + l + 32) << 4));
  }
}
export function unpackQ4K(q: usize, L: usize): void {
  for (let j = 0; j < QK_K; j += 64) {
    for (let l = 0; l < 32; l++) {
      const b = loadB(q, j / 2 + l);
      storeB(L, j + l, b & 0xf);
      storeB(L, j + l + 32, b >> 4);
    }
  }
}

/** Q5_K codes 0..31: low nibbles as Q4_K in qs (at y+48), bit 4 in qh[32] (at y+16). */
export function packQ5K(L: usize, y: usize): void {
  const qh = y + 16;
  for (let j = 0; j < 32; j++) storeB(qh, j, 0);
  let m1 = 1, m2 = 2;
  for (let n = 0; n < QK_K; n += 64) {
    for (let j = 0; j < 32; j++) {
      let l1 = loadB(L, n + j);
      if (l1 > 15) { l1 -= 16; storeB(qh, j, loadB(qh, j) | m1); }
      let l2 = loadB(L, n + j + 32);
      if (l2 > 15) { l2 -= 16; storeB(qh, j, loadB(qh, j) | m2); }
      storeB(y + 48, n / 2 + j, l1 | (l2 << 4));
    }
    m1 <<= 2;
    m2 <<= 2;
  }
}
export function unpackQ5K(y: usize, L: usize): void {
  unpackQ4K(y + 48, L);
  for (let n = 0; n < QK_K; n += 64) {
    const s = n / 32; // bit of qh for the first half of this 64
    for (let j = 0; j < 32; j++) {
      const h = loadB(y + 16, j);
      if (h & (1 << s)) storeB(L, n + j, loadB(L, n + j) + 16);
      if (h & (2 << s)) storeB(L, n + j + 32, loadB(L, n + j + 32) + 16);
    }
  }
}

/** Q6_K codes 0..63: low nibbles in ql[128], high 2 bits in qh[64]. */
export function packQ6K(L: usize, y: usize): void {
  let ql = y, qh = y + 128;
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      const q1 = loadB(L, j + l) & 0xf, q2 = loadB(L, j + l + 32) & 0xf;
      const q3 = loadB(L, j + l + 64) & 0xf, q4 = loadB(L, j + l + 96) & 0xf;
      storeB(ql, l, q1 | (q3 << 4));
      storeB(ql, l + 32, q2 | (q4 << 4));
      storeB(qh, l,
        (loadB(L, j + l) >> 4) | ((loadB(L, j + l + 32) >> 4) << 2) |
        ((loadB(L, j + l + 64) >> 4) << 4) | ((loadB(L, j + l + 96) >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}
export function unpackQ6K(y: usize, L: usize): void {
  let ql = y, qh = y + 128;
  for (let j = 0; j < QK_K; j += 128) {
    for (let l = 0; l < 32; l++) {
      const h = loadB(qh, l);
      storeB(L, j + l, (loadB(ql, l) & 0xf) | (((h >> 0) & 3) << 4));
      storeB(L, j + l + 32, (loadB(ql, l + 32) & 0xf) | (((h >> 2) & 3) << 4));
      storeB(L, j + l + 64, (loadB(ql, l) >> 4) | (((h >> 4) & 3) << 4));
      storeB(L, j + l + 96, (loadB(ql, l + 32) >> 4) | (((h >> 6) & 3) << 4));
    }
    ql += 64;
    qh += 32;
  }
}

// ---- quantizers -------------------------------------------------------------------------

// Scratch layout (bytes) shared by the k-quant quantizers.
const S_L = 0; //        u8[256]  codes
const S_LAUX = 256; //   u8[32]
const S_W = 288; //      f32[32]  weights
const S_SCALES = 416; // f32[16]
const S_MINS = 480; //   f32[16]
const S_SW = 544; //     f32[16]
const S_LS = 608; //     u8[16]
const S_LM = 624; //     u8[16]
export const KQUANT_SCRATCH: i32 = 640;

/** Requantizes one sub-block's codes on the stored grid, as every k-quant quantizer ends:
 * l = clamp(nearest_int((x + dm) / d), 0, nmax); with dm = 0 and lo = -zero for the
 * symmetric types (l = clamp(nearest_int(x / d), -zero, nmax - zero) + zero). */
function requantize(x: usize, L: usize, n: i32, d: f32, dm: f32, zero: i32, nmax: i32): void {
  for (let ii = 0; ii < n; ii++) {
    const l = zero
      ? imax(-zero, imin(nmax - zero, nearestInt(loadF(x, ii) / d))) + zero
      : imax(0, imin(nmax, nearestInt((loadF(x, ii) + dm) / d)));
    storeB(L, ii, l);
  }
}

// quantize_row_q2_K_ref / quantize_row_q2_K_impl for one super-block.
function quantizeQ2KBlock(x: usize, y: usize, qw: usize, s: usize): void {
  const L = s + S_L, Laux = s + S_LAUX, w = s + S_W, scales = s + S_SCALES, mins = s + S_MINS;
  if (!qw) {
    let maxScale: f32 = 0, maxMin: f32 = 0;
    for (let j = 0; j < 16; j++) {
      for (let l = 0; l < 16; l++) storeF(w, l, Mathf.abs(loadF(x, 16 * j + l)));
      const sc = makeQkxQuants(16, 3, x + (<usize>(16 * j) << 2), w, L + 16 * j, Laux, <f32>-0.5, <f32>0.1, 15, true, false);
      storeF(scales, j, sc);
      storeF(mins, j, theMin);
      if (sc > maxScale) maxScale = sc;
      if (theMin > maxMin) maxMin = theMin;
    }
    if (maxScale > 0) {
      const iscale: f32 = <f32>15 / maxScale;
      for (let j = 0; j < 16; j++) storeB(y, j, nearestInt(iscale * loadF(scales, j)));
      storeH(y, 80, fp32ToFp16(maxScale / <f32>15));
    } else {
      for (let j = 0; j < 16; j++) storeB(y, j, 0);
      storeH(y, 80, fp32ToFp16(0));
    }
    if (maxMin > 0) {
      const iscale: f32 = <f32>15 / maxMin;
      for (let j = 0; j < 16; j++) storeB(y, j, loadB(y, j) | (nearestInt(iscale * loadF(mins, j)) << 4));
      storeH(y, 82, fp32ToFp16(maxMin / <f32>15));
    } else {
      storeH(y, 82, fp32ToFp16(0));
    }
  } else {
    const sw = s + S_SW, Ls = s + S_LS, Lm = s + S_LM;
    let sumX2: f32 = 0;
    for (let j = 0; j < QK_K; j++) sumX2 += loadF(x, j) * loadF(x, j);
    const sigma2: f32 = sumX2 / <f32>QK_K;
    for (let j = 0; j < 16; j++) {
      for (let l = 0; l < 16; l++) {
        const xv = loadF(x, 16 * j + l);
        storeF(w, l, loadF(qw, 16 * j + l) * Mathf.sqrt(sigma2 + xv * xv));
      }
      let sum: f32 = 0;
      for (let l = 0; l < 16; l++) sum += loadF(w, l);
      storeF(sw, j, sum);
      storeF(scales, j, makeQkxQuants(16, 3, x + (<usize>(16 * j) << 2), w, L + 16 * j, Laux, <f32>-0.9, <f32>0.05, 36, false, true));
      storeF(mins, j, theMin);
    }
    const dm = makeQpQuants(16, 15, scales, Ls, sw);
    const mm = makeQpQuants(16, 15, mins, Lm, sw);
    storeH(y, 80, fp32ToFp16(dm));
    storeH(y, 82, fp32ToFp16(mm));
    for (let j = 0; j < 16; j++) storeB(y, j, loadB(Ls, j) | (loadB(Lm, j) << 4));
  }
  const d = fp16ToFp32(loadH(y, 80)), dmin = fp16ToFp32(loadH(y, 82));
  for (let j = 0; j < 16; j++) {
    const dl: f32 = d * <f32>(loadB(y, j) & 0xf);
    if (dl == 0) continue; // keeps the search's codes
    requantize(x + (<usize>(16 * j) << 2), L + 16 * j, 16, dl, dmin * <f32>(loadB(y, j) >> 4), 0, 3);
  }
  pack2(L, y + 16);
}

// quantize_row_q3_K_ref / quantize_row_q3_K_impl for one super-block.
function quantizeQ3KBlock(x: usize, y: usize, qw: usize, s: usize): void {
  const L = s + S_L, w = s + S_W, scales = s + S_SCALES, sw = s + S_SW, Ls = s + S_LS;
  const sc = y + 96;
  if (!qw) {
    let maxScale: f32 = 0, amax: f32 = 0;
    for (let j = 0; j < 16; j++) {
      const v = makeQ3Quants(16, 4, x + (<usize>(16 * j) << 2), L + 16 * j);
      storeF(scales, j, v);
      if (Mathf.abs(v) > amax) { amax = Mathf.abs(v); maxScale = v; }
    }
    if (maxScale != 0) {
      const iscale: f32 = <f32>-32 / maxScale;
      for (let j = 0; j < 16; j++) {
        const l = toI8(nearestInt(iscale * loadF(scales, j))); // int8_t l = nearest_int(...)
        storeB(Ls, j, imax(-32, imin(31, l)) + 32);
      }
      packQ3Scales(Ls, sc);
      storeH(y, 108, fp32ToFp16(<f32>1 / iscale));
    } else {
      for (let j = 0; j < 12; j++) storeB(sc, j, 0);
      storeH(y, 108, fp32ToFp16(0));
    }
  } else {
    let sumX2: f32 = 0;
    for (let j = 0; j < QK_K; j++) sumX2 += loadF(x, j) * loadF(x, j);
    const sigma2: f32 = <f32>2 * sumX2 / <f32>QK_K;
    for (let j = 0; j < 16; j++) {
      for (let l = 0; l < 16; l++) {
        const xv = loadF(x, 16 * j + l);
        storeF(w, l, loadF(qw, 16 * j + l) * Mathf.sqrt(sigma2 + xv * xv));
      }
      let sum: f32 = 0;
      for (let l = 0; l < 16; l++) sum += loadF(w, l);
      storeF(sw, j, sum);
      storeF(scales, j, makeQxQuants(16, 4, x + (<usize>(16 * j) << 2), L + 16 * j, w));
    }
    const dBlock = makeQxQuants(16, 32, scales, Ls, sw);
    packQ3Scales(Ls, sc);
    storeH(y, 108, fp32ToFp16(dBlock));
  }
  const dAll = fp16ToFp32(loadH(y, 108));
  for (let j = 0; j < 16; j++) {
    const d: f32 = dAll * <f32>(q3ScaleCode(sc, j) - 32);
    if (d == 0) continue;
    requantize(x + (<usize>(16 * j) << 2), L + 16 * j, 16, d, 0, 4, 7);
  }
  packQ3(L, y);
}

// quantize_row_q4_K/q5_K _ref / _impl for one super-block (nmax 15 or 31).
function quantizeQ45KBlock(x: usize, y: usize, qw: usize, s: usize, nmax: i32): void {
  const L = s + S_L, Laux = s + S_LAUX, w = s + S_W, scales = s + S_SCALES, mins = s + S_MINS;
  const Ls = s + S_LS, Lm = s + S_LM;
  if (!qw) {
    let maxScale: f32 = 0, maxMin: f32 = 0;
    for (let j = 0; j < 8; j++) {
      const xj = x + (<usize>(32 * j) << 2);
      let sumX2: f32 = 0;
      for (let l = 0; l < 32; l++) sumX2 += loadF(xj, l) * loadF(xj, l);
      const avX = Mathf.sqrt(sumX2 / <f32>32);
      for (let l = 0; l < 32; l++) storeF(w, l, avX + Mathf.abs(loadF(xj, l)));
      const v = nmax == 15
        ? makeQkxQuants(32, 15, xj, w, L + 32 * j, Laux, <f32>-1, <f32>0.1, 20, false, false)
        : makeQkxQuants(32, 31, xj, w, L + 32 * j, Laux, <f32>-0.5, <f32>0.1, 15, false, false);
      storeF(scales, j, v);
      storeF(mins, j, theMin);
      if (v > maxScale) maxScale = v;
      if (theMin > maxMin) maxMin = theMin;
    }
    const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : <f32>0;
    const invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : <f32>0;
    for (let j = 0; j < 8; j++) {
      // uint8_t ls = nearest_int(...); ls = MIN(63, ls)
      storeB(Ls, j, imin(63, nearestInt(invScale * loadF(scales, j)) & 0xff));
      storeB(Lm, j, imin(63, nearestInt(invMin * loadF(mins, j)) & 0xff));
    }
    packScaleMinK4(Ls, Lm, y + 4);
    storeH(y, 0, fp32ToFp16(maxScale / <f32>63));
    storeH(y, 2, fp32ToFp16(maxMin / <f32>63));
  } else {
    const sw = s + S_SW;
    let sumX2: f32 = 0;
    for (let l = 0; l < QK_K; l++) sumX2 += loadF(x, l) * loadF(x, l);
    const sigma2: f32 = <f32>2 * sumX2 / <f32>QK_K;
    for (let j = 0; j < 8; j++) {
      const xj = x + (<usize>(32 * j) << 2);
      for (let l = 0; l < 32; l++) {
        const xv = loadF(xj, l);
        storeF(w, l, loadF(qw, 32 * j + l) * Mathf.sqrt(sigma2 + xv * xv));
      }
      let sum: f32 = 0;
      for (let l = 0; l < 32; l++) sum += loadF(w, l);
      storeF(sw, j, sum);
      storeF(scales, j, makeQkxQuants(32, nmax, xj, w, L + 32 * j, Laux, <f32>-0.9, <f32>0.05, 36, false, true));
      storeF(mins, j, theMin);
    }
    const dBlock = makeQpQuants(8, 63, scales, Ls, sw);
    const mBlock = makeQpQuants(8, 63, mins, Lm, sw);
    if (nmax == 31) { // quantize_row_q5_K_impl clamps to 63; the Q4_K one does not
      for (let j = 0; j < 8; j++) {
        storeB(Ls, j, imin(63, loadB(Ls, j)));
        storeB(Lm, j, imin(63, loadB(Lm, j)));
      }
    }
    packScaleMinK4(Ls, Lm, y + 4);
    storeH(y, 0, fp32ToFp16(dBlock));
    storeH(y, 2, fp32ToFp16(mBlock));
  }
  const d = fp16ToFp32(loadH(y, 0)), dmin = fp16ToFp32(loadH(y, 2));
  for (let j = 0; j < 8; j++) {
    const sc = scaleMinK4(j, y + 4);
    const dl: f32 = d * <f32>sc;
    if (dl == 0) continue;
    requantize(x + (<usize>(32 * j) << 2), L + 32 * j, 32, dl, dmin * <f32>kMin, 0, nmax);
  }
  if (nmax == 15) packQ4K(L, y + 16);
  else packQ5K(L, y);
}

// quantize_row_q6_K_ref / quantize_row_q6_K_impl for one super-block.
function quantizeQ6KBlock(x: usize, y: usize, qw: usize, s: usize): void {
  const L = s + S_L, scales = s + S_SCALES;
  let maxScale: f32 = 0, maxAbsScale: f32 = 0;
  for (let ib = 0; ib < 16; ib++) {
    const v = makeQxQuants(16, 32, x + (<usize>(16 * ib) << 2), L + 16 * ib, qw ? qw + (<usize>(16 * ib) << 2) : 0);
    storeF(scales, ib, v);
    if (Mathf.abs(v) > maxAbsScale) { maxAbsScale = Mathf.abs(v); maxScale = v; }
  }
  if (maxAbsScale < GROUP_MAX_EPS) {
    memory.fill(y, 0, 210);
    return;
  }
  const iscale: f32 = <f32>-128 / maxScale;
  storeH(y, 208, fp32ToFp16(<f32>1 / iscale));
  for (let ib = 0; ib < 16; ib++) storeB(y + 192, ib, imin(127, nearestInt(iscale * loadF(scales, ib))));
  const d = fp16ToFp32(loadH(y, 208));
  for (let j = 0; j < 16; j++) {
    const dl: f32 = d * <f32>load<i8>(y + 192 + <usize>j);
    if (dl == 0) continue;
    requantize(x + (<usize>(16 * j) << 2), L + 16 * j, 16, dl, 0, 32, 63);
  }
  packQ6K(L, y);
}

/** One row of a k-quant type: the _ref quantizer if qw is 0, the _impl one otherwise
 * (qw: the row's importance weights, one per column). */
export function quantizeKRow(type: i32, x: usize, y: usize, n: i32, qw: usize, scratch: usize): void {
  const bytes = type == 10 ? 84 : type == 11 ? 110 : type == 12 ? 144 : type == 13 ? 176 : 210;
  for (let i = 0; i < n / QK_K; i++) {
    const xb = x + (<usize>(i * QK_K) << 2);
    const yb = y + <usize>(i * bytes);
    const qb = qw ? qw + (<usize>(i * QK_K) << 2) : 0;
    if (type == 10) quantizeQ2KBlock(xb, yb, qb, scratch);
    else if (type == 11) quantizeQ3KBlock(xb, yb, qb, scratch);
    else if (type == 12) quantizeQ45KBlock(xb, yb, qb, scratch, 15);
    else if (type == 13) quantizeQ45KBlock(xb, yb, qb, scratch, 31);
    else quantizeQ6KBlock(xb, yb, qb, scratch);
  }
}

// ---- dequantizers (dequantize_row_*), one super-block each ------------------------------

export function dequantizeKBlock(type: i32, x: usize, y: usize, L: usize): void {
  if (type == 10) { // Q2_K: dl * q - ml, dl = d * sc, ml = dmin * m
    const d = fp16ToFp32(loadH(x, 80)), min = fp16ToFp32(loadH(x, 82));
    unpack2(x + 16, L);
    for (let j = 0; j < 16; j++) {
      const sc = loadB(x, j);
      const dl: f32 = d * <f32>(sc & 0xf), ml: f32 = min * <f32>(sc >> 4);
      for (let l = 0; l < 16; l++) storeF(y, 16 * j + l, dl * <f32>loadB(L, 16 * j + l) - ml);
    }
  } else if (type == 11) { // Q3_K: dl * (q - 4), dl = d * (sc - 32)
    const dAll = fp16ToFp32(loadH(x, 108));
    unpackQ3(x, L);
    for (let j = 0; j < 16; j++) {
      const dl: f32 = dAll * <f32>(q3ScaleCode(x + 96, j) - 32);
      for (let l = 0; l < 16; l++) storeF(y, 16 * j + l, dl * <f32>(loadB(L, 16 * j + l) - 4));
    }
  } else if (type == 12 || type == 13) { // Q4_K/Q5_K: d1 * q - m1, d1 = d * sc, m1 = dmin * m
    const d = fp16ToFp32(loadH(x, 0)), min = fp16ToFp32(loadH(x, 2));
    if (type == 12) unpackQ4K(x + 16, L);
    else unpackQ5K(x, L);
    for (let j = 0; j < 8; j++) {
      const sc = scaleMinK4(j, x + 4);
      const d1: f32 = d * <f32>sc, m1: f32 = min * <f32>kMin;
      for (let l = 0; l < 32; l++) storeF(y, 32 * j + l, d1 * <f32>loadB(L, 32 * j + l) - m1);
    }
  } else { // Q6_K: d * sc * (q - 32)
    const d = fp16ToFp32(loadH(x, 208));
    unpackQ6K(x, L);
    for (let j = 0; j < 16; j++) {
      const dl: f32 = d * <f32>load<i8>(x + 192 + <usize>j);
      for (let l = 0; l < 16; l++) storeF(y, 16 * j + l, dl * <f32>(loadB(L, 16 * j + l) - 32));
    }
  }
}
