// Refit (ALGORITHMS.md "Refit", beyond the paper): with the codes fixed, each group's
// (scale, zero) is re-chosen by least squares in H's metric, kept only where the loss falls.

import { gemmSub } from './linalg';
import { dequantCode, halfScalesOn, roundScaleToHalf } from './grid';

// @ts-ignore: decorator
@inline function f32At(base: usize, i: i32): f32 {
  return load<f32>(base + (<usize>i << 2));
}
// @ts-ignore: decorator
@inline function f32Set(base: usize, i: i32, v: f32): void {
  store<f32>(base + (<usize>i << 2), v);
}

/** Bytes of refitBand's scratch for a band of rows x cols. */
export function refitBandScratch(rows: i32, cols: i32): f64 {
  const n = <f64>rows * <f64>cols;
  return n * 16 /* dneg, yq, yc, gcur */ + n * 4 /* codes as floats */ + <f64>cols * 4 /* H_GG 1 */;
}

/**
 * One refit round on a band (ALGORITHMS.md "Refit"): per row, group after group, the least-
 * squares (scale, zero) for fixed codes in H's metric, kept only if scale > 0 and the loss
 * falls; then g is recomputed for the whole band. Gradients of later groups see earlier
 * groups' changes through GEMMs on the band's accumulated changes (negated, in dneg).
 * q, g, scales, zeros updated in place; codes read. sym: refit the scale only.
 * scratch: refitBandScratch(rows, cols) bytes. accepted (i32 [rows]) counts the groups changed
 * per row.
 */
export function refitBand(
  w: usize, q: usize, codes: usize, g: usize, rows: i32, cols: i32, h: usize, maxq: f32, sym: bool,
  groupWidth: i32, groups: i32, scales: usize, zeros: usize, accepted: usize, scratch: usize,
): void {
  const total = <usize>rows * <usize>cols;
  const dneg = scratch; // -(change of q) so far
  const yq = scratch + (total << 2); // Q_G H_GG, one group at a time [rows x gs]
  const yc = yq + (total << 2); // C_G H_GG
  const gcur = yc + (total << 2); // current g on the group [rows x gs]
  const gs = groupWidth;
  memory.fill(dneg, 0, total << 2);
  memory.fill(accepted, 0, <usize>rows << 2);
  const cvals = gcur + (total << 2);
  for (let i: usize = 0; i < total; i++) store<f32>(cvals + (i << 2), <f32>load<u8>(codes + i));
  const ones = cvals + (total << 2);
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
      const s32 = halfScalesOn() ? roundScaleToHalf(<f32>a) : <f32>a, z32 = <f32>z;
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
}
