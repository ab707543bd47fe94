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
    store<u32>(marks + (w << 2), markWord(g, hRow, vDelta, thr2, j));
    w++;
  }
  let bits: u32 = 0;
  for (let t = 0; j + 4 <= cols; j += 4, t++) bits |= markQuad(g, hRow, vDelta, thr2, j) << (4 * t);
  store<u32>(marks + (w << 2), bits);
  return pickMarked(j, w, cols, q, g, hdiag, rhdiag, hRow, delta, colScale, colRScale, colZero, colOffset, rhdUp, marks, maxq);
}

/** cdPassSkip's phase 1 on 32 columns from j (unrolled: constant shifts, no inner loop). */
// @ts-ignore: decorator
@inline function markWord(g: usize, hRow: usize, vDelta: v128, thr2: usize, j: i32): u32 {
  return markQuad(g, hRow, vDelta, thr2, j) | (markQuad(g, hRow, vDelta, thr2, j + 4) << 4)
    | (markQuad(g, hRow, vDelta, thr2, j + 8) << 8) | (markQuad(g, hRow, vDelta, thr2, j + 12) << 12)
    | (markQuad(g, hRow, vDelta, thr2, j + 16) << 16) | (markQuad(g, hRow, vDelta, thr2, j + 20) << 20)
    | (markQuad(g, hRow, vDelta, thr2, j + 24) << 24) | (markQuad(g, hRow, vDelta, thr2, j + 28) << 28);
}

