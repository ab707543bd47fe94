// CDQuant's greedy coordinate descent (CD), block coordinate descent (BCD) and the scale
// refit between CD rounds, on a band of rows with fixed grids.
//
// State per row: q (dequantized values), codes, and g = H (q - w). Every row is solved on its
// own; band-level work (the initial g = E H, refit products) goes through gemmSub, whose
// per-element arithmetic does not depend on the band, so any split gives the same bits.

import { gemmSub } from './linalg';
import { dequantCode } from './grid';

// @ts-ignore: decorator
@inline function f32At(base: usize, i: i32): f32 {
  return load<f32>(base + (<usize>i << 2));
}
// @ts-ignore: decorator
@inline function f32Set(base: usize, i: i32, v: f32): void {
  store<f32>(base + (<usize>i << 2), v);
}

/** g = (q - w) H for a band: g [rows x cols] is overwritten. scratch: rows*cols floats. */
export function gradientBand(g: usize, w: usize, q: usize, rows: i32, cols: i32, h: usize, scratch: usize): void {
  const total = <usize>rows * <usize>cols;
  for (let i: usize = 0; i < total; i++) store<f32>(scratch + (i << 2), load<f32>(w + (i << 2)) - load<f32>(q + (i << 2)));
  memory.fill(g, 0, total << 2);
  gemmSub(g, cols, scratch, cols, h, cols, rows, cols, cols); // g = -(w - q) H
}

/** Per-row expanded grid: scale and zero of every column (colScale/colZero [cols]). */
function expandGrid(r: i32, cols: i32, groups: i32, colGroup: usize, scales: usize, zeros: usize, colScale: usize, colZero: usize): void {
  const base = <usize>r * <usize>groups;
  for (let j = 0; j < cols; j++) {
    const go = (base + <usize>load<i32>(colGroup + (<usize>j << 2))) << 2;
    f32Set(colScale, j, load<f32>(scales + go));
    f32Set(colZero, j, load<f32>(zeros + go));
  }
}

// The winner of the last pass: (index, gain); index -1 when no move lowers the loss.
let passIndex: i32 = -1;

/**
 * One fused pass over a row: optionally g += delta * H[moved, :] (H is symmetric), then for
 * every coordinate the best grid value nearest q_i - g_i * (1/H_ii) and its gain
 * -(2 d g_i + d^2 H_ii); keeps the largest positive gain, ties to the lowest index.
 */
function cdPass(
  cols: i32, q: usize, g: usize, hdiag: usize, rhdiag: usize, hRow: usize, delta: f32,
  colScale: usize, colRScale: usize, colZero: usize, maxq: f32,
): void {
  const vDelta = f32x4.splat(delta);
  const vMaxq = f32x4.splat(maxq);
  const vZero = f32x4.splat(0);
  const vTwo = f32x4.splat(2);
  let bestGain = f32x4.splat(0);
  let bestIdx = i32x4.splat(-1);
  let idx = i32x4(0, 1, 2, 3);
  const four = i32x4.splat(4);
  let j = 0;
  for (; j + 4 <= cols; j += 4) {
    const o = <usize>j << 2;
    let gv = v128.load(g + o);
    if (hRow) {
      gv = f32x4.add(gv, f32x4.mul(vDelta, v128.load(hRow + o)));
      v128.store(g + o, gv);
    }
    const qv = v128.load(q + o);
    const hd = v128.load(hdiag + o);
    const s = v128.load(colScale + o);
    const z = v128.load(colZero + o);
    const target = f32x4.sub(qv, f32x4.mul(gv, v128.load(rhdiag + o)));
    // pmin/pmax (one instruction each, unlike min/max's NaN and signed-zero rules): inputs are
    // finite, and a -0 code gives the same value and u8 code as +0.
    const code = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.mul(target, v128.load(colRScale + o))), z), vZero), vMaxq);
    const d = f32x4.sub(f32x4.mul(s, f32x4.sub(code, z)), qv);
    const gain = f32x4.neg(f32x4.add(f32x4.mul(f32x4.mul(vTwo, d), gv), f32x4.mul(f32x4.mul(d, d), hd)));
    const better = f32x4.gt(gain, bestGain);
    bestGain = v128.bitselect(gain, bestGain, better);
    bestIdx = v128.bitselect(idx, bestIdx, better);
    idx = i32x4.add(idx, four);
  }
  reduceLanes(bestGain, bestIdx);
  let best = laneBest;
  let bi = laneIndex;
  for (; j < cols; j++) {
    let gj = f32At(g, j);
    if (hRow) {
      gj = gj + delta * f32At(hRow, j);
      f32Set(g, j, gj);
    }
    const gain = coordinateGain(f32At(q, j), gj, f32At(hdiag, j), f32At(rhdiag, j), f32At(colScale, j), f32At(colRScale, j), f32At(colZero, j), maxq);
    if (gain > best) {
      best = gain;
      bi = j;
    }
  }
  passIndex = bi;
}

