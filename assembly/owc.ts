// Optimal weight clipping (OWC, the CDQuant paper's initialiser; ALGORITHMS.md "OWC"): each
// row's (or group's) grid is the clip candidate with the smallest layer loss e^T Hg e,
// e = dequant(quant(x)) - x, Hg the matching diagonal block of H. Exact for groups and (on
// request) per channel; a fast per-channel search screens with the block diagonal of H. The
// exact search of a widened block ends early once a certified lower bound shows no remaining
// candidate can win (screenBounds): the same grid, fewer candidates scored.

import { CLIP_CANDIDATES, candidateGrid, dequantCode, quantCode, rangeOf } from './grid';
import { quadForms, quadFormsScratch } from './loss';
import { pairFirst, pairSecond } from './pairs';

// Candidates rescored exactly by the fast per-channel search. Its screen (the block diagonal of
// H) misses the cross-block terms that correlated inputs make large: on such an H the exact
// best ranks up to about 30th by the screen, and 8 finalists leave the RTN loss 0.2-1.7% above
// the exact search's (32 finalists: within 0.05%, at 3x the time). Kept at 8 because CD, the
// default method, descends from this grid and ends lower from it than from the exact grid on
// 14 of 16 layers measured (README, Speed); owcExact gives the exact grid.
// @ts-ignore: decorator
@inline const OWC_RESCORE: i32 = 8;
// Error rows per exact rescoring batch (quadForms' rows): bounds the scratch to this many rows
// of cols floats whatever the band's height; a row's forms do not depend on its batch.
// @ts-ignore: decorator
@inline const OWC_RESCORE_BATCH: i32 = 256;
// Block width of the fast per-channel search's block-diagonal screening.
// @ts-ignore: decorator
@inline export const OWC_SCREEN_BLOCK: i32 = 128;

/** Bytes of owcBlockScores' work for blocks of up to bs values: u and hx (f64), v (f32), and
 * a batch of rows of H (i32 row, f64 coefficient). */
