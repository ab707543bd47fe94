// CDQuant's greedy coordinate descent (ALGORITHMS.md "CD") on a band of rows with fixed grids.
//
// State per row: q (dequantized values), codes, and g = H (q - w). Changing coordinate i by d
// changes the loss by 2 d g_i + d^2 H_ii; the best grid value for i is the one nearest
// q_i - g_i / H_ii. Each iteration moves the coordinate with the largest gain, then
// g += d H[:, i]. Step 3 of one iteration and step 1 of the next are one fused pass.
//
// A grid maps code c to s * (c - z) + o: the offset o is -0 for the integer grids (adding -0
// changes no float, so they compute exactly s * (c - z)) and the stored minimum of the GGUF
// block types that have one (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K: assembly/gguf/grid.ts).

import { reduceLanes } from './argmax';
import { dequantCode, expandGrid, expandRow } from './grid';
import { gainIndex, gainOf, indexOf } from './pairs';

// @ts-ignore: decorator
@inline function f32At(base: usize, i: i32): f32 {
  return load<f32>(base + (<usize>i << 2));
}
// @ts-ignore: decorator
@inline function f32Set(base: usize, i: i32, v: f32): void {
  store<f32>(base + (<usize>i << 2), v);
}

/** The grid code nearest coordinate j's Newton target q_j - g_j / H_jj, through the
 * precomputed reciprocals of H_jj (rhd) and of the scale (rs), clamped to the grid. */
// @ts-ignore: decorator
@inline function targetCode(qj: f32, gj: f32, rhd: f32, rs: f32, z: f32, o: f32, maxq: f32): f32 {
  const target = qj - gj * rhd;
  return min<f32>(max<f32>(nearest<f32>((target - o) * rs) + z, 0), maxq);
}

/** The loss decrease -(2 d g_j + d^2 H_jj) of moving coordinate j to its target code: the
 * scalar twin of one SIMD lane of cdPass (same operations, same order). */
// @ts-ignore: decorator
@inline function coordinateGain(qj: f32, gj: f32, hd: f32, rhd: f32, s: f32, rs: f32, z: f32, o: f32, maxq: f32): f32 {
  const code = targetCode(qj, gj, rhd, rs, z, o, maxq);
  const d = (s * (code - z) + o) - qj;
  return -((2 * d) * gj + (d * d) * hd);
}

/** The skip threshold of cdPass, in grid steps. Below 1/2 by far more than the rounding of the
 * target (a few ulps of |code - zero| <= 255): such coordinates provably stay put. */
// @ts-ignore: decorator
@inline const CD_SKIP: f32 = 0.49;
/** cdPassSkip's bound inflation 1 + 2^-12: the computed gain of a coordinate with
 * |g| >= thr exceeds g^2 / H_jj by at most ~30 ulps of it. */
// @ts-ignore: decorator
@inline const CD_BOUND_UP: f32 = 1.000244140625;
/** Below this best gain cdPassSkip does not use its bound: g_j^2 may underflow there. */
// @ts-ignore: decorator
@inline const CD_BOUND_MIN: f32 = 8.673617379884035e-19; // 2^-60
/** Smallest H_jj for which a bound that underflowed still lies below CD_BOUND_MIN. */
// @ts-ignore: decorator
@inline const CD_TINY: f32 = 9.094947017729282e-13; // 2^-40
/** Largest skip threshold whose square is finite. */
// @ts-ignore: decorator
@inline const CD_THR_MAX: f32 = 9.223372036854776e18; // 2^63

/** Per-lane running first maximum of the gains (gain > best: ties keep the earlier index). */
// @ts-ignore: decorator
@inline function quadGains(
  o: usize, gv: v128, q: usize, hdiag: usize, rhdiag: usize, colScale: usize, colRScale: usize, colZero: usize,
  colOffset: usize, vMaxq: v128,
): v128 {
  const vZero = f32x4.splat(0);
  const qv = v128.load(q + o);
  const hd = v128.load(hdiag + o);
  const s = v128.load(colScale + o);
  const z = v128.load(colZero + o);
  const off = v128.load(colOffset + o);
  const target = f32x4.sub(qv, f32x4.mul(gv, v128.load(rhdiag + o)));
  // pmin/pmax (one instruction each, unlike min/max's NaN and signed-zero rules): inputs are
  // finite, and a -0 code gives the same value and u8 code as +0.
  const code = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.mul(f32x4.sub(target, off), v128.load(colRScale + o))), z), vZero), vMaxq);
  const d = f32x4.sub(f32x4.add(f32x4.mul(s, f32x4.sub(code, z)), off), qv);
  return f32x4.neg(f32x4.add(f32x4.mul(f32x4.mul(f32x4.splat(2), d), gv), f32x4.mul(f32x4.mul(d, d), hd)));
}

