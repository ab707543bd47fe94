// Optimal weight clipping (OWC, the CDQuant paper's initialiser; ALGORITHMS.md "OWC"): each
// row's (or group's) grid is the clip candidate with the smallest layer loss e^T Hg e,
// e = dequant(quant(x)) - x, Hg the matching diagonal block of H. Exact for groups and (on
// request) per channel; a fast per-channel search screens with the block diagonal of H.

import { CLIP_CANDIDATES, candidateGrid, dequantCode, quantCode, rangeOf } from './grid';
import { quadForms, quadFormsScratch } from './loss';
import { pairFirst, pairSecond } from './pairs';

// Candidates rescored exactly by the fast per-channel search.
// @ts-ignore: decorator
@inline const OWC_RESCORE: i32 = 8;
// Block width of the fast per-channel search's block-diagonal screening.
// @ts-ignore: decorator
@inline export const OWC_SCREEN_BLOCK: i32 = 128;

/** Bytes of owcScan's work for blocks of bs values: u and hx (f64), v (f32), one f64 slot. */
// @ts-ignore: decorator
@inline function scanWork(bs: i32): usize {
  return <usize>bs * 20 + 8;
}

/**
 * Scores of all CLIP_CANDIDATES candidates of the range (xmin, xmax) for the n values at x, in
 * the metric of the block diagonal of H (blocks of bs consecutive columns; bs >= n: the whole
 * n x n block at h, leading dimension ldh): scores[c] (f64) = sum_B e_B^T H_BB e_B, with
 * e = s_c v_c - x and v_c = code - zero (small integers, exact in f32).
 * Computed per block as x^T H x - 2 s (v . Hx) + s^2 (v^T H v) in f64, with u = H v kept
 * current by sparse updates: between consecutive candidates only the few coordinates whose
 * code moves change v, and each change i applies v^T H v += 2 d u_i + d^2 H_ii, v.Hx += d hx_i,
 * u += d H[i, :] (H symmetric), in ascending i. So a candidate costs O(changes * bs) instead of
 * O(bs^2). Every step is a property of the row's own values: no banding dependence.
 * work: scanWork(min(bs, n)) bytes.
 */
export function owcScan(x: usize, n: i32, h: usize, ldh: i32, bs: i32, xmin: f32, xmax: f32, maxq: f32, sym: bool, scores: usize, work: usize): void {
  if (bs > n) bs = n;
  const u = work; // f64 [bs]
  const hx = work + (<usize>bs << 3); // f64 [bs]
  const vprev = hx + (<usize>bs << 3); // f32 [bs]
  const vHxChange = vprev + (<usize>bs << 2); // f64: the last scanChange's change of v . Hx
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
    let grid = candidateGrid(0, xmin, xmax, maxq, sym);
    let sc = pairFirst(grid), z = pairSecond(grid);
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
      grid = candidateGrid(c, xmin, xmax, maxq, sym);
      sc = pairFirst(grid);
      z = pairSecond(grid);
      const vs = f32x4.splat(sc), vz = f32x4.splat(z), vmax = f32x4.splat(maxq), vzero = f32x4.splat(0);
      let j = 0;
      for (; j + 4 <= len; j += 4) {
        const o = <usize>j << 2;
        const code = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.div(v128.load(xb + o), vs)), vz), vzero), vmax);
        const v = f32x4.sub(code, vz);
        if (!v128.any_true(f32x4.ne(v, v128.load(vprev + o)))) continue;
        for (let i = j; i < j + 4; i++) {
          vHv += scanChange(i, xb, vprev, hb, rowBytes, hx, u, len, sc, z, maxq, vHxChange);
          vHx += load<f64>(vHxChange);
        }
      }
      for (; j < len; j++) {
        vHv += scanChange(j, xb, vprev, hb, rowBytes, hx, u, len, sc, z, maxq, vHxChange);
        vHx += load<f64>(vHxChange);
      }
      s = <f64>sc;
      const so = scores + (<usize>c << 3);
      store<f64>(so, load<f64>(so) + (xHx - 2 * s * vHx + s * s * vHv));
    }
  }
}

/** The change of v^T H v when coordinate i takes its code on the current grid (0 if
 * unchanged); writes the change of v . Hx to vHxChange and updates v and u = H v in place. */
