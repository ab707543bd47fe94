// Test build only: ggufOwc and ggufKeepBetter as they were before the fast search
// (assembly/gguf/owc.ts and the grid.ts functions they used, at commit d3544aa), frozen here
// as the reference the fast kernels must match bit for bit (test/gguf-speed.test.ts). Compiled
// by test/helpers/owc-reference.ts into its own small wasm; only ggml's scalar conversions
// (fp16, nearest_int, verified against llama.cpp's C in gguf-blocks.test.ts) are shared.
// Do not optimise this file: its slowness is the point.
//
// One change from d3544aa, marked FIX below: the k-quants' sub-block choices were kept at
// e + 960.., inside the errors buffer the last sub-block's groupErrors then overwrote, so the
// "all choices together" step read error values as shrink factors, its grid never won, and the
// search returned the p = 1 (min-max) grid on (nearly) every k-quant block. ggufOwcAsOfD3544aa keeps
// that behaviour for the record (the tests show it rarely leaves the min-max grid).

import {
  fp16ToFp32, fp32ToFp16, imax, imin, loadB, loadF, nearestInt, storeB, storeF, storeH, toI8,
} from '../../assembly/gguf/common';

export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}

export function free(ptr: usize): void {
  heap.free(ptr);
}

const GROUP_MAX_EPS: f32 = <f32>1e-15;

function signedExtreme(x: usize, n: i32): f32 {
  let amax: f32 = 0, max: f32 = 0;
  for (let j = 0; j < n; j++) {
    const v = loadF(x, j);
    if (amax < Mathf.abs(v)) { amax = Mathf.abs(v); max = v; }
  }
  return max;
}

function ggufBlockElems(type: i32): i32 {
  return type >= 10 ? 256 : 32;
}

// ---- grid.ts (as of d3544aa) ----------------------------------------------------------------

/** Elements per group of a block type's grid (0: not a block type). */
export function ggufGroupSize(type: i32): i32 {
  switch (type) {
    case 2: case 3: case 6: case 7: case 8: case 12: case 13: return 32;
    case 10: case 11: case 14: return 16;
    default: return 0;
  }
}

/** Largest code of a block type (codes are 0..maxq). */
export function ggufMaxq(type: i32): i32 {
  switch (type) {
    case 2: case 3: case 12: return 15;
    case 6: case 7: case 13: return 31;
    case 8: return 255;
    case 10: return 3;
    case 11: return 7;
    case 14: return 63;
    default: return 0;
  }
}

/** The fixed zero z of value(c) = a * (c - z) + b. */
export function ggufZero(type: i32): i32 {
  switch (type) {
    case 2: return 8;
    case 6: return 16;
    case 8: return 128;
    case 11: return 4;
    case 14: return 32;
    default: return 0;
  }
}

// @ts-ignore: decorator
@inline function isK(type: i32): bool {
  return type >= 10;
}
// @ts-ignore: decorator
@inline function blockElems(type: i32): i32 {
  return isK(type) ? 256 : 32;
}
// Byte offsets of the stored halves: first (d), second (m or dmin; -1 when absent).
function halfA(type: i32): i32 {
  return type == 10 ? 80 : type == 11 ? 108 : type == 14 ? 208 : 0;
}
function halfB(type: i32): i32 {
  return type == 3 || type == 7 || type == 12 || type == 13 ? 2 : type == 10 ? 82 : -1;
}
function blockBytes(type: i32): i32 {
  switch (type) {
    case 2: return 18; case 3: return 20; case 6: return 22; case 7: return 24; case 8: return 34;
    case 10: return 84; case 11: return 110; case 12: return 144; case 13: return 176; default: return 210;
  }
}

/** value(c) = a * f32(c - z) + b: the one expression every type decodes with. */
// @ts-ignore: decorator
@inline export function gridValue(a: f32, z: i32, b: f32, code: i32): f32 {
  return a * <f32>(code - z) + b;
}

// ---- stored parameters <-> per-group affine maps ------------------------------------

/**
 * (a, b) of every group of one block from its stored parameters: halves h[0] = d,
 * h[1] = m/dmin (fp16 bits at hp), sub-block codes at sc and mn (k-quants).
 */
