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

/** Bytes of owcBlockScores' work for blocks of up to bs values: u and hx (f64), v (f32). */
// @ts-ignore: decorator
@inline function scanWork(bs: i32): usize {
  return <usize>bs * 20;
}

/** Bytes of an f64 copy of a bs x bs block of H. */
// @ts-ignore: decorator
@inline function blockBytes(bs: i32): usize {
  return <usize>bs * <usize>bs * 8;
}

/** dst [len x len] (f64, leading dimension len) = the block of H at h (f32, leading dimension
 * ldh): exact widening, done once per block and shared by every row the block scores. */
function widenBlock(dst: usize, h: usize, ldh: i32, len: i32): void {
  for (let i = 0; i < len; i++) {
    const src = h + ((<usize>i * <usize>ldh) << 2);
    const out = dst + ((<usize>i * <usize>len) << 3);
    for (let j = 0; j < len; j++) store<f64>(out + (<usize>j << 3), <f64>load<f32>(src + (<usize>j << 2)));
  }
}

/**
 * Adds to scores[c] (f64, CLIP_CANDIDATES of them) the scores e^T Hb e of all candidates of the
 * range (xmin, xmax) for the len values at x, Hb [len x len] the f64 block at hb (from
 * widenBlock), e = s_c v_c - x and v_c = code - zero (small integers, exact in f32).
 * Computed as x^T Hb x - 2 s (v . Hx) + s^2 (v^T Hb v) in f64, with u = Hb v kept current by
 * sparse updates: between consecutive candidates only the few coordinates whose code moves
 * change v, and each change i applies v^T H v += 2 d u_i + d^2 H_ii, v . Hx += d hx_i,
 * u += d H[i, :] (H symmetric), in ascending i. So a candidate costs O(changes * len) instead
 * of O(len^2). The codes come four at a time from SIMD lanes (the same operations as quantCode:
 * division, nearest, clamp); every step is a property of the row's own values, so no banding
 * dependence. work: scanWork(len) bytes.
 */
function owcBlockScores<T>(x: usize, len: i32, hb: usize, ldh: i32, xmin: f32, xmax: f32, maxq: f32, sym: bool, scores: usize, work: usize): void {
  const u = work; // f64 [len]
  const hx = work + (<usize>len << 3); // f64 [len]
  const vprev = hx + (<usize>len << 3); // f32 [len]
  const rowBytes = <usize>ldh * sizeof<T>();
  // hx = sum_j x_j H[j, :], xHx = x . hx
  memory.fill(hx, 0, <usize>len << 3);
  for (let j = 0; j < len; j++) {
    const xj = <f64>load<f32>(x + (<usize>j << 2));
    if (xj != 0) axpy64<T>(hx, hb + <usize>j * rowBytes, xj, len);
  }
  let xHx: f64 = 0;
  for (let j = 0; j < len; j++) xHx += <f64>load<f32>(x + (<usize>j << 2)) * load<f64>(hx + (<usize>j << 3));
  // Candidate 0 in full: v, u = H v, v^T H v, v . Hx.
  let grid = candidateGrid(0, xmin, xmax, maxq, sym);
  let sc = pairFirst(grid), z = pairSecond(grid);
  memory.fill(u, 0, <usize>len << 3);
  for (let j = 0; j < len; j++) {
    const v = quantCode(load<f32>(x + (<usize>j << 2)), sc, z, maxq) - z;
    store<f32>(vprev + (<usize>j << 2), v);
    if (v != 0) axpy64<T>(u, hb + <usize>j * rowBytes, <f64>v, len);
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
      const code = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.div(v128.load(x + o), vs)), vz), vzero), vmax);
      const v = f32x4.sub(code, vz);
      let moved = i32x4.bitmask(f32x4.ne(v, v128.load(vprev + o)));
      if (!moved) continue;
      // pmin/pmax differ from quantCode's min/max only for a -0 code, whose v is 0 either way.
      for (let l = 0; l < 4; l++) {
        if (!(moved & (1 << l))) continue;
        const i = j + l;
        const vi = l == 0 ? f32x4.extract_lane(v, 0) : l == 1 ? f32x4.extract_lane(v, 1) : l == 2 ? f32x4.extract_lane(v, 2) : f32x4.extract_lane(v, 3);
        const d = <f64>vi - <f64>load<f32>(vprev + (<usize>i << 2));
        vHx += d * load<f64>(hx + (<usize>i << 3));
        vHv += applyChange<T>(i, vi, d, vprev, hb, rowBytes, u, len);
      }
    }
    for (; j < len; j++) {
      const vi = quantCode(load<f32>(x + (<usize>j << 2)), sc, z, maxq) - z;
      if (vi == load<f32>(vprev + (<usize>j << 2))) continue;
      const d = <f64>vi - <f64>load<f32>(vprev + (<usize>j << 2));
      vHx += d * load<f64>(hx + (<usize>j << 3));
      vHv += applyChange<T>(j, vi, d, vprev, hb, rowBytes, u, len);
    }
    s = <f64>sc;
    const so = scores + (<usize>c << 3);
    store<f64>(so, load<f64>(so) + (xHx - 2 * s * vHx + s * s * vHv));
  }
}