// @ts-ignore: decorator
@inline function scanChange(
  i: i32, xb: usize, vprev: usize, hb: usize, rowBytes: usize, hx: usize, u: usize, len: i32, sc: f32, z: f32, maxq: f32, vHxChange: usize,
): f64 {
  store<f64>(vHxChange, 0);
  const vi = quantCode(load<f32>(xb + (<usize>i << 2)), sc, z, maxq) - z;
  const pi = vprev + (<usize>i << 2);
  const old = load<f32>(pi);
  if (vi == old) return 0;
  const d = <f64>vi - <f64>old;
  const hrow = hb + <usize>i * rowBytes;
  store<f64>(vHxChange, d * load<f64>(hx + (<usize>i << 3)));
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

/** Bytes of gridOwc's scratch for n values. */
export function gridOwcScratch(n: i32): f64 {
  return <f64>CLIP_CANDIDATES * 8 + <f64>n * 20 + 8;
}

/**
 * OWC: the candidate grid minimising e^T Hg e, e = dequant(quant(x)) - x, with Hg the n x n
 * block of H at hg (leading dimension ldh), every candidate scored exactly (owcScan with one
 * block). First minimum wins. Returns f32Pair(scale, zero). scratch: gridOwcScratch(n) bytes.
 */
export function gridOwc(x: usize, n: i32, hg: usize, ldh: i32, maxq: f32, sym: bool, scratch: usize): i64 {
  const range = rangeOf(x, n);
  const xmin = pairFirst(range), xmax = pairSecond(range);
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
  return candidateGrid(best, xmin, xmax, maxq, sym);
}

/** Bytes of gridOwcChannelFast's scratch for a band of rows x cols. */
export function gridOwcChannelFastScratch(rows: i32, cols: i32): f64 {
  const m = <f64>rows * <f64>OWC_RESCORE;
  return m * <f64>cols * 4 // candidate errors
    + m * 8 // their exact scores
    + quadFormsScratch(rows * OWC_RESCORE) // the exact scoring's products
    + <f64>CLIP_CANDIDATES * 8 // one row's screening scores
    + <f64>scanWork(min(OWC_SCREEN_BLOCK, cols))
    + m * 4; // the picks
}

/**
 * Fast per-channel OWC for a band (ALGORITHMS.md allows it): every row's candidates are
 * screened with the block diagonal of H (blocks of OWC_SCREEN_BLOCK, owcScan), the OWC_RESCORE
 * best (ties to the lower index) are then scored exactly, e^T H e with the whole H, for all
 * rows at once through quadForms; the first exact minimum in candidate order wins. Writes
 * scales/zeros [rows]. scratch: gridOwcChannelFastScratch(rows, cols) bytes.
 */
export function gridOwcChannelFast(w: usize, rows: i32, cols: i32, h: usize, maxq: f32, sym: bool, scales: usize, zeros: usize, scratch: usize): void {
  const K = min(OWC_RESCORE, CLIP_CANDIDATES);
  const m = rows * K;
  const errs = scratch;
  const exact = errs + ((<usize>m * <usize>cols) << 2);
  const qscratch = exact + (<usize>m << 3);
  const scores = qscratch + <usize>quadFormsScratch(m);
  const work = scores + (<usize>CLIP_CANDIDATES << 3);
  const picks = work + scanWork(min(OWC_SCREEN_BLOCK, cols));
  for (let r = 0; r < rows; r++) {
    const x = w + ((<usize>r * <usize>cols) << 2);
    const range = rangeOf(x, cols);
    const xmin = pairFirst(range), xmax = pairSecond(range);
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
      const grid = candidateGrid(load<i32>(picks + (<usize>(r * K + t) << 2)), xmin, xmax, maxq, sym);
      const s = pairFirst(grid), z = pairSecond(grid);
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
    const range = rangeOf(w + ((<usize>r * <usize>cols) << 2), cols);
    const grid = candidateGrid(best, pairFirst(range), pairSecond(range), maxq, sym);
    const o = <usize>r << 2;
    store<f32>(scales + o, pairFirst(grid));
    store<f32>(zeros + o, pairSecond(grid));
  }
}
