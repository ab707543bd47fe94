// Optimal weight clipping on the GGUF block grids (ALGORITHMS.md "Fixed-format grids"): the
// candidates are the clip searches' shrink factors p = 1 - i/100 applied to each group's range,
// each stored exactly as the format can store it (fp16 d and m, the k-quants' integer sub-block
// codes under fp16 super-scales), then scored by the layer's own loss e^T Hg e of round-to-
// nearest on that stored grid. p = 1 (the format's own min-max rule) is candidate 0, so the
// search never scores worse than it.
//   Q4_0..Q8_0 (one group per block): the block's best candidate, first minimum.
//   k-quants: each sub-block's best candidate with the others at p = 1 (its stored scale then
//   depends on the super-scale exactly as it will), then all sub-blocks' choices together,
//   kept only if the super-block's loss (its whole diagonal block of H) does not rise.
//
// The choice is defined by the scores as `quadForm` computes them (f64, a fixed order) and the
// first minimum; it is the same bits whatever shortcut finds it. (The search used to score
// every candidate in full: rows x cols x 80 x group multiply-adds, plus a whole grid and
// scalar round-to-nearest per candidate.) The shortcuts:
//   - a candidate's stored grid costs O(1): its group's own scale and, only when that becomes
//     the super-block's largest, the super-scale (subCandidate, legacyHalves); a candidate
//     with the same grid as the one before is skipped;
//   - round to nearest runs four values at a time where it provably agrees with rtnCode
//     (rtnGroup);
//   - each candidate's score is first *estimated* from e = a u + b - x (u its codes), with
//     u'Hu, u'H1, u'Hx carried from one candidate to the next (only codes that change cost
//     work), and a rigorous bound on the estimate's error covers every rounding (the f64
//     arithmetic's, the f32 grid values' and errors', and quadForm's own). A candidate whose
//     estimate minus bound exceeds another's estimate plus bound, or the exact score of the
//     most promising one, provably scores above the minimum and is never scored; in practice
//     one or two per group are (searchGroup);
//   - exact scores read f64 copies of H's blocks (quadFormF64) or H's rows (quadFormSym), eight
//     lanes at a time: the same products summed in the same order as quadForm, so the same bits;
//   - comparing two whole-block grids (the k-quants' final step, ggufKeepBetter) first bounds
//     the difference of their losses, (e_A - e_B)' H (e_A + e_B), computed in f32
//     (blockNotWorse), and scores both exactly only when that does not decide.
// The shortcuts need the block of H to equal its transpose bit for bit (prepareResident makes
// it so); a block that does not is scored in full, in quadForm's own loop.

import {
  RANGE_SCRATCH, asymUnitMin, asymUnitScale, blockAffine, ggufGroupSize, ggufMaxq, ggufZero, gridValue, groupRange,
  kSubCode, legacyHalves, q3SubCode, q6SubCode, rtnCode, storeBlockGrid, symUnitScale,
} from './grid';
import { fp16ToFp32, fp32ToFp16, ggufBlockElems, imax, loadF, storeF, toI8 } from './common';
import { GROUP_MAX_EPS } from './search';

/** The clip searches' candidates (grid.ts in the solver: p = 1 - i/100). */
// @ts-ignore: decorator
@inline const CANDIDATES: i32 = 80;
// @ts-ignore: decorator
@inline function shrink(i: i32): f32 {
  return <f32>(1.0 - <f64>i / 100.0);
}

// 2^-k as f64 constants for the error bounds.
const U53: f64 = 1.1102230246251565e-16; // 2^-53: f64 unit roundoff
const U24: f64 = 5.9604644775390625e-8; // 2^-24: f32 unit roundoff
const TINY: f64 = 2.2958874039497803e-44; // 2^-145: covers float32 subnormal absolute errors

// ---- scratch layout (bytes) ------------------------------------------------------------------
// @ts-ignore: decorator
@inline const S_RANGES: usize = 0; // RANGE_SCRATCH: the groups' raw ranges (p = 1)
// @ts-ignore: decorator
@inline const S_RANGES2: usize = S_RANGES + RANGE_SCRATCH; // RANGE_SCRATCH: shrunk ranges
// @ts-ignore: decorator
@inline const S_H1: usize = S_RANGES2 + RANGE_SCRATCH; // f64[256]: row sums of each group's block of H
// @ts-ignore: decorator
@inline const S_G: usize = S_H1 + 2048; // f64[16]: each group's max absolute row sum of H
// @ts-ignore: decorator
@inline const S_S1: usize = S_G + 128; // f64[16]: each group's 1^T H 1
// @ts-ignore: decorator
@inline const S_HX: usize = S_S1 + 128; // f64[32]: H x of the group searched
// @ts-ignore: decorator
@inline const S_HU: usize = S_HX + 256; // f64[32]: H u of its current codes
// @ts-ignore: decorator
@inline const S_T: usize = S_HU + 256; // f64[256]: quadFormSym's H e
// @ts-ignore: decorator
@inline const S_CODES: usize = S_T + 2048; // f32[256]: codes of the candidate at hand
// @ts-ignore: decorator
@inline const S_PREV: usize = S_CODES + 1024; // f32[32]: the other half of the search's double buffer of codes
// @ts-ignore: decorator
@inline const S_EA: usize = S_PREV + 128; // f32[256]: errors
// @ts-ignore: decorator
@inline const S_EB: usize = S_EA + 1024; // f32[256]: errors of a second grid
// @ts-ignore: decorator
@inline const S_DIFF: usize = S_EB + 1024; // f32[256]: e_A - e_B
// @ts-ignore: decorator
@inline const S_SUM: usize = S_DIFF + 1024; // f32[256]: e_A + e_B
// @ts-ignore: decorator
@inline const S_CA: usize = S_SUM + 1024; // f32[80]: candidates' a
// @ts-ignore: decorator
@inline const S_CB: usize = S_CA + 320; // f32[80]: candidates' b
// @ts-ignore: decorator
@inline const S_CH: usize = S_CB + 320; // u32[80]: candidates' stored halves (one group per block)
// @ts-ignore: decorator
@inline const S_EST: usize = S_CH + 320; // f64[80]: estimated scores
// @ts-ignore: decorator
@inline const S_BOUND: usize = S_EST + 640; // f64[80]: the f64 arithmetic's share of their error bounds
// @ts-ignore: decorator
@inline const S_EXACT: usize = S_BOUND + 640; // f64[80]: the loose bounds of pass 1
// @ts-ignore: decorator
@inline const S_FLAG: usize = S_EXACT + 640; // u8[80]: EXACT or 0
// @ts-ignore: decorator
@inline const S_ALIVE: usize = S_FLAG + 128; // u8[80]: candidates still in the running, in order
// @ts-ignore: decorator
@inline const S_AFF: usize = S_ALIVE + 128; // f32[16] x 4: (a, b) per group of two grids
// @ts-ignore: decorator
@inline const S_UNIT: usize = S_AFF + 256; // f32[16] x 8: see prepareUnits
// @ts-ignore: decorator
@inline const S_BESTP: usize = S_UNIT + 512; // f32[16]: each sub-block's chosen shrink
// @ts-ignore: decorator
@inline const S_GRID: usize = S_BESTP + 64; // a block's stored grid: halves [4], sub-codes [16], mins [16]
// @ts-ignore: decorator
@inline const S_HF: usize = S_GRID + 64; // f64[16384]: each group's diagonal block of H, contiguous
// @ts-ignore: decorator
@inline const OWC_SCRATCH: usize = S_HF + 256 * 32 * 8;

