// Block coordinate descent (ALGORITHMS.md "BCD"): CD's state, but each move changes a block of
// k coordinates at once: the unconstrained Newton step -H_BB^-1 g_B, then every combination of
// the grid points just below and above it (2^k candidates), scored exactly. Each iteration
// applies the best block move over all blocks of the row.

import { reduceLanes } from './argmax';
import { dequantCode, expandGrid } from './grid';
import { gainOf, indexOf } from './pairs';

// @ts-ignore: decorator
@inline function f32At(base: usize, i: i32): f32 {
  return load<f32>(base + (<usize>i << 2));
}
// @ts-ignore: decorator
@inline function f32Set(base: usize, i: i32, v: f32): void {
  store<f32>(base + (<usize>i << 2), v);
}

/** Bytes of bcdPrepare's scratch: one augmented [H_BB | I] in f64. */
export function bcdPrepareScratch(k: i32): f64 {
  return <f64>(k * 2 * k) * 8;
}

/**
 * BCD preparation, shared by all rows: blocks are k consecutive entries of `order` (the working
 * column order: identity, or act-order's permutation; the last block may be shorter). For each, H_BB and its inverse (Gauss-Jordan in f64; a block whose pivots fail falls back to
 * the inverse of its diagonal, so the move degrades to per-coordinate Newton targets).
 * blocks: ceil(cols/k) * k * k floats for H_BB, the same again for the inverses.
 * scratch: bcdPrepareScratch(k) bytes.
 */
export function bcdPrepare(h: usize, cols: i32, k: i32, order: usize, hbb: usize, hinv: usize, scratch: usize): void {
  const nb = (cols + k - 1) / k;
  const a = scratch;
  for (let b = 0; b < nb; b++) {
    const c0 = b * k;
    const len = min(k, cols - c0);
    const base = <usize>(b * k * k) << 2;
    memory.fill(hbb + base, 0, <usize>(k * k) << 2);
    memory.fill(hinv + base, 0, <usize>(k * k) << 2);
    // Augmented [H_BB | I] in f64.
    const w2 = 2 * len;
    for (let i = 0; i < len; i++) {
      for (let j = 0; j < len; j++) {
        const v = load<f32>(h + ((<usize>colAt(order, c0 + i) * <usize>cols + <usize>colAt(order, c0 + j)) << 2));
        store<f32>(hbb + base + (<usize>(i * k + j) << 2), v);
        store<f64>(a + (<usize>(i * w2 + j) << 3), <f64>v);
        store<f64>(a + (<usize>(i * w2 + len + j) << 3), i == j ? 1.0 : 0.0);
      }
    }
    let ok = true;
    for (let p = 0; p < len && ok; p++) {
      const piv = load<f64>(a + (<usize>(p * w2 + p) << 3));
      const ref = <f64>load<f32>(hbb + base + (<usize>(p * k + p) << 2));
      if (!(piv > ref * 1e-6) || !(piv > 0)) {
        ok = false;
        break;
      }
      for (let j = 0; j < w2; j++) store<f64>(a + (<usize>(p * w2 + j) << 3), load<f64>(a + (<usize>(p * w2 + j) << 3)) / piv);
      for (let i = 0; i < len; i++) {
        if (i == p) continue;
        const f = load<f64>(a + (<usize>(i * w2 + p) << 3));
        for (let j = 0; j < w2; j++) {
          const o = a + (<usize>(i * w2 + j) << 3);
          store<f64>(o, load<f64>(o) - f * load<f64>(a + (<usize>(p * w2 + j) << 3)));
        }
      }
    }
    for (let i = 0; i < len; i++) {
      for (let j = 0; j < len; j++) {
        let v: f64 = 0;
        if (ok) v = load<f64>(a + (<usize>(i * w2 + len + j) << 3));
        else if (i == j) v = 1.0 / <f64>load<f32>(hbb + base + (<usize>(i * k + i) << 2));
        store<f32>(hinv + base + (<usize>(i * k + j) << 2), <f32>v);
      }
    }
  }
}

/** Bytes of bcdBand's scratch: per-column grids, one block's work arrays, the H_BB and inverse
 * entries of the SIMD path in structure-of-arrays form, its per-block skip bounds (global and
 * per row) and the marks of its passes. */