function blockAffine(type: i32, hp: usize, sc: usize, mn: usize, ga: usize, gb: usize): void {
  const d = fp16ToFp32(<u32>load<u16>(hp));
  const second = fp16ToFp32(<u32>load<u16>(hp + 2));
  if (!isK(type)) {
    storeF(ga, 0, d);
    storeF(gb, 0, type == 3 || type == 7 ? second : <f32>-0.0);
    return;
  }
  const groups = 256 / ggufGroupSize(type);
  for (let j = 0; j < groups; j++) {
    const s = loadB(sc, j);
    if (type == 11) {
      storeF(ga, j, d * <f32>(s - 32));
      storeF(gb, j, <f32>-0.0);
    } else if (type == 14) {
      storeF(ga, j, d * <f32>toI8(s));
      storeF(gb, j, <f32>-0.0);
    } else {
      storeF(ga, j, d * <f32>s);
      storeF(gb, j, -(second * <f32>loadB(mn, j)));
    }
  }
}

/**
 * Per-group (a, b) for rows x cols of stored parameters: halves [rows * blocks * 2] u16,
 * subScales / subMins [rows * groups] u8 (k-quants; ignored otherwise), ga / gb
 * [rows * groups] f32.
 */
export function ggufGroupAffine(type: i32, halves: usize, subScales: usize, subMins: usize, rows: i32, cols: i32, ga: usize, gb: usize): void {
  const blocks = rows * (cols / blockElems(type));
  const gpb = blockElems(type) / ggufGroupSize(type); // groups per block
  for (let i = 0; i < blocks; i++) {
    const g = <usize>(i * gpb);
    blockAffine(type, halves + (<usize>i << 2), subScales + g, subMins + g, ga + (g << 2), gb + (g << 2));
  }
}


// ---- round to nearest on a stored grid ---------------------------------------------------

/**
 * The code whose decoded value is nearest to x: the smallest |value(c) - x| (measured in f64,
 * exact for any two floats within 2^29 of each other in scale), ties to the code nearest z.
 * value(c) is monotone in c (a >= 0: non-decreasing; a < 0 handled by negating a, b and x,
 * which negates every value exactly), so the nearest values are the two around x, found by
 * walking from the rounded estimate; runs of equal values (possible when b dwarfs a) are
 * walked toward z.
 */
export function rtnCode(x: f32, a: f32, z: i32, b: f32, maxq: i32): i32 {
  if (a == 0) return z;
  if (a < 0) { a = -a; b = -b; x = -x; }
  let est = (<f64>x - <f64>b) / <f64>a + <f64>z;
  est = est < 0 ? 0 : est > <f64>maxq ? <f64>maxq : est;
  let c = <i32>nearest<f64>(est);
  // c becomes the first code with value >= x (maxq + 1 if none).
  if (gridValue(a, z, b, c) >= x) {
    while (c > 0 && gridValue(a, z, b, c - 1) >= x) c--;
  } else {
    while (c <= maxq && gridValue(a, z, b, c) < x) c++;
  }
  const below = c - 1, above = c;
  let pick: i32;
  if (below < 0) pick = above;
  else if (above > maxq) pick = below;
  else {
    const dLo = <f64>x - <f64>gridValue(a, z, b, below);
    const dHi = <f64>gridValue(a, z, b, above) - <f64>x;
    if (dLo < dHi) pick = below;
    else if (dHi < dLo) pick = above;
    else pick = z <= below ? below : above; // both values are nearest
  }
  // Walk the run of codes sharing pick's value toward z.
  const v = gridValue(a, z, b, pick);
  if (z > pick) {
    while (pick < maxq && pick < z && gridValue(a, z, b, pick + 1) == v) pick++;
  } else if (z < pick) {
    while (pick > 0 && pick > z && gridValue(a, z, b, pick - 1) == v) pick--;
  }
  return pick;
}


// ---- storable grids from ranges ----------------------------------------------------------

// Per-group range inputs of one block (16 groups at most), filled by the two callers below:
// asymmetric types read (lo, hi), symmetric ones the signed extreme `ext`.
const gLo = memory.data(64);
const gHi = memory.data(64);
const gExt = memory.data(64);
const gScale = memory.data(64);
const gMin = memory.data(64);