// @ts-ignore: decorator
@inline function scanWork(bs: i32): usize {
  return <usize>bs * 32;
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
 * of O(len^2). The updates of u are batched (addRows): the same adds in the same order per
 * element, u read and written once per four changes. The codes come four at a time from SIMD lanes (the same operations as quantCode:
 * division, nearest, clamp); every step is a property of the row's own values, so no banding
 * dependence. work: scanWork(len) bytes.
 * stops (0: score every candidate): f64 [CLIP_CANDIDATES] from screenBounds, for a block scored
 * alone (scores zero on entry): once stops[c] exceeds the best score so far, candidates c on
 * are given +Infinity unscored. The scored ones take the same path as without stops (a prefix
 * of it), so their scores and the first minimum are the same bits.
 */
function owcBlockScores<T>(x: usize, len: i32, hb: usize, ldh: i32, xmin: f32, xmax: f32, maxq: f32, sym: bool, scores: usize, work: usize, stops: usize): void {
  const u = work; // f64 [len]
  const hx = work + (<usize>len << 3); // f64 [len]
  const vprev = hx + (<usize>len << 3); // f32 [len]
  const idx = vprev + (<usize>len << 2); // i32 [len]: the rows of H a batch adds
  const coef = idx + (<usize>len << 2); // f64 [len]: their coefficients
  const rowBytes = <usize>ldh * sizeof<T>();
  // hx = sum_j x_j H[j, :] over the nonzero x_j in ascending j, xHx = x . hx
  let count = 0;
  for (let j = 0; j < len; j++) {
    const xj = <f64>load<f32>(x + (<usize>j << 2));
    if (xj != 0) count = pushTerm(idx, coef, count, j, xj);
  }
  memory.fill(hx, 0, <usize>len << 3);
  addRows<T>(hx, hb, rowBytes, idx, coef, count, len);
  let xHx: f64 = 0;
  for (let j = 0; j < len; j++) xHx += <f64>load<f32>(x + (<usize>j << 2)) * load<f64>(hx + (<usize>j << 3));
  // Candidate 0 in full: v, u = H v, v^T H v, v . Hx.
  let grid = candidateGrid(0, xmin, xmax, maxq, sym);
  let sc = pairFirst(grid), z = pairSecond(grid);
  count = 0;
  for (let j = 0; j < len; j++) {
    const v = quantCode(load<f32>(x + (<usize>j << 2)), sc, z, maxq) - z;
    store<f32>(vprev + (<usize>j << 2), v);
    if (v != 0) count = pushTerm(idx, coef, count, j, <f64>v);
  }
  memory.fill(u, 0, <usize>len << 3);
  addRows<T>(u, hb, rowBytes, idx, coef, count, len);
  let vHv: f64 = 0, vHx: f64 = 0;
  for (let j = 0; j < len; j++) {
    const v = <f64>load<f32>(vprev + (<usize>j << 2));
    vHv += v * load<f64>(u + (<usize>j << 3));
    vHx += v * load<f64>(hx + (<usize>j << 3));
  }
  let s = <f64>sc;
  let best = load<f64>(scores) + (xHx - 2 * s * vHx + s * s * vHv);
  store<f64>(scores, best);
  for (let c = 1; c < CLIP_CANDIDATES; c++) {
    if (stops && load<f64>(stops + (<usize>c << 3)) > best) {
      // No candidate from c on can score below the best so far (screenBounds): they lose.
      for (let t = c; t < CLIP_CANDIDATES; t++) store<f64>(scores + (<usize>t << 3), Infinity);
      return;
    }
    grid = candidateGrid(c, xmin, xmax, maxq, sym);
    sc = pairFirst(grid);
    z = pairSecond(grid);
    const vs = f32x4.splat(sc), vz = f32x4.splat(z), vmax = f32x4.splat(maxq), vzero = f32x4.splat(0);
    // The coordinates whose code moves, in ascending order, with their steps d.
    count = 0;
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
        count = pushTerm(idx, coef, count, i, <f64>vi - <f64>load<f32>(vprev + (<usize>i << 2)));
        store<f32>(vprev + (<usize>i << 2), vi);
      }
    }
    for (; j < len; j++) {
      const vi = quantCode(load<f32>(x + (<usize>j << 2)), sc, z, maxq) - z;
      if (vi == load<f32>(vprev + (<usize>j << 2))) continue;
      count = pushTerm(idx, coef, count, j, <f64>vi - <f64>load<f32>(vprev + (<usize>j << 2)));
      store<f32>(vprev + (<usize>j << 2), vi);
    }
    // The changes one after another, as if u were updated after each: change k sees u_i with
    // the updates of changes 0..k-1 added in that order, then adds 2 d u_i + d^2 H_ii to vHv.
    for (let k = 0; k < count; k++) {
      const i = load<i32>(idx + (<usize>k << 2));
      const d = load<f64>(coef + (<usize>k << 3));
      vHx += d * load<f64>(hx + (<usize>i << 3));
      let ui = load<f64>(u + (<usize>i << 3));
      for (let m = 0; m < k; m++) {
        ui = ui + load<f64>(coef + (<usize>m << 3)) * <f64>load<T>(hb + <usize>load<i32>(idx + (<usize>m << 2)) * rowBytes + <usize>i * sizeof<T>());
      }
      vHv += 2 * d * ui + d * d * <f64>load<T>(hb + <usize>i * rowBytes + <usize>i * sizeof<T>());
    }
    // Then u = H v with all of them, each element's adds in change order.
    addRows<T>(u, hb, rowBytes, idx, coef, count, len);
    s = <f64>sc;
    const so = scores + (<usize>c << 3);
    const score = load<f64>(so) + (xHx - 2 * s * vHx + s * s * vHv);
    store<f64>(so, score);
    if (score < best) best = score;
  }
}

/** Appends (row, coefficient) to a batch; returns the new count. */
// @ts-ignore: decorator
@inline function pushTerm(idx: usize, coef: usize, count: i32, row: i32, a: f64): i32 {
  store<i32>(idx + (<usize>count << 2), row);
  store<f64>(coef + (<usize>count << 3), a);
  return count + 1;
}

