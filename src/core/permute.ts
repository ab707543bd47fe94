// Column permutations of row-major matrices (act-order, group order): data movement only.

/** P M P^T for an n x n matrix: out[i, j] = m[perm[i], perm[j]]. */
export function permuteSquare(m: Float32Array, n: number, perm: Int32Array): Float32Array {
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    const src = perm[i] * n;
    for (let j = 0; j < n; j++) out[i * n + j] = m[src + perm[j]];
  }
  return out;
}

/** Columns of a rows x cols matrix in `perm` order (out[:, j] = m[:, perm[j]]), or back
 * (inverse: out[:, perm[j]] = m[:, j]). */
export function permuteColumns<T extends Float32Array | Uint8Array>(m: T, rows: number, cols: number, perm: Int32Array, inverse: boolean): T {
  const out = new (m.constructor as { new (n: number): T })(m.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) {
      if (inverse) out[base + perm[j]] = m[base + j];
      else out[base + j] = m[base + perm[j]];
    }
  }
  return out;
}