// Candidate flag: could not be estimated, so it is scored exactly (else 0).
// @ts-ignore: decorator
@inline const EXACT: u8 = 2;

/** Bytes of ggufOwc's and ggufKeepBetter's scratch (independent of the band). */
export function ggufOwcScratch(): f64 {
  return <f64>OWC_SCRATCH;
}

// ---- exact scores --------------------------------------------------------------------------

/** e^T Hb e (f64, fixed order) for n errors at e, Hb the n x n block at hb (leading dim ldh):
 * t_i = sum_j H_ij e_j in j order, then sum_i e_i t_i in i order. The definition of a score. */
function quadForm(e: usize, n: i32, hb: usize, ldh: i32): f64 {
  let s: f64 = 0;
  for (let i = 0; i < n; i++) {
    const row = hb + ((<usize>i * <usize>ldh) << 2);
    let t: f64 = 0;
    for (let j = 0; j < n; j++) t += <f64>load<f32>(row + (<usize>j << 2)) * <f64>load<f32>(e + (<usize>j << 2));
    s += <f64>load<f32>(e + (<usize>i << 2)) * t;
  }
  return s;
}

/** quadForm for a block equal to its transpose (n a multiple of 8), the same bits: each t_i
 * still sums H_ij e_j in j order, eight i at a time, reading H_ij as H_ji from row j. */
function quadFormSym(e: usize, n: i32, hb: usize, ldh: i32, t: usize): f64 {
  for (let i0 = 0; i0 < n; i0 += 8) {
    let t0 = f64x2.splat(0), t1 = f64x2.splat(0), t2 = f64x2.splat(0), t3 = f64x2.splat(0);
    let row = hb + (<usize>i0 << 2);
    const step = <usize>ldh << 2;
    for (let j = 0; j < n; j++) {
      const ej = f64x2.splat(<f64>load<f32>(e + (<usize>j << 2)));
      t0 = f64x2.add(t0, f64x2.mul(f64x2.promote_low_f32x4(v128.load64_zero(row)), ej));
      t1 = f64x2.add(t1, f64x2.mul(f64x2.promote_low_f32x4(v128.load64_zero(row + 8)), ej));
      t2 = f64x2.add(t2, f64x2.mul(f64x2.promote_low_f32x4(v128.load64_zero(row + 16)), ej));
      t3 = f64x2.add(t3, f64x2.mul(f64x2.promote_low_f32x4(v128.load64_zero(row + 24)), ej));
      row += step;
    }
    const o = t + (<usize>i0 << 3);
    v128.store(o, t0);
    v128.store(o + 16, t1);
    v128.store(o + 32, t2);
    v128.store(o + 48, t3);
  }
  let s: f64 = 0;
  for (let i = 0; i < n; i++) s += <f64>load<f32>(e + (<usize>i << 2)) * load<f64>(t + (<usize>i << 3));
  return s;
}

// @ts-ignore: decorator
@inline function exactScore(e: usize, n: i32, hb: usize, ldh: i32, sym: bool, scratch: usize): f64 {
  return sym ? quadFormSym(e, n, hb, ldh, scratch + S_T) : quadForm(e, n, hb, ldh);
}

/** quadFormSym with the block already widened to f64, contiguous (n x n at hf): the same bits. */
function quadFormF64(e: usize, n: i32, hf: usize, t: usize): f64 {
  for (let i0 = 0; i0 < n; i0 += 8) {
    let t0 = f64x2.splat(0), t1 = f64x2.splat(0), t2 = f64x2.splat(0), t3 = f64x2.splat(0);
    let row = hf + (<usize>i0 << 3);
    const step = <usize>n << 3;
    for (let j = 0; j < n; j++) {
      const ej = f64x2.splat(<f64>load<f32>(e + (<usize>j << 2)));
      t0 = f64x2.add(t0, f64x2.mul(v128.load(row), ej));
      t1 = f64x2.add(t1, f64x2.mul(v128.load(row + 16), ej));
      t2 = f64x2.add(t2, f64x2.mul(v128.load(row + 32), ej));
      t3 = f64x2.add(t3, f64x2.mul(v128.load(row + 48), ej));
      row += step;
    }
    const o = t + (<usize>i0 << 3);
    v128.store(o, t0);
    v128.store(o + 16, t1);
    v128.store(o + 32, t2);
    v128.store(o + 48, t3);
  }
  let s: f64 = 0;
  for (let i = 0; i < n; i++) s += <f64>load<f32>(e + (<usize>i << 2)) * load<f64>(t + (<usize>i << 3));
  return s;
}

/** Whether the n x n block at hb equals its transpose bit for bit. */
function symmetricBlock(hb: usize, ldh: i32, n: i32): bool {
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (load<u32>(hb + ((<usize>i * <usize>ldh + <usize>j) << 2)) != load<u32>(hb + ((<usize>j * <usize>ldh + <usize>i) << 2))) return false;
    }
  }
  return true;
}

/** max_i sum_j |H_ij| over the n x n block, rounded up: for a symmetric block it bounds
 * |v^T H w| <= G |v| |w| (the spectral norm of |H| is at most its largest row sum). */
function absRowMax(hb: usize, ldh: i32, n: i32): f64 {
  let g: f64 = 0;
  for (let i = 0; i < n; i++) {
    const row = hb + ((<usize>i * <usize>ldh) << 2);
    let s: f64 = 0;
    for (let j = 0; j < n; j++) s += <f64>Mathf.abs(load<f32>(row + (<usize>j << 2)));
    if (s > g) g = s;
  }
  return g * (1 + <f64>n * U53 * 2);
}

