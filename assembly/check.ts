// Checks on the layer problem and on solver outputs: whether H is positive semidefinite up to
// damping, and how far below zero rounding alone can take a computed loss. They decide whether
// a result is accepted, so they run here, in the same arithmetic on every runtime.

import { cholesky } from './linalg';

/** Bytes of psdCheck's work for n x n: the scaled copy of H and cholesky's 128 * n floats. */
export function psdCheckScratch(n: i32): f64 {
  return (<f64>n * <f64>n + 128 * <f64>n) * 4;
}

/**
 * Whether H + damping * mean(diag H) * I has a Cholesky factor, i.e. whether the symmetric H
 * is positive semidefinite up to that damping. The copy is scaled by 1 / max(diag H) first:
 * positive semidefiniteness does not change with a positive scale, and with it every entry of
 * a PSD H is at most 1 in magnitude, so the factorization cannot overflow float32 however
 * large or small H is. Reads the lower triangle of h; h is not written.
 * Returns 0, or 1 + the index of the failing pivot. work: psdCheckScratch(n) bytes.
 */
export function psdCheck(h: usize, n: i32, damping: f64, work: usize): i32 {
  if (!psdScaled(h, n, damping, work)) return 1;
  return cholesky(work, n, work + ((<usize>n * <usize>n) << 2));
}

/** psdCheck's first step: the scaled, shifted lower triangle of H into work (n x n). Returns
 * false when no diagonal entry is positive (only the zero matrix, which has no factor). Its
 * Cholesky is the second step (src/core/linalg.ts shares it among threads). */
export function psdScaled(h: usize, n: i32, damping: f64, work: usize): bool {
  let sum: f64 = 0;
  let largest: f64 = 0;
  for (let i = 0; i < n; i++) {
    const d = <f64>load<f32>(h + ((<usize>i * <usize>n + <usize>i) << 2));
    sum += d;
    largest = max(largest, d);
  }
  if (!(largest > 0)) return false;
  const s: f64 = 1 / largest;
  const shift: f64 = damping * (sum / <f64>n) * s;
  for (let i = 0; i < n; i++) {
    const row = <usize>i * <usize>n;
    for (let j = 0; j <= i; j++) {
      const o = (row + <usize>j) << 2;
      let v = <f64>load<f32>(h + o) * s;
      if (i == j) v += shift;
      store<f32>(work + o, <f32>v);
    }
  }
  return true;
}

/**
 * For each row of a band, how far below zero the computed loss (q - w)^T H (q - w) of
 * rowLosses may fall when H + damping * mean(diag H) * I is positive semidefinite:
 *   out[r] = t ||e||^2 + 2 gamma_{n+1} (sum_i |e_i| sqrt(H_ii + t))^2,   t = damping * mean(diag H),
 * with e = fl(q - w) as rowLosses forms it and gamma_k = k u / (1 - k u), u = 2^-24.
 * Why: the exact e^T H e is at least -t ||e||^2 (H's smallest eigenvalue is at least -t); and
 * rowLosses sums the float32 products e_i H_ij in blocks, the off-diagonal blocks twice, so its
 * rounding error is at most 2 gamma_{n+1} sum_ij |e_i| |H_ij| |e_j| (plus float64 terms far
 * smaller), where |H_ij| <= sqrt((H_ii + t)(H_jj + t)) for a matrix PSD up to t.
 * hdiag: diag H [cols] (f32); out: f64 [rows].
 */
export function lossTolerance(w: usize, q: usize, rows: i32, cols: i32, hdiag: usize, damping: f64, out: usize): void {
  let sum: f64 = 0;
  for (let j = 0; j < cols; j++) sum += <f64>load<f32>(hdiag + (<usize>j << 2));
  const t: f64 = damping * (sum / <f64>cols);
  const u: f64 = 1.0 / 16777216.0;
  const k = <f64>(cols + 1);
  const gamma: f64 = (k * u) / (1 - k * u);
  for (let r = 0; r < rows; r++) {
    const base = (<usize>r * <usize>cols) << 2;
    let ee: f64 = 0, a: f64 = 0;
    for (let j = 0; j < cols; j++) {
      const o = base + (<usize>j << 2);
      const e = <f64>(load<f32>(q + o) - load<f32>(w + o));
      ee += e * e;
      a += abs<f64>(e) * sqrt<f64>(max<f64>(<f64>load<f32>(hdiag + (<usize>j << 2)), 0) + t);
    }
    store<f64>(out + (<usize>r << 3), t * ee + 2 * gamma * a * a);
  }
}