/**
 * The stored parameters of one block from its groups' ranges (gLo/gHi/gExt), by the format's
 * min-max rule:
 *   Q4_0 / Q5_0: d = ext / -8 (-16): the extreme lands on code 0 (ggml's quantize_row_*_ref)
 *   Q8_0:        d = max(|lo|, |hi|) / 127
 *   Q4_1 / Q5_1: d = (hi - lo) / 15 (31), m = lo
 * each stored as fp16. k-quants: each sub-block's min-max scale first, as make_qkx2_quants
 * computes it without its search (Q2_K, Q4_K, Q5_K: min = min(lo, 0), scale = 1 / (nmax /
 * (hi - min)), stored min -min) or make_q3_quants / make_qx_quants without theirs (Q3_K,
 * Q6_K: scale = 1 / (-nmax / ext), 0 below GROUP_MAX_EPS); then the super-block step of
 * ggml's reference quantizer: the largest sub-scale (and sub-min) sets the fp16 super-scale
 * so every integer sub-code fits (Q4_K/Q5_K: d = max/63, code = min(63, nearest(63/max * s));
 * Q2_K: /15; Q3_K: d = 1/(-32/ext), code = clamp(nearest(-32/ext * s), -32, 31) + 32;
 * Q6_K: d = 1/(-128/ext), code = min(127, nearest(-128/ext * s)), ext the signed largest).
 */
function storeBlockGrid(type: i32, hp: usize, sc: usize, mn: usize): void {
  if (!isK(type)) {
    let d: f32, m: f32 = 0;
    if (type == 2) d = loadF(gExt, 0) / <f32>-8;
    else if (type == 6) d = loadF(gExt, 0) / <f32>-16;
    else if (type == 8) {
      const l = Mathf.abs(loadF(gLo, 0)), h = Mathf.abs(loadF(gHi, 0));
      d = (l > h ? l : h) / <f32>127;
    } else {
      d = (loadF(gHi, 0) - loadF(gLo, 0)) / <f32>(type == 3 ? 15 : 31);
      m = loadF(gLo, 0);
    }
    storeH(hp, 0, fp32ToFp16(d));
    storeH(hp, 2, type == 3 || type == 7 ? fp32ToFp16(m) : 0);
    return;
  }
  const groups = 256 / ggufGroupSize(type);
  if (type == 11 || type == 14) {
    const nmax = type == 11 ? 4 : 32;
    let maxScale: f32 = 0, amax: f32 = 0;
    for (let j = 0; j < groups; j++) {
      const ext = loadF(gExt, j);
      const s: f32 = Mathf.abs(ext) < GROUP_MAX_EPS ? <f32>0 : <f32>1 / (<f32>(-nmax) / ext);
      storeF(gScale, j, s);
      if (Mathf.abs(s) > amax) { amax = Mathf.abs(s); maxScale = s; }
    }
    storeH(hp, 2, 0);
    if (type == 11) {
      if (maxScale != 0) {
        const iscale: f32 = <f32>-32 / maxScale;
        for (let j = 0; j < 16; j++) storeB(sc, j, imax(-32, imin(31, toI8(nearestInt(iscale * loadF(gScale, j))))) + 32);
        storeH(hp, 0, fp32ToFp16(<f32>1 / iscale));
      } else {
        for (let j = 0; j < 16; j++) storeB(sc, j, 0);
        storeH(hp, 0, fp32ToFp16(0));
      }
    } else {
      if (amax < GROUP_MAX_EPS) {
        for (let j = 0; j < 16; j++) storeB(sc, j, 0);
        storeH(hp, 0, 0);
      } else {
        const iscale: f32 = <f32>-128 / maxScale;
        storeH(hp, 0, fp32ToFp16(<f32>1 / iscale));
        for (let j = 0; j < 16; j++) storeB(sc, j, imax(-128, imin(127, nearestInt(iscale * loadF(gScale, j)))));
      }
    }
    for (let j = 0; j < groups; j++) storeB(mn, j, 0);
    return;
  }
  const nmax = type == 10 ? 3 : type == 12 ? 15 : 31;
  let maxScale: f32 = 0, maxMin: f32 = 0;
  for (let j = 0; j < groups; j++) {
    let lo = loadF(gLo, j);
    const hi = loadF(gHi, j);
    if (lo > 0) lo = 0;
    let s: f32 = 0;
    if (hi != lo) s = <f32>1 / (<f32>nmax / (hi - lo));
    storeF(gScale, j, s);
    storeF(gMin, j, -lo);
    if (s > maxScale) maxScale = s;
    if (-lo > maxMin) maxMin = -lo;
  }
  const top = type == 10 ? 15 : 63; // largest sub-code: 4 bits (Q2_K) or 6 bits
  const iS: f32 = maxScale > 0 ? <f32>top / maxScale : <f32>0;
  const iM: f32 = maxMin > 0 ? <f32>top / maxMin : <f32>0;
  for (let j = 0; j < groups; j++) {
    storeB(sc, j, imin(top, nearestInt(iS * loadF(gScale, j)) & 0xff));
    storeB(mn, j, imin(top, nearestInt(iM * loadF(gMin, j)) & 0xff));
  }
  storeH(hp, 0, fp32ToFp16(maxScale > 0 ? maxScale / <f32>top : <f32>0));
  storeH(hp, 2, fp32ToFp16(maxMin > 0 ? maxMin / <f32>top : <f32>0));
}