/** A group's exact score: from its f64 copy when the block is symmetric. */
// @ts-ignore: decorator
@inline function groupScore(e: usize, n: i32, hb: usize, ldh: i32, hf: usize, sym: bool, scratch: usize): f64 {
  return sym ? quadFormF64(e, n, hf, scratch + S_T) : quadForm(e, n, hb, ldh);
}

// ---- round to nearest, four at a time --------------------------------------------------------

/**
 * RTN codes (f32, small integers, at codes) of the n values at x (n % 4 == 0) on the grid
 * (a, z, b): exactly rtnCode's; with e != 0 also the errors value(code) - x (f32),
 * gridValue's.
 *
 * Four at a time: code = clamp(round(t), 0, maxq), t = (x - b) / a + z in f32. When
 * |a| is in (2^-100, 2^100) and delta < 1/8, the grid's values are strictly monotone with steps
 * of nearly |a|, and the nearest value is round(t) for every t farther than delta from the
 * half-integers between codes; rtnCode's tie and run rules only act closer than that. delta
 * covers t's own f32 rounding (at most 2^-24 (4 |x - b| / |a| + z) <= 1.2 * 2^-20 (maxq + 2) where
 * it matters, |t| <= maxq + 1) and the grid values' f32 rounding, 2^-24 (|value| + |a| umax),
 * relative to |a|. Values within delta of a half-integer (and NaN) take rtnCode itself, as do
 * all values of other grids.
 */
function rtnGroup(x: usize, n: i32, a: f32, b: f32, z: i32, maxq: i32, codes: usize, e: usize): void {
  const aa = Mathf.abs(a);
  const ia: f32 = <f32>1 / a;
  let delta: f64 = 1;
  if (aa > <f32>7.888609052210118e-31 && aa < <f32>1.2676506002282294e30 && isFinite(b)) {
    const umax = <f64>imax(z, maxq - z);
    delta = 1.1444091796875e-6 * <f64>(maxq + 2) // 1.2 * 2^-20
      + U24 * (<f64>Mathf.abs(b) * <f64>Mathf.abs(ia) * 1.0001 + 2 * umax) * 1.001 + 9.094947017729282e-13;
  }
  if (delta >= 0.125) {
    for (let i = 0; i < n; i++) {
      const xi = loadF(x, i);
      const code = rtnCode(xi, a, z, b, maxq);
      storeF(codes, i, <f32>code);
      if (e) storeF(e, i, gridValue(a, z, b, code) - xi);
    }
    return;
  }
  const bv = f32x4.splat(b), iav = f32x4.splat(ia), zf = f32x4.splat(<f32>z), av = f32x4.splat(a);
  const lowest = f32x4.splat(0), highest = f32x4.splat(<f32>maxq);
  const near = f32x4.splat(<f32>(0.5 - delta - 1e-6)); // |t - round(t)| at least this: near a half-integer
  for (let i = 0; i < n; i += 4) {
    const o = <usize>i << 2;
    const xv = v128.load(x + o);
    const t = f32x4.add(f32x4.mul(f32x4.sub(xv, bv), iav), zf);
    const r = f32x4.nearest(t);
    const c = f32x4.pmin(f32x4.pmax(r, lowest), highest);
    v128.store(codes + o, c);
    if (e) v128.store(e + o, f32x4.sub(f32x4.add(f32x4.mul(av, f32x4.sub(c, zf)), bv), xv));
    const risky = v128.or(f32x4.ge(f32x4.abs(f32x4.sub(t, r)), near), f32x4.ne(t, t));
    if (v128.any_true(risky)) {
      const m = i32x4.bitmask(risky);
      for (let l = 0; l < 4; l++) {
        if (m & (1 << l)) {
          const at = o + (<usize>l << 2);
          const xi = load<f32>(x + at);
          const code = rtnCode(xi, a, z, b, maxq);
          store<f32>(codes + at, <f32>code);
          if (e) store<f32>(e + at, gridValue(a, z, b, code) - xi);
        }
      }
    }
  }
}

/** An upper bound on sum e^2 of n f32 errors at e (not finite when one is not). */
function sumSquaresUp(e: usize, n: i32): f64 {
  let acc = f32x4.splat(0);
  for (let i = 0; i < n; i += 4) {
    const ev = v128.load(e + (<usize>i << 2));
    acc = f32x4.add(acc, f32x4.mul(ev, ev));
  }
  const s = (<f64>f32x4.extract_lane(acc, 0) + <f64>f32x4.extract_lane(acc, 1)) + (<f64>f32x4.extract_lane(acc, 2) + <f64>f32x4.extract_lane(acc, 3));
  // Each square and each of the n / 4 + 2 additions per lane rounds by at most 2^-24.
  return s * (1 + <f64>(n + 8) * U24 * 2) + <f64>n * TINY;
}

// ---- the search over one group -------------------------------------------------------------

/** The error bound of a candidate's estimate from its own errors e (f32 [n]): eta <= |e| + |r|,
 * |r| <= 2^-24 (|a u| + |values| + |e|) (1.02 covers |r|'s own share); `arith` is the f64
 * arithmetic's share (searchGroup). */
function preciseBound(e: usize, n: i32, a: f32, b: f32, z: i32, maxq: i32, G: f64, arith: f64): f64 {
  const af = <f64>a, bf = <f64>b;
  const nf = <f64>n, rootN = Math.sqrt(nf);
  const v0 = Math.abs(bf - af * <f64>z), v1 = Math.abs(bf + af * <f64>(maxq - z));
  const eNorm = Math.sqrt(sumSquaresUp(e, n));
  const rho = (1.02 * U24 * (rootN * (Math.abs(af) * <f64>imax(z, maxq - z) + (v0 > v1 ? v0 : v1)) + eNorm) + 5 * rootN * TINY) * 1.0001;
  const eta = eNorm + rho;
  return (G * (2 * rho * eta + 3 * rho * rho) + arith + 2.02 * (nf + 1) * U53 * G * eNorm * eNorm) * 1.01;
}

// Test instrumentation (ggufOwcProbe): when set, searchGroup records every estimated candidate.
let probeAt: usize = 0;
let probeLeft: i32 = 0;

/**
 * For the tests: while `rows` > 0, each candidate searchGroup estimates appends four f64 at
 * `out` (estimate, its pass-1 bound, its bound from its own errors, its exact score), so the
 * tests can hold every estimate to its bounds; the search itself is unchanged. Returns the
 * rows recorded by the previous setting. rows = 0 turns it off.
 */
export function ggufOwcProbe(out: usize, rows: i32): i32 {
  const used = probeLeft;
  probeAt = out;
  probeLeft = rows;
  return used;
}

/** acc += times * row `row` of the n x n f64 block at hf (its column too: the block is
 * symmetric); n a multiple of 4. */
