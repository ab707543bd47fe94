// GPTQ (IST-DASLab gptq.py `fasterquant`) on a band of rows, in the working column order
// (act-order permutation and dead columns are applied by the caller).
//
// Rows are independent given U = chol(H^-1) upper: each row's arithmetic is the same whatever
// band it is in. Within a lazy block every row runs its own sequential column loop on a copy
// of its block (w1), so the outer W keeps the block-start values the reference reads dynamic
// group parameters from; the block's errors then update the remaining columns by one GEMM.
// Eight rows at a time run that loop side by side, one per SIMD lane (blockRows8), the rest
// alone: the same operations per row either way.

import { axpySub, gemmSub } from './linalg';
import { gridMinMax, gridMse, quantCode, dequantCode } from './grid';
import { GRID_MSE } from './clip';
import { pairFirst, pairSecond } from './pairs';

/** Bytes of gptqBand's scratch: the block's errors for every row, and eight rows' block. */
export function gptqBandScratch(rows: i32, blockSize: i32): f64 {
  return (<f64>rows + 8) * <f64>blockSize * 4;
}

/**
 * w: [rows x cols] working weights (overwritten), u: [cols x cols] upper factor.
 * With dynamic groups, group g's grid is computed when column g*groupWidth is reached (search:
 * GRID_MSE for the MSE clip search, else min-max) and written to scales/zeros; otherwise
 * scales/zeros hold fixed grids. colGroup maps working column -> group either way. codes (u8)
 * and q (dequantized f32) in working order. scratch: gptqBandScratch(rows, blockSize) bytes.
 */
export function gptqBand(
  w: usize, rows: i32, cols: i32, u: usize, maxq: f32, sym: bool, search: i32,
  groupWidth: i32, dynamic: bool, blockSize: i32, groups: i32, colGroup: usize,
  scales: usize, zeros: usize, codes: usize, q: usize, scratch: usize,
): void {
  const bs = blockSize;
  const errs = scratch; // [rows x bs]
  const w1 = scratch + ((<usize>rows * <usize>bs) << 2); // one row's block, or eight rows' interleaved
  for (let i1 = 0; i1 < cols; i1 += bs) {
    const i2 = min(i1 + bs, cols);
    const width = i2 - i1;
    let r = 0;
    for (; r + 8 <= rows; r += 8) {
      blockRows8(w, r, cols, u, maxq, sym, search, groupWidth, dynamic, groups, colGroup, scales, zeros, codes, q, errs, bs, w1, i1, i2);
    }
    for (; r < rows; r++) {
      const wRow = w + ((<usize>r * <usize>cols) << 2);
      memory.copy(w1, wRow + (<usize>i1 << 2), <usize>width << 2);
      const rowErr = errs + ((<usize>r * <usize>bs) << 2);
      let s: f32 = 0, z: f32 = 0;
      let currentGroup = -1;
      for (let i = 0; i < width; i++) {
        const j = i1 + i;
        if (dynamic && j % groupWidth == 0) dynamicGrid(w, r, cols, j, maxq, sym, search, groupWidth, groups, scales, zeros);
        const g = load<i32>(colGroup + (<usize>j << 2));
        if (g != currentGroup) {
          const go = (<usize>r * <usize>groups + <usize>g) << 2;
          s = load<f32>(scales + go);
          z = load<f32>(zeros + go);
          currentGroup = g;
        }
        const x = load<f32>(w1 + (<usize>i << 2));
        const c = quantCode(x, s, z, maxq);
        const dq = dequantCode(c, s, z);
        const o = <usize>r * <usize>cols + <usize>j;
        store<u8>(codes + o, <u8>c);
        store<f32>(q + (o << 2), dq);
        const uRow = u + ((<usize>j * <usize>cols) << 2);
        const err = (x - dq) / load<f32>(uRow + (<usize>j << 2));
        store<f32>(rowErr + (<usize>i << 2), err);
        axpySub(w1 + (<usize>(i + 1) << 2), uRow + (<usize>(j + 1) << 2), err, i2 - j - 1);
      }
    }
    if (i2 < cols) {
      gemmSub(w + (<usize>i2 << 2), cols, errs, bs, u + ((<usize>i1 * <usize>cols + <usize>i2) << 2), cols, rows, cols - i2, width);
    }
  }
}

/** Row r's dynamic grid for the group starting at column j, from W as it stood at the start of
 * the current block (the sweep works on a copy of the block), into scales/zeros. */
function dynamicGrid(
  w: usize, r: i32, cols: i32, j: i32, maxq: f32, sym: bool, search: i32, groupWidth: i32, groups: i32,
  scales: usize, zeros: usize,
): void {
  const len = min(groupWidth, cols - j);
  const x = w + ((<usize>r * <usize>cols + <usize>j) << 2);
  const grid = search == GRID_MSE ? gridMse(x, len, maxq, sym) : gridMinMax(x, len, maxq, sym);
  const go = (<usize>r * <usize>groups + <usize>(j / groupWidth)) << 2;
  store<f32>(scales + go, pairFirst(grid));
  store<f32>(zeros + go, pairSecond(grid));
}

/** Rows r .. r+3 at byte offset o of W (row stride rowBytes), one per lane. */
// @ts-ignore: decorator
@inline function gather4(p: usize, stride: usize): v128 {
  return f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(load<f32>(p)),
    1, load<f32>(p + stride)), 2, load<f32>(p + 2 * stride)), 3, load<f32>(p + 3 * stride));
}