export function bcdBandScratch(cols: i32, k: i32): f64 {
  const quads = (cols >> 1) >> 2;
  return (2 * <f64>cols + 8 * <f64>k) * 4 + <f64>quads * (128 + 16 + 80) + <f64>((quads >> 5) + 2) * 4;
}

// @ts-ignore: decorator
@inline function colAt(order: usize, i: i32): i32 {
  return load<i32>(order + (<usize>i << 2));
}

/** Blocks whose H_BB has a condition number above this are never skipped by bcdQuads: the
 * rounding of their Newton steps could then outgrow the skip test's margins. */
// @ts-ignore: decorator
@inline const BCD_COND_MAX: f64 = 1e4;
/** 1 - 2^-12: the relative margin of bcdQuads' skip test, far above the few-ulp rounding of
 * the scores it stands for. */
// @ts-ignore: decorator
@inline const BCD_SHAVE: f32 = 0.999755859375;

/**
 * Best move of one block of a row, from its gathered values bq, gradient bg, scales bs and
 * zeros bz [len]: Newton target t = q_B - H_BB^-1 g_B, then every combination of the grid
 * points just below/above t (each clamped to the grid), scored exactly by 2 d.g_B + d^T H_BB d.
 * The first best combination wins (bit i set = coordinate i takes the point above).
 * Writes the winning values and codes to outValues/outCodes [len]; returns the gain (-score).
 */
function bestBlockMove(
  len: i32, k: i32, bq: usize, bg: usize, bs: usize, bz: usize, hbb: usize, hinv: usize,
  maxq: f32, lo: usize, hi: usize, outValues: usize, outCodes: usize,
): f32 {
  for (let i = 0; i < len; i++) {
    let step: f32 = 0;
    for (let j = 0; j < len; j++) step += f32At(hinv, i * k + j) * f32At(bg, j);
    const t = f32At(bq, i) - step;
    const s = f32At(bs, i), z = f32At(bz, i);
    const below = min<f32>(max<f32>(floor<f32>(t / s) + z, 0), maxq);
    f32Set(lo, i, below);
    f32Set(hi, i, min<f32>(below + 1, maxq));
  }
  let bestScore: f32 = Infinity;
  const combos = 1 << len;
  for (let m = 0; m < combos; m++) {
    let score: f32 = 0;
    for (let i = 0; i < len; i++) {
      const ci = (m >> i) & 1 ? f32At(hi, i) : f32At(lo, i);
      const di = dequantCode(ci, f32At(bs, i), f32At(bz, i)) - f32At(bq, i);
      let hd: f32 = 0;
      for (let j = 0; j < len; j++) {
        const cj = (m >> j) & 1 ? f32At(hi, j) : f32At(lo, j);
        const dj = dequantCode(cj, f32At(bs, j), f32At(bz, j)) - f32At(bq, j);
        hd += f32At(hbb, i * k + j) * dj;
      }
      score += di * (2 * f32At(bg, i) + hd);
    }
    if (score < bestScore) {
      bestScore = score;
      for (let i = 0; i < len; i++) {
        const ci = (m >> i) & 1 ? f32At(hi, i) : f32At(lo, i);
        f32Set(outCodes, i, ci);
        f32Set(outValues, i, dequantCode(ci, f32At(bs, i), f32At(bz, i)));
      }
    }
  }
  return -bestScore;
}

/**
 * Greedy BCD on a band: each iteration evaluates every block's best move, applies the block
 * with the largest positive gain (ties to the lowest block), and updates g by H[:, B] d.
 * All blocks are re-evaluated after each move, since g changes everywhere. With k = 2 and
 * blocks of consecutive columns, four blocks are evaluated per SIMD step (bcdQuads: the same
 * operations in the same order as bestBlockMove, lane by lane), fused with the update of g;
 * other blocks go one by one. scratch: bcdBandScratch(cols, k) bytes.
 */
