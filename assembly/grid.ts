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
  candidateGrid(0, rangeMin, rangeMax, maxq, sym); // p = 1 exactly: the plain min-max grid
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

// Candidates rescored exactly by the fast per-channel OWC search.
// @ts-ignore: decorator
@inline const OWC_RESCORE: i32 = 8;
// Block width of the fast per-channel search's block-diagonal screening.
// @ts-ignore: decorator
@inline const OWC_SCREEN_BLOCK: i32 = 128;

/**
 * Scores of all 80 OWC candidates of the range (xmin, xmax) for the n values at x, in the
 * metric of the block diagonal of H (blocks of bs consecutive columns; bs >= n: the whole
 * n x n block at h, leading dimension ldh): scores[c] (f64) = sum_B e_B^T H_BB e_B, with
 * e = s_c v_c - x and v_c = code - zero (small integers, exact in f32).
 * Computed per block as x^T H x - 2 s (v . Hx) + s^2 (v^T H v) in f64, with u = H v kept
 * current by sparse updates: between consecutive candidates only the few coordinates whose
 * code moves change v, and each change i applies v^T H v += 2 d u_i + d^2 H_ii, v.Hx += d hx_i,
 * u += d H[i, :] (H symmetric), in ascending i. So a candidate costs O(changes * bs) instead of
 * O(bs^2). Every step is a property of the row's own values: no banding dependence.
 * work: 5 * bs floats (bs capped at n).
 */
export function owcScan(x: usize, n: i32, h: usize, ldh: i32, bs: i32, xmin: f32, xmax: f32, maxq: f32, sym: bool, scores: usize, work: usize): void {
  if (bs > n) bs = n;
  const u = work; // f64 [bs]
  const hx = work + (<usize>bs << 3); // f64 [bs]
  const vprev = hx + (<usize>bs << 3); // f32 [bs]
  memory.fill(scores, 0, <usize>CLIP_CANDIDATES << 3);
  for (let b0 = 0; b0 < n; b0 += bs) {
    const len = min(bs, n - b0);
    const xb = x + (<usize>b0 << 2);
    const hb = h + ((<usize>b0 * <usize>ldh + <usize>b0) << 2);
    const rowBytes = <usize>ldh << 2;
    // hx = sum_j x_j H[j, :], xHx = x . hx
    memory.fill(hx, 0, <usize>len << 3);
    for (let j = 0; j < len; j++) {
      const xj = <f64>load<f32>(xb + (<usize>j << 2));
      if (xj != 0) axpy64(hx, hb + <usize>j * rowBytes, xj, len);
    }
    let xHx: f64 = 0;
    for (let j = 0; j < len; j++) xHx += <f64>load<f32>(xb + (<usize>j << 2)) * load<f64>(hx + (<usize>j << 3));
    // Candidate 0 in full: v, u = H v, v^T H v, v . Hx.
    candidateGrid(0, xmin, xmax, maxq, sym);
    let sc = gridScale, z = gridZero;
    memory.fill(u, 0, <usize>len << 3);
    for (let j = 0; j < len; j++) {
      const v = quantCode(load<f32>(xb + (<usize>j << 2)), sc, z, maxq) - z;
      store<f32>(vprev + (<usize>j << 2), v);
      if (v != 0) axpy64(u, hb + <usize>j * rowBytes, <f64>v, len);
    }
    let vHv: f64 = 0, vHx: f64 = 0;
    for (let j = 0; j < len; j++) {
      const v = <f64>load<f32>(vprev + (<usize>j << 2));
      vHv += v * load<f64>(u + (<usize>j << 3));
      vHx += v * load<f64>(hx + (<usize>j << 3));
    }
    let s = <f64>sc;
    store<f64>(scores, load<f64>(scores) + (xHx - 2 * s * vHx + s * s * vHv));
    for (let c = 1; c < CLIP_CANDIDATES; c++) {
      candidateGrid(c, xmin, xmax, maxq, sym);
      sc = gridScale;
      z = gridZero;
      const vs = f32x4.splat(sc), vz = f32x4.splat(z), vmax = f32x4.splat(maxq), vzero = f32x4.splat(0);
      let j = 0;
      for (; j + 4 <= len; j += 4) {
        const o = <usize>j << 2;
        const code = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.div(v128.load(xb + o), vs)), vz), vzero), vmax);
        const v = f32x4.sub(code, vz);
        if (!v128.any_true(f32x4.ne(v, v128.load(vprev + o)))) continue;
        for (let i = j; i < j + 4; i++) {
          vHv += scanChange(i, xb, vprev, hb, rowBytes, hx, u, len, sc, z, maxq);
          vHx += scanDeltaHx;
        }
      }
      for (; j < len; j++) {
        vHv += scanChange(j, xb, vprev, hb, rowBytes, hx, u, len, sc, z, maxq);
        vHx += scanDeltaHx;
      }
      s = <f64>sc;
      const so = scores + (<usize>c << 3);
      store<f64>(so, load<f64>(so) + (xHx - 2 * s * vHx + s * s * vHv));
    }
  }
}

