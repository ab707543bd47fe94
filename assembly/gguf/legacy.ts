// The 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml-quants.c): the reference
// quantizers (quantize_row_*_ref, min-max), the importance-weighted ones (quantize_row_*_impl,
// taken when llama-quantize has an imatrix), and the dequantizers.
//
// Layouts (ggml-common.h; d and m are IEEE halves, little-endian):
//   Q4_0 18 B: d, qs[16]          code j in qs[j] low nibble, j+16 in its high nibble
//   Q4_1 20 B: d, m, qs[16]       as Q4_0
//   Q5_0 22 B: d, qh[4], qs[16]   as Q4_0 plus bit 4 of code j in bit j of qh (u32)
//   Q5_1 24 B: d, m, qh[4], qs[16]
//   Q8_0 34 B: d, qs[32] (int8)

import {
  fp16ToFp32, fp32ToFp16, imin, loadB, loadF, loadH, storeB, storeF, storeH, truncX86, roundAway,
} from './common';
import { makeQkxQuants, makeQxQuants, theMin } from './search';

/** The signed value of largest magnitude among n floats (first occurrence), as the
 * reference quantizers pick it: `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`. */
export function signedExtreme(x: usize, n: i32): f32 {
  let amax: f32 = 0, max: f32 = 0;
  for (let j = 0; j < n; j++) {
    const v = loadF(x, j);
    if (amax < Mathf.abs(v)) { amax = Mathf.abs(v); max = v; }
  }
  return max;
}

// Packs 32 codes (bytes at L) into a block's nibbles (qs at q) and, for 5-bit types, its qh.
function packNibbles(L: usize, q: usize): void {
  for (let j = 0; j < 16; j++) storeB(q, j, (loadB(L, j) & 0xf) | ((loadB(L, j + 16) & 0xf) << 4));
}
function packHighBits(L: usize, qh: usize): void {
  let h: u32 = 0;
  for (let j = 0; j < 32; j++) h |= <u32>((loadB(L, j) & 0x10) >> 4) << j;
  store<u32>(qh, h);
}

// ---- reference (min-max) quantizers, one 32-element block each -------------------------

export function quantizeQ4_0Block(x: usize, y: usize): void {
  const max = signedExtreme(x, 32);
  const d: f32 = max / <f32>-8;
  const id: f32 = d != 0 ? <f32>1 / d : <f32>0;
  storeH(y, 0, fp32ToFp16(d));
  for (let j = 0; j < 16; j++) {
    const x0: f32 = loadF(x, j) * id;
    const x1: f32 = loadF(x, j + 16) * id;
    // (int8_t)(x0 + 8.5f), MIN(15, .), stored as uint8_t
    const xi0 = imin(15, <i32><i8>truncX86(x0 + <f32>8.5)) & 0xff;
    const xi1 = imin(15, <i32><i8>truncX86(x1 + <f32>8.5)) & 0xff;
    storeB(y, 2 + j, xi0 | (xi1 << 4));
  }
}