export function bcdBand(
  q: usize, codes: usize, g: usize, rows: i32, cols: i32, h: usize, k: i32, order: usize, hbb: usize, hinv: usize,
  maxq: f32, groups: i32, colGroup: usize, scales: usize, zeros: usize, iters: i32, moves: usize, scratch: usize,
): void {
  const nb = (cols + k - 1) / k;
  const colScale = scratch;
  const colZero = colScale + (<usize>cols << 2);
  const kb = <usize>k << 2;
  const lo = colZero + (<usize>cols << 2);
  const hi = lo + kb, vals = hi + kb, cds = vals + kb;
  const bq = cds + kb, bg = bq + kb, bs = bg + kb, bz = bs + kb;
  // SIMD path: k = 2 over consecutive columns, whole groups of four full blocks.
  let quads = 0;
  if (k == 2) {
    let identity = true;
    for (let i = 0; i < cols && identity; i++) identity = colAt(order, i) == i;
    if (identity) quads = (cols >> 1) >> 2;
  }
  const soa = bz + kb; // 8 arrays of quads*4 floats: hinv 00,01,10,11 then hbb 00,01,10,11
  const soaLen = <usize>(quads * 4) << 2;
  const ok = soa + 8 * soaLen; // per block: 1 where the skip test may be used (H_BB well conditioned)
  const thr = ok + soaLen; // per block of the row: the skip test's 5 thresholds (see bcdQuads)
  const marks = thr + 5 * soaLen;
  for (let b = 0; b < quads * 4; b++) {
    for (let e = 0; e < 4; e++) {
      store<f32>(soa + <usize>e * soaLen + (<usize>b << 2), load<f32>(hinv + (<usize>(b * 4 + e) << 2)));
      store<f32>(soa + <usize>(4 + e) * soaLen + (<usize>b << 2), load<f32>(hbb + (<usize>(b * 4 + e) << 2)));
    }
    // The 2 x 2 block's condition number, from its eigenvalues in f64.
    const a = <f64>load<f32>(hbb + (<usize>(b * 4) << 2)), c = <f64>load<f32>(hbb + (<usize>(b * 4 + 1) << 2));
    const d = <f64>load<f32>(hbb + (<usize>(b * 4 + 3) << 2));
    const mean = (a + d) / 2, radius = sqrt<f64>((a - d) * (a - d) / 4 + c * c);
    const small = mean - radius, large = mean + radius;
    store<f32>(ok + (<usize>b << 2), small > 0 && large < small * BCD_COND_MAX && isFinite<f64>(large) ? 1 : 0);
  }
  for (let r = 0; r < rows; r++) {
    expandGrid(r, cols, groups, colGroup, scales, zeros, colScale, colZero);
    const rowOff = <usize>r * <usize>cols;
    const qr = q + (rowOff << 2);
    const gr = g + (rowOff << 2);
    // The skip test needs q exactly on its grid (see bcdQuads); elsewhere its thresholds are 0.
    let onGrid = maxq <= 255;
    for (let j = 0; j < cols && onGrid; j++) {
      const c = <f32>load<u8>(codes + rowOff + <usize>j);
      onGrid = f32At(colScale, j) > 0 && f32At(qr, j) == dequantCode(c, f32At(colScale, j), f32At(colZero, j));
    }
    for (let b = 0; b < quads * 4; b++) {
      const use = onGrid && f32At(ok, b) != 0;
      const s0 = f32At(colScale, 2 * b), s1 = f32At(colScale, 2 * b + 1);
      const h00 = load<f32>(hbb + (<usize>(b * 4) << 2)), h01 = load<f32>(hbb + (<usize>(b * 4 + 1) << 2));
      const h11 = load<f32>(hbb + (<usize>(b * 4 + 3) << 2));
      const n0 = s0 * s0 * h00, n1 = s1 * s1 * h11;
      f32Set(thr, b, use ? 0.5 * s0 * h00 * BCD_SHAVE : 0); // |g0| below: stepping coordinate 0 alone costs
      f32Set(thr + soaLen, b, use ? 0.5 * s1 * h11 * BCD_SHAVE : 0); // |g1| below: likewise coordinate 1
      f32Set(thr + 2 * soaLen, b, use ? 0.49 * s0 : 0); // |step0| below: the candidates hold q_0's code
      f32Set(thr + 3 * soaLen, b, use ? 0.49 * s1 : 0); // |step1| below: likewise q_1's
      // 2 (s0 |g0| + s1 |g1|) below: stepping both costs (s0^2 H00 + s1^2 H11 - 2 s0 s1 |H01| > 0)
      f32Set(thr + 4 * soaLen, b, use ? ((n0 + n1) * BCD_SHAVE - 2 * s0 * s1 * abs<f32>(h01)) * 0.5 * BCD_SHAVE : 0);
    }
    let count = 0;
    // The last move's update of g, pending until the next pass (fused into bcdQuads).
    let h0: usize = 0, h1: usize = 0;
    let d0: f32 = 0, d1: f32 = 0;
    while (count < iters) {
      let best: f32 = 0;
      let bestBlock = -1;
      if (quads > 0) {
        const lanes = bcdQuads(quads, qr, gr, colScale, colZero, soa, soaLen, thr, marks, h0, d0, h1, d1, maxq);
        best = gainOf(lanes);
        bestBlock = indexOf(lanes);
      }
      applyPending(gr, quads * 8, cols, h0, d0, h1, d1);
      h0 = 0;
      h1 = 0;
      for (let b = quads * 4; b < nb; b++) {
        const gain = blockMoveAt(b, k, cols, order, qr, gr, colScale, colZero, hbb, hinv, maxq, lo, hi, vals, cds, bq, bg, bs, bz);
        if (gain > best) {
          best = gain;
          bestBlock = b;
        }
      }
      if (bestBlock < 0) break;
      // The winner's values and codes, recomputed on the scalar path (the same arithmetic).
      blockMoveAt(bestBlock, k, cols, order, qr, gr, colScale, colZero, hbb, hinv, maxq, lo, hi, vals, cds, bq, bg, bs, bz);
      const c0 = bestBlock * k;
      const len = min(k, cols - c0);
      for (let i = 0; i < len; i++) {
        const c = colAt(order, c0 + i);
        const delta = f32At(vals, i) - f32At(qr, c);
        f32Set(qr, c, f32At(vals, i));
        store<u8>(codes + rowOff + <usize>c, <u8>f32At(cds, i));
        if (delta != 0) {
          const hRow = h + ((<usize>c * <usize>cols) << 2);
          if (quads > 0) {
            // g += delta H[c, :], coordinate after coordinate, at the next pass.
            if (i == 0) { h0 = hRow; d0 = delta; } else { h1 = hRow; d1 = delta; }
          } else {
            for (let j = 0; j < cols; j++) f32Set(gr, j, f32At(gr, j) + delta * f32At(hRow, j));
          }
        }
      }
      count++;
    }
    // The last move's update, so the caller's g stays exact.
    applyPending(gr, 0, cols, h0, d0, h1, d1);
    store<i32>(moves + (<usize>r << 2), count);
  }
}