/**
 * y (f64 [n]) += sum_k coef_k H[idx_k, :] with each element's adds in k order, exactly as
 * count successive axpys y = y + coef_k * H[idx_k, :] (the same bits), but four rows per pass
 * over y for widened blocks: y is loaded and stored once per four rows instead of per row.
 */
// @ts-ignore: decorator
@inline function addRows<T>(y: usize, hb: usize, rowBytes: usize, idx: usize, coef: usize, count: i32, n: i32): void {
  let k = 0;
  if (sizeof<T>() == 8) {
    for (; k + 4 <= count; k += 4) {
      const r0 = hb + <usize>load<i32>(idx + (<usize>k << 2)) * rowBytes;
      const r1 = hb + <usize>load<i32>(idx + (<usize>(k + 1) << 2)) * rowBytes;
      const r2 = hb + <usize>load<i32>(idx + (<usize>(k + 2) << 2)) * rowBytes;
      const r3 = hb + <usize>load<i32>(idx + (<usize>(k + 3) << 2)) * rowBytes;
      const c0 = load<f64>(coef + (<usize>k << 3)), c1 = load<f64>(coef + (<usize>(k + 1) << 3));
      const c2 = load<f64>(coef + (<usize>(k + 2) << 3)), c3 = load<f64>(coef + (<usize>(k + 3) << 3));
      const a0 = f64x2.splat(c0), a1 = f64x2.splat(c1), a2 = f64x2.splat(c2), a3 = f64x2.splat(c3);
      let i = 0;
      for (; i + 2 <= n; i += 2) {
        const o = <usize>i << 3;
        let acc = f64x2.add(v128.load(y + o), f64x2.mul(a0, v128.load(r0 + o)));
        acc = f64x2.add(acc, f64x2.mul(a1, v128.load(r1 + o)));
        acc = f64x2.add(acc, f64x2.mul(a2, v128.load(r2 + o)));
        v128.store(y + o, f64x2.add(acc, f64x2.mul(a3, v128.load(r3 + o))));
      }
      for (; i < n; i++) {
        const o = <usize>i << 3;
        const a = load<f64>(y + o) + c0 * load<f64>(r0 + o);
        const b = a + c1 * load<f64>(r1 + o);
        const c = b + c2 * load<f64>(r2 + o);
        store<f64>(y + o, c + c3 * load<f64>(r3 + o));
      }
    }
  }
  for (; k < count; k++) axpy64<T>(y, hb + <usize>load<i32>(idx + (<usize>k << 2)) * rowBytes, load<f64>(coef + (<usize>k << 3)), n);
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

// ---- Screening the exact group search ----
// The exact scan's cost is the sparse updates of u = H v, candidate after candidate, and its
// scores depend on that path, so a candidate cannot simply be left out. What is safe is a
// stop: once no remaining candidate can score below the best so far, the scan ends. The scores
// it did compute took the same path as before, so the first minimum is the same candidate.
// "Cannot" is a lower bound that holds for the computed scores, not only the exact ones:
// e^T Hg e >= mu * sum_j H_jj e_j^2 with mu certified below the smallest eigenvalue of the
// block's correlation matrix D^-1/2 Hg D^-1/2 (a Cholesky of it minus mu I succeeds), less a
// bound on the rounding of the computed score.

/** Shifts tried for mu, largest first; a block whose correlation matrix has its smallest
 * eigenvalue below the last is not screened (the bound would rarely stop the scan). */
// @ts-ignore: decorator
@inline const SCREEN_MU_FIRST: f64 = 0.5;
// @ts-ignore: decorator
@inline const SCREEN_MU_TRIES: i32 = 3;

/** Bytes of the screening's work for groups of up to n values. */
// @ts-ignore: decorator
@inline function screenWork(n: i32): usize {
  return <usize>CLIP_CANDIDATES * 8 + <usize>n * 16 + blockBytes(n);
}

/** a . b over n f64, pairwise lanes then their sum (a fixed order). */
// @ts-ignore: decorator
@inline function dot64(a: usize, b: usize, n: i32): f64 {
  let acc = f64x2.splat(0);
  let i = 0;
  for (; i + 2 <= n; i += 2) acc = f64x2.add(acc, f64x2.mul(v128.load(a + (<usize>i << 3)), v128.load(b + (<usize>i << 3))));
  let sum = f64x2.extract_lane(acc, 0) + f64x2.extract_lane(acc, 1);
  if (i < n) sum += load<f64>(a + (<usize>i << 3)) * load<f64>(b + (<usize>i << 3));
  return sum;
}

/** Whether the Cholesky factorisation of C - mu I succeeds, C_ij = hb_ij rs_i rs_j (hb f64
 * [len x len], rs [len] = 1/sqrt(hb_jj)): every pivot positive. l: len x len f64 (the factor's
 * lower triangle, overwritten). */
function choleskySucceeds(hb: usize, len: i32, rs: usize, mu: f64, l: usize): bool {
  for (let i = 0; i < len; i++) {
    const li = l + ((<usize>i * <usize>len) << 3);
    const hi = hb + ((<usize>i * <usize>len) << 3);
    const ri = load<f64>(rs + (<usize>i << 3));
    for (let j = 0; j <= i; j++) {
      const lj = l + ((<usize>j * <usize>len) << 3);
      let a = load<f64>(hi + (<usize>j << 3)) * ri * load<f64>(rs + (<usize>j << 3));
      if (j == i) a -= mu;
      const sum = a - dot64(li, lj, j);
      if (j < i) {
        store<f64>(li + (<usize>j << 3), sum / load<f64>(lj + (<usize>j << 3)));
      } else {
        if (!(sum > 0)) return false;
        store<f64>(li + (<usize>i << 3), Math.sqrt(sum));
      }
    }
  }
  return true;
}

/**
 * A certified lower bound mu > 0 on the smallest eigenvalue of the correlation matrix of the
 * f64 block hb [len x len], or 0 when none of the tried shifts certifies (or the block has a
 * diagonal that is not positive and finite). A successful Cholesky of the computed C - mu I is
 * exact for C - mu I + E with ||E|| <= (len + 1) len 2^-53 (entries of the factor products are
 * at most 1 in size here): 3e-11 for len = 512. The result keeps a margin far above that and
 * the rounding of C's entries. rs: receives 1/sqrt(hb_jj) [len]; l: len x len f64.
 */
function screenMu(hb: usize, len: i32, rs: usize, l: usize): f64 {
  for (let j = 0; j < len; j++) {
    const d = load<f64>(hb + ((<usize>j * <usize>len + <usize>j) << 3));
    if (!(d > 0 && d < Infinity)) return 0;
    store<f64>(rs + (<usize>j << 3), 1 / Math.sqrt(d));
  }
  let mu = SCREEN_MU_FIRST;
  for (let t = 0; t < SCREEN_MU_TRIES; t++, mu *= 0.5) {
    if (choleskySucceeds(hb, len, rs, mu, l)) return mu * (1 - 1e-6) - 1e-9;
  }
  return 0;
}

/** Largest |entry| of the f64 block hb [len x len] (Infinity when one is not finite). */
function blockMaxAbs(hb: usize, len: i32): f64 {
  let m: f64 = 0;
  const n = <usize>len * <usize>len;
  for (let i: usize = 0; i < n; i++) {
    const a = Math.abs(load<f64>(hb + (i << 3)));
    if (!(a <= m)) m = a < Infinity ? a : Infinity;
  }
  return m;
}

/**
 * stops [CLIP_CANDIDATES] for owcBlockScores: stops[c] is at most every computed score of the
 * candidates c and after. For each candidate a lower bound on mu * sum_j H_jj e_j^2 (e = s v - x)
 * from f32 arithmetic: W = sum of dg_j * e~_j^2 over f32 lanes, e~ = fl(fl(s v) - x), which lies
 * within 2u (|s v| + |e~|) of e (u = 2^-24; |v| <= maxq), so sum H_jj e_j^2 >= W - 4u (s maxq
 * sqrt(sum H_jj) sqrt(W) + W), and W is within (len / 4 + 8) u of its exact sum (lanes of
 * len / 4 sequential adds of positive terms of two products each, then 3 more). From that,
 * less a bound on how far the exact scan's computed score can lie below the exact e^T Hb e:
 * with N its sequential steps so far (len for the start, one per code change since), P the
 * mass of v put into u = Hb v (sum |v_0| + sum |d| over the changes), S = sum |x_j| and
 * M = max |Hb_ij|, the terms of xHx, 2 s vHx and s^2 vHv sum in absolute value to at most
 * M (S^2 + 2 s P S + 3 s^2 P^2), and with the rounding of u and hx carried into them the
 * computed score is within 9 (N + 3) 2^-53 M (S + s P)^2 of the exact one (first order);
 * 1e-15 (N + len + 8) M (S + s P)^2 is used (9 * 2^-53 < 1e-15). The codes and their changes are those of the scan (the same operations).
 * Then stops[c] = the minimum over c' >= c.
 * work: H_jj as f32 [len] (rounded down: dg_j <= H_jj), then f32 [len] for the codes.
 */
function screenBounds(
  x: usize, len: i32, sumDiag: f64, mu: f64, hmax: f64, xmin: f32, xmax: f32, maxq: f32, sym: bool, stops: usize, work: usize,
): void {
  const dg = work; // H_jj, f32 [len] rounded down
  const vb = work + (<usize>len << 2); // codes of the previous candidate, f32 [len]
  let sx: f64 = 0;
  for (let j = 0; j < len; j++) sx += Math.abs(<f64>load<f32>(x + (<usize>j << 2)));
  const rootDiag = Math.sqrt(sumDiag);
  const u: f64 = 5.9604644775390625e-8; // 2^-24
  let steps: f64 = <f64>len;
  let mass: f64 = 0;
  memory.fill(vb, 0, <usize>len << 2); // so candidate 0's mass is sum |v_0|
  for (let c = 0; c < CLIP_CANDIDATES; c++) {
    const grid = candidateGrid(c, xmin, xmax, maxq, sym);
    const sc = pairFirst(grid), z = pairSecond(grid);
    const vs = f32x4.splat(sc), vz = f32x4.splat(z), vmax = f32x4.splat(maxq), vzero = f32x4.splat(0);
    let acc = f32x4.splat(0);
    let moved = 0;
    let moves = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= len; j += 4) {
      const o = <usize>j << 2;
      const xv = v128.load(x + o);
      const code = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.div(xv, vs)), vz), vzero), vmax);
      const v = f32x4.sub(code, vz);
      const prev = v128.load(vb + o);
      moved += <i32>popcnt(i32x4.bitmask(f32x4.ne(v, prev)));
      moves = f32x4.add(moves, f32x4.abs(f32x4.sub(v, prev)));
      v128.store(vb + o, v);
      const e = f32x4.sub(f32x4.mul(vs, v), xv);
      acc = f32x4.add(acc, f32x4.mul(v128.load(dg + o), f32x4.mul(e, e)));
    }
    let w = <f64>f32x4.extract_lane(acc, 0) + <f64>f32x4.extract_lane(acc, 1) + <f64>f32x4.extract_lane(acc, 2) + <f64>f32x4.extract_lane(acc, 3);
    let m = <f64>f32x4.extract_lane(moves, 0) + <f64>f32x4.extract_lane(moves, 1) + <f64>f32x4.extract_lane(moves, 2) + <f64>f32x4.extract_lane(moves, 3);
    for (; j < len; j++) {
      const xj = load<f32>(x + (<usize>j << 2));
      const v = quantCode(xj, sc, z, maxq) - z;
      const prev = load<f32>(vb + (<usize>j << 2));
      if (v != prev) moved++;
      m += Math.abs(<f64>v - <f64>prev);
      store<f32>(vb + (<usize>j << 2), v);
      const e = sc * v - xj;
      w += <f64>load<f32>(dg + (<usize>j << 2)) * <f64>(e * e);
    }
    if (c > 0) steps += <f64>moved;
    mass += m;
    const s = <f64>sc;
    const gamma = (<f64>len * 0.25 + 8) * u;
    const whi = w * (1 + gamma);
    const weighted = max<f64>(0, w * (1 - gamma) - 4 * u * (s * <f64>maxq * rootDiag * 1.001 * Math.sqrt(whi) + whi));
    const bound = s * mass + sx;
    store<f64>(stops + (<usize>c << 3), mu * weighted * (1 - 1e-9) - 1e-15 * (steps + <f64>len + 8) * hmax * bound * bound);
  }
  for (let c = CLIP_CANDIDATES - 2; c >= 0; c--) {
    const o = stops + (<usize>c << 3);
    store<f64>(o, min<f64>(load<f64>(o), load<f64>(o + 8)));
  }
}