export function quantizeQ4_1Block(x: usize, y: usize): void {
  let min: f32 = f32.MAX_VALUE, max: f32 = -f32.MAX_VALUE;
  for (let j = 0; j < 32; j++) {
    const v = loadF(x, j);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const d: f32 = (max - min) / <f32>15;
  const id: f32 = d != 0 ? <f32>1 / d : <f32>0;
  storeH(y, 0, fp32ToFp16(d));
  storeH(y, 2, fp32ToFp16(min));
  for (let j = 0; j < 16; j++) {
    const x0: f32 = (loadF(x, j) - min) * id;
    const x1: f32 = (loadF(x, j + 16) - min) * id;
    const xi0 = imin(15, <i32><i8>truncX86(x0 + <f32>0.5)) & 0xff;
    const xi1 = imin(15, <i32><i8>truncX86(x1 + <f32>0.5)) & 0xff;
    storeB(y, 4 + j, xi0 | (xi1 << 4));
  }
}

export function quantizeQ5_0Block(x: usize, y: usize, L: usize): void {
  const max = signedExtreme(x, 32);
  const d: f32 = max / <f32>-16;
  const id: f32 = d != 0 ? <f32>1 / d : <f32>0;
  storeH(y, 0, fp32ToFp16(d));
  for (let j = 0; j < 32; j++) {
    storeB(L, j, imin(31, <i32><i8>truncX86(loadF(x, j) * id + <f32>16.5)));
  }
  packNibbles(L, y + 6);
  packHighBits(L, y + 2);
}

export function quantizeQ5_1Block(x: usize, y: usize, L: usize): void {
  let min: f32 = f32.MAX_VALUE, max: f32 = -f32.MAX_VALUE;
  for (let j = 0; j < 32; j++) {
    const v = loadF(x, j);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const d: f32 = (max - min) / <f32>31;
  const id: f32 = d != 0 ? <f32>1 / d : <f32>0;
  storeH(y, 0, fp32ToFp16(d));
  storeH(y, 2, fp32ToFp16(min));
  for (let j = 0; j < 32; j++) {
    storeB(L, j, truncX86((loadF(x, j) - min) * id + <f32>0.5)); // (uint8_t)(x0 + 0.5f)
  }
  packNibbles(L, y + 8);
  packHighBits(L, y + 4);
}

export function quantizeQ8_0Block(x: usize, y: usize): void {
  let amax: f32 = 0;
  for (let j = 0; j < 32; j++) {
    const a = Mathf.abs(loadF(x, j));
    amax = amax > a ? amax : a; // MAX(amax, fabsf(v))
  }
  const d: f32 = amax / <f32>127;
  const id: f32 = d != 0 ? <f32>1 / d : <f32>0;
  storeH(y, 0, fp32ToFp16(d));
  for (let j = 0; j < 32; j++) storeB(y, 2 + j, truncX86(roundAway(loadF(x, j) * id)));
}

// ---- importance-weighted quantizers (quantize_row_*_impl), one row each -----------------

/** sigma2 = sum(x^2) / n over the whole row, as the legacy _impl functions compute it. */
function rowSigma2(x: usize, n: i32): f32 {
  let sumX2: f32 = 0;
  for (let j = 0; j < n; j++) sumX2 += loadF(x, j) * loadF(x, j);
  return sumX2 / <f32>n;
}

/** weight[j] = qw[j] * sqrt(sigma2 + x[j]^2) for one 32-element block. */
function blockWeights(xb: usize, qw: usize, sigma2: f32, weight: usize): void {
  for (let j = 0; j < 32; j++) {
    const xj = loadF(xb, j);
    storeF(weight, j, loadF(qw, j) * Mathf.sqrt(sigma2 + xj * xj));
  }
}

/** Scratch bytes the legacy row quantizers need. */
export const LEGACY_SCRATCH: i32 = 32 * 4 + 32 + 32;

export function quantizeLegacyRowImpl(type: i32, x: usize, y: usize, n: i32, qw: usize, scratch: usize): void {
  const weight = scratch, L = scratch + 128, Laux = scratch + 160;
  const sigma2 = rowSigma2(x, n);
  const blockBytes = type == 2 ? 18 : type == 3 ? 20 : type == 6 ? 22 : 24;
  for (let ib = 0; ib < n / 32; ib++) {
    const xb = x + (<usize>ib << 7);
    const yb = y + <usize>(ib * blockBytes);
    blockWeights(xb, qw + (<usize>ib << 7), sigma2, weight);
    if (type == 2) { // Q4_0
      storeH(yb, 0, fp32ToFp16(makeQxQuants(32, 8, xb, L, weight)));
      packNibbles(L, yb + 2);
    } else if (type == 6) { // Q5_0
      storeH(yb, 0, fp32ToFp16(makeQxQuants(32, 16, xb, L, weight)));
      packNibbles(L, yb + 6);
      packHighBits(L, yb + 2);
    } else { // Q4_1 (nmax 15), Q5_1 (nmax 31)
      const nmax = type == 3 ? 15 : 31;
      const d = makeQkxQuants(32, nmax, xb, weight, L, Laux, <f32>-0.9, <f32>0.05, 36, false, true);
      storeH(yb, 0, fp32ToFp16(d));
      storeH(yb, 2, fp32ToFp16(-theMin));
      if (type == 3) {
        packNibbles(L, yb + 4);
      } else {
        packNibbles(L, yb + 8);
        packHighBits(L, yb + 4);
      }
    }
  }
}

// ---- dequantizers (dequantize_row_*), one block each ------------------------------------

export function dequantizeLegacyBlock(type: i32, x: usize, y: usize): void {
  const d = fp16ToFp32(loadH(x, 0));
  if (type == 8) { // Q8_0: qs[j] * d
    for (let j = 0; j < 32; j++) storeF(y, j, <f32>load<i8>(x + 2 + <usize>j) * d);
    return;
  }
  const hasMin = type == 3 || type == 7;
  const m: f32 = hasMin ? fp16ToFp32(loadH(x, 2)) : 0;
  const five = type == 6 || type == 7;
  const qs = x + (type == 2 ? 2 : type == 3 ? 4 : type == 6 ? 6 : 8);
  const qh: u32 = five ? load<u32>(x + (type == 6 ? 2 : 4)) : 0;
  const zero = type == 2 ? 8 : type == 6 ? 16 : 0;
  for (let j = 0; j < 16; j++) {
    let c0 = loadB(qs, j) & 0xf, c1 = loadB(qs, j) >> 4;
    if (five) {
      c0 |= <i32>((qh >> j) << 4) & 0x10;
      c1 |= <i32>(qh >> (j + 12)) & 0x10;
    }
    if (hasMin) {
      storeF(y, j, <f32>c0 * d + m);
      storeF(y, j + 16, <f32>c1 * d + m);
    } else {
      storeF(y, j, <f32>(c0 - zero) * d);
      storeF(y, j + 16, <f32>(c1 - zero) * d);
    }
  }
}