// @ts-ignore: decorator
@inline function addRowTimes(acc: usize, hf: usize, row: i32, n: i32, times: f64): void {
  const r = hf + ((<usize>row * <usize>n) << 3);
  const tv = f64x2.splat(times);
  for (let k = 0; k < n; k += 4) {
    const o = acc + (<usize>k << 3), ro = r + (<usize>k << 3);
    v128.store(o, f64x2.add(v128.load(o), f64x2.mul(v128.load(ro), tv)));
    v128.store(o + 16, f64x2.add(v128.load(o + 16), f64x2.mul(v128.load(ro + 16), tv)));
  }
}

/** out = H (v - shift) for the n x n symmetric f64 block at hf and n f32 at v (n % 8 == 0). */
function matVec(out: usize, hf: usize, n: i32, v: usize, shift: f32): void {
  const step = <usize>n << 3;
  for (let i0 = 0; i0 < n; i0 += 8) {
    let t0 = f64x2.splat(0), t1 = f64x2.splat(0), t2 = f64x2.splat(0), t3 = f64x2.splat(0);
    let row = hf + (<usize>i0 << 3);
    for (let k = 0; k < n; k++) {
      const vk = f64x2.splat(<f64>(loadF(v, k) - shift));
      t0 = f64x2.add(t0, f64x2.mul(v128.load(row), vk));
      t1 = f64x2.add(t1, f64x2.mul(v128.load(row + 16), vk));
      t2 = f64x2.add(t2, f64x2.mul(v128.load(row + 32), vk));
      t3 = f64x2.add(t3, f64x2.mul(v128.load(row + 48), vk));
      row += step;
    }
    const o = out + (<usize>i0 << 3);
    v128.store(o, t0);
    v128.store(o + 16, t1);
    v128.store(o + 32, t2);
    v128.store(o + 48, t3);
  }
}

/**
 * The winning candidate of one group: the first minimum of the exact scores of the `count`
 * grids (a, b) at S_CA / S_CB, for the n values at x and the group's block of H at hb (f32,
 * leading dimension ldh) and hf (the same, f64, contiguous). `legacy`: the loop of the
 * one-group types, whose best starts at candidate 0's score (a NaN there keeps candidate 0);
 * else best starts at +Infinity. Candidates whose grid equals the one before are skipped (the
 * same score never makes a new minimum).
 *
 * With a symmetric block (sym), its row sums h1, 1'H1 = s1 and bound G (absRowMax), each
 * candidate's score is first estimated. With u = codes - z, e = a u + b - x + r, where r is the
 * f32 rounding of the grid values and of e (|r_i| <= 2^-24 (|a u_i| + |value_i| + |e_i|)), and
 *   (a u + b - x)' H (a u + b - x) = a^2 u'Hu + 2ab u'H1 + b^2 1'H1 - 2a u'Hx - 2b 1'Hx + x'Hx,
 * with u'Hu, u'H1, u'Hx carried from one candidate to the next (only codes that change update
 * them). The estimate's error is bounded by G (2 |r| eta + 3 |r|^2) for r (eta = |a u + b - x|),
 * a multiple of 2^-53 G reach^2 for the f64 arithmetic (growing with the updates since the sums
 * were last formed afresh; reach = |a| |u|max sqrt(n) + |b| sqrt(n) + |x| bounds every vector
 * involved), and 2.02 (n + 1) 2^-53 G |e|^2 for quadForm's own rounding. Pass 1 uses eta <= reach,
 * |r| <= 3.1 * 2^-24 reach (no square roots, a looser bound); a candidate it cannot prune gets the
 * bound with its own |e| before it is scored exactly.
 */