/** Coordinate i's v becomes vi = v_i + d (d != 0): v and u = H v updated in place; returns
 * the change of v^T H v, 2 d u_i + d^2 H_ii (the caller adds d hx_i to v . Hx). */
// @ts-ignore: decorator
@inline function applyChange<T>(i: i32, vi: f32, d: f64, vprev: usize, hb: usize, rowBytes: usize, u: usize, len: i32): f64 {
  const hrow = hb + <usize>i * rowBytes;
  const change = 2 * d * load<f64>(u + (<usize>i << 3)) + d * d * <f64>load<T>(hrow + <usize>i * sizeof<T>());
  // Most changes are one step: d = +-1 needs no product (d * h is +-h exactly).
  if (sizeof<T>() == 8 && d == 1) addRow(u, hrow, false, len);
  else if (sizeof<T>() == 8 && d == -1) addRow(u, hrow, true, len);
  else axpy64<T>(u, hrow, d, len);
  store<f32>(vprev + (<usize>i << 2), vi);
  return change;
}

/** y (f64) += a * x, x of f64 (a widened block) or f32 (H in place, widened lane by lane):
 * n elements, elementwise, so the lanes change no result. */
// @ts-ignore: decorator
@inline function axpy64<T>(y: usize, x: usize, a: f64, n: i32): void {
  const va = f64x2.splat(a);
  let i = 0;
  if (sizeof<T>() == 8) {
    for (; i + 2 <= n; i += 2) {
      const o = <usize>i << 3;
      v128.store(y + o, f64x2.add(v128.load(y + o), f64x2.mul(va, v128.load(x + o))));
    }
  } else {
    for (; i + 4 <= n; i += 4) {
      const xv = v128.load(x + (<usize>i << 2));
      const yo = y + (<usize>i << 3);
      v128.store(yo, f64x2.add(v128.load(yo), f64x2.mul(va, f64x2.promote_low_f32x4(xv))));
      v128.store(yo, f64x2.add(v128.load(yo, 16), f64x2.mul(va, f64x2.promote_low_f32x4(i32x4.shuffle(xv, xv, 2, 3, 0, 1)))), 16);
    }
  }
  for (; i < n; i++) {
    const yo = y + (<usize>i << 3);
    store<f64>(yo, load<f64>(yo) + a * <f64>load<T>(x + <usize>i * sizeof<T>()));
  }
}

/** y (f64) += x (or -= x when negate), x f64: axpy64 with a = +-1. */
// @ts-ignore: decorator
@inline function addRow(y: usize, x: usize, negate: bool, n: i32): void {
  let i = 0;
  if (negate) {
    for (; i + 2 <= n; i += 2) { const o = <usize>i << 3; v128.store(y + o, f64x2.sub(v128.load(y + o), v128.load(x + o))); }
  } else {
    for (; i + 2 <= n; i += 2) { const o = <usize>i << 3; v128.store(y + o, f64x2.add(v128.load(y + o), v128.load(x + o))); }
  }
  for (; i < n; i++) {
    const o = <usize>i << 3;
    store<f64>(y + o, negate ? load<f64>(y + o) - load<f64>(x + o) : load<f64>(y + o) + load<f64>(x + o));
  }
}

/** Widest group whose block is widened to f64 (2 MiB); wider ones (the exact per-channel
 * search of a wide layer) read H in place. Same arithmetic either way. */
// @ts-ignore: decorator
@inline const OWC_WIDEN_MAX: i32 = 512;

/** Bytes of gridOwcGroup's scratch for groups of up to n values. */
export function gridOwcScratch(n: i32): f64 {
  return <f64>CLIP_CANDIDATES * 8 + <f64>scanWork(n) + (n <= OWC_WIDEN_MAX ? <f64>blockBytes(n) : 0);
}

/** The first candidate with the smallest of the CLIP_CANDIDATES scores (f64) at scores. */
function firstMinimum(scores: usize): i32 {
  let best = 0;
  let bestScore: f64 = Infinity;
  for (let c = 0; c < CLIP_CANDIDATES; c++) {
    const score = load<f64>(scores + (<usize>c << 3));
    if (score < bestScore) {
      bestScore = score;
      best = c;
    }
  }
  return best;
}

/**
 * OWC for group g (columns [c0, c0 + len)) of every row of W [rows x cols]: each row's grid is
 * the candidate minimising e^T Hg e, e = dequant(quant(x)) - x, Hg the group's diagonal block
 * of H [cols x cols], every candidate scored exactly (owcBlockScores); first minimum wins.
 * Writes scales/zeros [rows x groups] at column g. scratch: gridOwcScratch(len) bytes.
 */