// Lanes hold each their own first maximum; across lanes the lowest index wins a tie.
let laneBest: f32 = 0;
let laneIndex: i32 = -1;
// @ts-ignore: decorator
@inline function considerLane(gain: f32, index: i32): void {
  if (index >= 0 && (gain > laneBest || (gain == laneBest && index < laneIndex))) {
    laneBest = gain;
    laneIndex = index;
  }
}

/** The first maximum over the lanes' own first maxima into laneBest/laneIndex (-1: none > 0). */
// @ts-ignore: decorator
@inline function reduceLanes(bestGain: v128, bestIdx: v128): void {
  laneBest = 0;
  laneIndex = -1;
  considerLane(f32x4.extract_lane(bestGain, 0), i32x4.extract_lane(bestIdx, 0));
  considerLane(f32x4.extract_lane(bestGain, 1), i32x4.extract_lane(bestIdx, 1));
  considerLane(f32x4.extract_lane(bestGain, 2), i32x4.extract_lane(bestIdx, 2));
  considerLane(f32x4.extract_lane(bestGain, 3), i32x4.extract_lane(bestIdx, 3));
}

// The scalar twin of one SIMD lane in cdPass (same operations, same order).
let lastCode: f32 = 0;
let lastValue: f32 = 0;
// @ts-ignore: decorator
@inline function coordinateGain(qj: f32, gj: f32, hd: f32, rhd: f32, s: f32, rs: f32, z: f32, maxq: f32): f32 {
  const target = qj - gj * rhd;
  const code = min<f32>(max<f32>(nearest<f32>(target * rs) + z, 0), maxq);
  const value = s * (code - z);
  const d = value - qj;
  lastCode = code;
  lastValue = value;
  return -((2 * d) * gj + (d * d) * hd);
}

/**
 * Greedy CD on rows [0, rows) of a band. w: targets; q/codes: start (updated in place);
 * g: [rows x cols] gradient (from gradientBand, updated); h: [cols x cols]; hdiag [cols];
 * moves (i32 [rows]) receives the number of moves per row. scratch: 4*cols floats.
 * The Newton target q_i - g_i / H_ii and its grid code use precomputed reciprocals
 * (q_i - g_i * (1/H_ii), nearest(t * (1/s)) + z) in the SIMD lanes and the scalar twin alike.
 */
export function cdBand(
  q: usize, codes: usize, g: usize, rows: i32, cols: i32, h: usize, hdiag: usize, maxq: f32,
  groups: i32, colGroup: usize, scales: usize, zeros: usize, iters: i32, moves: usize, scratch: usize,
): void {
  const colScale = scratch;
  const colZero = scratch + (<usize>cols << 2);
  const colRScale = colZero + (<usize>cols << 2);
  const rhdiag = colRScale + (<usize>cols << 2);
  // Reciprocals once (the pass multiplies: no division in the inner loop).
  for (let j = 0; j < cols; j++) f32Set(rhdiag, j, <f32>1 / f32At(hdiag, j));
  for (let r = 0; r < rows; r++) {
    expandGrid(r, cols, groups, colGroup, scales, zeros, colScale, colZero);
    for (let j = 0; j < cols; j++) f32Set(colRScale, j, <f32>1 / f32At(colScale, j));
    const rowOff = <usize>r * <usize>cols;
    const qr = q + (rowOff << 2);
    const gr = g + (rowOff << 2);
    let count = 0;
    cdPass(cols, qr, gr, hdiag, rhdiag, 0, 0, colScale, colRScale, colZero, maxq);
    while (count < iters && passIndex >= 0) {
      const i = passIndex;
      coordinateGain(f32At(qr, i), f32At(gr, i), f32At(hdiag, i), f32At(rhdiag, i), f32At(colScale, i), f32At(colRScale, i), f32At(colZero, i), maxq);
      const delta = lastValue - f32At(qr, i);
      f32Set(qr, i, lastValue);
      store<u8>(codes + rowOff + <usize>i, <u8>lastCode);
      count++;
      if (count >= iters) {
        // Keep g exact for the caller even though no further move is chosen.
        const hRow = h + ((<usize>i * <usize>cols) << 2);
        for (let j = 0; j < cols; j++) f32Set(gr, j, f32At(gr, j) + delta * f32At(hRow, j));
        break;
      }
      cdPass(cols, qr, gr, hdiag, rhdiag, h + ((<usize>i * <usize>cols) << 2), delta, colScale, colRScale, colZero, maxq);
    }
    store<i32>(moves + (<usize>r << 2), count);
  }
}