function searchGroup(
  x: usize, n: i32, hb: usize, ldh: i32, hf: usize, sym: bool, G: f64, h1: usize, s1: f64,
  count: i32, z: i32, maxq: i32, legacy: bool, scratch: usize,
): i32 {
  const ca = scratch + S_CA, cb = scratch + S_CB, flag = scratch + S_FLAG;
  const est = scratch + S_EST, bound = scratch + S_BOUND, loose = scratch + S_EXACT;
  const e = scratch + S_EA, hx = scratch + S_HX, hu = scratch + S_HU;
  let codes = scratch + S_CODES, prev = scratch + S_PREV;
  const approximate = sym && isFinite(G);
  const zf = <f32>z;
  const umax = <f64>imax(z, maxq - z);
  const nf = <f64>n;
  // x-side terms: H x, 1'Hx, x'Hx, |x|^2.
  let T: f64 = 0, F: f64 = 0, XX: f64 = 0;
  if (approximate) {
    matVec(hx, hf, n, x, 0);
    for (let i = 0; i < n; i++) {
      const hxi = load<f64>(hx + (<usize>i << 3)), xi = <f64>loadF(x, i);
      T += hxi;
      F += xi * hxi;
      XX += xi * xi;
    }
  }
  // Pass 1: estimates and (loose) bounds. For the codes at prev: Q = u'Hu (H u at hu),
  // P = u'H1, R = u'Hx; `updates` codes changed since they were formed. `alive` lists, in order,
  // the candidates that may still be the first minimum: each estimate minus its bound is at most
  // the lowest estimate plus bound seen so far (an upper bound on the minimum); candidates that
  // cannot be estimated are kept to be scored exactly.
  const alive = scratch + S_ALIVE;
  let count0 = 0;
  let started = false;
  let updates = 0;
  let Q: f64 = 0, P: f64 = 0, R: f64 = 0;
  let first = -1;
  let upper: f64 = Infinity;
  let lastA: f32 = NaN, lastB: f32 = NaN;
  for (let c = 0; c < count; c++) {
    const a = loadF(ca, c), b = loadF(cb, c);
    if (a == lastA && b == lastB) continue; // the same grid: the same score, never a new minimum
    lastA = a;
    lastB = b;
    if (!approximate || !isFinite(a) || !isFinite(b)) {
      store<u8>(flag + c, EXACT);
      store<u8>(alive + count0++, <u8>c);
      continue;
    }
    rtnGroup(x, n, a, b, z, maxq, codes, 0);
    if (!started || updates > 16 * n) {
      matVec(hu, hf, n, codes, zf);
      Q = 0; P = 0; R = 0;
      for (let k = 0; k < n; k++) {
        const u = <f64>(loadF(codes, k) - zf);
        Q += u * load<f64>(hu + (<usize>k << 3));
        P += u * load<f64>(h1 + (<usize>k << 3));
        R += u * load<f64>(hx + (<usize>k << 3));
      }
      started = true;
      updates = 0;
    } else {
      for (let k = 0; k < n; k += 4) {
        const o = <usize>k << 2;
        const changed = i32x4.bitmask(f32x4.ne(v128.load(codes + o), v128.load(prev + o)));
        if (changed == 0) continue;
        for (let l = 0; l < 4; l++) {
          if (!(changed & (1 << l))) continue;
          const i = k + l, at = o + (<usize>l << 2);
          const d = <f64>(load<f32>(codes + at) - load<f32>(prev + at));
          const io = <usize>i << 3;
          Q += d * (2 * load<f64>(hu + io) + d * load<f64>(hf + ((<usize>i * <usize>(n + 1)) << 3)));
          P += d * load<f64>(h1 + io);
          R += d * load<f64>(hx + io);
          addRowTimes(hu, hf, i, n, d);
          updates++;
        }
      }
    }
    const swap = prev;
    prev = codes;
    codes = swap;
    const af = <f64>a, bf = <f64>b;
    const s = (((af * af * Q + 2 * af * bf * P) + bf * bf * s1) - 2 * af * R - 2 * bf * T) + F;
    const k = <f64>updates;
    // reach^2 <= 3 (n a^2 umax^2 + n b^2 + |x|^2); eta <= reach; |r| <= 3.1 * 2^-24 reach.
    const reach2 = 3.03 * ((af * af * umax * umax + bf * bf) * nf + XX);
    const arith = (64 * nf + 32 * k + 4 * k * k / nf + 64) * U53 * G * reach2; // the f64 arithmetic's share
    const err = G * reach2 * (6.3 * U24 + (66 * nf + 32 * k + 4 * k * k / nf + 70) * U53) * 1.01 + TINY;
    if (!isFinite(s) || !isFinite(err)) {
      store<u8>(flag + c, EXACT);
      store<u8>(alive + count0++, <u8>c);
      continue;
    }
    if (probeLeft > 0) {
      rtnGroup(x, n, a, b, z, maxq, scratch + S_CODES + 512, e); // beside the search's buffers
      store<f64>(probeAt, s);
      store<f64>(probeAt + 8, err);
      store<f64>(probeAt + 16, preciseBound(e, n, a, b, z, maxq, G, arith));
      store<f64>(probeAt + 24, groupScore(e, n, hb, ldh, hf, sym, scratch));
      probeAt += 32;
      probeLeft--;
    }
    // s + err >= its exact score >= the minimum; s - err <= its exact score.
    if (s - err - Math.abs(s) * 1e-15 > upper) continue;
    if (s + err < upper) {
      upper = s + err;
      first = c;
    }
    store<u8>(flag + c, 0);
    store<f64>(est + (<usize>c << 3), s);
    store<f64>(bound + (<usize>c << 3), arith);
    store<f64>(loose + (<usize>c << 3), err);
    store<u8>(alive + count0++, <u8>c);
  }
  // Pass 2: `first` (the lowest estimate plus bound) scored exactly, as B; then each candidate
  // still alive whose score may fall below B (with the bound from its own |e| when the loose one
  // does not clear B), or that could not be estimated.
  let B: f64 = Infinity;
  if (first >= 0) {
    rtnGroup(x, n, loadF(ca, first), loadF(cb, first), z, maxq, codes, e);
    B = groupScore(e, n, hb, ldh, hf, sym, scratch);
  }
  const margin = Math.abs(B) * 1e-15;
  let win = 0;
  let best: f64 = Infinity;
  for (let i = 0; i < count0; i++) {
    const c = <i32>load<u8>(alive + i);
    let score: f64;
    if (c == first) {
      score = B;
    } else {
      const a = loadF(ca, c), b = loadF(cb, c);
      if (load<u8>(flag + c) == 0) {
        const s = load<f64>(est + (<usize>c << 3));
        if (s - load<f64>(loose + (<usize>c << 3)) - Math.abs(s) * 1e-15 - margin > B) continue;
        rtnGroup(x, n, a, b, z, maxq, codes, e);
        const err = preciseBound(e, n, a, b, z, maxq, G, load<f64>(bound + (<usize>c << 3)));
        if (s - err - Math.abs(s) * 1e-15 - margin > B) continue;
      } else {
        rtnGroup(x, n, a, b, z, maxq, codes, e);
      }
      score = groupScore(e, n, hb, ldh, hf, sym, scratch);
    }
    // The first minimum, as the loop over every candidate finds it: the candidates not scored
    // here score above an exact score met here, so they never hold the minimum.
    if (legacy && c == 0) {
      best = score;
      continue;
    }
    if (score < best) {
      best = score;
      win = c;
    }
  }
  return win;
}

// ---- whole-block comparisons -----------------------------------------------------------------

/**
 * Whether grid A's loss on the block of be values at x is below grid B's (`strict`) or at most
 * it, each loss as quadForm computes it over the block's be x be block of H; A's and B's
 * per-group (a, b) at gaA/gbA and gaB/gbB. Decided from D = (e_A - e_B)^T H (e_A + e_B), the
 * difference of the two losses, computed in f32 with a bound on every rounding (the f32 sums,
 * e_A -/+ e_B rounded, and quadForm's own) when it clears it; else by both exact losses.
 */
