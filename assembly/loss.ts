// The layer loss L(Q) = sum_r (q_r - w_r)^T H (q_r - w_r) and its gradient half g = (q - w) H,
// for bands of rows. Row by row in their own arithmetic: a row's value never depends on which
// rows share its band.

import { gemmSub } from './linalg';

/** Column block of the symmetric quadratic forms. */
// @ts-ignore: decorator
@inline const QUAD_BLOCK: i32 = 128;

/** Bytes of quadForms' scratch for `rows` rows. */
export function quadFormsScratch(rows: i32): f64 {
  return <f64>rows * <f64>QUAD_BLOCK * 8;
}

/**
 * out[r] = e_r^T H e_r (f64) for the rows of E [rows x n] (leading dimension lde), H symmetric
 * [n x n] (leading dimension ldh), through the block upper triangle of H only (half the
 * multiply-adds of E H): with column blocks J of QUAD_BLOCK, e_r^T H e_r = sum_J e_J .
 * (2 E[:, <J] H[<J, J] + e_J H_JJ), the two products by gemmSub, the outer sum in f64 in J then
 * j order (a property of the row alone). scratch: quadFormsScratch(rows) bytes.
 */
export function quadForms(e: usize, rows: i32, n: i32, lde: i32, h: usize, ldh: i32, out: usize, scratch: usize): void {
  const bs = QUAD_BLOCK;
  const off = scratch; // -(E[:, <J] H[<J, J])   [rows x w]
  const diag = scratch + ((<usize>rows * <usize>bs) << 2); // -(E_J H_JJ)
  memory.fill(out, 0, <usize>rows << 3);
  for (let j0 = 0; j0 < n; j0 += bs) {
    const w = min(bs, n - j0);
    const bytes = (<usize>rows * <usize>w) << 2;
    memory.fill(off, 0, bytes);
    memory.fill(diag, 0, bytes);
    if (j0 > 0) gemmSub(off, w, e, lde, h + (<usize>j0 << 2), ldh, rows, w, j0);
    gemmSub(diag, w, e + (<usize>j0 << 2), lde, h + ((<usize>j0 * <usize>ldh + <usize>j0) << 2), ldh, rows, w, w);
    for (let r = 0; r < rows; r++) {
      const er = e + ((<usize>r * <usize>lde + <usize>j0) << 2);
      const po = off + ((<usize>r * <usize>w) << 2);
      const pd = diag + ((<usize>r * <usize>w) << 2);
      let s: f64 = 0;
      for (let j = 0; j < w; j++) {
        const o = <usize>j << 2;
        s -= <f64>load<f32>(er + o) * (2 * <f64>load<f32>(po + o) + <f64>load<f32>(pd + o));
      }
      const ro = out + (<usize>r << 3);
      store<f64>(ro, load<f64>(ro) + s);
    }
  }
}

/** Bytes of rowLosses' scratch for a band of rows x cols. */
export function rowLossesScratch(rows: i32, cols: i32): f64 {
  return <f64>rows * <f64>cols * 4 + quadFormsScratch(rows);
}

/** Per-row loss (q - w)^T H (q - w) for a band, into rowLoss (f64 [rows]).
 * scratch: rowLossesScratch(rows, cols) bytes. */
export function rowLosses(w: usize, q: usize, rows: i32, cols: i32, h: usize, rowLoss: usize, scratch: usize): void {
  const total = <usize>rows * <usize>cols;
  const e = scratch;
  for (let i: usize = 0; i < total; i++) store<f32>(e + (i << 2), load<f32>(q + (i << 2)) - load<f32>(w + (i << 2)));
  quadForms(e, rows, cols, cols, h, cols, rowLoss, scratch + (total << 2));
}

/** Bytes of gradientBand's scratch for a band of rows x cols. */
export function gradientScratch(rows: i32, cols: i32): f64 {
  return <f64>rows * <f64>cols * 4;
}

/** g = (q - w) H for a band: g [rows x cols] is overwritten. scratch: gradientScratch bytes. */
export function gradientBand(g: usize, w: usize, q: usize, rows: i32, cols: i32, h: usize, scratch: usize): void {
  const total = <usize>rows * <usize>cols;
  for (let i: usize = 0; i < total; i++) store<f32>(scratch + (i << 2), load<f32>(w + (i << 2)) - load<f32>(q + (i << 2)));
  memory.fill(g, 0, total << 2);
  gemmSub(g, cols, scratch, cols, h, cols, rows, cols, cols); // g = -(w - q) H
}
