// llama.cpp's scale searches (ggml-quants.c: make_qx_quants, make_q3_quants, make_qkx2_quants,
// make_qkx3_quants, make_qp_quants), operation for operation: the same float32 expressions in
// the same order (C evaluates a*b*c as (a*b)*c and a+b-c as (a+b)-c; nothing is fused), the
// same integer wrap-arounds, the same tie rules. Only the variants llama.cpp's quantizers call
// are here: make_qx_quants with rmse_type 1, make_q3_quants with do_rmse.
//
// x, weights: f32 arrays; L, Laux: byte arrays (int8_t or uint8_t in C, as noted).

import { imax, imin, loadB, loadF, nearestInt, storeB, storeF } from './common';

/** GROUP_MAX_EPS: a group whose largest magnitude is below this is "all zero". */
export const GROUP_MAX_EPS: f32 = <f32>1e-15;

/** Where the last make_qkx2/3_quants call left its `*the_min` (minus the grid's offset). */
export let theMin: f32 = 0;

/**
 * make_qx_quants(n, nmax, x, L, rmse_type = 1, qw): a symmetric scale with codes
 * L = nmax + clamp(l, -nmax, nmax-1), weights qw (or x^2 when qw is 0), trying 19 scales
 * around -nmax/max (max = the signed value of largest magnitude, first occurrence).
 */