/** g[j] += d0 H[c0, j], then g[j] += d1 H[c1, j], for j in [from, cols) (the rows given as
 * pointers, 0 for none): the order of the unfused updates, element by element. */
function applyPending(g: usize, from: i32, cols: i32, h0: usize, d0: f32, h1: usize, d1: f32): void {
  for (let j = from; j < cols; j++) {
    let v = f32At(g, j);
    if (h0) v = v + d0 * f32At(h0, j);
    if (h1) v = v + d1 * f32At(h1, j);
    f32Set(g, j, v);
  }
}

/** Block b's best move on the scalar path: gathers its coordinates, then bestBlockMove. */
function blockMoveAt(
  b: i32, k: i32, cols: i32, order: usize, qr: usize, gr: usize, colScale: usize, colZero: usize, hbb: usize, hinv: usize,
  maxq: f32, lo: usize, hi: usize, vals: usize, cds: usize, bq: usize, bg: usize, bs: usize, bz: usize,
): f32 {
  const c0 = b * k;
  const len = min(k, cols - c0);
  for (let i = 0; i < len; i++) {
    const c = colAt(order, c0 + i);
    f32Set(bq, i, f32At(qr, c));
    f32Set(bg, i, f32At(gr, c));
    f32Set(bs, i, f32At(colScale, c));
    f32Set(bz, i, f32At(colZero, c));
  }
  const base = <usize>(b * k * k) << 2;
  return bestBlockMove(len, k, bq, bg, bs, bz, hbb + base, hinv + base, maxq, lo, hi, vals, cds);
}

// @ts-ignore: decorator
@inline function evens(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(a, b, 0, 2, 4, 6);
}
// @ts-ignore: decorator
@inline function odds(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(a, b, 1, 3, 5, 7);
}