/**
 * BCD preparation, shared by all rows: blocks are k consecutive entries of `order` (the working
 * column order: identity, or act-order's permutation; the last block may be shorter). For each, H_BB and its inverse (Gauss-Jordan in f64; a block whose pivots fail falls back to
 * the inverse of its diagonal, so the move degrades to per-coordinate Newton targets).
 * blocks: ceil(cols/k) * k * k floats for H_BB, the same again for the inverses.
 */
export function bcdPrepare(h: usize, cols: i32, k: i32, order: usize, hbb: usize, hinv: usize): void {
  const nb = (cols + k - 1) / k;
  const a = heap.alloc(<usize>(k * 2 * k) << 3);
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
  heap.free(a);
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
 * scratch: 2*cols + 10*k + 8*(cols/8 + 1)*4 floats.
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
        bcdQuads(quads, qr, gr, colScale, colZero, soa, soaLen, maxq);
        best = laneBest;
        bestBlock = laneIndex;
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
 * accumulators). Leaves the largest positive gain and its block (lowest on ties) in
 * laneBest/laneIndex (-1 when none is positive).
 */
function bcdQuads(quads: i32, qr: usize, gr: usize, colScale: usize, colZero: usize, soa: usize, soaLen: usize, maxq: f32): void {
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
  reduceLanes(bestGain, bestIdx);
}

/**
 * One refit round on a band (ALGORITHMS.md "Refit"): per row, group after group, the least-
 * squares (scale, zero) for fixed codes in H's metric, kept only if scale > 0 and the loss
 * falls; then g is recomputed for the whole band. Gradients of later groups see earlier
 * groups' changes through GEMMs on the band's accumulated changes (negated, in dneg).
 * q, g, scales, zeros updated in place; codes read. sym: refit the scale only.
 * scratch: 4*rows*cols floats. accepted (i32 [rows]) counts the groups changed per row.
 */
