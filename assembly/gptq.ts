// GPTQ (IST-DASLab gptq.py `fasterquant`) on a band of rows, in the working column order
// (act-order permutation and dead columns are applied by the caller).
//
// Rows are independent given U = chol(H^-1) upper: each row's arithmetic is the same whatever
// band it is in. Within a lazy block every row runs its own sequential column loop on a copy
// of its block (w1), so the outer W keeps the block-start values the reference reads dynamic
// group parameters from; the block's errors then update the remaining columns by one GEMM.

import { axpySub, gemmSub } from './linalg';
import { gridMinMax, gridMse, quantCode, dequantCode } from './grid';
import { GRID_MSE } from './clip';
import { pairFirst, pairSecond } from './pairs';

/** Bytes of gptqBand's scratch: the block's errors for every row, and one row's block. */
export function gptqBandScratch(rows: i32, blockSize: i32): f64 {
  return (<f64>rows + 1) * <f64>blockSize * 4;
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
  const w1 = scratch + ((<usize>rows * <usize>bs) << 2); // one row's block
  for (let i1 = 0; i1 < cols; i1 += bs) {
    const i2 = min(i1 + bs, cols);
    const width = i2 - i1;
    for (let r = 0; r < rows; r++) {
      const wRow = w + ((<usize>r * <usize>cols) << 2);
      memory.copy(w1, wRow + (<usize>i1 << 2), <usize>width << 2);
      const rowErr = errs + ((<usize>r * <usize>bs) << 2);
      let s: f32 = 0, z: f32 = 0;
      let currentGroup = -1;
      for (let i = 0; i < width; i++) {
        const j = i1 + i;
        if (dynamic && j % groupWidth == 0) {
          const len = min(groupWidth, cols - j);
          const x = wRow + (<usize>j << 2);
          const grid = search == GRID_MSE ? gridMse(x, len, maxq, sym) : gridMinMax(x, len, maxq, sym);
          const go = (<usize>r * <usize>groups + <usize>(j / groupWidth)) << 2;
          store<f32>(scales + go, pairFirst(grid));
          store<f32>(zeros + go, pairSecond(grid));
        }
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