/** The running first maximum: lanes whose gain beats their best so far take it and j's index. */
// @ts-ignore: decorator
@inline function keepBetter(gain: v128, j: i32, bestGain: v128, bestIdx: v128): v128 {
  const better = f32x4.gt(gain, bestGain);
  return v128.bitselect(i32x4.add(i32x4.splat(j), i32x4(0, 1, 2, 3)), bestIdx, better);
}

/**
 * One pass over a row: optionally g += delta * H[moved, :] (H is symmetric), then for every
 * coordinate its gain; returns the coordinate with the largest positive gain (ties to the
 * lowest index), or -1 when no move lowers the loss. Every coordinate is evaluated.
 */
function cdPassFull(
  cols: i32, q: usize, g: usize, hdiag: usize, rhdiag: usize, hRow: usize, delta: f32,
  colScale: usize, colRScale: usize, colZero: usize, colOffset: usize, maxq: f32,
): i32 {
  const vDelta = f32x4.splat(delta);
  const vMaxq = f32x4.splat(maxq);
  let bestGain = f32x4.splat(0);
  let bestIdx = i32x4.splat(-1);
  let j = 0;
  for (; j + 4 <= cols; j += 4) {
    const o = <usize>j << 2;
    let gv = v128.load(g + o);
    if (hRow) {
      gv = f32x4.add(gv, f32x4.mul(vDelta, v128.load(hRow + o)));
      v128.store(g + o, gv);
    }
    const gain = quadGains(o, gv, q, hdiag, rhdiag, colScale, colRScale, colZero, colOffset, vMaxq);
    bestIdx = keepBetter(gain, j, bestGain, bestIdx);
    bestGain = f32x4.pmax(bestGain, gain);
  }
  return scalarTail(j, cols, reduceLanes(bestGain, bestIdx), q, g, hdiag, rhdiag, hRow, delta, colScale, colRScale, colZero, colOffset, maxq);
}

/**
 * cdPassFull's result with far less work, for rows whose q is on its grid (see cdBand).
 * Phase 1 streams the row once, branch-free: g += delta * H[moved, :], and a bit per
 * coordinate marks g_j^2 >= thr2_j = (CD_SKIP * s_j * H_jj)^2. Unmarked coordinates have their
 * Newton target q_j - g_j / H_jj within CD_SKIP grid steps of q_j, so their target code is
 * q_j's own, the move 0 and the gain -0, which never wins. Phase 2 visits the marked ones in
 * index order and skips those whose bound ub_j = g_j^2 / H_jj (the continuous Newton gain,
 * which no grid move exceeds; inflated by 2^-12, far above the few-ulp rounding of the
 * computed gain when |g_j| >= thr_j) is below the best gain found so far: they can neither
 * win nor tie. The rest get coordinateGain, the scalar twin of cdPassFull's lanes, and the
 * first maximum wins as there: the same result, bit for bit.
 * marks: room for cols / 32 + 1 u32.
 */
