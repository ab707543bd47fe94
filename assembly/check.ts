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

/** Edge of hessianFlawed's square tiles: a tile of H and its mirror tile (2 x 16 KB) stay in L1
 * while their entries are compared, where a row-by-column walk would miss the cache per pair. */
// @ts-ignore: decorator
@inline const FLAW_TILE: i32 = 64;

/**
 * Whether the n x n float32 H at h breaks what a Hessian X^T X must satisfy, with exactly the
 * float64 tests of src/core/validate.ts's validateHessian (which this replaces on the fast
 * path: it walks H row by column in JavaScript): a non-finite entry, a negative diagonal, an
 * off-diagonal pair with |a - b| > tolerance * (|a| + |b| + |d_i| + |d_j|), or, beside a zero
 * diagonal d, an entry with max(a^2, b^2) > deadDiagonal * (the other diagonal). Tiles are
 * visited in any order: only acceptance is decided here, and validateHessian, run on a flawed
 * H, names the first flaw in its own order. Returns 1 if flawed, else 0.
 */
export function hessianFlawed(h: usize, n: i32, tolerance: f64, deadDiagonal: f64): i32 {
  if (nonFiniteIndex(h, n * n) >= 0) return 1;
  for (let i = 0; i < n; i++) if (load<f32>(h + ((<usize>i * <usize>n + <usize>i) << 2)) < 0) return 1;
  const t = FLAW_TILE;
  for (let i0 = 0; i0 < n; i0 += t) {
    const i1 = min(i0 + t, n);
    for (let j0 = i0; j0 < n; j0 += t) {
      const j1 = min(j0 + t, n);
      for (let i = i0; i < i1; i++) {
        const d = <f64>load<f32>(h + ((<usize>i * <usize>n + <usize>i) << 2));
        for (let j = max(j0, i + 1); j < j1; j++) {
          const a = <f64>load<f32>(h + ((<usize>i * <usize>n + <usize>j) << 2));
          const b = <f64>load<f32>(h + ((<usize>j * <usize>n + <usize>i) << 2));
          const dj = <f64>load<f32>(h + ((<usize>j * <usize>n + <usize>j) << 2));
          if (d == 0 || dj == 0) {
            const other = d == 0 ? dj : d;
            if (max(a * a, b * b) > deadDiagonal * other) return 1;
          }
          if (abs(a - b) > tolerance * (abs(a) + abs(b) + abs(d) + abs(dj))) return 1;
        }
      }
    }
  }
  return 0;
}

/** Index of the first non-finite value among the `count` float32 at p, or -1: a SIMD pass with
 * the test of assertFinite (v - v != 0 exactly for NaN and the infinities). */
export function nonFiniteIndex(p: usize, count: i32): i32 {
  let i = 0;
  const zero = f32x4.splat(0);
  for (; i + 16 <= count; i += 16) {
    const o = p + (<usize>i << 2);
    const a = v128.load(o), b = v128.load(o, 16), c = v128.load(o, 32), d = v128.load(o, 48);
    const bad = v128.or(
      v128.or(f32x4.ne(f32x4.sub(a, a), zero), f32x4.ne(f32x4.sub(b, b), zero)),
      v128.or(f32x4.ne(f32x4.sub(c, c), zero), f32x4.ne(f32x4.sub(d, d), zero)),
    );
    if (v128.any_true(bad)) break;
  }
  for (; i < count; i++) {
    const v = load<f32>(p + (<usize>i << 2));
    if (v - v != 0) return i;
  }
  return -1;
}

/** out[j] = sum_i |H_ij| in float64, rows added in order (the column sums behind ||H||_1). */
export function columnAbsSums(h: usize, n: i32, out: usize): void {
  memory.fill(out, 0, <usize>n << 3);
  for (let i = 0; i < n; i++) {
    const row = h + ((<usize>i * <usize>n) << 2);
    for (let j = 0; j < n; j++) {
      const o = out + (<usize>j << 3);
      store<f64>(o, load<f64>(o) + <f64>abs(load<f32>(row + (<usize>j << 2))));
    }
  }
}