// The change of v^T H v when coordinate i takes its code on the current grid (0 if unchanged);
// also leaves the change of v . Hx in scanDeltaHx and updates v and u = H v in place.
let scanDeltaHx: f64 = 0;
// @ts-ignore: decorator
@inline function scanChange(
  i: i32, xb: usize, vprev: usize, hb: usize, rowBytes: usize, hx: usize, u: usize, len: i32, sc: f32, z: f32, maxq: f32,
): f64 {
  scanDeltaHx = 0;
  const vi = quantCode(load<f32>(xb + (<usize>i << 2)), sc, z, maxq) - z;
  const pi = vprev + (<usize>i << 2);
  const old = load<f32>(pi);
  if (vi == old) return 0;
  const d = <f64>vi - <f64>old;
  const hrow = hb + <usize>i * rowBytes;
  scanDeltaHx = d * load<f64>(hx + (<usize>i << 3));
  const change = 2 * d * load<f64>(u + (<usize>i << 3)) + d * d * <f64>load<f32>(hrow + (<usize>i << 2));
  axpy64(u, hrow, d, len);
  store<f32>(pi, vi);
  return change;
}

/** y (f64) += a * x (f32 widened), n elements, two lanes at a time (elementwise: no order). */
// @ts-ignore: decorator
@inline function axpy64(y: usize, x: usize, a: f64, n: i32): void {
  const va = f64x2.splat(a);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const xv = v128.load(x + (<usize>i << 2));
    const yo = y + (<usize>i << 3);
    v128.store(yo, f64x2.add(v128.load(yo), f64x2.mul(va, f64x2.promote_low_f32x4(xv))));
    v128.store(yo, f64x2.add(v128.load(yo, 16), f64x2.mul(va, f64x2.promote_low_f32x4(i32x4.shuffle(xv, xv, 2, 3, 0, 1)))), 16);
  }
  for (; i < n; i++) {
    const yo = y + (<usize>i << 3);
    store<f64>(yo, load<f64>(yo) + a * <f64>load<f32>(x + (<usize>i << 2)));
  }
}

/**
 * OWC: the candidate grid minimising e^T Hg e, e = dequant(quant(x)) - x, with Hg the n x n
 * block of H at hg (leading dimension ldh), every candidate scored exactly (owcScan with one
 * block). First minimum wins. scratch: 5 * n floats + 160 floats. Returns the chosen candidate.
 */
export function gridOwc(x: usize, n: i32, hg: usize, ldh: i32, maxq: f32, sym: bool, scratch: usize): i32 {
  rangeOf(x, n);
  const xmin = rangeMin, xmax = rangeMax;
  const scores = scratch;
  owcScan(x, n, hg, ldh, n, xmin, xmax, maxq, sym, scores, scratch + (<usize>CLIP_CANDIDATES << 3));
  let best = 0;
  let bestScore: f64 = Infinity;
  for (let c = 0; c < CLIP_CANDIDATES; c++) {
    const score = load<f64>(scores + (<usize>c << 3));
    if (score < bestScore) {
      bestScore = score;
      best = c;
    }
  }
  candidateGrid(best, xmin, xmax, maxq, sym);
  lastOwcScore = <f32>bestScore;
  return best;
}
export let lastOwcScore: f32 = 0;

/**
 * Fast per-channel OWC for a band (ALGORITHMS.md allows it): every row's 80 candidates are
 * screened with the block diagonal of H (blocks of 128, owcScan), the OWC_RESCORE best (ties
 * to the lower index) are then scored exactly, e^T H e with the whole H, for all rows at once
 * through quadForms; the first exact minimum in candidate order wins. Writes scales/zeros
 * [rows] (and shrinkIndex if non-zero).
 */