/** Widest group whose block is widened to f64 (2 MiB); wider ones (the exact per-channel
 * search of a wide layer) read H in place. Same arithmetic either way. */
// @ts-ignore: decorator
@inline const OWC_WIDEN_MAX: i32 = 512;

/** Bytes of gridOwcGroup's scratch for groups of up to n values. */
export function gridOwcScratch(n: i32): f64 {
  return <f64>CLIP_CANDIDATES * 8 + <f64>scanWork(n) + (n <= OWC_WIDEN_MAX ? <f64>blockBytes(n) + <f64>screenWork(n) : 0);
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
  const stops = hb + blockBytes(len);
  const boundWork = stops + (<usize>CLIP_CANDIDATES << 3);
  let mu: f64 = 0, hmax: f64 = 0, sumDiag: f64 = 0;
  if (widen) {
    widenBlock(hb, hg, cols, len);
    // Once per block, shared by the band's rows. The factor's room follows the bound work.
    hmax = blockMaxAbs(hb, len);
    if (hmax < Infinity) mu = screenMu(hb, len, boundWork + (<usize>len << 3), boundWork + (<usize>len << 4));
    for (let j = 0; j < len; j++) {
      // f32 of the f64 widening of an f32: exact (the bound pass needs dg_j <= H_jj).
      const d = load<f64>(hb + ((<usize>j * <usize>len + <usize>j) << 3));
      store<f32>(boundWork + (<usize>j << 2), <f32>d);
      sumDiag += d;
    }
  }
  for (let r = 0; r < rows; r++) {
    const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
    const range = rangeOf(x, len);
    const xmin = pairFirst(range), xmax = pairSecond(range);
    memory.fill(scores, 0, <usize>CLIP_CANDIDATES << 3);
    if (widen) {
      if (mu > 0) screenBounds(x, len, sumDiag, mu, hmax, xmin, xmax, maxq, sym, stops, boundWork);
      owcBlockScores<f64>(x, len, hb, len, xmin, xmax, maxq, sym, scores, work, mu > 0 ? stops : 0);
    } else owcBlockScores<f32>(x, len, hg, cols, xmin, xmax, maxq, sym, scores, work, 0);
    const grid = candidateGrid(firstMinimum(scores), xmin, xmax, maxq, sym);
    const o = (<usize>r * <usize>groups + <usize>g) << 2;
    store<f32>(scales + o, pairFirst(grid));
    store<f32>(zeros + o, pairSecond(grid));
  }
}