/**
 * Candidate grids of OWC for rows x cols of weights at x: each group's own range shrunk by its
 * factor p [rows * groups] f32 (p * min, p * max; symmetric types p * their signed extreme,
 * first occurrence of the largest magnitude as ggml picks it), then stored as
 * ggufGridFromRanges stores. With p = 1 the legacy types get exactly the d (and m) of ggml's
 * quantize_row_*_ref.
 */
export function ggufCandidateGrid(
  type: i32, x: usize, p: usize, rows: i32, cols: i32, halves: usize, subScales: usize, subMins: usize,
): void {
  const be = blockElems(type), gs = ggufGroupSize(type), gpb = be / gs;
  const blocks = rows * (cols / be);
  for (let i = 0; i < blocks; i++) {
    for (let j = 0; j < gpb; j++) {
      const g = i * gpb + j;
      const xg = x + (<usize>(g * gs) << 2);
      let lo = loadF(xg, 0), hi = lo;
      for (let k = 1; k < gs; k++) {
        const v = loadF(xg, k);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const pg = loadF(p, g);
      storeF(gLo, j, pg * lo);
      storeF(gHi, j, pg * hi);
      storeF(gExt, j, pg * signedExtreme(xg, gs));
    }
    storeBlockGrid(type, halves + (<usize>i << 2), subScales + <usize>(i * gpb), subMins + <usize>(i * gpb));
  }
}

// ---- owc.ts (as of d3544aa) -----------------------------------------------------------------

/** The clip searches' candidates (grid.ts in the solver: p = 1 - i/100). */
// @ts-ignore: decorator
@inline const CANDIDATES: i32 = 80;
// @ts-ignore: decorator
@inline function shrink(i: i32): f32 {
  return <f32>(1.0 - <f64>i / 100.0);
}

/** Per-block scratch: p [16] f32, ga/gb [16] f32, errors [256] f32, candidate halves [2] u16,
 * sub-codes [16 + 16] u8, best copies of the same. */
// @ts-ignore: decorator
@inline const BLOCK_SCRATCH: usize = 16 * 4 * 3 + 256 * 4 + 8 + 32 + 8 + 32 + 64;

/** Bytes of ggufOwc's scratch (independent of the band). */
export function ggufOwcScratch(): f64 {
  return <f64>BLOCK_SCRATCH;
}

/** e^T Hb e (f64, fixed order) for n errors at e, Hb the n x n block at hb (leading dim ldh). */
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

/** Errors value(rtn(x)) - x of the n values at x in group g of a block (ga/gb per group). */
function groupErrors(x: usize, from: i32, n: i32, a: f32, b: f32, z: i32, maxq: i32, e: usize): void {
  for (let k = 0; k < n; k++) {
    const v = load<f32>(x + (<usize>(from + k) << 2));
    store<f32>(e + (<usize>(from + k) << 2), gridValue(a, z, b, rtnCode(v, a, z, b, maxq)) - v);
  }
}

/**
 * Stored grids for every block of rows x cols weights at w, chosen by H-weighted clipping: into
 * halves [rows * blocks * 2] u16, subScales / subMins [rows * groups] u8 (the arrays
 * ggufEncodeGrid takes). h is H [cols x cols]. scratch: ggufOwcScratch() bytes.
 */
function owc(type: i32, w: usize, rows: i32, cols: i32, h: usize, halves: usize, subScales: usize, subMins: usize, scratch: usize, fixed: bool): void {
  const be = ggufBlockElems(type), gs = ggufGroupSize(type), gpb = be / gs;
  const z = ggufZero(type), maxq = ggufMaxq(type);
  const p = scratch;
  const ga = p + 64, gb = ga + 64;
  const e = gb + 64;
  const hv = e + 1024; // candidate halves [2] u16
  const sc = hv + 8, mn = sc + 16; // candidate sub-codes
  const bestHv = mn + 16, bestSc = bestHv + 8, bestMn = bestSc + 16;
  const blocksPerRow = cols / be;
  for (let r = 0; r < rows; r++) {
    for (let bi = 0; bi < blocksPerRow; bi++) {
      const c0 = bi * be;
      const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
      const hb = h + ((<usize>c0 * <usize>cols + <usize>c0) << 2);
      const blockIndex = r * blocksPerRow + bi;
      const outH = halves + (<usize>blockIndex << 2);
      const outSc = subScales + <usize>(blockIndex * gpb), outMn = subMins + <usize>(blockIndex * gpb);
      for (let j = 0; j < gpb; j++) store<f32>(p + (<usize>j << 2), 1);
      // Candidate 0: the format's own min-max grid.
      ggufCandidateGrid(type, x, p, 1, be, outH, outSc, outMn);
      if (gpb == 1) {
        ggufGroupAffine(type, outH, outSc, outMn, 1, be, ga, gb);
        groupErrors(x, 0, be, load<f32>(ga), load<f32>(gb), z, maxq, e);
        let best = quadForm(e, be, hb, cols);
        for (let c = 1; c < CANDIDATES; c++) {
          store<f32>(p, shrink(c));
          ggufCandidateGrid(type, x, p, 1, be, hv, sc, mn);
          ggufGroupAffine(type, hv, sc, mn, 1, be, ga, gb);
          groupErrors(x, 0, be, load<f32>(ga), load<f32>(gb), z, maxq, e);
          const score = quadForm(e, be, hb, cols);
          if (score < best) {
            best = score;
            store<u32>(outH, load<u32>(hv));
          }
        }
        continue;
      }
      // k-quants: each sub-block's best shrink, the others at p = 1.
      for (let j = 0; j < gpb; j++) {
        const from = j * gs;
        const hj = hb + ((<usize>from * <usize>cols + <usize>from) << 2);
        let bestP: f32 = 1;
        let best: f64 = Infinity;
        let lastA: f32 = NaN, lastB: f32 = NaN;
        for (let c = 0; c < CANDIDATES; c++) {
          store<f32>(p + (<usize>j << 2), shrink(c));
          ggufCandidateGrid(type, x, p, 1, be, hv, sc, mn);
          ggufGroupAffine(type, hv, sc, mn, 1, be, ga, gb);
          const a = load<f32>(ga + (<usize>j << 2)), b = load<f32>(gb + (<usize>j << 2));
          // Shrink factors that store the same grid score the same: skip them.
          if (a == lastA && b == lastB) continue;
          lastA = a;
          lastB = b;
          groupErrors(x, from, gs, a, b, z, maxq, e);
          const score = quadForm(e + (<usize>from << 2), gs, hj, cols);
          if (score < best) {
            best = score;
            bestP = shrink(c);
          }
        }
        store<f32>(p + (<usize>j << 2), 1);
        // FIX: the choices in their own scratch (bytes 1296..1360), not inside the errors.
        store<f32>((fixed ? scratch + 1296 : e + 1024 - 64) + (<usize>j << 2), bestP);
      }
      // All choices together, against candidate 0, on the super-block's whole block of H.
      for (let j = 0; j < gpb; j++) store<f32>(p + (<usize>j << 2), load<f32>((fixed ? scratch + 1296 : e + 1024 - 64) + (<usize>j << 2)));
      ggufGroupAffine(type, outH, outSc, outMn, 1, be, ga, gb);
      for (let j = 0; j < gpb; j++) groupErrors(x, j * gs, gs, load<f32>(ga + (<usize>j << 2)), load<f32>(gb + (<usize>j << 2)), z, maxq, e);
      const base = quadForm(e, be, hb, cols);
      ggufCandidateGrid(type, x, p, 1, be, bestHv, bestSc, bestMn);
      ggufGroupAffine(type, bestHv, bestSc, bestMn, 1, be, ga, gb);
      for (let j = 0; j < gpb; j++) groupErrors(x, j * gs, gs, load<f32>(ga + (<usize>j << 2)), load<f32>(gb + (<usize>j << 2)), z, maxq, e);
      if (quadForm(e, be, hb, cols) <= base) {
        store<u32>(outH, load<u32>(bestHv));
        memory.copy(outSc, bestSc, <usize>gpb);
        memory.copy(outMn, bestMn, <usize>gpb);
      }
    }
  }
}

/** The search with the FIX. */
export function ggufOwc(type: i32, w: usize, rows: i32, cols: i32, h: usize, halves: usize, subScales: usize, subMins: usize, scratch: usize): void {
  owc(type, w, rows, cols, h, halves, subScales, subMins, scratch, true);
}

/** The search exactly as at d3544aa. */
export function ggufOwcAsOfD3544aa(type: i32, w: usize, rows: i32, cols: i32, h: usize, halves: usize, subScales: usize, subMins: usize, scratch: usize): void {
  owc(type, w, rows, cols, h, halves, subScales, subMins, scratch, false);
}

/**
 * Block by block, keeps whichever of two stored grids scores lower: grid A (halves, subScales,
 * subMins; overwritten with the choice) or grid B (bHalves, bSubScales, bSubMins), each scored
 * by the block's loss e^T H_bb e of round-to-nearest on it. The H-weighted search takes
 * llama.cpp's importance-weighted grid as one more storable candidate this way.
 * scratch: ggufOwcScratch() bytes.
 */
export function ggufKeepBetter(
  type: i32, w: usize, rows: i32, cols: i32, h: usize,
  halves: usize, subScales: usize, subMins: usize, bHalves: usize, bSubScales: usize, bSubMins: usize, scratch: usize,
): void {
  const be = ggufBlockElems(type), gs = ggufGroupSize(type), gpb = be / gs;
  const z = ggufZero(type), maxq = ggufMaxq(type);
  const ga = scratch + 64, gb = ga + 64;
  const e = gb + 64;
  const blocksPerRow = cols / be;
  for (let r = 0; r < rows; r++) {
    for (let bi = 0; bi < blocksPerRow; bi++) {
      const c0 = bi * be;
      const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
      const hb = h + ((<usize>c0 * <usize>cols + <usize>c0) << 2);
      const blockIndex = r * blocksPerRow + bi;
      const offH = <usize>blockIndex << 2, offS = <usize>(blockIndex * gpb);
      let scoreA: f64 = 0, scoreB: f64 = 0;
      for (let which = 0; which < 2; which++) {
        const hp = (which == 0 ? halves : bHalves) + offH;
        const sc = (which == 0 ? subScales : bSubScales) + offS, mn = (which == 0 ? subMins : bSubMins) + offS;
        ggufGroupAffine(type, hp, sc, mn, 1, be, ga, gb);
        for (let j = 0; j < gpb; j++) groupErrors(x, j * gs, gs, load<f32>(ga + (<usize>j << 2)), load<f32>(gb + (<usize>j << 2)), z, maxq, e);
        if (which == 0) scoreA = quadForm(e, be, hb, cols);
        else scoreB = quadForm(e, be, hb, cols);
      }
      if (scoreB < scoreA) {
        store<u32>(halves + offH, load<u32>(bHalves + offH));
        memory.copy(subScales + offS, bSubScales + offS, <usize>gpb);
        memory.copy(subMins + offS, bSubMins + offS, <usize>gpb);
      }
    }
  }
}