function blockNotWorse(
  x: usize, be: i32, gs: i32, gaA: usize, gbA: usize, gaB: usize, gbB: usize, z: i32, maxq: i32,
  hb: usize, ldh: i32, sym: bool, G: f64, strict: bool, scratch: usize,
): bool {
  const eA = scratch + S_EA, eB = scratch + S_EB, codes = scratch + S_CODES;
  let eeA: f64 = 0, eeB: f64 = 0;
  for (let j = 0; j < be / gs; j++) {
    const from = <usize>(j * gs) << 2;
    rtnGroup(x + from, gs, loadF(gaA, j), loadF(gbA, j), z, maxq, codes + from, eA + from);
    rtnGroup(x + from, gs, loadF(gaB, j), loadF(gbB, j), z, maxq, codes + from, eB + from);
  }
  eeA = sumSquaresUp(eA, be);
  eeB = sumSquaresUp(eB, be);
  if (sym && eeA < Infinity && eeB < Infinity && isFinite(G)) {
    const diff = scratch + S_DIFF, sum = scratch + S_SUM;
    let dd = f32x4.splat(0), ss = f32x4.splat(0);
    for (let i = 0; i < be; i += 4) {
      const o = <usize>i << 2;
      const a = v128.load(eA + o), b = v128.load(eB + o);
      const d = f32x4.sub(a, b), s = f32x4.add(a, b);
      v128.store(diff + o, d);
      v128.store(sum + o, s);
      dd = f32x4.add(dd, f32x4.mul(d, d));
      ss = f32x4.add(ss, f32x4.mul(s, s));
    }
    const grow = 1 + <f64>(be + 8) * U24 * 2;
    const dNorm = Math.sqrt(((<f64>f32x4.extract_lane(dd, 0) + <f64>f32x4.extract_lane(dd, 1)) + (<f64>f32x4.extract_lane(dd, 2) + <f64>f32x4.extract_lane(dd, 3))) * grow + <f64>be * TINY);
    const sNorm = Math.sqrt(((<f64>f32x4.extract_lane(ss, 0) + <f64>f32x4.extract_lane(ss, 1)) + (<f64>f32x4.extract_lane(ss, 2) + <f64>f32x4.extract_lane(ss, 3))) * grow + <f64>be * TINY);
    if (isFinite(dNorm) && isFinite(sNorm)) {
      let D: f64 = 0;
      for (let i = 0; i < be; i++) {
        const di = loadF(diff, i);
        if (di == 0) continue;
        const row = hb + ((<usize>i * <usize>ldh) << 2);
        let acc = f32x4.splat(0);
        for (let j = 0; j < be; j += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(row + (<usize>j << 2)), v128.load(sum + (<usize>j << 2))));
        const t = (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1)) + (f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3));
        D += <f64>di * <f64>t;
      }
      const rootN = Math.sqrt(<f64>be);
      const err = (1.05 * G * (dNorm * sNorm * (<f64>(be + 8) * U24 + <f64>(be + 1) * U53) + 4 * rootN * TINY * (dNorm + sNorm + 1))
        + 2.02 * <f64>(be + 1) * U53 * G * (eeA + eeB)) * 1.01 + Math.abs(D) * 1e-15;
      if (isFinite(D) && isFinite(err)) {
        if (D + err < 0) return true; // A's exact loss is below B's
        if (D - err > 0) return false; // above
      }
    }
  }
  const sA = exactScore(eA, be, hb, ldh, sym, scratch), sB = exactScore(eB, be, hb, ldh, sym, scratch);
  return strict ? sA < sB : sA <= sB;
}

// ---- per block column -------------------------------------------------------------------------

/** What a block column of H gives every row: per group the bound G, the row sums and their
 * total, and the group's block widened to f64 (S_HF, contiguous). Returns the whole block's
 * bound G. */
function prepareColumn(hb: usize, ldh: i32, be: i32, gs: i32, scratch: usize): f64 {
  for (let j = 0; j < be / gs; j++) {
    const hj = hb + ((<usize>(j * gs) * <usize>(ldh + 1)) << 2);
    store<f64>(scratch + S_G + (<usize>j << 3), absRowMax(hj, ldh, gs));
    let total: f64 = 0;
    for (let i = 0; i < gs; i++) {
      const row = hj + ((<usize>i * <usize>ldh) << 2);
      let s: f64 = 0;
      for (let k = 0; k < gs; k++) s += <f64>load<f32>(row + (<usize>k << 2));
      store<f64>(scratch + S_H1 + (<usize>(j * gs + i) << 3), s);
      total += s;
    }
    store<f64>(scratch + S_S1 + (<usize>j << 3), total);
    const hf = scratch + S_HF + ((<usize>(j * gs * gs)) << 3);
    for (let i = 0; i < gs; i++) {
      for (let k = 0; k < gs; k++) store<f64>(hf + (<usize>(i * gs + k) << 3), <f64>load<f32>(hj + ((<usize>i * <usize>ldh + <usize>k) << 2)));
    }
  }
  return be == gs ? load<f64>(scratch + S_G) : absRowMax(hb, ldh, be);
}

// ---- k-quant sub-block candidates --------------------------------------------------------------

// S_UNIT: eight tables of 16 f32. With every sub-block at p = 1 (ranges at S_RANGES):
//   asymmetric types: 0 scale s_k, 1 min m_k (asymUnitScale / asymUnitMin); for each j, what the
//     super-block step does when j's scale (min) is not the largest: 2 / 3 the largest of the
//     others (from 0), 4 / 6 top over it (iS, iM), 5 / 7 the super-scale d (dmin) as stored.
//   symmetric types: 0 signed scale s_k; for each j: 1 the largest |s_k| before j, 2 after j;
//     3 / 4 the magnitude and signed value the super-block step keeps when j's is not the first
//     largest, 5 its iscale, 6 the super-scale d as stored.
// @ts-ignore: decorator
@inline function unit(scratch: usize, table: i32, j: i32): usize {
  return scratch + S_UNIT + (<usize>table << 6) + (<usize>j << 2);
}

/** The fp16 round trip: a value as stored in a half and read back. */
// @ts-ignore: decorator
@inline function asHalf(v: f32): f32 {
  return fp16ToFp32(fp32ToFp16(v));
}

function prepareUnits(type: i32, gpb: i32, scratch: usize): void {
  const ranges = scratch + S_RANGES;
  if (type == 11 || type == 14) {
    const nmax = type == 11 ? 4 : 32;
    for (let k = 0; k < gpb; k++) store<f32>(unit(scratch, 0, k), symUnitScale(nmax, loadF(ranges + 128, k)));
    let amax: f32 = 0, v: f32 = 0;
    for (let j = 0; j < gpb; j++) { // the scan storeBlockGrid makes, up to j
      store<f32>(unit(scratch, 1, j), amax);
      store<f32>(unit(scratch, 4, j), v);
      const s = load<f32>(unit(scratch, 0, j));
      if (Mathf.abs(s) > amax) { amax = Mathf.abs(s); v = s; }
    }
    amax = 0;
    v = 0;
    for (let j = gpb - 1; j >= 0; j--) { // the first largest after j
      const preA = load<f32>(unit(scratch, 1, j)), preV = load<f32>(unit(scratch, 4, j));
      store<f32>(unit(scratch, 2, j), amax);
      const keepA = amax > preA ? amax : preA, keepV = amax > preA ? v : preV;
      store<f32>(unit(scratch, 3, j), keepA);
      store<f32>(unit(scratch, 4, j), keepV);
      if (type == 11) {
        const iscale: f32 = keepV != 0 ? <f32>-32 / keepV : <f32>0;
        store<f32>(unit(scratch, 5, j), iscale);
        store<f32>(unit(scratch, 6, j), keepV != 0 ? asHalf(<f32>1 / iscale) : asHalf(0));
      } else {
        const iscale: f32 = keepA < GROUP_MAX_EPS ? <f32>0 : <f32>-128 / keepV;
        store<f32>(unit(scratch, 5, j), iscale);
        store<f32>(unit(scratch, 6, j), keepA < GROUP_MAX_EPS ? fp16ToFp32(0) : asHalf(<f32>1 / iscale));
      }
      const s = load<f32>(unit(scratch, 0, j));
      if (Mathf.abs(s) >= amax) { amax = Mathf.abs(s); v = s; } // ties: the earlier index
    }
    return;
  }
  const nmax = type == 10 ? 3 : type == 12 ? 15 : 31;
  const top = type == 10 ? 15 : 63;
  for (let k = 0; k < gpb; k++) {
    store<f32>(unit(scratch, 0, k), asymUnitScale(nmax, loadF(ranges, k), loadF(ranges + 64, k)));
    store<f32>(unit(scratch, 1, k), asymUnitMin(loadF(ranges, k)));
  }
  for (let j = 0; j < gpb; j++) {
    let ms: f32 = 0, mm: f32 = 0;
    for (let k = 0; k < gpb; k++) {
      if (k == j) continue;
      const s = load<f32>(unit(scratch, 0, k)), m = load<f32>(unit(scratch, 1, k));
      if (s > ms) ms = s;
      if (m > mm) mm = m;
    }
    store<f32>(unit(scratch, 2, j), ms);
    store<f32>(unit(scratch, 3, j), mm);
    store<f32>(unit(scratch, 4, j), ms > 0 ? <f32>top / ms : <f32>0);
    store<f32>(unit(scratch, 5, j), asHalf(ms > 0 ? ms / <f32>top : <f32>0));
    store<f32>(unit(scratch, 6, j), mm > 0 ? <f32>top / mm : <f32>0);
    store<f32>(unit(scratch, 7, j), asHalf(mm > 0 ? mm / <f32>top : <f32>0));
  }
}