function cdPassSkip(
  cols: i32, q: usize, g: usize, hdiag: usize, rhdiag: usize, hRow: usize, delta: f32,
  colScale: usize, colRScale: usize, colZero: usize, colOffset: usize, thr2: usize, rhdUp: usize, marks: usize, maxq: f32,
): i32 {
  const vDelta = f32x4.splat(delta);
  let j = 0;
  let w: usize = 0;
  for (; j + 32 <= cols; j += 32) {
    // Unrolled: constant shifts, no inner loop.
    const bits = markQuad(g, hRow, vDelta, thr2, j) | (markQuad(g, hRow, vDelta, thr2, j + 4) << 4)
      | (markQuad(g, hRow, vDelta, thr2, j + 8) << 8) | (markQuad(g, hRow, vDelta, thr2, j + 12) << 12)
      | (markQuad(g, hRow, vDelta, thr2, j + 16) << 16) | (markQuad(g, hRow, vDelta, thr2, j + 20) << 20)
      | (markQuad(g, hRow, vDelta, thr2, j + 24) << 24) | (markQuad(g, hRow, vDelta, thr2, j + 28) << 28);
    store<u32>(marks + (w << 2), bits);
    w++;
  }
  let bits: u32 = 0;
  for (let t = 0; j + 4 <= cols; j += 4, t++) bits |= markQuad(g, hRow, vDelta, thr2, j) << (4 * t);
  store<u32>(marks + (w << 2), bits);
  let best: f32 = 0;
  let bi = -1;
  for (let v: usize = 0; v <= w; v++) {
    let m = load<u32>(marks + (v << 2));
    while (m) {
      const c = <i32>(v << 5) + <i32>ctz(m);
      m &= m - 1;
      const gc = f32At(g, c);
      if (gc * gc * f32At(rhdUp, c) < best && best >= CD_BOUND_MIN) continue;
      const gain = coordinateGain(f32At(q, c), gc, f32At(hdiag, c), f32At(rhdiag, c), f32At(colScale, c), f32At(colRScale, c), f32At(colZero, c), f32At(colOffset, c), maxq);
      if (gain > best) {
        best = gain;
        bi = c;
      }
    }
  }
  return scalarTail(j, cols, gainIndex(best, bi), q, g, hdiag, rhdiag, hRow, delta, colScale, colRScale, colZero, colOffset, maxq);
}

/** cdPassSkip's phase 1 on the quad at j: the g update, and the marks as 4 bits. */
// @ts-ignore: decorator
@inline function markQuad(g: usize, hRow: usize, vDelta: v128, thr2: usize, j: i32): u32 {
  const o = <usize>j << 2;
  let gv = v128.load(g + o);
  if (hRow) {
    gv = f32x4.add(gv, f32x4.mul(vDelta, v128.load(hRow + o)));
    v128.store(g + o, gv);
  }
  return i32x4.bitmask(f32x4.ge(f32x4.mul(gv, gv), v128.load(thr2 + o)));
}

/** The columns after the last whole quad, one by one (the scalar twin of the lanes), continuing
 * the best (gain, index) of the quads. */
// @ts-ignore: decorator
@inline function scalarTail(
  j: i32, cols: i32, lanes: i64, q: usize, g: usize, hdiag: usize, rhdiag: usize, hRow: usize, delta: f32,
  colScale: usize, colRScale: usize, colZero: usize, colOffset: usize, maxq: f32,
): i32 {
  let best = gainOf(lanes);
  let bi = indexOf(lanes);
  for (; j < cols; j++) {
    let gj = f32At(g, j);
    if (hRow) {
      gj = gj + delta * f32At(hRow, j);
      f32Set(g, j, gj);
    }
    const gain = coordinateGain(f32At(q, j), gj, f32At(hdiag, j), f32At(rhdiag, j), f32At(colScale, j), f32At(colRScale, j), f32At(colZero, j), f32At(colOffset, j), maxq);
    if (gain > best) {
      best = gain;
      bi = j;
    }
  }
  return bi;
}

/** Bytes of cdBand's scratch: per-column scale, zero, offset, 1/scale, 1/H_jj, squared skip
 * threshold and bound factor, and the marks. */
export function cdBandScratch(cols: i32): f64 {
  return <f64>cols * 28 + (<f64>(cols >> 5) + 1) * 4;
}

/**
 * Greedy CD on rows [0, rows) of a band. q/codes: start (updated in place); g: [rows x cols]
 * gradient (from gradientBand, updated); h: [cols x cols]; hdiag [cols]; per-(row, group)
 * scales, zeros and offsets (offsets 0: none, the integer grids); moves (i32 [rows]) receives
 * the number of moves per row. scratch: cdBandScratch(cols) bytes.
 * The Newton target q_i - g_i / H_ii and its grid code use precomputed reciprocals
 * (q_i - g_i * (1/H_ii), nearest(t * (1/s)) + z) in the SIMD lanes and the scalar twin alike.
 */