/** Bytes of gridOwcChannelFast's scratch for a band of rows x cols. */
export function gridOwcChannelFastScratch(rows: i32, cols: i32): f64 {
  const m = <f64>rows * <f64>OWC_RESCORE;
  const batch = <f64>rescoreRows(rows) * <f64>OWC_RESCORE;
  const bs = min(OWC_SCREEN_BLOCK, cols);
  return batch * <f64>cols * 4 // one batch of candidate errors
    + batch * 8 // their exact scores
    + quadFormsScratch(<i32>batch) // the exact scoring's products
    + <f64>rows * <f64>CLIP_CANDIDATES * 8 // the screening scores
    + <f64>rows * 8 // the rows' ranges
    + <f64>scanWork(bs) + <f64>blockBytes(bs)
    + m * 4; // the picks
}

/** The candidate (of the K at picks, in candidate order) with the first smallest exact score. */
function bestPick(picks: usize, exact: usize, K: i32): i32 {
  let best = load<i32>(picks);
  let bestScore: f64 = load<f64>(exact);
  for (let t = 1; t < K; t++) {
    const sc = load<f64>(exact + (<usize>t << 3));
    if (sc < bestScore) {
      bestScore = sc;
      best = load<i32>(picks + (<usize>t << 2));
    }
  }
  return best;
}