/**
 * (a, b) of sub-block j of a k-quant super-block when its range is shrunk by p and every
 * other sub-block keeps p = 1: what storeBlockGrid and blockAffine give for that super-block,
 * for sub-block j alone. The super-scale moves only when j's scale (or min) becomes the
 * largest; otherwise it is the one prepareUnits stored.
 */
function subCandidate(type: i32, j: i32, p: f32, scratch: usize, out: i32): void {
  const ranges = scratch + S_RANGES;
  let a: f32, b: f32 = -0.0;
  if (type == 11 || type == 14) {
    const nmax = type == 11 ? 4 : 32;
    const s = symUnitScale(nmax, p * loadF(ranges + 128, j));
    const as = Mathf.abs(s);
    // j's scale is the first of the largest: above every one before it, at least every one after.
    const wins = as > load<f32>(unit(scratch, 1, j)) && as >= load<f32>(unit(scratch, 2, j));
    if (type == 11) {
      // maxScale != 0: iscale = -32 / maxScale, code q3SubCode; else code 0 (0 * (0 - 32) = -0).
      if (wins) {
        const iscale: f32 = <f32>-32 / s;
        a = asHalf(<f32>1 / iscale) * <f32>(q3SubCode(iscale, s) - 32);
      } else if (load<f32>(unit(scratch, 4, j)) != 0) {
        a = load<f32>(unit(scratch, 6, j)) * <f32>(q3SubCode(load<f32>(unit(scratch, 5, j)), s) - 32);
      } else {
        a = load<f32>(unit(scratch, 6, j)) * <f32>(0 - 32);
      }
    } else {
      // the largest |s| below GROUP_MAX_EPS: d = 0, codes 0; else iscale = -128 / maxScale.
      const amax = wins ? as : load<f32>(unit(scratch, 3, j));
      if (amax < GROUP_MAX_EPS) {
        a = fp16ToFp32(0) * <f32>0;
      } else if (wins) {
        const iscale: f32 = <f32>-128 / s;
        a = asHalf(<f32>1 / iscale) * <f32>toI8(q6SubCode(iscale, s) & 0xff);
      } else {
        a = load<f32>(unit(scratch, 6, j)) * <f32>toI8(q6SubCode(load<f32>(unit(scratch, 5, j)), s) & 0xff);
      }
    }
  } else {
    const nmax = type == 10 ? 3 : type == 12 ? 15 : 31;
    const top = type == 10 ? 15 : 63;
    const lo = p * loadF(ranges, j), hi = p * loadF(ranges + 64, j);
    const s = asymUnitScale(nmax, lo, hi), m = asymUnitMin(lo);
    let iS = load<f32>(unit(scratch, 4, j)), d = load<f32>(unit(scratch, 5, j));
    if (s > load<f32>(unit(scratch, 2, j))) { // j's scale is the largest: it sets d
      iS = <f32>top / s;
      d = asHalf(s / <f32>top);
    }
    let iM = load<f32>(unit(scratch, 6, j)), dmin = load<f32>(unit(scratch, 7, j));
    if (m > load<f32>(unit(scratch, 3, j))) {
      iM = <f32>top / m;
      dmin = asHalf(m / <f32>top);
    }
    a = d * <f32>kSubCode(top, iS, s);
    b = -(dmin * <f32>kSubCode(top, iM, m));
  }
  storeF(scratch + S_CA, out, a);
  storeF(scratch + S_CB, out, b);
}

/** (a, b) of the one group of a Q4_0..Q8_0 block from its stored halves. */
// @ts-ignore: decorator
@inline function legacyAffine(type: i32, halves: u32, scratch: usize, out: i32): void {
  storeF(scratch + S_CA, out, fp16ToFp32(halves & 0xffff));
  storeF(scratch + S_CB, out, type == 3 || type == 7 ? fp16ToFp32(halves >> 16) : <f32>-0.0);
}

/** Whether two stored grids of a block (halves + gpb sub-codes + gpb mins) are the same bytes. */
function sameGrid(h1: usize, sc1: usize, mn1: usize, h2: usize, sc2: usize, mn2: usize, gpb: i32): bool {
  if (load<u32>(h1) != load<u32>(h2)) return false;
  for (let j = 0; j < gpb; j++) {
    if (load<u8>(sc1 + <usize>j) != load<u8>(sc2 + <usize>j) || load<u8>(mn1 + <usize>j) != load<u8>(mn2 + <usize>j)) return false;
  }
  return true;
}

/**
 * Stored grids for every block of rows x cols weights at w, chosen by H-weighted clipping: into
 * halves [rows * blocks * 2] u16, subScales / subMins [rows * groups] u8 (the arrays
 * ggufEncodeGrid takes; the one-group types write halves only). h is H [cols x cols].
 * scratch: ggufOwcScratch() bytes.
 */