/** Four lanes to four rows: p, p + stride, p + 2 stride, p + 3 stride. */
// @ts-ignore: decorator
@inline function scatter4(p: usize, stride: usize, v: v128): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  store<f32>(p + stride, f32x4.extract_lane(v, 1));
  store<f32>(p + 2 * stride, f32x4.extract_lane(v, 2));
  store<f32>(p + 3 * stride, f32x4.extract_lane(v, 3));
}

/**
 * Column j of rows r .. r+3 (one per lane of x, their block values; s, z their grids): the
 * scalar path's quantCode, dequantCode and error (x - dq) / U_jj lane by lane; codes, q and
 * the errors stored to the rows. Returns the errors.
 */
// @ts-ignore: decorator
@inline function quantizeColumn4(
  x: v128, s: v128, z: v128, ujj: v128, vMaxq: v128, r: i32, j: i32, i: i32, cols: i32, codes: usize, q: usize, errs: usize, bs: i32,
): v128 {
  const vZero = f32x4.splat(0);
  // pmax/pmin differ from the scalar max/min only in giving -0 where they give +0 (the
  // operands are finite), and + 0 turns -0 into +0.
  const c = f32x4.add(f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.div(x, s)), z), vZero), vMaxq), vZero);
  const dq = f32x4.mul(s, f32x4.sub(c, z));
  const err = f32x4.div(f32x4.sub(x, dq), ujj);
  const o = <usize>r * <usize>cols + <usize>j;
  const ci = i32x4.trunc_sat_f32x4_u(c); // small whole numbers: exact
  store<u8>(codes + o, <u8>i32x4.extract_lane(ci, 0));
  store<u8>(codes + o + <usize>cols, <u8>i32x4.extract_lane(ci, 1));
  store<u8>(codes + o + 2 * <usize>cols, <u8>i32x4.extract_lane(ci, 2));
  store<u8>(codes + o + 3 * <usize>cols, <u8>i32x4.extract_lane(ci, 3));
  scatter4(q + (o << 2), <usize>cols << 2, dq);
  scatter4(errs + ((<usize>r * <usize>bs + <usize>i) << 2), <usize>bs << 2, err);
  return err;
}

/**
 * The lazy block [i1, i2) of rows r .. r+7 at once, one row per SIMD lane (two vectors):
 * w1 holds the block interleaved (w1[i] = the eight rows' column i1 + i), so each column's
 * quantization is two SIMD steps and each update w1[c] -= err * U[j, c] takes one U element for
 * eight rows. Every lane performs the scalar path's operations on its row's values (quantCode,
 * dequantCode, the division by U_jj, the elementwise update), so a row's bits do not depend on
 * its neighbours, nor on whether it went through this path or the scalar one.
 */
function blockRows8(
  w: usize, r: i32, cols: i32, u: usize, maxq: f32, sym: bool, search: i32, groupWidth: i32, dynamic: bool,
  groups: i32, colGroup: usize, scales: usize, zeros: usize, codes: usize, q: usize, errs: usize, bs: i32,
  w1: usize, i1: i32, i2: i32,
): void {
  const width = i2 - i1;
  const rowBytes = <usize>cols << 2;
  const w0 = w + ((<usize>r * <usize>cols + <usize>i1) << 2);
  for (let i = 0; i < width; i++) {
    const o = <usize>i << 2;
    v128.store(w1 + (<usize>i << 5), gather4(w0 + o, rowBytes));
    v128.store(w1 + (<usize>i << 5), gather4(w0 + 4 * rowBytes + o, rowBytes), 16);
  }
  const vMaxq = f32x4.splat(maxq);
  let sA = vMaxq, zA = vMaxq, sB = vMaxq, zB = vMaxq;
  let currentGroup = -1;
  const gStride = <usize>groups << 2;
  for (let i = 0; i < width; i++) {
    const j = i1 + i;
    if (dynamic && j % groupWidth == 0) {
      for (let l = 0; l < 8; l++) dynamicGrid(w, r + l, cols, j, maxq, sym, search, groupWidth, groups, scales, zeros);
      currentGroup = -1;
    }
    const g = load<i32>(colGroup + (<usize>j << 2));
    if (g != currentGroup) {
      const so = scales + ((<usize>r * <usize>groups + <usize>g) << 2);
      const zo = zeros + ((<usize>r * <usize>groups + <usize>g) << 2);
      sA = gather4(so, gStride); sB = gather4(so + 4 * gStride, gStride);
      zA = gather4(zo, gStride); zB = gather4(zo + 4 * gStride, gStride);
      currentGroup = g;
    }
    const uRow = u + ((<usize>j * <usize>cols) << 2);
    const ujj = f32x4.splat(load<f32>(uRow + (<usize>j << 2)));
    const wi = w1 + (<usize>i << 5);
    const errA = quantizeColumn4(v128.load(wi), sA, zA, ujj, vMaxq, r, j, i, cols, codes, q, errs, bs);
    const errB = quantizeColumn4(v128.load(wi, 16), sB, zB, ujj, vMaxq, r + 4, j, i, cols, codes, q, errs, bs);
    // w1[c] -= err * U[j, c] for the block's later columns: elementwise, as axpySub.
    let up = uRow + (<usize>(j + 1) << 2);
    let wp = wi + 32;
    const wEnd = w1 + (<usize>width << 5);
    while (wp < wEnd) {
      const uc = v128.load32_splat(up);
      v128.store(wp, f32x4.sub(v128.load(wp), f32x4.mul(errA, uc)));
      v128.store(wp, f32x4.sub(v128.load(wp, 16), f32x4.mul(errB, uc)), 16);
      up += 4;
      wp += 32;
    }
  }
}