/** Rows whose finalists one rescoring batch holds (at least 1). */
// @ts-ignore: decorator
@inline function rescoreRows(rows: i32): i32 {
  return min(rows, max(1, OWC_RESCORE_BATCH / min(OWC_RESCORE, CLIP_CANDIDATES)));
}

/**
 * Fast per-channel OWC for a band (ALGORITHMS.md allows it): every row's candidates are
 * screened with the block diagonal of H (blocks of OWC_SCREEN_BLOCK, owcBlockScores; blocks
 * outer, rows inner, so each block is widened once and scored for the whole band), the
 * OWC_RESCORE best (ties to the lower index) are then scored exactly, e^T H e with the whole
 * H, through quadForms in batches of rows; the first exact minimum in candidate order wins.
 * Writes scales/zeros [rows]. scratch: gridOwcChannelFastScratch(rows, cols) bytes.
 */
export function gridOwcChannelFast(w: usize, rows: i32, cols: i32, h: usize, maxq: f32, sym: bool, scales: usize, zeros: usize, scratch: usize): void {
  const K = min(OWC_RESCORE, CLIP_CANDIDATES);
  const batchRows = rescoreRows(rows);
  const m = batchRows * K; // error rows per rescoring batch
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
        screen + ((<usize>r * <usize>CLIP_CANDIDATES) << 3), work, 0);
    }
  }
  for (let r = 0; r < rows; r++) {
    const scores = screen + ((<usize>r * <usize>CLIP_CANDIDATES) << 3);
    // The K smallest screening scores (ties to the lower index), in candidate order so the
    // exact pass keeps the first-minimum rule: c is taken when fewer than K candidates rank
    // before it.
    let t = 0;
    for (let c = 0; c < CLIP_CANDIDATES; c++) {
      const sc = load<f64>(scores + (<usize>c << 3));
      let before = 0;
      for (let d = 0; d < CLIP_CANDIDATES; d++) {
        const sd = load<f64>(scores + (<usize>d << 3));
        if (sd < sc || (sd == sc && d < c)) before++;
      }
      if (before < K) store<i32>(picks + (<usize>(r * K + t++) << 2), c);
    }
  }
  for (let r0 = 0; r0 < rows; r0 += batchRows) {
    const r1 = min(r0 + batchRows, rows);
    for (let r = r0; r < r1; r++) {
      const x = w + ((<usize>r * <usize>cols) << 2);
      const range = load<i64>(ranges + (<usize>r << 3));
      for (let t = 0; t < K; t++) {
        const grid = candidateGrid(load<i32>(picks + (<usize>(r * K + t) << 2)), pairFirst(range), pairSecond(range), maxq, sym);
        const s = pairFirst(grid), z = pairSecond(grid);
        const e = errs + ((<usize>((r - r0) * K + t) * <usize>cols) << 2);
        for (let i = 0; i < cols; i++) {
          const v = load<f32>(x + (<usize>i << 2));
          store<f32>(e + (<usize>i << 2), dequantCode(quantCode(v, s, z, maxq), s, z) - v);
        }
      }
    }
    quadForms(errs, (r1 - r0) * K, cols, cols, h, cols, exact, qscratch);
    for (let r = r0; r < r1; r++) store<i32>(picks + (<usize>(r * K) << 2), bestPick(picks + (<usize>(r * K) << 2), exact + (<usize>((r - r0) * K) << 3), K));
  }
  for (let r = 0; r < rows; r++) {
    const best = load<i32>(picks + (<usize>(r * K) << 2));
    const range = rangeOf(w + ((<usize>r * <usize>cols) << 2), cols);
    const grid = candidateGrid(best, pairFirst(range), pairSecond(range), maxq, sym);
    const o = <usize>r << 2;
    store<f32>(scales + o, pairFirst(grid));
    store<f32>(zeros + o, pairSecond(grid));
  }
}
