// Quantization grids: min-max parameters as the reference GPTQ quantizer computes them, the
// MSE clip search, optimal weight clipping (OWC), and quantize/dequantize.
// A grid is (scale, zero); quant(x) = clamp(nearest(x / scale) + zero, 0, maxq) with round
// half to even (WebAssembly's `nearest`, as torch.round), dequant(c) = scale * (c - zero).

import { dot, gemmSub } from './linalg';

// Results of the last gridFor* call, read right after (single-threaded module state).
export let gridScale: f32 = 1;
export let gridZero: f32 = 0;

// @ts-ignore: decorator
@inline export function quantCode(x: f32, scale: f32, zero: f32, maxq: f32): f32 {
  return min<f32>(max<f32>(nearest<f32>(x / scale) + zero, 0), maxq);
}

// @ts-ignore: decorator
@inline export function dequantCode(code: f32, scale: f32, zero: f32): f32 {
  return scale * (code - zero);
}

/** Grid of the range [xmin, xmax] (already widened to contain 0) into gridScale/gridZero. */
// @ts-ignore: decorator
@inline function gridOfRange(xmin: f32, xmax: f32, maxq: f32, sym: bool): void {
  if (sym) {
    xmax = max<f32>(abs<f32>(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  const scale = (xmax - xmin) / maxq;
  gridScale = scale;
  gridZero = sym ? (maxq + 1) / 2 : nearest<f32>(-xmin / scale);
}

/** Range of n floats at x, widened to include 0, into rangeMin/rangeMax. */
let rangeMin: f32 = 0;
let rangeMax: f32 = 0;
function rangeOf(x: usize, n: i32): void {
  let lo: f32 = 0, hi: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    lo = min<f32>(lo, v);
    hi = max<f32>(hi, v);
  }
  rangeMin = lo;
  rangeMax = hi;
}

/** Shrink factor of candidate i of the clip searches: p = 1 - i/100, i < 80. */
// @ts-ignore: decorator
@inline const CLIP_CANDIDATES: i32 = 80;
// @ts-ignore: decorator
@inline function shrink(i: i32): f32 {
  return <f32>(1.0 - <f64>i / 100.0);
}

/**
 * Candidate i's grid: the min-max grid built from (p*xmin, p*xmax) of the symmetric-adjusted
 * range. The reference applies the symmetric rule before shrinking, and with it the zero stays
 * (maxq+1)/2; the shrunk range never contains a zero-width case unless the range was 0.
 */
// @ts-ignore: decorator
@inline function candidateGrid(i: i32, xmin: f32, xmax: f32, maxq: f32, sym: bool): void {
  if (sym) {
    xmax = max<f32>(abs<f32>(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  const p = shrink(i);
  const lo = p * xmin, hi = p * xmax;
  const scale = (hi - lo) / maxq;
  gridScale = scale;
  gridZero = sym ? (maxq + 1) / 2 : nearest<f32>(-lo / scale);
}

/** Min-max grid of n values at x. */
export function gridMinMax(x: usize, n: i32, maxq: f32, sym: bool): void {
  rangeOf(x, n);
  gridOfRange(rangeMin, rangeMax, maxq, sym);
}

/** MSE clip search (reference Quantizer, mse=True): minimise sum |dequant(quant(x)) - x|^2.4. */
export function gridMse(x: usize, n: i32, maxq: f32, sym: bool): void {
  rangeOf(x, n);
  const xmin = rangeMin, xmax = rangeMax;
  let bestErr: f32 = Infinity;
  let bestScale: f32 = 1, bestZero: f32 = 0;
  for (let c = 0; c < CLIP_CANDIDATES; c++) {
    candidateGrid(c, xmin, xmax, maxq, sym);
    const s = gridScale, z = gridZero;
    let err: f32 = 0;
    for (let i = 0; i < n; i++) {
      const v = load<f32>(x + (<usize>i << 2));
      const e = abs<f32>(dequantCode(quantCode(v, s, z, maxq), s, z) - v);
      err += Mathf.pow(e, 2.4);
    }
    if (err < bestErr) {
      bestErr = err;
      bestScale = s;
      bestZero = z;
    }
  }
  gridScale = bestScale;
  gridZero = bestZero;
}

/**
 * OWC: the candidate grid minimising e^T Hg e, e = dequant(quant(x)) - x, with Hg the n x n
 * block of H at hg (leading dimension ldh). All 80 error vectors go through one GEMM
 * (E * Hg), then each score is the ordered dot of e with its row. First minimum wins.
 * scratch: 2 * 80 * n floats. Returns the chosen candidate index.
 */
export function gridOwc(x: usize, n: i32, hg: usize, ldh: i32, maxq: f32, sym: bool, scratch: usize): i32 {
  rangeOf(x, n);
  const xmin = rangeMin, xmax = rangeMax;
  const errs = scratch;
  const prod = scratch + ((<usize>CLIP_CANDIDATES * <usize>n) << 2);
  for (let c = 0; c < CLIP_CANDIDATES; c++) {
    candidateGrid(c, xmin, xmax, maxq, sym);
    const s = gridScale, z = gridZero;
    const row = errs + ((<usize>c * <usize>n) << 2);
    for (let i = 0; i < n; i++) {
      const v = load<f32>(x + (<usize>i << 2));
      store<f32>(row + (<usize>i << 2), v - dequantCode(quantCode(v, s, z, maxq), s, z));
    }
  }
  // prod = -(E' Hg) with E' = x - dequant = -e, so prod = e^T Hg row-wise; score = e'.prod.
  memory.fill(prod, 0, (<usize>CLIP_CANDIDATES * <usize>n) << 2);
  gemmSub(prod, n, errs, n, hg, ldh, CLIP_CANDIDATES, n, n);
  let best = 0;
  let bestScore: f32 = Infinity;
  for (let c = 0; c < CLIP_CANDIDATES; c++) {
    const o = (<usize>c * <usize>n) << 2;
    const score = -dot(errs + o, prod + o, n);
    if (score < bestScore) {
      bestScore = score;
      best = c;
    }
  }
  candidateGrid(best, xmin, xmax, maxq, sym);
  lastOwcScore = bestScore;
  return best;
}
export let lastOwcScore: f32 = 0;

/**
 * Grids for every row and group of W [rows x cols] (groups of `group` consecutive columns,
 * the last one possibly shorter; group <= 0 or >= cols: one per row) into scales/zeros
 * [rows x groups]. method: 0 min-max, 1 MSE, 2 OWC (needs h [cols x cols]; scratch 160*cols floats).
 */
export function gridParams(
  w: usize, rows: i32, cols: i32, group: i32, maxq: f32, sym: bool, method: i32,
  h: usize, scales: usize, zeros: usize, shrinkIndex: usize, scratch: usize,
): void {
  const gs = group <= 0 || group >= cols ? cols : group;
  const groups = (cols + gs - 1) / gs;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const c0 = g * gs;
      const len = min(gs, cols - c0);
      const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
      let chosen = 0;
      if (method == 0) gridMinMax(x, len, maxq, sym);
      else if (method == 1) gridMse(x, len, maxq, sym);
      else chosen = gridOwc(x, len, h + ((<usize>c0 * <usize>cols + <usize>c0) << 2), cols, maxq, sym, scratch);
      const o = (<usize>r * <usize>groups + <usize>g) << 2;
      store<f32>(scales + o, gridScale);
      store<f32>(zeros + o, gridZero);
      if (shrinkIndex) store<i32>(shrinkIndex + o, chosen);
    }
  }
}

/**
 * Codes and dequantized values of W under per-(row, group) grids; colGroup [cols] maps each
 * column to its group (so act-order and static groups share one path).
 */
export function quantizeWith(
  w: usize, rows: i32, cols: i32, maxq: f32, scales: usize, zeros: usize, groups: i32, colGroup: usize,
  codes: usize, q: usize,
): void {
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const g = load<i32>(colGroup + (<usize>j << 2));
      const go = (<usize>r * <usize>groups + <usize>g) << 2;
      const s = load<f32>(scales + go), z = load<f32>(zeros + go);
      const o = <usize>r * <usize>cols + <usize>j;
      const c = quantCode(load<f32>(w + (o << 2)), s, z, maxq);
      store<u8>(codes + o, <u8>c);
      if (q) store<f32>(q + (o << 2), dequantCode(c, s, z));
    }
  }
}

/**
 * Per-row loss (q - w)^T H (q - w) for a band of rows, using the symmetry of H (half the
 * multiply-adds of E H): with column blocks J of 128, loss_r = sum_J e_J . (2 E[:, <J] H[<J, J]
 * + e_J H_JJ), the two products by gemmSub, the outer sum in f64 in J then j order (a property
 * of the row alone). scratch: rows*cols + 2*rows*128 floats. Writes rowLoss (f64 [rows]).
 */
export function rowLosses(w: usize, q: usize, rows: i32, cols: i32, h: usize, rowLoss: usize, scratch: usize): void {
  const total = <usize>rows * <usize>cols;
  const e = scratch;
  for (let i: usize = 0; i < total; i++) store<f32>(e + (i << 2), load<f32>(q + (i << 2)) - load<f32>(w + (i << 2)));
  quadForms(e, rows, cols, cols, h, cols, rowLoss, scratch + (total << 2));
}

/**
 * out[r] = e_r^T H e_r (f64) for the rows of E [rows x n] (leading dimension lde), H symmetric
 * [n x n] (leading dimension ldh), through the block upper triangle of H only (see rowLosses).
 * scratch: 2 * rows * 128 floats.
 */
export function quadForms(e: usize, rows: i32, n: i32, lde: i32, h: usize, ldh: i32, out: usize, scratch: usize): void {
  const bs = 128;
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