export function gridOwcGroup(
  w: usize, rows: i32, cols: i32, c0: i32, len: i32, g: i32, groups: i32, h: usize, maxq: f32, sym: bool,
  scales: usize, zeros: usize, scratch: usize,
): void {
  const scores = scratch;
  const work = scores + (<usize>CLIP_CANDIDATES << 3);
  const hg = h + ((<usize>c0 * <usize>cols + <usize>c0) << 2);
  const widen = len <= OWC_WIDEN_MAX;
  const hb = work + scanWork(len);
  if (widen) widenBlock(hb, hg, cols, len);
  for (let r = 0; r < rows; r++) {
    const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
    const range = rangeOf(x, len);
    const xmin = pairFirst(range), xmax = pairSecond(range);
    memory.fill(scores, 0, <usize>CLIP_CANDIDATES << 3);
    if (widen) owcBlockScores<f64>(x, len, hb, len, xmin, xmax, maxq, sym, scores, work);
    else owcBlockScores<f32>(x, len, hg, cols, xmin, xmax, maxq, sym, scores, work);
    const grid = candidateGrid(firstMinimum(scores), xmin, xmax, maxq, sym);
    const o = (<usize>r * <usize>groups + <usize>g) << 2;
    store<f32>(scales + o, pairFirst(grid));
    store<f32>(zeros + o, pairSecond(grid));
  }
}

/** Bytes of gridOwcChannelFast's scratch for a band of rows x cols. */
export function gridOwcChannelFastScratch(rows: i32, cols: i32): f64 {
  const m = <f64>rows * <f64>OWC_RESCORE;
  const bs = min(OWC_SCREEN_BLOCK, cols);
  return m * <f64>cols * 4 // candidate errors
    + m * 8 // their exact scores
    + quadFormsScratch(rows * OWC_RESCORE) // the exact scoring's products
    + <f64>rows * <f64>CLIP_CANDIDATES * 8 // the screening scores
    + <f64>rows * 8 // the rows' ranges
    + <f64>scanWork(bs) + <f64>blockBytes(bs)
    + m * 4; // the picks
}

/**
 * Fast per-channel OWC for a band (ALGORITHMS.md allows it): every row's candidates are
 * screened with the block diagonal of H (blocks of OWC_SCREEN_BLOCK, owcBlockScores; blocks
 * outer, rows inner, so each block is widened once and scored for the whole band), the
 * OWC_RESCORE best (ties to the lower index) are then scored exactly, e^T H e with the whole
 * H, for all rows at once through quadForms; the first exact minimum in candidate order wins.
 * Writes scales/zeros [rows]. scratch: gridOwcChannelFastScratch(rows, cols) bytes.
 */
export function gridOwcChannelFast(w: usize, rows: i32, cols: i32, h: usize, maxq: f32, sym: bool, scales: usize, zeros: usize, scratch: usize): void {
  const K = min(OWC_RESCORE, CLIP_CANDIDATES);
  const m = rows * K;
  const bs = min(OWC_SCREEN_BLOCK, cols);
  const errs = scratch;
  const exact = errs + ((<usize>m * <usize>cols) << 2);
  const qscratch = exact + (<usize>m << 3);
  const screen = qscratch + <usize>quadFormsScratch(m); // f64 [rows x CLIP_CANDIDATES]
  const ranges = screen + ((<usize>rows * <usize>CLIP_CANDIDATES) << 3); // f32 pairs [rows]
  const work = ranges + (<usize>rows << 3);
  const hb = work + scanWork(bs);
  const picks = hb + blockBytes(bs);
  memory.fill(screen, 0, (<usize>rows * <usize>CLIP_CANDIDATES) << 3);
  for (let r = 0; r < rows; r++) store<i64>(ranges + (<usize>r << 3), rangeOf(w + ((<usize>r * <usize>cols) << 2), cols));
  for (let b0 = 0; b0 < cols; b0 += bs) {
    const len = min(bs, cols - b0);
    widenBlock(hb, h + ((<usize>b0 * <usize>cols + <usize>b0) << 2), cols, len);
    for (let r = 0; r < rows; r++) {
      const range = load<i64>(ranges + (<usize>r << 3));
      owcBlockScores<f64>(w + ((<usize>r * <usize>cols + <usize>b0) << 2), len, hb, len, pairFirst(range), pairSecond(range), maxq, sym,
        screen + ((<usize>r * <usize>CLIP_CANDIDATES) << 3), work);
    }
  }
  for (let r = 0; r < rows; r++) {
    const x = w + ((<usize>r * <usize>cols) << 2);
    const range = load<i64>(ranges + (<usize>r << 3));
    const xmin = pairFirst(range), xmax = pairSecond(range);
    const scores = screen + ((<usize>r * <usize>CLIP_CANDIDATES) << 3);
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
