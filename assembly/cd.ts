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
import { expandGrid, expandRow } from './grid';
import { gainOf, indexOf } from './pairs';

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

/**
 * One fused pass over a row: optionally g += delta * H[moved, :] (H is symmetric), then for
 * every coordinate its gain; returns the coordinate with the largest positive gain (ties to the
 * lowest index), or -1 when no move lowers the loss.
 */
function cdPass(
  cols: i32, q: usize, g: usize, hdiag: usize, rhdiag: usize, hRow: usize, delta: f32,
  colScale: usize, colRScale: usize, colZero: usize, colOffset: usize, maxq: f32,
): i32 {
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
    const off = v128.load(colOffset + o);
    const target = f32x4.sub(qv, f32x4.mul(gv, v128.load(rhdiag + o)));
    // pmin/pmax (one instruction each, unlike min/max's NaN and signed-zero rules): inputs are
    // finite, and a -0 code gives the same value and u8 code as +0.
    const code = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.nearest(f32x4.mul(f32x4.sub(target, off), v128.load(colRScale + o))), z), vZero), vMaxq);
    const d = f32x4.sub(f32x4.add(f32x4.mul(s, f32x4.sub(code, z)), off), qv);
    const gain = f32x4.neg(f32x4.add(f32x4.mul(f32x4.mul(vTwo, d), gv), f32x4.mul(f32x4.mul(d, d), hd)));
    const better = f32x4.gt(gain, bestGain);
    bestGain = v128.bitselect(gain, bestGain, better);
    bestIdx = v128.bitselect(idx, bestIdx, better);
    idx = i32x4.add(idx, four);
  }
  const lanes = reduceLanes(bestGain, bestIdx);
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

/** Bytes of cdBand's scratch: per-column scale, zero, offset, 1/scale and 1/H_jj. */
export function cdBandScratch(cols: i32): f64 {
  return <f64>cols * 20;
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
  const colOffset = rhdiag + (<usize>cols << 2);
  if (!offsets) for (let j = 0; j < cols; j++) f32Set(colOffset, j, -0.0);
  // Reciprocals once (the pass multiplies: no division in the inner loop).
  for (let j = 0; j < cols; j++) f32Set(rhdiag, j, <f32>1 / f32At(hdiag, j));
  for (let r = 0; r < rows; r++) {
    expandGrid(r, cols, groups, colGroup, scales, zeros, colScale, colZero);
    if (offsets) expandRow(r, cols, groups, colGroup, offsets, colOffset);
    for (let j = 0; j < cols; j++) f32Set(colRScale, j, <f32>1 / f32At(colScale, j));
    const rowOff = <usize>r * <usize>cols;
    const qr = q + (rowOff << 2);
    const gr = g + (rowOff << 2);
    let count = 0;
    let i = cdPass(cols, qr, gr, hdiag, rhdiag, 0, 0, colScale, colRScale, colZero, colOffset, maxq);
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
      i = cdPass(cols, qr, gr, hdiag, rhdiag, hRow, delta, colScale, colRScale, colZero, colOffset, maxq);
    }
    store<i32>(moves + (<usize>r << 2), count);
  }
}