export function makeQxQuants(n: i32, nmax: i32, x: usize, L: usize, qw: usize): f32 {
  let max: f32 = 0, amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = Mathf.abs(loadF(x, i));
    if (ax > amax) { amax = ax; max = loadF(x, i); }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) storeB(L, i, 0);
    return 0;
  }
  let iscale: f32 = <f32>(-nmax) / max;
  let sumlx: f32 = 0, suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = loadF(x, i);
    const l = imax(-nmax, imin(nmax - 1, nearestInt(iscale * xi)));
    storeB(L, i, l + nmax);
    const w: f32 = qw ? loadF(qw, i) : xi * xi;
    const fl = <f32>l;
    sumlx += w * xi * fl;
    suml2 += w * fl * fl;
  }
  let scale: f32 = suml2 != 0 ? sumlx / suml2 : <f32>0;
  let best: f32 = scale * sumlx;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(<f32>nmax + <f32>0.1 * <f32>is) / max;
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = loadF(x, i);
      const fl = <f32>imax(-nmax, imin(nmax - 1, nearestInt(iscale * xi)));
      const w: f32 = qw ? loadF(qw, i) : xi * xi;
      sumlx += w * xi * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (let i = 0; i < n; i++) {
        storeB(L, i, nmax + imax(-nmax, imin(nmax - 1, nearestInt(iscale * loadF(x, i)))));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/**
 * make_q3_quants(n, nmax, x, L, do_rmse = true): symmetric, x^2-weighted, then up to five
 * rounds of one-coordinate moves that raise sumlx^2/suml2. L (int8_t) ends as l + nmax.
 */
export function makeQ3Quants(n: i32, nmax: i32, x: usize, L: usize): f32 {
  let max: f32 = 0, amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = Mathf.abs(loadF(x, i));
    if (ax > amax) { amax = ax; max = loadF(x, i); }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) storeB(L, i, 0);
    return 0;
  }
  const iscale: f32 = <f32>(-nmax) / max;
  let sumlx: f32 = 0, suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = loadF(x, i);
    const l = imax(-nmax, imin(nmax - 1, nearestInt(iscale * xi)));
    storeB(L, i, l);
    const w = xi * xi;
    sumlx += w * xi * <f32>l;
    suml2 += w * <f32>l * <f32>l;
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const xi = loadF(x, i);
      const w = xi * xi;
      const li = <i32>load<i8>(L + <usize>i);
      let slx: f32 = sumlx - w * xi * <f32>li;
      if (slx > 0) {
        let sl2: f32 = suml2 - w * <f32>li * <f32>li;
        const newL = imax(-nmax, imin(nmax - 1, nearestInt(xi * sl2 / slx)));
        if (newL != li) {
          slx += w * xi * <f32>newL;
          sl2 += w * <f32>newL * <f32>newL;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            storeB(L, i, newL);
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  for (let i = 0; i < n; i++) storeB(L, i, <i32>load<i8>(L + <usize>i) + nmax);
  return suml2 > 0 ? sumlx / suml2 : <f32>0;
}

/**
 * make_qkx2_quants / make_qkx3_quants: an asymmetric grid scale * L + min (min <= 0), codes
 * L (uint8_t) in 0..nmax, weights `weights`. Starts from the min-max grid, then tries
 * nstep + 1 scales (rmin + rdelta * is + nmax) / (max - min), each followed by a weighted
 * least-squares fit of (scale, min); keeps the lowest weighted error (|diff| if useMad,
 * diff^2 otherwise). The two C functions differ only in their degenerate-range test
 * (max == min vs max <= min), passed as `qkx3`. Returns the scale; -min goes to theMin.
 */
export function makeQkxQuants(
  n: i32, nmax: i32, x: usize, weights: usize, L: usize, Laux: usize,
  rmin: f32, rdelta: f32, nstep: i32, useMad: bool, qkx3: bool,
): f32 {
  let min = loadF(x, 0);
  let max = min;
  let sumW = loadF(weights, 0);
  let sumX: f32 = sumW * loadF(x, 0);
  for (let i = 1; i < n; i++) {
    const xi = loadF(x, i);
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = loadF(weights, i);
    sumW += w;
    sumX += w * xi;
  }
  if (min > 0) min = 0;
  if (qkx3 ? max <= min : max == min) {
    for (let i = 0; i < n; i++) storeB(L, i, 0);
    theMin = -min;
    return 0;
  }
  let iscale: f32 = <f32>nmax / (max - min);
  let scale: f32 = <f32>1 / iscale;
  let bestError: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = loadF(x, i);
    const l = imax(0, imin(nmax, nearestInt(iscale * (xi - min))));
    storeB(L, i, l);
    let diff: f32 = scale * <f32>l + min - xi;
    diff = useMad ? Mathf.abs(diff) : diff * diff;
    bestError += loadF(weights, i) * diff;
  }
  if (nstep < 1) {
    theMin = -min;
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = (rmin + rdelta * <f32>is + <f32>nmax) / (max - min);
    let sumL: f32 = 0, sumL2: f32 = 0, sumXL: f32 = 0;
    for (let i = 0; i < n; i++) {
      const xi = loadF(x, i);
      const l = imax(0, imin(nmax, nearestInt(iscale * (xi - min))));
      storeB(Laux, i, l);
      const w = loadF(weights, i);
      const fl = <f32>l;
      sumL += w * fl;
      sumL2 += w * fl * fl;
      sumXL += w * fl * xi;
    }
    const D: f32 = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale: f32 = (sumW * sumXL - sumX * sumL) / D;
      let thisMin: f32 = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      let curError: f32 = 0;
      for (let i = 0; i < n; i++) {
        let diff: f32 = thisScale * <f32>loadB(Laux, i) + thisMin - loadF(x, i);
        diff = useMad ? Mathf.abs(diff) : diff * diff;
        curError += loadF(weights, i) * diff;
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) storeB(L, i, loadB(Laux, i));
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  theMin = -min;
  return scale;
}

/**
 * make_qp_quants(n, nmax, x, L, quant_weights): a scale for non-negative values (the
 * k-quants' sub-block scales and mins) with codes L (uint8_t) in 0..nmax: the best of nine
 * scales around nmax/max by weighted squared error, then up to five rounds of one-coordinate
 * moves raising sumlx^2/suml2. Returns sumlx/suml2.
 */
export function makeQpQuants(n: i32, nmax: i32, x: usize, L: usize, qw: usize): f32 {
  let max: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = loadF(x, i);
    max = max > xi ? max : xi; // C's MAX macro
  }
  if (max < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) storeB(L, i, 0);
    return 0;
  }
  let iscale: f32 = <f32>nmax / max;
  for (let i = 0; i < n; i++) storeB(L, i, nearestInt(iscale * loadF(x, i))); // uint8_t store
  const scale: f32 = <f32>1 / iscale;
  let bestMse: f32 = 0;
  for (let i = 0; i < n; i++) {
    const diff: f32 = loadF(x, i) - scale * <f32>loadB(L, i);
    bestMse += loadF(qw, i) * diff * diff;
  }
  for (let is = -4; is <= 4; is++) {
    if (is == 0) continue;
    const iscaleIs: f32 = (<f32>0.1 * <f32>is + <f32>nmax) / max;
    const scaleIs: f32 = <f32>1 / iscaleIs;
    let mse: f32 = 0;
    for (let i = 0; i < n; i++) {
      const xi = loadF(x, i);
      const l = imin(nmax, nearestInt(iscaleIs * xi));
      const diff: f32 = xi - scaleIs * <f32>l;
      mse += loadF(qw, i) * diff * diff;
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx: f32 = 0, suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = loadF(x, i);
    const l = imin(nmax, nearestInt(iscale * xi));
    storeB(L, i, l);
    const w = loadF(qw, i);
    sumlx += w * xi * <f32>l;
    suml2 += w * <f32>l * <f32>l;
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const xi = loadF(x, i);
      const w = loadF(qw, i);
      const li = loadB(L, i);
      let slx: f32 = sumlx - w * xi * <f32>li;
      let sl2: f32 = suml2 - w * <f32>li * <f32>li;
      if (slx > 0 && sl2 > 0) {
        const newL = imin(nmax, nearestInt(xi * sl2 / slx));
        if (newL != li) {
          slx += w * xi * <f32>newL;
          sl2 += w * <f32>newL * <f32>newL;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            storeB(L, i, newL);
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (!nChanged) break;
  }
  return suml2 > 0 ? sumlx / suml2 : <f32>0;
}
