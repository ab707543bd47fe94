// Quantization grids: the primitives every solver shares.
// A grid is (scale, zero); quant(x) = clamp(nearest(x / scale) + zero, 0, maxq) with round
// half to even (WebAssembly's `nearest`, as torch.round), dequant(c) = scale * (c - zero).
// Grids are built as the reference GPTQ quantizer builds them (ALGORITHMS.md "The grid").

import { f32Pair, pairFirst, pairSecond } from './pairs';

// @ts-ignore: decorator
@inline export function quantCode(x: f32, scale: f32, zero: f32, maxq: f32): f32 {
  return min<f32>(max<f32>(nearest<f32>(x / scale) + zero, 0), maxq);
}

// @ts-ignore: decorator
@inline export function dequantCode(code: f32, scale: f32, zero: f32): f32 {
  return scale * (code - zero);
}

// Scales as the output stores them. A GPTQ checkpoint stores fp16 scales, so a model solved
// for one must be solved on fp16-rounded scales: every grid built below is then exactly the one
// written (ALGORITHMS.md, GPTQ checkpoint packing). The storage format is a property of the
// whole solve, not of one call, so the layer session sets it before each band (setHalfScales).
let halfScales: bool = false;

/** Grids built from now on in this instance round their scales to fp16 (1) or keep f32 (0). */
export function setHalfScales(on: i32): void {
  halfScales = on != 0;
}

/** Whether grids round their scales to fp16 (see setHalfScales). */
// @ts-ignore: decorator
@inline export function halfScalesOn(): bool {
  return halfScales;
}

/** Smallest positive fp16 (a subnormal, 2^-24). */
// @ts-ignore: decorator
@inline const HALF_MIN_POSITIVE: f32 = 5.9604644775390625e-8;

/**
 * x > 0 rounded to the nearest fp16 value (ties to even), as an f32: what an fp16 store of x
 * reads back as. Integer arithmetic on the bits for the normal range, an exact power-of-two
 * scaling for the subnormal one; above the fp16 range the result is Infinity (refused by the
 * band's grid check; checkWeightRange refuses such rows before). A positive scale that would
 * round to 0 becomes the smallest positive fp16, so a grid never has a zero step.
 */
export function roundScaleToHalf(x: f32): f32 {
  const bits = reinterpret<u32>(x);
  if (bits >= 0x38800000) {
    // Normal fp16 (x >= 2^-14): keep 10 of the 23 mantissa bits, rounding the 13 dropped ones
    // to nearest, ties to even (a carry into the exponent is the correct result).
    const rounded = (bits + 0xfff + ((bits >> 13) & 1)) & 0xffffe000;
    return rounded >= 0x47800000 ? Infinity : reinterpret<f32>(rounded);
  }
  // Subnormal fp16: multiples of 2^-24; x * 2^24 and the product back are exact.
  const r = nearest<f32>(x * 16777216.0) * HALF_MIN_POSITIVE;
  return r > 0 ? r : HALF_MIN_POSITIVE;
}

/** The range of n floats at x, widened to include 0: f32Pair(min, max). */
export function rangeOf(x: usize, n: i32): i64 {
  let lo: f32 = 0, hi: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    lo = min<f32>(lo, v);
    hi = max<f32>(hi, v);
  }
  return f32Pair(lo, hi);
}

/** The clip searches' candidates: shrink factors p = 1 - i/100, i < CLIP_CANDIDATES. */
// @ts-ignore: decorator
@inline export const CLIP_CANDIDATES: i32 = 80;
// @ts-ignore: decorator
@inline function shrink(i: i32): f32 {
  return <f32>(1.0 - <f64>i / 100.0);
}

/**
 * Candidate i's grid, f32Pair(scale, zero): the min-max grid built from (p*xmin, p*xmax) of the
 * symmetric-adjusted range. The reference applies the symmetric rule before shrinking, and
 * with it the zero stays (maxq+1)/2; the shrunk range never contains a zero-width case unless
 * the range was 0. Candidate 0 (p = 1) is the plain min-max grid.
 */
// @ts-ignore: decorator
@inline export function candidateGrid(i: i32, xmin: f32, xmax: f32, maxq: f32, sym: bool): i64 {
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
  let scale = (hi - lo) / maxq;
  if (halfScales) scale = roundScaleToHalf(scale);
  // The rounded step can be a little smaller than the range needs: the zero stays a code.
  return f32Pair(scale, sym ? (maxq + 1) / 2 : min<f32>(nearest<f32>(-lo / scale), maxq));
}

/** Min-max grid of n values at x: f32Pair(scale, zero). */
export function gridMinMax(x: usize, n: i32, maxq: f32, sym: bool): i64 {
  const range = rangeOf(x, n);
  return candidateGrid(0, pairFirst(range), pairSecond(range), maxq, sym);
}

/** MSE clip search (reference Quantizer, mse=True): the candidate minimising
 * sum |dequant(quant(x)) - x|^2.4, first minimum wins. f32Pair(scale, zero). */
export function gridMse(x: usize, n: i32, maxq: f32, sym: bool): i64 {
  const range = rangeOf(x, n);
  const xmin = pairFirst(range), xmax = pairSecond(range);
  let bestErr: f32 = Infinity;
  let best = f32Pair(1, 0);
  for (let c = 0; c < CLIP_CANDIDATES; c++) {
    const grid = candidateGrid(c, xmin, xmax, maxq, sym);
    const s = pairFirst(grid), z = pairSecond(grid);
    let err: f32 = 0;
    for (let i = 0; i < n; i++) {
      const v = load<f32>(x + (<usize>i << 2));
      const e = abs<f32>(dequantCode(quantCode(v, s, z, maxq), s, z) - v);
      err += Mathf.pow(e, 2.4);
    }
    if (err < bestErr) {
      bestErr = err;
      best = grid;
    }
  }
  return best;
}

/** One row's per-group values per column: dst [cols] from the row's [groups] values at src
 * through colGroup (column -> group). */
export function expandRow(r: i32, cols: i32, groups: i32, colGroup: usize, src: usize, dst: usize): void {
  const base = <usize>r * <usize>groups;
  for (let j = 0; j < cols; j++) {
    const go = (base + <usize>load<i32>(colGroup + (<usize>j << 2))) << 2;
    store<f32>(dst + (<usize>j << 2), load<f32>(src + go));
  }
}

/** One row's grid per column: colScale/colZero [cols] from the row's [groups] scales/zeros. */
export function expandGrid(r: i32, cols: i32, groups: i32, colGroup: usize, scales: usize, zeros: usize, colScale: usize, colZero: usize): void {
  expandRow(r, cols, groups, colGroup, scales, colScale);
  expandRow(r, cols, groups, colGroup, zeros, colZero);
}

/**
 * Codes and dequantized values of W under per-(row, group) grids; colGroup [cols] maps each
 * column to its group (so act-order and static groups share one path). q may be 0 (codes only).
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