/**
 * Gains of blocks 0 .. 4*quads-1 (k = 2, block b = columns 2b, 2b+1), four per step, one block
 * per lane, with bestBlockMove's operations in its order (the explicit 0 + starts mirror its
 * accumulators). Returns gainIndex(the largest positive gain, its block), lowest block on ties,
 * -1 when none is positive.
 *
 * Phase 1 streams the row: the pending update g += d0 H[c0, :] (then d1 H[c1, :]; a row
 * pointer of 0 for none), and marks the quads holding a block that may move. A block cannot
 * move when (thresholds thr, per block of the row, set by bcdBand for rows on their grid and
 * well-conditioned H_BB; 0 elsewhere, which marks every block):
 *  - its Newton step -H_BB^-1 g_B is under 0.49 grid steps in each coordinate: the candidates
 *    (grid points below and above the target) then hold q_B's own codes, d = 0, scoring 0,
 *    and otherwise only d_i in {0, +-s_i};
 *  - |g_i| < s_i H_ii / 2 (i = 0, 1): moving one coordinate one step scores s_i^2 H_ii +-
 *    2 s_i g_i > 0;
 *  - 2 (s0 |g0| + s1 |g1|) < s0^2 H00 + s1^2 H11 - 2 s0 s1 |H01|: moving both scores more
 *    than that difference > 0.
 * Every candidate but d = 0 then scores above 0 (by a margin, BCD_SHAVE, above the rounding
 * of the score): the block's gain is -0, which never wins. Phase 2 evaluates the marked quads
 * only, in order: the same result, bit for bit. marks: room for quads / 32 + 1 u32.
 */
function bcdQuads(
  quads: i32, qr: usize, gr: usize, colScale: usize, colZero: usize, soa: usize, soaLen: usize, thr: usize, marks: usize,
  h0: usize, d0: f32, h1: usize, d1: f32, maxq: f32,
): i64 {
  const vd0 = f32x4.splat(d0), vd1 = f32x4.splat(d1), vUp = f32x4.splat(<f32>1 / BCD_SHAVE);
  let word: u32 = 0;
  let t = 0;
  for (; t < quads; t++) {
    const o = <usize>(t * 8) << 2;
    const p = <usize>(t * 4) << 2;
    let a = v128.load(gr + o), b = v128.load(gr + o, 16);
    if (h0) {
      a = f32x4.add(a, f32x4.mul(vd0, v128.load(h0 + o)));
      b = f32x4.add(b, f32x4.mul(vd0, v128.load(h0 + o, 16)));
    }
    if (h1) {
      a = f32x4.add(a, f32x4.mul(vd1, v128.load(h1 + o)));
      b = f32x4.add(b, f32x4.mul(vd1, v128.load(h1 + o, 16)));
    }
    if (h0 | h1) {
      v128.store(gr + o, a);
      v128.store(gr + o, b, 16);
    }
    const g0 = evens(a, b), g1 = odds(a, b);
    const ag0 = f32x4.abs(g0), ag1 = f32x4.abs(g1);
    const step0 = f32x4.add(f32x4.mul(v128.load(soa + p), g0), f32x4.mul(v128.load(soa + soaLen + p), g1));
    const step1 = f32x4.add(f32x4.mul(v128.load(soa + 2 * soaLen + p), g0), f32x4.mul(v128.load(soa + 3 * soaLen + p), g1));
    a = v128.load(colScale + o); b = v128.load(colScale + o, 16);
    const both = f32x4.mul(f32x4.add(f32x4.mul(evens(a, b), ag0), f32x4.mul(odds(a, b), ag1)), vUp);
    const still = v128.and(v128.and(v128.and(f32x4.lt(ag0, v128.load(thr + p)), f32x4.lt(ag1, v128.load(thr + soaLen + p))),
      v128.and(f32x4.lt(f32x4.abs(step0), v128.load(thr + 2 * soaLen + p)), f32x4.lt(f32x4.abs(step1), v128.load(thr + 3 * soaLen + p)))),
      f32x4.lt(both, v128.load(thr + 4 * soaLen + p)));
    word |= <u32>(i32x4.bitmask(still) != 15) << (t & 31);
    if ((t & 31) == 31) {
      store<u32>(marks + (<usize>(t >> 5) << 2), word);
      word = 0;
    }
  }
  store<u32>(marks + (<usize>(t >> 5) << 2), word);
  let bestGain = f32x4.splat(0);
  let bestIdx = i32x4.splat(-1);
  const words = (quads + 31) >> 5;
  for (let w = 0; w < words; w++) {
    let m = load<u32>(marks + (<usize>w << 2));
    while (m) {
      const tq = (w << 5) + <i32>ctz(m);
      m &= m - 1;
      const gain = quadGains(tq, qr, gr, colScale, colZero, soa, soaLen, maxq);
      const better = f32x4.gt(gain, bestGain);
      bestGain = v128.bitselect(gain, bestGain, better);
      bestIdx = v128.bitselect(i32x4.add(i32x4.splat(tq * 4), i32x4(0, 1, 2, 3)), bestIdx, better);
    }
  }
  return reduceLanes(bestGain, bestIdx);
}