/** cdPassSkip's phase 2 over marks words 0..w (columns below j), then the scalar tail from j. */
// @ts-ignore: decorator
@inline function pickMarked(
  j: i32, w: usize, cols: i32, q: usize, g: usize, hdiag: usize, rhdiag: usize, hRow: usize, delta: f32,
  colScale: usize, colRScale: usize, colZero: usize, colOffset: usize, rhdUp: usize, marks: usize, maxq: f32,
): i32 {
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

/** Bytes of one row's arrays in cdBand's scratch: per-column scale, zero, 1/scale, squared skip
 * threshold and offset, and the marks. */
// @ts-ignore: decorator
@inline function rowSetBytes(cols: i32): usize {
  return <usize>cols * 20 + ((<usize>(cols >> 5) + 1) << 2);
}

/** Bytes of cdBand's scratch: 1/H_jj and the bound factor, and the arrays of two rows. */
export function cdBandScratch(cols: i32): f64 {
  return <f64>cols * 8 + 2 * <f64>rowSetBytes(cols);
}

// A row's arrays at `set` (rowSetBytes): scale, zero, 1/scale, squared threshold, offset, marks.
// @ts-ignore: decorator
@inline function setScale(set: usize, cols: i32): usize { return set; }
// @ts-ignore: decorator
@inline function setZero(set: usize, cols: i32): usize { return set + (<usize>cols << 2); }
// @ts-ignore: decorator
@inline function setRScale(set: usize, cols: i32): usize { return set + (<usize>cols << 3); }
// @ts-ignore: decorator
@inline function setThr2(set: usize, cols: i32): usize { return set + <usize>cols * 12; }
// @ts-ignore: decorator
@inline function setOffset(set: usize, cols: i32): usize { return set + (<usize>cols << 4); }
// @ts-ignore: decorator
@inline function setMarks(set: usize, cols: i32): usize { return set + <usize>cols * 20; }

/**
 * Row r's arrays at `set`: its grid per column, 1/scale and squared skip thresholds. Returns
 * whether cdPassSkip may serve it: every q_j exactly on its grid, s_j * (code_j - z_j) + o_j,
 * with s_j > 0, H_jj not tiny and thresholds whose squares are finite; a row where that fails
 * (no start of this package gives one) is evaluated in full.
 */
function prepareRow(
  r: i32, cols: i32, groups: i32, colGroup: usize, scales: usize, zeros: usize, offsets: usize, codes: usize, q: usize,
  hdiag: usize, maxq: f32, set: usize,
): bool {
  const colScale = setScale(set, cols), colZero = setZero(set, cols), colRScale = setRScale(set, cols);
  const colThr2 = setThr2(set, cols), colOffset = setOffset(set, cols);
  expandGrid(r, cols, groups, colGroup, scales, zeros, colScale, colZero);
  if (offsets) expandRow(r, cols, groups, colGroup, offsets, colOffset);
  else for (let j = 0; j < cols; j++) f32Set(colOffset, j, -0.0);
  const rowOff = <usize>r * <usize>cols;
  const qr = q + (rowOff << 2);
  let onGrid = maxq <= 255;
  for (let j = 0; j < cols; j++) {
    const s = f32At(colScale, j), hd = f32At(hdiag, j);
    f32Set(colRScale, j, <f32>1 / s);
    const thr = CD_SKIP * s * hd;
    f32Set(colThr2, j, thr * thr);
    const c = <f32>load<u8>(codes + rowOff + <usize>j);
    if (!(s > 0 && hd >= CD_TINY && thr < CD_THR_MAX && f32At(qr, j) == dequantCode(c, s, f32At(colZero, j)) + f32At(colOffset, j))) onGrid = false;
  }
  return onGrid;
}

/** Row r's move to coordinate i's target code: q and codes updated; returns the step. */
// @ts-ignore: decorator
@inline function applyMove(r: i32, i: i32, cols: i32, q: usize, codes: usize, g: usize, rhdiag: usize, maxq: f32, set: usize): f32 {
  const rowOff = <usize>r * <usize>cols;
  const qr = q + (rowOff << 2);
  const gr = g + (rowOff << 2);
  const z = f32At(setZero(set, cols), i), o = f32At(setOffset(set, cols), i);
  const code = targetCode(f32At(qr, i), f32At(gr, i), f32At(rhdiag, i), f32At(setRScale(set, cols), i), z, o, maxq);
  const value = f32At(setScale(set, cols), i) * (code - z) + o;
  const delta = value - f32At(qr, i);
  f32Set(qr, i, value);
  store<u8>(codes + rowOff + <usize>i, <u8>code);
  return delta;
}

/** g_r += delta * hRow: keeps g exact for the caller after the last allowed move. */
// @ts-ignore: decorator
@inline function finalUpdate(gr: usize, hRow: usize, delta: f32, cols: i32): void {
  for (let j = 0; j < cols; j++) f32Set(gr, j, f32At(gr, j) + delta * f32At(hRow, j));
}

/** One pass of row r (cdPassSkip or cdPassFull), after g_r += delta * hRow (hRow 0: none). */
// @ts-ignore: decorator
@inline function rowPass(r: i32, cols: i32, q: usize, g: usize, hdiag: usize, rhdiag: usize, rhdUp: usize, hRow: usize, delta: f32, maxq: f32, set: usize, onGrid: bool): i32 {
  const rowOff = <usize>r * <usize>cols;
  const qr = q + (rowOff << 2), gr = g + (rowOff << 2);
  return onGrid
    ? cdPassSkip(cols, qr, gr, hdiag, rhdiag, hRow, delta, setScale(set, cols), setRScale(set, cols), setZero(set, cols), setOffset(set, cols), setThr2(set, cols), rhdUp, setMarks(set, cols), maxq)
    : cdPassFull(cols, qr, gr, hdiag, rhdiag, hRow, delta, setScale(set, cols), setRScale(set, cols), setZero(set, cols), setOffset(set, cols), maxq);
}

/** Row r's descent from its chosen coordinate i after `count` moves: the greedy loop of cdBand.
 * Stores the row's number of moves. */
function continueRow(
  r: i32, i: i32, count: i32, cols: i32, q: usize, codes: usize, g: usize, h: usize, hdiag: usize, rhdiag: usize, rhdUp: usize,
  maxq: f32, iters: i32, moves: usize, set: usize, onGrid: bool,
): void {
  const gr = g + ((<usize>r * <usize>cols) << 2);
  while (count < iters && i >= 0) {
    const delta = applyMove(r, i, cols, q, codes, g, rhdiag, maxq, set);
    count++;
    const hRow = h + ((<usize>i * <usize>cols) << 2);
    if (count >= iters) {
      finalUpdate(gr, hRow, delta, cols);
      break;
    }
    i = rowPass(r, cols, q, g, hdiag, rhdiag, rhdUp, hRow, delta, maxq, set, onGrid);
  }
  store<i32>(moves + (<usize>r << 2), count);
}

/**
 * cdPassSkip for rows a and b at once: phase 1 streams both rows' H rows 32 columns at a time
 * (two independent streams from memory instead of one after the other), then each row's
 * phase 2. Each row's arithmetic is exactly its own pass. Returns both picks:
 * low 32 bits a's, high 32 bits b's.
 */
function pairPass(
  cols: i32, ga: usize, gb: usize, hRowA: usize, hRowB: usize, deltaA: f32, deltaB: f32, qa: usize, qb: usize,
  hdiag: usize, rhdiag: usize, rhdUp: usize, maxq: f32, setA: usize, setB: usize,
): i64 {
  const vdA = f32x4.splat(deltaA), vdB = f32x4.splat(deltaB);
  const thrA = setThr2(setA, cols), thrB = setThr2(setB, cols);
  const marksA = setMarks(setA, cols), marksB = setMarks(setB, cols);
  let j = 0;
  let w: usize = 0;
  for (; j + 32 <= cols; j += 32) {
    store<u32>(marksA + (w << 2), markWord(ga, hRowA, vdA, thrA, j));
    store<u32>(marksB + (w << 2), markWord(gb, hRowB, vdB, thrB, j));
    w++;
  }
  let bitsA: u32 = 0, bitsB: u32 = 0;
  for (let t = 0; j + 4 <= cols; j += 4, t++) {
    bitsA |= markQuad(ga, hRowA, vdA, thrA, j) << (4 * t);
    bitsB |= markQuad(gb, hRowB, vdB, thrB, j) << (4 * t);
  }
  store<u32>(marksA + (w << 2), bitsA);
  store<u32>(marksB + (w << 2), bitsB);
  const ia = pickMarked(j, w, cols, qa, ga, hdiag, rhdiag, hRowA, deltaA, setScale(setA, cols), setRScale(setA, cols), setZero(setA, cols), setOffset(setA, cols), rhdUp, marksA, maxq);
  const ib = pickMarked(j, w, cols, qb, gb, hdiag, rhdiag, hRowB, deltaB, setScale(setB, cols), setRScale(setB, cols), setZero(setB, cols), setOffset(setB, cols), rhdUp, marksB, maxq);
  return <i64><u32>ia | (<i64>ib << 32);
}

/**
 * Greedy CD on rows [0, rows) of a band. q/codes: start (updated in place); g: [rows x cols]
 * gradient (from gradientBand, updated); h: [cols x cols]; hdiag [cols]; per-(row, group)
 * scales, zeros and offsets (offsets 0: none, the integer grids); moves (i32 [rows]) receives
 * the number of moves per row. scratch: cdBandScratch(cols) bytes.
 * The Newton target q_i - g_i / H_ii and its grid code use precomputed reciprocals
 * (q_i - g_i * (1/H_ii), nearest(t * (1/s)) + z) in the SIMD lanes and the scalar twin alike.
 * Rows go in pairs whose passes share their streaming phase (pairPass) while both still move;
 * every row's sequence of moves and every float of it are those of the row descended alone.
 */
export function cdBand(
  q: usize, codes: usize, g: usize, rows: i32, cols: i32, h: usize, hdiag: usize, maxq: f32,
  groups: i32, colGroup: usize, scales: usize, zeros: usize, offsets: usize, iters: i32, moves: usize, scratch: usize,
): void {
  const rhdiag = scratch;
  const rhdUp = rhdiag + (<usize>cols << 2);
  const setA = rhdUp + (<usize>cols << 2);
  const setB = setA + rowSetBytes(cols);
  // Reciprocals once (the pass multiplies: no division in the inner loop).
  for (let j = 0; j < cols; j++) {
    const rhd = <f32>1 / f32At(hdiag, j);
    f32Set(rhdiag, j, rhd);
    f32Set(rhdUp, j, rhd * CD_BOUND_UP);
  }
  let r = 0;
  for (; r + 2 <= rows; r += 2) {
    const a = r, b = r + 1;
    const onA = prepareRow(a, cols, groups, colGroup, scales, zeros, offsets, codes, q, hdiag, maxq, setA);
    const onB = prepareRow(b, cols, groups, colGroup, scales, zeros, offsets, codes, q, hdiag, maxq, setB);
    let ia = rowPass(a, cols, q, g, hdiag, rhdiag, rhdUp, 0, 0, maxq, setA, onA);
    let ib = rowPass(b, cols, q, g, hdiag, rhdiag, rhdUp, 0, 0, maxq, setB, onB);
    let ca = 0, cb = 0;
    if (onA && onB) {
      const ga = g + ((<usize>a * <usize>cols) << 2), gb = g + ((<usize>b * <usize>cols) << 2);
      const qa = q + ((<usize>a * <usize>cols) << 2), qb = q + ((<usize>b * <usize>cols) << 2);
      while (ca < iters && ia >= 0 && cb < iters && ib >= 0) {
        const deltaA = applyMove(a, ia, cols, q, codes, g, rhdiag, maxq, setA);
        const deltaB = applyMove(b, ib, cols, q, codes, g, rhdiag, maxq, setB);
        ca++;
        cb++;
        const hRowA = h + ((<usize>ia * <usize>cols) << 2), hRowB = h + ((<usize>ib * <usize>cols) << 2);
        if (ca >= iters || cb >= iters) {
          // The last allowed move of one row (both have made the same number): finish it as
          // continueRow does; the other takes its pass alone and continues below.
          if (ca >= iters) finalUpdate(ga, hRowA, deltaA, cols);
          else ia = rowPass(a, cols, q, g, hdiag, rhdiag, rhdUp, hRowA, deltaA, maxq, setA, onA);
          if (cb >= iters) finalUpdate(gb, hRowB, deltaB, cols);
          else ib = rowPass(b, cols, q, g, hdiag, rhdiag, rhdUp, hRowB, deltaB, maxq, setB, onB);
          break;
        }
        const picks = pairPass(cols, ga, gb, hRowA, hRowB, deltaA, deltaB, qa, qb, hdiag, rhdiag, rhdUp, maxq, setA, setB);
        ia = <i32>picks;
        ib = <i32>(picks >> 32);
      }
    }
    continueRow(a, ia, ca, cols, q, codes, g, h, hdiag, rhdiag, rhdUp, maxq, iters, moves, setA, onA);
    continueRow(b, ib, cb, cols, q, codes, g, h, hdiag, rhdiag, rhdUp, maxq, iters, moves, setB, onB);
  }
  if (r < rows) {
    const on = prepareRow(r, cols, groups, colGroup, scales, zeros, offsets, codes, q, hdiag, maxq, setA);
    continueRow(r, rowPass(r, cols, q, g, hdiag, rhdiag, rhdUp, 0, 0, maxq, setA, on), 0, cols, q, codes, g, h, hdiag, rhdiag, rhdUp, maxq, iters, moves, setA, on);
  }
}