function gridOwcChannelFast(w: usize, rows: i32, cols: i32, h: usize, maxq: f32, sym: bool, scales: usize, zeros: usize, shrinkIndex: usize): void {
  const K = min(OWC_RESCORE, CLIP_CANDIDATES);
  const m = rows * K;
  const errs = heap.alloc((<usize>m * <usize>cols) << 2);
  const exact = heap.alloc(<usize>m << 3);
  const qscratch = heap.alloc((<usize>m * 256) << 2);
  const scores = heap.alloc(<usize>CLIP_CANDIDATES << 3);
  const work = heap.alloc(<usize>(5 * min(OWC_SCREEN_BLOCK, cols)) << 2);
  const picks = heap.alloc(<usize>m << 2);
  for (let r = 0; r < rows; r++) {
    const x = w + ((<usize>r * <usize>cols) << 2);
    rangeOf(x, cols);
    const xmin = rangeMin, xmax = rangeMax;
    owcScan(x, cols, h, cols, OWC_SCREEN_BLOCK, xmin, xmax, maxq, sym, scores, work);
    // K smallest screening scores, by repeated selection (first minimum wins), then sorted
    // by candidate index so the exact pass keeps the first-minimum rule.
    for (let t = 0; t < K; t++) {
      let best = -1;
      let bestScore: f64 = Infinity;
      for (let c = 0; c < CLIP_CANDIDATES; c++) {
        const sc = load<f64>(scores + (<usize>c << 3));
        if (sc < bestScore || best < 0) {
          let taken = false;
          for (let u = 0; u < t; u++) if (load<i32>(picks + (<usize>(r * K + u) << 2)) == c) taken = true;
          if (taken) continue;
          bestScore = sc;
          best = c;
        }
      }
      store<i32>(picks + (<usize>(r * K + t) << 2), best);
    }
    for (let t = 1; t < K; t++) {
      for (let u = t; u > 0; u--) {
        const pa = picks + (<usize>(r * K + u - 1) << 2), pb = picks + (<usize>(r * K + u) << 2);
        const ca = load<i32>(pa), cb = load<i32>(pb);
        if (ca <= cb) break;
        store<i32>(pa, cb);
        store<i32>(pb, ca);
      }
    }
    for (let t = 0; t < K; t++) {
      candidateGrid(load<i32>(picks + (<usize>(r * K + t) << 2)), xmin, xmax, maxq, sym);
      const s = gridScale, z = gridZero;
      const e = errs + ((<usize>(r * K + t) * <usize>cols) << 2);
      for (let i = 0; i < cols; i++) {
        const v = load<f32>(x + (<usize>i << 2));
        store<f32>(e + (<usize>i << 2), dequantCode(quantCode(v, s, z, maxq), s, z) - v);
      }
    }
  }
  quadForms(errs, m, cols, cols, h, cols, exact, qscratch);
  for (let r = 0; r < rows; r++) {
    let best = load<i32>(picks + (<usize>(r * K) << 2));
    let bestScore: f64 = load<f64>(exact + (<usize>(r * K) << 3));
    for (let t = 1; t < K; t++) {
      const sc = load<f64>(exact + (<usize>(r * K + t) << 3));
      if (sc < bestScore) {
        bestScore = sc;
        best = load<i32>(picks + (<usize>(r * K + t) << 2));
      }
    }
    rangeOf(w + ((<usize>r * <usize>cols) << 2), cols);
    candidateGrid(best, rangeMin, rangeMax, maxq, sym);
    const o = <usize>r << 2;
    store<f32>(scales + o, gridScale);
    store<f32>(zeros + o, gridZero);
    if (shrinkIndex) store<i32>(shrinkIndex + o, best);
  }
  heap.free(errs); heap.free(exact); heap.free(qscratch); heap.free(scores); heap.free(work); heap.free(picks);
}

/**
 * Grids for every row and group of W [rows x cols] (groups of `group` consecutive columns,
 * the last one possibly shorter; group <= 0 or >= cols: one per row) into scales/zeros
 * [rows x groups]. method: 0 min-max, 1 MSE, 2 OWC (per-channel: the fast search when cols
 * exceeds the screening block), 3 OWC with the exact per-channel search (needs h [cols x cols];
 * scratch 5*cols + 160 floats).
 */
export function gridParams(
  w: usize, rows: i32, cols: i32, group: i32, maxq: f32, sym: bool, method: i32,
  h: usize, scales: usize, zeros: usize, shrinkIndex: usize, scratch: usize,
): void {
  const gs = group <= 0 || group >= cols ? cols : group;
  const groups = (cols + gs - 1) / gs;
  if (method == 2 && groups == 1 && cols > OWC_SCREEN_BLOCK) {
    gridOwcChannelFast(w, rows, cols, h, maxq, sym, scales, zeros, shrinkIndex);
    return;
  }
  // Groups outer, rows inner: each group's H block is reused by all the band's rows while it
  // is in cache (every (row, group) grid is computed on its own, so the order changes nothing).
  for (let g = 0; g < groups; g++) {
    for (let r = 0; r < rows; r++) {
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

/** out[r, c] = scale * (code - zero) with the grid of (r, gIdx[c]): the dequantized weights. */
export function dequantizeCodes(codes: usize, rows: i32, cols: i32, scales: usize, zeros: usize, groups: i32, gIdx: usize, out: usize): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const go = (<usize>r * <usize>groups + <usize>load<i32>(gIdx + (<usize>c << 2))) << 2;
      const o = <usize>r * <usize>cols + <usize>c;
      store<f32>(out + (o << 2), dequantCode(<f32>load<u8>(codes + o), load<f32>(scales + go), load<f32>(zeros + go)));
    }
  }
}