/** The gains of quad t's four blocks (see bcdQuads). */
// @ts-ignore: decorator
@inline function quadGains(t: i32, qr: usize, gr: usize, colScale: usize, colZero: usize, soa: usize, soaLen: usize, maxq: f32): v128 {
  const zero = f32x4.splat(0), one = f32x4.splat(1), two = f32x4.splat(2), vMaxq = f32x4.splat(maxq);
  const o = <usize>(t * 8) << 2;
  const p = <usize>(t * 4) << 2;
  let a = v128.load(gr + o), b = v128.load(gr + o, 16);
  const g0 = evens(a, b), g1 = odds(a, b);
  a = v128.load(qr + o); b = v128.load(qr + o, 16);
  const q0 = evens(a, b), q1 = odds(a, b);
  a = v128.load(colScale + o); b = v128.load(colScale + o, 16);
  const s0 = evens(a, b), s1 = odds(a, b);
  a = v128.load(colZero + o); b = v128.load(colZero + o, 16);
  const z0 = evens(a, b), z1 = odds(a, b);
  const i00 = v128.load(soa + p), i01 = v128.load(soa + soaLen + p);
  const i10 = v128.load(soa + 2 * soaLen + p), i11 = v128.load(soa + 3 * soaLen + p);
  const h00 = v128.load(soa + 4 * soaLen + p), h01 = v128.load(soa + 5 * soaLen + p);
  const h10 = v128.load(soa + 6 * soaLen + p), h11 = v128.load(soa + 7 * soaLen + p);
  const step0 = f32x4.add(f32x4.add(zero, f32x4.mul(i00, g0)), f32x4.mul(i01, g1));
  const step1 = f32x4.add(f32x4.add(zero, f32x4.mul(i10, g0)), f32x4.mul(i11, g1));
  const lo0 = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.floor(f32x4.div(f32x4.sub(q0, step0), s0)), z0), zero), vMaxq);
  const lo1 = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.floor(f32x4.div(f32x4.sub(q1, step1), s1)), z1), zero), vMaxq);
  const hi0 = f32x4.pmin(f32x4.add(lo0, one), vMaxq);
  const hi1 = f32x4.pmin(f32x4.add(lo1, one), vMaxq);
  const twoG0 = f32x4.mul(two, g0), twoG1 = f32x4.mul(two, g1);
  let bestScore = f32x4.splat(Infinity);
  for (let m = 0; m < 4; m++) {
    const c0 = m & 1 ? hi0 : lo0;
    const c1 = m & 2 ? hi1 : lo1;
    const d0 = f32x4.sub(f32x4.mul(s0, f32x4.sub(c0, z0)), q0);
    const d1 = f32x4.sub(f32x4.mul(s1, f32x4.sub(c1, z1)), q1);
    const hd0 = f32x4.add(f32x4.add(zero, f32x4.mul(h00, d0)), f32x4.mul(h01, d1));
    const hd1 = f32x4.add(f32x4.add(zero, f32x4.mul(h10, d0)), f32x4.mul(h11, d1));
    const score = f32x4.add(f32x4.add(zero, f32x4.mul(d0, f32x4.add(twoG0, hd0))), f32x4.mul(d1, f32x4.add(twoG1, hd1)));
    bestScore = v128.bitselect(score, bestScore, f32x4.lt(score, bestScore));
  }
  return f32x4.neg(bestScore);
}
