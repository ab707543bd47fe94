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

/** Bytes of bcdBand's scratch: per-column grids, one block's work arrays, and the H_BB and
 * inverse entries of the SIMD path in structure-of-arrays form. */
export function bcdBandScratch(cols: i32, k: i32): f64 {
  return (2 * <f64>cols + 8 * <f64>k) * 4 + <f64>((cols >> 1) >> 2) * 128;
}

// @ts-ignore: decorator
@inline function colAt(order: usize, i: i32): i32 {
  return load<i32>(order + (<usize>i << 2));
}

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
 * blocks of consecutive columns, four blocks are evaluated per SIMD step (bcdQuad: the same
 * operations in the same order as bestBlockMove, lane by lane); other blocks go one by one.
 * scratch: bcdBandScratch(cols, k) bytes.
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
  for (let b = 0; b < quads * 4; b++) {
    for (let e = 0; e < 4; e++) {
      store<f32>(soa + <usize>e * soaLen + (<usize>b << 2), load<f32>(hinv + (<usize>(b * 4 + e) << 2)));
      store<f32>(soa + <usize>(4 + e) * soaLen + (<usize>b << 2), load<f32>(hbb + (<usize>(b * 4 + e) << 2)));
    }
  }
  for (let r = 0; r < rows; r++) {
    expandGrid(r, cols, groups, colGroup, scales, zeros, colScale, colZero);
    const rowOff = <usize>r * <usize>cols;
    const qr = q + (rowOff << 2);
    const gr = g + (rowOff << 2);
    let count = 0;
    while (count < iters) {
      let best: f32 = 0;
      let bestBlock = -1;
      if (quads > 0) {
        const lanes = bcdQuads(quads, qr, gr, colScale, colZero, soa, soaLen, maxq);
        best = gainOf(lanes);
        bestBlock = indexOf(lanes);
      }
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
          for (let j = 0; j < cols; j++) f32Set(gr, j, f32At(gr, j) + delta * f32At(hRow, j));
        }
      }
      count++;
    }
    store<i32>(moves + (<usize>r << 2), count);
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
 */
function bcdQuads(quads: i32, qr: usize, gr: usize, colScale: usize, colZero: usize, soa: usize, soaLen: usize, maxq: f32): i64 {
  const zero = f32x4.splat(0), one = f32x4.splat(1), two = f32x4.splat(2), vMaxq = f32x4.splat(maxq);
  const inf = f32x4.splat(Infinity);
  let bestGain = f32x4.splat(0);
  let bestIdx = i32x4.splat(-1);
  let idx = i32x4(0, 1, 2, 3);
  const four = i32x4.splat(4);
  for (let t = 0; t < quads; t++) {
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
    let bestScore = inf;
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
    const gain = f32x4.neg(bestScore);
    const better = f32x4.gt(gain, bestGain);
    bestGain = v128.bitselect(gain, bestGain, better);
    bestIdx = v128.bitselect(idx, bestIdx, better);
    idx = i32x4.add(idx, four);
  }
  return reduceLanes(bestGain, bestIdx);
}