export function cdBand(
  q: usize, codes: usize, g: usize, rows: i32, cols: i32, h: usize, hdiag: usize, maxq: f32,
  groups: i32, colGroup: usize, scales: usize, zeros: usize, offsets: usize, iters: i32, moves: usize, scratch: usize,
): void {
  const colScale = scratch;
  const colZero = scratch + (<usize>cols << 2);
  const colRScale = colZero + (<usize>cols << 2);
  const rhdiag = colRScale + (<usize>cols << 2);
  const colThr2 = rhdiag + (<usize>cols << 2);
  const rhdUp = colThr2 + (<usize>cols << 2);
  const colOffset = rhdUp + (<usize>cols << 2);
  const marks = colOffset + (<usize>cols << 2);
  if (!offsets) for (let j = 0; j < cols; j++) f32Set(colOffset, j, -0.0);
  // Reciprocals once (the pass multiplies: no division in the inner loop).
  for (let j = 0; j < cols; j++) {
    const rhd = <f32>1 / f32At(hdiag, j);
    f32Set(rhdiag, j, rhd);
    f32Set(rhdUp, j, rhd * CD_BOUND_UP);
  }
  for (let r = 0; r < rows; r++) {
    expandGrid(r, cols, groups, colGroup, scales, zeros, colScale, colZero);
    if (offsets) expandRow(r, cols, groups, colGroup, offsets, colOffset);
    const rowOff = <usize>r * <usize>cols;
    const qr = q + (rowOff << 2);
    const gr = g + (rowOff << 2);
    // cdPassSkip needs every q_j exactly on its grid, s_j * (code_j - z_j) + o_j, with s_j > 0, H_jj
    // not tiny and thresholds whose squares are finite; a row where that fails (no start of
    // this package gives one) is evaluated in full.
    let onGrid = maxq <= 255;
    for (let j = 0; j < cols; j++) {
      const s = f32At(colScale, j), hd = f32At(hdiag, j);
      f32Set(colRScale, j, <f32>1 / s);
      const thr = CD_SKIP * s * hd;
      f32Set(colThr2, j, thr * thr);
      const c = <f32>load<u8>(codes + rowOff + <usize>j);
      if (!(s > 0 && hd >= CD_TINY && thr < CD_THR_MAX && f32At(qr, j) == dequantCode(c, s, f32At(colZero, j)) + f32At(colOffset, j))) onGrid = false;
    }
    let count = 0;
    let i = onGrid
      ? cdPassSkip(cols, qr, gr, hdiag, rhdiag, 0, 0, colScale, colRScale, colZero, colOffset, colThr2, rhdUp, marks, maxq)
      : cdPassFull(cols, qr, gr, hdiag, rhdiag, 0, 0, colScale, colRScale, colZero, colOffset, maxq);
    while (count < iters && i >= 0) {
      const z = f32At(colZero, i), o = f32At(colOffset, i);
      const code = targetCode(f32At(qr, i), f32At(gr, i), f32At(rhdiag, i), f32At(colRScale, i), z, o, maxq);
      const value = f32At(colScale, i) * (code - z) + o;
      const delta = value - f32At(qr, i);
      f32Set(qr, i, value);
      store<u8>(codes + rowOff + <usize>i, <u8>code);
      count++;
      const hRow = h + ((<usize>i * <usize>cols) << 2);
      if (count >= iters) {
        // Keep g exact for the caller even though no further move is chosen.
        for (let j = 0; j < cols; j++) f32Set(gr, j, f32At(gr, j) + delta * f32At(hRow, j));
        break;
      }
      i = onGrid
        ? cdPassSkip(cols, qr, gr, hdiag, rhdiag, hRow, delta, colScale, colRScale, colZero, colOffset, colThr2, rhdUp, marks, maxq)
        : cdPassFull(cols, qr, gr, hdiag, rhdiag, hRow, delta, colScale, colRScale, colZero, colOffset, maxq);
    }
    store<i32>(moves + (<usize>r << 2), count);
  }
}