export function refitBand(
  w: usize, q: usize, codes: usize, g: usize, rows: i32, cols: i32, h: usize, maxq: f32, sym: bool,
  groupSize: i32, groups: i32, scales: usize, zeros: usize, accepted: usize, scratch: usize,
): void {
  const total = <usize>rows * <usize>cols;
  const dneg = scratch; // -(change of q) so far
  const yq = scratch + (total << 2); // Q_G H_GG, one group at a time [rows x gs]
  const yc = yq + (total << 2); // C_G H_GG
  const gcur = yc + (total << 2); // current g on the group [rows x gs]
  const gs = groupSize <= 0 || groupSize >= cols ? cols : groupSize;
  memory.fill(dneg, 0, total << 2);
  memory.fill(accepted, 0, <usize>rows << 2);
  const cvals = heap.alloc(total << 2);
  for (let i: usize = 0; i < total; i++) store<f32>(cvals + (i << 2), <f32>load<u8>(codes + i));
  const ones = heap.alloc(<usize>cols << 2);
  for (let gi = 0; gi < groups; gi++) {
    const c0 = gi * gs;
    const len = min(gs, cols - c0);
    const hgg = h + ((<usize>c0 * <usize>cols + <usize>c0) << 2);
    // Negated products (gemmSub from zero): yq = -(Q_G H_GG), yc = -(C_G H_GG).
    memory.fill(yq, 0, (<usize>rows * <usize>len) << 2);
    memory.fill(yc, 0, (<usize>rows * <usize>len) << 2);
    gemmSub(yq, len, q + (<usize>c0 << 2), cols, hgg, cols, rows, len, len);
    gemmSub(yc, len, cvals + (<usize>c0 << 2), cols, hgg, cols, rows, len, len);
    for (let r = 0; r < rows; r++) {
      memory.copy(gcur + ((<usize>r * <usize>len) << 2), g + ((<usize>r * <usize>cols + <usize>c0) << 2), <usize>len << 2);
    }
    if (c0 > 0) gemmSub(gcur, len, dneg, cols, h + (<usize>c0 << 2), cols, rows, len, c0);
    // H_GG 1 and 1^T H_GG 1, shared by all rows.
    let oneH1: f64 = 0;
    for (let i = 0; i < len; i++) {
      let s: f32 = 0;
      for (let j = 0; j < len; j++) s += load<f32>(hgg + ((<usize>i * <usize>cols + <usize>j) << 2));
      f32Set(ones, i, s);
      oneH1 += <f64>s;
    }
    for (let r = 0; r < rows; r++) {
      const go = (<usize>r * <usize>groups + <usize>gi) << 2;
      const rq = q + ((<usize>r * <usize>cols + <usize>c0) << 2);
      const rc = cvals + ((<usize>r * <usize>cols + <usize>c0) << 2);
      const ryq = yq + ((<usize>r * <usize>len) << 2);
      const ryc = yc + ((<usize>r * <usize>len) << 2);
      const rg = gcur + ((<usize>r * <usize>len) << 2);
      // Inner products in f64: p = H q - g (yq is negated).
      let cHc: f64 = 0, cH1: f64 = 0, cP: f64 = 0, oneP: f64 = 0, cHq: f64 = 0, oneHq: f64 = 0, qHq: f64 = 0, qg: f64 = 0, cg: f64 = 0, oneG: f64 = 0;
      for (let i = 0; i < len; i++) {
        const ci = <f64>f32At(rc, i), qi = <f64>f32At(rq, i), gi2 = <f64>f32At(rg, i);
        const hq = -<f64>f32At(ryq, i), hc = -<f64>f32At(ryc, i);
        cHc += ci * hc; cH1 += ci * <f64>f32At(ones, i);
        cHq += ci * hq; oneHq += hq; qHq += qi * hq;
        cg += ci * gi2; oneG += gi2; qg += qi * gi2;
      }
      cP = cHq - cg;
      oneP = oneHq - oneG;
      const zOld = <f64>load<f32>(zeros + go);
      let z = zOld;
      if (!sym) {
        // values a*c + beta (beta = -b): [cHc cH1; cH1 oneH1] [a; beta] = [cP; oneP]
        const det = cHc * oneH1 - cH1 * cH1;
        if (det > 1e-12 * cHc * oneH1 && det > 0) {
          const a = (cP * oneH1 - cH1 * oneP) / det;
          const beta = (cHc * oneP - cH1 * cP) / det;
          if (a > 0) z = min<f64>(max<f64>(nearest<f64>(-beta / a), 0), <f64>maxq);
        }
      }
      // Scale alone for v = c - z.
      const vHv = cHc - 2 * z * cH1 + z * z * oneH1;
      const vP = cP - z * oneP;
      if (!(vHv > 0)) continue;
      const a = vP / vHv;
      if (!(a > 0)) continue;
      const s32 = <f32>a, z32 = <f32>z;
      // Exact change of loss for the f32 values the grid will produce.
      let dg: f64 = 0, dHd: f64 = 0;
      // d = v a - q; d^T H d = a^2 vHv - 2 a vHq + qHq; computed from the rounded values below.
      const vHq = cHq - z * oneHq;
      const vg = cg - z * oneG;
      dg = <f64>s32 * vg - qg;
      dHd = <f64>s32 * <f64>s32 * vHv - 2 * <f64>s32 * vHq + qHq;
      if (!(2 * dg + dHd < 0)) continue;
      store<f32>(scales + go, s32);
      store<f32>(zeros + go, z32);
      store<i32>(accepted + (<usize>r << 2), load<i32>(accepted + (<usize>r << 2)) + 1);
      const rd = dneg + ((<usize>r * <usize>cols + <usize>c0) << 2);
      for (let i = 0; i < len; i++) {
        const nv = dequantCode(f32At(rc, i), s32, z32);
        f32Set(rd, i, f32At(rq, i) - nv);
        f32Set(rq, i, nv);
      }
    }
  }
  // g += D H with D = -dneg.
  gemmSub(g, cols, dneg, cols, h, cols, rows, cols, cols);
  heap.free(cvals);
  heap.free(ones);
}