export function ggufOwc(type: i32, w: usize, rows: i32, cols: i32, h: usize, halves: usize, subScales: usize, subMins: usize, scratch: usize): void {
  const be = ggufBlockElems(type), gs = ggufGroupSize(type), gpb = be / gs;
  const z = ggufZero(type), maxq = ggufMaxq(type);
  const blocksPerRow = cols / be;
  const ranges = scratch + S_RANGES, ranges2 = scratch + S_RANGES2;
  const grid = scratch + S_GRID;
  const affA = scratch + S_AFF, affB = affA + 128;
  for (let bi = 0; bi < blocksPerRow; bi++) {
    const c0 = bi * be;
    const hb = h + ((<usize>c0 * <usize>cols + <usize>c0) << 2);
    const sym = symmetricBlock(hb, cols, be);
    const G = prepareColumn(hb, cols, be, gs, scratch);
    for (let r = 0; r < rows; r++) {
      const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
      const blockIndex = r * blocksPerRow + bi;
      const outH = halves + (<usize>blockIndex << 2);
      const outSc = subScales + <usize>(blockIndex * gpb), outMn = subMins + <usize>(blockIndex * gpb);
      for (let j = 0; j < gpb; j++) groupRange(x + (<usize>(j * gs) << 2), gs, 1, ranges, j);
      if (gpb == 1) {
        const lo = loadF(ranges, 0), hi = loadF(ranges + 64, 0), ext = loadF(ranges + 128, 0);
        for (let c = 0; c < CANDIDATES; c++) {
          const p = shrink(c);
          const hc = legacyHalves(type, p * lo, p * hi, p * ext);
          store<u32>(scratch + S_CH + (<usize>c << 2), hc);
          legacyAffine(type, hc, scratch, c);
        }
        const win = searchGroup(x, be, hb, cols, scratch + S_HF, sym, G, scratch + S_H1, load<f64>(scratch + S_S1), CANDIDATES, z, maxq, true, scratch);
        store<u32>(outH, load<u32>(scratch + S_CH + (<usize>win << 2)));
        continue;
      }
      // k-quants: candidate 0 of every sub-block is the format's min-max grid.
      storeBlockGrid(type, ranges, outH, outSc, outMn);
      prepareUnits(type, gpb, scratch);
      for (let j = 0; j < gpb; j++) {
        for (let c = 0; c < CANDIDATES; c++) subCandidate(type, j, shrink(c), scratch, c);
        const hj = hb + ((<usize>(j * gs) * <usize>(cols + 1)) << 2);
        const win = searchGroup(
          x + (<usize>(j * gs) << 2), gs, hj, cols, scratch + S_HF + ((<usize>(j * gs * gs)) << 3), sym, load<f64>(scratch + S_G + (<usize>j << 3)),
          scratch + S_H1 + (<usize>(j * gs) << 3), load<f64>(scratch + S_S1 + (<usize>j << 3)), CANDIDATES, z, maxq, false, scratch,
        );
        storeF(scratch + S_BESTP, j, shrink(win));
      }
      // All choices together, against candidate 0, on the super-block's whole block of H.
      for (let j = 0; j < gpb; j++) {
        const p = loadF(scratch + S_BESTP, j);
        storeF(ranges2, j, p * loadF(ranges, j));
        storeF(ranges2 + 64, j, p * loadF(ranges + 64, j));
        storeF(ranges2 + 128, j, p * loadF(ranges + 128, j));
      }
      storeBlockGrid(type, ranges2, grid, grid + 4, grid + 20);
      if (sameGrid(grid, grid + 4, grid + 20, outH, outSc, outMn, gpb)) continue;
      blockAffine(type, grid, grid + 4, grid + 20, affA, affA + 64);
      blockAffine(type, outH, outSc, outMn, affB, affB + 64);
      if (blockNotWorse(x, be, gs, affA, affA + 64, affB, affB + 64, z, maxq, hb, cols, sym, G, false, scratch)) {
        store<u32>(outH, load<u32>(grid));
        memory.copy(outSc, grid + 4, <usize>gpb);
        memory.copy(outMn, grid + 20, <usize>gpb);
      }
    }
  }
}

/**
 * Block by block, keeps whichever of two stored grids scores lower: grid A (halves, subScales,
 * subMins; overwritten with the choice) or grid B (bHalves, bSubScales, bSubMins), each scored
 * by the block's loss e^T H_bb e of round-to-nearest on it; B only if strictly lower. The
 * H-weighted search takes llama.cpp's importance-weighted grid as one more storable candidate
 * this way. scratch: ggufOwcScratch() bytes.
 */
export function ggufKeepBetter(
  type: i32, w: usize, rows: i32, cols: i32, h: usize,
  halves: usize, subScales: usize, subMins: usize, bHalves: usize, bSubScales: usize, bSubMins: usize, scratch: usize,
): void {
  const be = ggufBlockElems(type), gs = ggufGroupSize(type), gpb = be / gs;
  const z = ggufZero(type), maxq = ggufMaxq(type);
  const blocksPerRow = cols / be;
  const affA = scratch + S_AFF, affB = affA + 128;
  for (let bi = 0; bi < blocksPerRow; bi++) {
    const c0 = bi * be;
    const hb = h + ((<usize>c0 * <usize>cols + <usize>c0) << 2);
    const sym = symmetricBlock(hb, cols, be);
    const G = sym ? absRowMax(hb, cols, be) : <f64>Infinity;
    for (let r = 0; r < rows; r++) {
      const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
      const blockIndex = r * blocksPerRow + bi;
      const offH = <usize>blockIndex << 2, offS = <usize>(blockIndex * gpb);
      if (sameGrid(halves + offH, subScales + offS, subMins + offS, bHalves + offH, bSubScales + offS, bSubMins + offS, gpb)) continue;
      blockAffine(type, halves + offH, subScales + offS, subMins + offS, affA, affA + 64);
      blockAffine(type, bHalves + offH, bSubScales + offS, bSubMins + offS, affB, affB + 64);
      if (blockNotWorse(x, be, gs, affB, affB + 64, affA, affA + 64, z, maxq, hb, cols, sym, G, true, scratch)) {
        store<u32>(halves + offH, load<u32>(bHalves + offH));
        memory.copy(subScales + offS, bSubScales + offS, <usize>gpb);
        memory.copy(subMins + offS, bSubMins + offS, <usize>gpb);
      }
    }
  }
}

/**
 * The search's round to nearest (rtnGroup) on its own: codes (u8) of the n values at x
 * (n % 4 == 0) on the grid (a, z, b) with codes 0..maxq. Exported so the tests can hold it to
 * rtnCode (ggufRtnCodes) value for value; the solvers do not call it.
 */
export function ggufRtnGroup(x: usize, n: i32, a: f32, b: f32, z: i32, maxq: i32, codes: usize, scratch: usize): void {
  rtnGroup(x, n, a, b, z, maxq, scratch, 0);
  for (let i = 0; i < n; i++) store<u8>(codes + <usize>i, <u8><i32>loadF(scratch, i));
}
