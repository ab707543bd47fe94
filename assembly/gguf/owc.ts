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

import { ggufCandidateGrid, ggufGroupAffine, ggufGroupSize, ggufMaxq, ggufZero, gridValue, rtnCode } from './grid';
import { ggufBlockElems } from './common';

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
export function ggufOwc(type: i32, w: usize, rows: i32, cols: i32, h: usize, halves: usize, subScales: usize, subMins: usize, scratch: usize): void {
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
        store<f32>(e + (<usize>j << 2) + 1024 - 64, bestP); // keep the choice past the errors' use
      }
      // All choices together, against candidate 0, on the super-block's whole block of H.
      for (let j = 0; j < gpb; j++) store<f32>(p + (<usize>j << 2), load<f32>(e + (<usize>j << 2) + 1024 - 64));
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
