// Independent float64 reference of every cdquant layer algorithm (test code only).
//
// Written from /work/shared/ALGORITHMS.md (and the behaviour of IST-DASLab gptq.py /
// quant.py that it names), without looking at src/ or assembly/. Plain, readable,
// slow TypeScript: no wasm, no imports from src/. Everything is float64.
//
// Verified: GPTQ codes and g_idx equal a float64 PyTorch port of fasterquant on 33 cases
// (test/fixtures/torch-gptq.json; regenerate with test/fixtures/torch_fasterquant64.py).
//
// CONVENTIONS
// - Matrices are Float64Array, row-major. W, Q: [rows = out, cols = in]. H: [cols, cols].
// - codes: Int32Array [rows * cols], ORIGINAL column order, values in [0, maxq].
// - scales, zeros: Float64Array [rows * groups], row-major (scales[r * groups + g]).
//   groups = ceil(cols / groupSize), or 1 for per-channel (groupSize -1 or 0).
//   (The GPTQ checkpoint stores [groups, out]; transposing is the packer's business.)
// - gIdx: Int32Array [cols], the group of each ORIGINAL column.
// - perm: Int32Array [cols], perm[k] = original column processed k-th (identity if no
//   act-order).
// - maxq = 2^bits - 1. quant(x) = clamp(roundHalfEven(x / scale) + zero, 0, maxq);
//   dequant(c) = scale * (c - zero). Q is always dequant(codes) (computed this way).
// - Losses are sum_r (q_r - w_r)^T H (q_r - w_r) with the caller's H and W, unless a
//   field says otherwise.
//
// CHOICES WHERE THE SPEC IS AMBIGUOUS (compare with the WASM side)
//  A1. GPTQ per-channel min-max / MSE grid is computed from the ORIGINAL W, before the dead
//      columns are zeroed: this is what fasterquant does (quantizer.find_params(W) runs
//      before `W[:, dead] = 0`). (The bench torch_gptq.py computes it after zeroing.) Option
//      `perChannelFrom: 'deadZeroed'` gives the other behaviour. Static groups, dynamic
//      groups and OWC grids always see the dead-zeroed W (ALGORITHMS.md says so).
//  A2. clip 'mse' applies to every grid GPTQ computes (per-channel, static groups, each
//      dynamic group), as the reference Quantizer(mse=True) does.
//  A3. clip 'owc' in GPTQ: grids are computed once, from the dead-zeroed UNPERMUTED W with
//      the caller's (undamped, dead diagonal still 0) H, on groups of consecutive ORIGINAL
//      columns, and held fixed: i.e. OWC always has the static-group layout (gIdx[c] =
//      floor(c / groupSize)), whatever `staticGroups` says. Per-channel OWC uses the whole H.
//  A4. Act-order sort: stable descending on diag(H) AFTER the dead fix (dead diag = 1)
//      — torch.argsort(descending=True) is not stable; we are.
//  A5. Damping retry: the whole chain chol(H) -> inverse -> chol runs again with percdamp
//      x10 if any Cholesky pivot is <= 0 or not finite; at most 5 attempts (percdamp,
//      x10, x100, x1000, x10000), then throw. `dampUsed` is the percdamp that worked;
//      `dampAbs` = dampUsed * mean(diag(H)) (diag after the dead fix, after permutation).
//  A6. GPTQ codes are quant(w) on the group's grid; Q = dequant(codes). Identical to the
//      reference's quantize() which returns the dequantized value directly.
//  A7. Dynamic groups with a group size that does not divide the block size: the group's
//      parameters are read from the outer (block-start) W over [j, j + groupSize), which may
//      extend past the current block (exactly what fasterquant reads). Last group may be
//      shorter than groupSize.
//  A8. CD "nearest grid point to t" = quant(t) (round half to even on t/scale). Gains are
//      compared strictly (first = lowest index wins ties); stop when the best gain <= 0.
//      One iteration = one move; default iters = cols.
//  A9. CD / BCD / refit run on H' = H with dead diagonal set to 1 and W' = W with dead
//      columns zeroed. The reported loss trajectory is nevertheless the CALLER's loss
//      (caller's W and H): moves on a dead column change it by 0 (its H row is 0), so it
//      is non-increasing too. `objective` (per row, final) is the H'/W' objective.
//  A10. CD init: {codes, scales, zeros, gIdx?}; gIdx defaults to floor(c / groupSize)
//      (0 for per-channel). Pass GPTQ's gIdx for act-order + dynamic groups.
//  A11. BCD: blocks of k consecutive columns of `order` (act-order perm when actOrder,
//      identity otherwise); last block may be shorter. delta* = -H'_BB^-1 g_B via Cholesky;
//      if H'_BB is not positive definite, delta*_j = -g_j / H'_jj (CD's target) instead.
//      Candidate codes per coordinate: lo = clamp(floor(t/s) + z), hi = clamp(ceil(t/s) + z)
//      with t = q_j + delta*_j. Combinations enumerated by mask 0..2^k-1 (bit j set = hi);
//      first strictly best wins; blocks compared strictly in block order. Default iters =
//      cols (moves), default k = 2.
//  A12. Refit: a group is {c : gIdx[c] = g} (non-contiguous with act-order dynamic groups);
//      groups visited g = 0, 1, ... . If the 2x2 system is singular (|det| <= 1e-12 *
//      (trace^2)) or gives a <= 0 or non-finite, the zero is kept and only the scale is
//      refit. Scale-only step skipped if v^T H v <= 0. Accept iff a > 0, finite, and the
//      change 2 d^T g + d^T H d < 0 (strictly). Symmetric: zero kept, scale only.
//      One refit() call = one round: the refit pass, then CD (iters) on the new grid.
//      g is updated incrementally through the pass (as the spec says) and then recomputed
//      exactly as H'(q - w') before the CD that follows (differs only by rounding).
//  A13. OWC / MSE: candidates p = 1 - i/100, i = 0..79, grid (p*xmin, p*xmax) after the
//      min-max sym rule and the all-zero (-1, +1) rule; scale = (p*xmax - p*xmin) / maxq;
//      asym zero = roundHalfEven(-p*xmin / scale). First strictly smallest score kept.
//  A14. Dynamic-group blocked vs unblocked: see gptqUnblocked() for which configurations
//      must agree.

export type Clip = 'minmax' | 'mse' | 'owc';

// ---------------------------------------------------------------------------------------
// Rounding, grid, quant

/** Round half to even (PyTorch torch.round). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f; // exact in binary floating point
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

export function maxqOf(bits: number): number {
  return 2 ** bits - 1;
}

export function quant(x: number, scale: number, zero: number, maxq: number): number {
  const c = roundHalfEven(x / scale) + zero;
  return c < 0 ? 0 : c > maxq ? maxq : c;
}

export function dequant(c: number, scale: number, zero: number): number {
  return scale * (c - zero);
}

/** min-max range after the zero-inclusion, symmetric and all-zero rules. */
export function gridRange(x: ArrayLike<number>, sym: boolean): { xmin: number; xmax: number } {
  let xmin = 0;
  let xmax = 0;
  for (let i = 0; i < x.length; i++) {
    if (x[i] < xmin) xmin = x[i];
    if (x[i] > xmax) xmax = x[i];
  }
  if (sym) {
    xmax = Math.max(Math.abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  return { xmin, xmax };
}

function gridFromRange(xmin: number, xmax: number, maxq: number, sym: boolean): { scale: number; zero: number } {
  const scale = (xmax - xmin) / maxq;
  const zero = sym ? (maxq + 1) / 2 : roundHalfEven(-xmin / scale);
  return { scale, zero };
}

/** Shrink factor of candidate i (MSE and OWC): p = 1 - i/100. */
export function shrinkFactor(i: number): number {
  return 1 - i / 100;
}
export const SHRINKS = 80;
export const MSE_NORM = 2.4;

export function gridParams(x: ArrayLike<number>, bits: number, sym: boolean): { scale: number; zero: number } {
  const { xmin, xmax } = gridRange(x, sym);
  return gridFromRange(xmin, xmax, maxqOf(bits), sym);
}

function shrunkGrid(xmin: number, xmax: number, i: number, maxq: number, sym: boolean) {
  const p = shrinkFactor(i);
  return gridFromRange(p * xmin, p * xmax, maxq, sym);
}

export function mseScores(x: ArrayLike<number>, bits: number, sym: boolean): Float64Array {
  const maxq = maxqOf(bits);
  const { xmin, xmax } = gridRange(x, sym);
  const out = new Float64Array(SHRINKS);
  for (let i = 0; i < SHRINKS; i++) {
    const { scale, zero } = shrunkGrid(xmin, xmax, i, maxq, sym);
    let err = 0;
    for (let j = 0; j < x.length; j++) {
      const e = dequant(quant(x[j], scale, zero, maxq), scale, zero) - x[j];
      err += Math.abs(e) ** MSE_NORM;
    }
    out[i] = err;
  }
  return out;
}

export function mseGridParams(x: ArrayLike<number>, bits: number, sym: boolean): { scale: number; zero: number; shrinkIndex: number } {
  const maxq = maxqOf(bits);
  const { xmin, xmax } = gridRange(x, sym);
  const scores = mseScores(x, bits, sym);
  let best = Infinity;
  let bi = 0;
  for (let i = 0; i < SHRINKS; i++) if (scores[i] < best) { best = scores[i]; bi = i; }
  return { ...shrunkGrid(xmin, xmax, bi, maxq, sym), shrinkIndex: bi };
}

/** e^T Hg e for e = dequant(quant(x)) - x on each of the 80 shrunk grids. Hg: [m, m]. */
export function owcScores(x: ArrayLike<number>, Hg: ArrayLike<number>, bits: number, sym: boolean): Float64Array {
  const m = x.length;
  const maxq = maxqOf(bits);
  const { xmin, xmax } = gridRange(x, sym);
  const out = new Float64Array(SHRINKS);
  const e = new Float64Array(m);
  for (let i = 0; i < SHRINKS; i++) {
    const { scale, zero } = shrunkGrid(xmin, xmax, i, maxq, sym);
    for (let j = 0; j < m; j++) e[j] = dequant(quant(x[j], scale, zero, maxq), scale, zero) - x[j];
    out[i] = quadForm(Hg, e, m);
  }
  return out;
}

export function owcParams(x: ArrayLike<number>, Hg: ArrayLike<number>, bits: number, sym: boolean): { scale: number; zero: number; shrinkIndex: number; score: number } {
  const maxq = maxqOf(bits);
  const { xmin, xmax } = gridRange(x, sym);
  const scores = owcScores(x, Hg, bits, sym);
  let best = Infinity;
  let bi = 0;
  for (let i = 0; i < SHRINKS; i++) if (scores[i] < best) { best = scores[i]; bi = i; }
  return { ...shrunkGrid(xmin, xmax, bi, maxq, sym), shrinkIndex: bi, score: scores[bi] };
}

function paramsFor(x: ArrayLike<number>, bits: number, sym: boolean, clip: 'minmax' | 'mse') {
  return clip === 'mse' ? mseGridParams(x, bits, sym) : gridParams(x, bits, sym);
}

// ---------------------------------------------------------------------------------------
// Small linear algebra

export function quadForm(A: ArrayLike<number>, e: ArrayLike<number>, m: number): number {
  let s = 0;
  for (let i = 0; i < m; i++) {
    let t = 0;
    for (let j = 0; j < m; j++) t += A[i * m + j] * e[j];
    s += e[i] * t;
  }
  return s;
}

/** Lower Cholesky factor L (A = L L^T), or null if a pivot is <= 0 / not finite. */
export function cholesky(A: ArrayLike<number>, n: number): Float64Array | null {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j];
    for (let k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
    if (!(d > 0) || !Number.isFinite(d)) return null;
    const ljj = Math.sqrt(d);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j];
      for (let k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = s / ljj;
    }
  }
  return L;
}

/** Inverse of a lower-triangular matrix (lower-triangular). */
export function lowerInverse(L: Float64Array, n: number): Float64Array {
  const X = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    X[j * n + j] = 1 / L[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += L[i * n + k] * X[k * n + j];
      X[i * n + j] = -s / L[i * n + i];
    }
  }
  return X;
}

/** The reference's U: chol(H) -> cholesky_inverse -> upper chol. null if any chol fails. */
export function upperCholOfInverse(H: Float64Array, n: number): Float64Array | null {
  const L = cholesky(H, n);
  if (!L) return null;
  const Li = lowerInverse(L, n);
  // H^-1 = L^-T L^-1
  const Hi = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += Li[k * n + i] * Li[k * n + j];
      Hi[i * n + j] = s;
      Hi[j * n + i] = s;
    }
  const L2 = cholesky(Hi, n);
  if (!L2) return null;
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) U[j * n + i] = L2[i * n + j];
  return U;
}

/** Solve A x = b given the lower Cholesky factor L of A. */
function cholSolve(L: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[i * n + k] * y[k];
    y[i] = s / L[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= L[k * n + i] * x[k];
    x[i] = s / L[i * n + i];
  }
  return x;
}

function subMatrix(H: ArrayLike<number>, n: number, idx: ArrayLike<number>): Float64Array {
  const m = idx.length;
  const S = new Float64Array(m * m);
  for (let a = 0; a < m; a++) for (let b = 0; b < m; b++) S[a * m + b] = H[idx[a] * n + idx[b]];
  return S;
}

// ---------------------------------------------------------------------------------------
// Loss, Hessian

export function layerLossPerRow(W: ArrayLike<number>, Q: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  const e = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) e[c] = Q[r * cols + c] - W[r * cols + c];
    out[r] = quadForm(H, e, cols);
  }
  return out;
}

export function layerLoss(W: ArrayLike<number>, Q: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number): number {
  let s = 0;
  for (const v of layerLossPerRow(W, Q, H, rows, cols)) s += v;
  return s;
}

/** Streaming H over chunks X_k [m_k, cols]: H *= n/(n+m); H += 2/(n+m) X^T X. */
export function accumulateHessian(chunks: Float64Array[], cols: number): { H: Float64Array; n: number } {
  const H = new Float64Array(cols * cols);
  let n = 0;
  for (const X of chunks) {
    const m = X.length / cols;
    if (!Number.isInteger(m)) throw new Error('chunk length is not a multiple of cols');
    if (m === 0) continue;
    const shrink = n / (n + m);
    for (let i = 0; i < H.length; i++) H[i] *= shrink;
    const f = 2 / (n + m);
    for (let i = 0; i < cols; i++)
      for (let j = 0; j < cols; j++) {
        let s = 0;
        for (let k = 0; k < m; k++) s += X[k * cols + i] * X[k * cols + j];
        H[i * cols + j] += f * s;
      }
    n += m;
  }
  return { H, n };
}

/** One-shot H = 2/n X^T X. */
export function hessianOneShot(X: Float64Array, n: number, cols: number): Float64Array {
  const H = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++)
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += X[k * cols + i] * X[k * cols + j];
      H[i * cols + j] = (2 / n) * s;
    }
  return H;
}

// ---------------------------------------------------------------------------------------
// Groups

export function groupCount(cols: number, groupSize: number): number {
  return groupSize > 0 ? Math.ceil(cols / groupSize) : 1;
}

export function defaultGIdx(cols: number, groupSize: number): Int32Array {
  const g = new Int32Array(cols);
  if (groupSize > 0) for (let c = 0; c < cols; c++) g[c] = Math.floor(c / groupSize);
  return g;
}

/** Grid of one row segment (indices into row r of W) under any clip. */
function segmentParams(
  W: ArrayLike<number>, H: ArrayLike<number> | undefined, r: number, cols: number, colIdx: number[],
  bits: number, sym: boolean, clip: Clip,
): { scale: number; zero: number } {
  const x = colIdx.map((c) => W[r * cols + c]);
  if (clip === 'owc') {
    if (!H) throw new Error("clip 'owc' needs H");
    const o = owcParams(x, subMatrix(H, cols, colIdx), bits, sym);
    return { scale: o.scale, zero: o.zero };
  }
  return paramsFor(x, bits, sym, clip);
}

function range(a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a; i < b; i++) out.push(i);
  return out;
}

// ---------------------------------------------------------------------------------------
// RTN

export interface RtnOptions { bits: number; groupSize?: number; sym?: boolean; clip?: Clip }
export interface QuantResult {
  codes: Int32Array; scales: Float64Array; zeros: Float64Array; gIdx: Int32Array; Q: Float64Array;
}

export function rtn(W: ArrayLike<number>, H: ArrayLike<number> | undefined, rows: number, cols: number, opt: RtnOptions): QuantResult {
  const bits = opt.bits;
  const maxq = maxqOf(bits);
  const sym = opt.sym ?? false;
  const clip = opt.clip ?? 'minmax';
  const gs = opt.groupSize ?? -1;
  const groups = groupCount(cols, gs);
  const gIdx = defaultGIdx(cols, gs);
  const scales = new Float64Array(rows * groups);
  const zeros = new Float64Array(rows * groups);
  const codes = new Int32Array(rows * cols);
  const Q = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let g = 0; g < groups; g++) {
      const idx = gs > 0 ? range(g * gs, Math.min(cols, (g + 1) * gs)) : range(0, cols);
      const { scale, zero } = segmentParams(W, H, r, cols, idx, bits, sym, clip);
      scales[r * groups + g] = scale;
      zeros[r * groups + g] = zero;
      for (const c of idx) {
        const k = quant(W[r * cols + c], scale, zero, maxq);
        codes[r * cols + c] = k;
        Q[r * cols + c] = dequant(k, scale, zero);
      }
    }
  return { codes, scales, zeros, gIdx, Q };
}

// ---------------------------------------------------------------------------------------
// GPTQ

export interface GptqOptions {
  bits: number;
  groupSize?: number;
  sym?: boolean;
  actOrder?: boolean;
  staticGroups?: boolean;
  percdamp?: number;
  blockSize?: number;
  clip?: Clip;
  /** A1: where the per-channel min-max/MSE grid comes from. Default 'original' (fasterquant). */
  perChannelFrom?: 'original' | 'deadZeroed';
  /** Dynamic groups read weights at the block start (reference) or the current ones. */
  dynamicFrom?: 'blockStart' | 'current';
  /** Cholesky attempts (percdamp x10 each retry). Default 5. */
  maxAttempts?: number;
}
export interface GptqResult extends QuantResult {
  perm: Int32Array; dampUsed: number; dampAbs: number; dead: Uint8Array;
}

/** Dead columns (H_ii == 0): H' = H with those diagonals set to 1, W' = W with those columns 0. */
export function deadFix(W: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number) {
  const Hf = Float64Array.from(H);
  const Wf = Float64Array.from(W);
  const dead = new Uint8Array(cols);
  for (let i = 0; i < cols; i++)
    if (H[i * cols + i] === 0) {
      dead[i] = 1;
      Hf[i * cols + i] = 1;
      for (let r = 0; r < rows; r++) Wf[r * cols + i] = 0;
    }
  return { Hf, Wf, dead };
}

/** Stable descending sort of diag(H): perm[k] = original column at position k. */
export function actOrderPerm(H: ArrayLike<number>, cols: number): Int32Array {
  const idx = range(0, cols);
  idx.sort((a, b) => {
    const da = H[a * cols + a];
    const db = H[b * cols + b];
    return da > db ? -1 : da < db ? 1 : a - b;
  });
  return Int32Array.from(idx);
}

export function gptq(W: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number, opt: GptqOptions): GptqResult {
  const bits = opt.bits;
  const maxq = maxqOf(bits);
  const sym = opt.sym ?? false;
  const clip = opt.clip ?? 'minmax';
  const gs = opt.groupSize !== undefined && opt.groupSize > 0 ? opt.groupSize : -1;
  const grouped = gs > 0;
  const staticLayout = grouped && (opt.staticGroups === true || clip === 'owc');
  const B = opt.blockSize ?? 128;
  const percdamp0 = opt.percdamp ?? 0.01;
  const groups = groupCount(cols, gs);
  const dynFrom = opt.dynamicFrom ?? 'blockStart';

  // 0. per-channel grid from the original W (fasterquant's find_params before dead zeroing)
  const scales = new Float64Array(rows * groups);
  const zeros = new Float64Array(rows * groups);
  if (!grouped && clip !== 'owc' && (opt.perChannelFrom ?? 'original') === 'original') {
    for (let r = 0; r < rows; r++) {
      const p = segmentParams(W, H, r, cols, range(0, cols), bits, sym, clip);
      scales[r] = p.scale;
      zeros[r] = p.zero;
    }
  }
  // 1. dead columns
  const { Hf, Wf, dead } = deadFix(W, H, rows, cols);
  if (!grouped && (clip === 'owc' || opt.perChannelFrom === 'deadZeroed')) {
    for (let r = 0; r < rows; r++) {
      const p = segmentParams(Wf, H, r, cols, range(0, cols), bits, sym, clip); // OWC: caller's H
      scales[r] = p.scale;
      zeros[r] = p.zero;
    }
  }
  // static groups / OWC groups: from dead-zeroed, unpermuted W, consecutive original columns
  if (staticLayout) {
    for (let r = 0; r < rows; r++)
      for (let g = 0; g < groups; g++) {
        const p = segmentParams(Wf, H, r, cols, range(g * gs, Math.min(cols, (g + 1) * gs)), bits, sym, clip);
        scales[r * groups + g] = p.scale;
        zeros[r * groups + g] = p.zero;
      }
  }
  // 2. act-order
  const perm = opt.actOrder ? actOrderPerm(Hf, cols) : Int32Array.from(range(0, cols));
  const Wp = new Float64Array(rows * cols);
  const Hp = new Float64Array(cols * cols);
  for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) Wp[r * cols + k] = Wf[r * cols + perm[k]];
  for (let a = 0; a < cols; a++) for (let b = 0; b < cols; b++) Hp[a * cols + b] = Hf[perm[a] * cols + perm[b]];
  // 3-4. damping (with retry) and U
  let meanDiag = 0;
  for (let i = 0; i < cols; i++) meanDiag += Hp[i * cols + i];
  meanDiag /= cols;
  let U: Float64Array | null = null;
  let percdamp = percdamp0;
  const attempts = opt.maxAttempts ?? 5;
  for (let a = 0; a < attempts; a++, percdamp *= 10) {
    const Hd = Float64Array.from(Hp);
    const damp = percdamp * meanDiag;
    for (let i = 0; i < cols; i++) Hd[i * cols + i] += damp;
    U = upperCholOfInverse(Hd, cols);
    if (U) break;
  }
  if (!U) throw new Error('gptq: Cholesky failed at every damping');
  const dampUsed = percdamp;

  // group of each permuted position, and the grid in force
  const gIdx = new Int32Array(cols);
  const groupOfPos = (k: number) => (!grouped ? 0 : staticLayout ? Math.floor(perm[k] / gs) : Math.floor(k / gs));
  for (let k = 0; k < cols; k++) gIdx[perm[k]] = groupOfPos(k);

  const codesP = new Int32Array(rows * cols); // permuted order
  const Wout = Wp; // outer W, updated only after each block
  for (let i1 = 0; i1 < cols; i1 += B) {
    const i2 = Math.min(i1 + B, cols);
    const nb = i2 - i1;
    const W1 = new Float64Array(rows * nb);
    for (let r = 0; r < rows; r++) for (let i = 0; i < nb; i++) W1[r * nb + i] = Wout[r * cols + i1 + i];
    const E1 = new Float64Array(rows * nb);
    for (let i = 0; i < nb; i++) {
      const k = i1 + i;
      if (grouped && !staticLayout && k % gs === 0) {
        const g = k / gs;
        const end = Math.min(cols, k + gs);
        for (let r = 0; r < rows; r++) {
          const x: number[] = [];
          for (let c = k; c < end; c++) {
            x.push(dynFrom === 'current' && c < i2 ? W1[r * nb + (c - i1)] : Wout[r * cols + c]);
          }
          const p = paramsFor(x, bits, sym, clip as 'minmax' | 'mse');
          scales[r * groups + g] = p.scale;
          zeros[r * groups + g] = p.zero;
        }
      }
      const g = groupOfPos(k);
      const d = U[k * cols + k];
      for (let r = 0; r < rows; r++) {
        const s = scales[r * groups + g];
        const z = zeros[r * groups + g];
        const w = W1[r * nb + i];
        const c = quant(w, s, z, maxq);
        codesP[r * cols + k] = c;
        const q = dequant(c, s, z);
        const err = (w - q) / d;
        for (let j = i; j < nb; j++) W1[r * nb + j] -= err * U[k * cols + i1 + j];
        E1[r * nb + i] = err;
      }
    }
    // lazy update of the rest: W[:, i2:] -= E1 @ U[i1:i2, i2:]
    for (let r = 0; r < rows; r++)
      for (let j = i2; j < cols; j++) {
        let s = 0;
        for (let i = 0; i < nb; i++) s += E1[r * nb + i] * U[(i1 + i) * cols + j];
        Wout[r * cols + j] -= s;
      }
  }
  // un-permute
  const codes = new Int32Array(rows * cols);
  const Q = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < cols; k++) {
      const c = perm[k];
      const g = gIdx[c];
      codes[r * cols + c] = codesP[r * cols + k];
      Q[r * cols + c] = dequant(codesP[r * cols + k], scales[r * groups + g], zeros[r * groups + g]);
    }
  return { codes, scales, zeros, gIdx, Q, perm, dampUsed, dampAbs: dampUsed * meanDiag, dead };
}

/**
 * GPTQ with one full-width block (blockSize = cols). In exact arithmetic the lazy-batch
 * update changes nothing, EXCEPT where the result depends on when group parameters are read:
 * - per-channel (any clip), static groups, and OWC (grids fixed up front): blocked and
 *   unblocked must agree (codes equal up to float64 rounding ties);
 * - dynamic groups: fasterquant reads a group's grid from the block-start W, so the
 *   unblocked form (one block) takes EVERY group's grid from the initial (permuted,
 *   dead-zeroed) W, while the blocked form sees the error feedback of earlier blocks.
 *   They agree only when cols <= blockSize. What does hold: blocked with blockSize dividing
 *   groupSize (every group starts at a block start, where the outer W is fully up to date)
 *   equals the unblocked form with dynamicFrom 'current'.
 */
export function gptqUnblocked(W: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number, opt: GptqOptions): GptqResult {
  return gptq(W, H, rows, cols, { ...opt, blockSize: cols });
}

// ---------------------------------------------------------------------------------------
// CD, BCD, refit: shared state

export interface Init { codes: ArrayLike<number>; scales: ArrayLike<number>; zeros: ArrayLike<number>; gIdx?: ArrayLike<number> }
export interface CdOptions { bits: number; groupSize?: number; sym?: boolean; iters?: number; init: Init }
export interface CdResult {
  codes: Int32Array; scales: Float64Array; zeros: Float64Array; gIdx: Int32Array; Q: Float64Array;
  /** per row: caller's loss after 0, 1, 2, ... moves */
  loss: Float64Array[];
  moves: Int32Array;
  /** per row: final H'/W' objective (dead diag 1, dead W cols 0) */
  objective: Float64Array;
}

interface RowState {
  codes: Int32Array; q: Float64Array; g: Float64Array; w: Float64Array; s: Float64Array; z: Float64Array;
}

class Problem {
  readonly Hf: Float64Array;
  readonly Wf: Float64Array;
  readonly dead: Uint8Array;
  readonly maxq: number;
  readonly groups: number;
  readonly gIdx: Int32Array;
  constructor(
    readonly W: ArrayLike<number>, readonly H: ArrayLike<number>, readonly rows: number, readonly cols: number,
    bits: number, groupSize: number, init: Init,
  ) {
    const f = deadFix(W, H, rows, cols);
    this.Hf = f.Hf;
    this.Wf = f.Wf;
    this.dead = f.dead;
    this.maxq = maxqOf(bits);
    this.gIdx = init.gIdx ? Int32Array.from(init.gIdx) : defaultGIdx(cols, groupSize);
    let gmax = 0;
    for (const v of this.gIdx) gmax = Math.max(gmax, v);
    this.groups = init.scales.length / rows;
    if (!Number.isInteger(this.groups) || gmax >= this.groups) throw new Error('init scales do not match gIdx');
  }
  row(r: number, init: { codes: ArrayLike<number>; scales: ArrayLike<number>; zeros: ArrayLike<number> }): RowState {
    const { cols, groups } = this;
    const codes = new Int32Array(cols);
    const q = new Float64Array(cols);
    const s = new Float64Array(cols);
    const z = new Float64Array(cols);
    const w = this.Wf.slice(r * cols, (r + 1) * cols);
    for (let c = 0; c < cols; c++) {
      codes[c] = init.codes[r * cols + c];
      s[c] = init.scales[r * groups + this.gIdx[c]];
      z[c] = init.zeros[r * groups + this.gIdx[c]];
      q[c] = dequant(codes[c], s[c], z[c]);
    }
    const g = this.grad(q, w);
    return { codes, q, g, w, s, z };
  }
  grad(q: Float64Array, w: Float64Array): Float64Array {
    const { cols, Hf } = this;
    const g = new Float64Array(cols);
    for (let i = 0; i < cols; i++) {
      let t = 0;
      for (let j = 0; j < cols; j++) t += Hf[i * cols + j] * (q[j] - w[j]);
      g[i] = t;
    }
    return g;
  }
  callerRowLoss(r: number, q: Float64Array): number {
    const e = new Float64Array(this.cols);
    for (let c = 0; c < this.cols; c++) e[c] = q[c] - this.W[r * this.cols + c];
    return quadForm(this.H, e, this.cols);
  }
  objective(st: RowState): number {
    const e = new Float64Array(this.cols);
    for (let c = 0; c < this.cols; c++) e[c] = st.q[c] - st.w[c];
    return quadForm(this.Hf, e, this.cols);
  }
  /** apply a move on coordinates idx by delta (values); g += H' [:, idx] delta */
  apply(st: RowState, idx: ArrayLike<number>, newCodes: ArrayLike<number>) {
    const { cols, Hf } = this;
    for (let a = 0; a < idx.length; a++) {
      const i = idx[a];
      const nq = dequant(newCodes[a], st.s[i], st.z[i]);
      const d = nq - st.q[i];
      st.codes[i] = newCodes[a];
      st.q[i] = nq;
      if (d !== 0) for (let j = 0; j < cols; j++) st.g[j] += d * Hf[j * cols + i];
    }
  }
}

/** Greedy CD on one row state; returns the caller-loss trajectory. */
function cdRow(P: Problem, st: RowState, iters: number, loss0: number): { traj: number[]; moves: number } {
  const { cols, Hf, maxq, dead } = P;
  const traj = [loss0];
  let loss = loss0;
  let moves = 0;
  for (let it = 0; it < iters; it++) {
    let best = 0;
    let bi = -1;
    let bc = 0;
    for (let i = 0; i < cols; i++) {
      const hii = Hf[i * cols + i];
      const t = st.q[i] - st.g[i] / hii;
      const c = quant(t, st.s[i], st.z[i], maxq);
      const d = dequant(c, st.s[i], st.z[i]) - st.q[i];
      const gain = -(2 * d * st.g[i] + d * d * hii);
      if (gain > best) { best = gain; bi = i; bc = c; }
    }
    if (bi < 0) break;
    if (dead[bi]) {
      // caller's loss does not see a dead column
    } else loss -= best;
    P.apply(st, [bi], [bc]);
    traj.push(loss);
    moves++;
  }
  return { traj, moves };
}

function finish(P: Problem, states: RowState[], scales: Float64Array, zeros: Float64Array, loss: Float64Array[], moves: Int32Array): CdResult {
  const { rows, cols } = P;
  const codes = new Int32Array(rows * cols);
  const Q = new Float64Array(rows * cols);
  const objective = new Float64Array(rows);
  states.forEach((st, r) => {
    codes.set(st.codes, r * cols);
    Q.set(st.q, r * cols);
    objective[r] = P.objective(st);
  });
  return { codes, scales, zeros, gIdx: P.gIdx, Q, loss, moves, objective };
}

export function cd(W: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number, opt: CdOptions): CdResult {
  const P = new Problem(W, H, rows, cols, opt.bits, opt.groupSize ?? -1, opt.init);
  const iters = opt.iters ?? cols;
  const states: RowState[] = [];
  const loss: Float64Array[] = [];
  const moves = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const st = P.row(r, opt.init);
    const res = cdRow(P, st, iters, P.callerRowLoss(r, st.q));
    states.push(st);
    loss.push(Float64Array.from(res.traj));
    moves[r] = res.moves;
  }
  return finish(P, states, Float64Array.from(opt.init.scales), Float64Array.from(opt.init.zeros), loss, moves);
}

// ---------------------------------------------------------------------------------------
// BCD

export interface BcdOptions extends CdOptions { block?: number; actOrder?: boolean; order?: ArrayLike<number> }

export function bcd(W: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number, opt: BcdOptions): CdResult {
  const P = new Problem(W, H, rows, cols, opt.bits, opt.groupSize ?? -1, opt.init);
  const { Hf, maxq, dead } = P;
  const iters = opt.iters ?? cols;
  const k = opt.block ?? 2;
  const order = opt.order ? Array.from(opt.order) : opt.actOrder ? Array.from(actOrderPerm(Hf, cols)) : range(0, cols);
  const blocks: number[][] = [];
  for (let b = 0; b < cols; b += k) blocks.push(order.slice(b, b + k));
  const factors = blocks.map((B) => cholesky(subMatrix(Hf, cols, B), B.length));
  const HBB = blocks.map((B) => subMatrix(Hf, cols, B));

  const states: RowState[] = [];
  const loss: Float64Array[] = [];
  const moves = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const st = P.row(r, opt.init);
    let cur = P.callerRowLoss(r, st.q);
    const traj = [cur];
    let nm = 0;
    for (let it = 0; it < iters; it++) {
      let best = 0;
      let bestB = -1;
      let bestCodes: number[] = [];
      let bestDelta: number[] = [];
      blocks.forEach((B, bi) => {
        const m = B.length;
        const gB = B.map((i) => st.g[i]);
        let dstar: ArrayLike<number>;
        const L = factors[bi];
        if (L) dstar = cholSolve(L, m, gB.map((v) => -v));
        else dstar = B.map((i, a) => -gB[a] / Hf[i * cols + i]);
        const lo: number[] = [];
        const hi: number[] = [];
        B.forEach((i, a) => {
          const t = st.q[i] + dstar[a];
          const u = t / st.s[i];
          const clamp = (c: number) => (c < 0 ? 0 : c > maxq ? maxq : c);
          lo.push(clamp(Math.floor(u) + st.z[i]));
          hi.push(clamp(Math.ceil(u) + st.z[i]));
        });
        for (let mask = 0; mask < 1 << m; mask++) {
          const cs = B.map((_, a) => ((mask >> a) & 1 ? hi[a] : lo[a]));
          const d = B.map((i, a) => dequant(cs[a], st.s[i], st.z[i]) - st.q[i]);
          let score = 0;
          for (let a = 0; a < m; a++) score += 2 * d[a] * gB[a];
          score += quadForm(HBB[bi], d, m);
          const gain = -score;
          if (gain > best) { best = gain; bestB = bi; bestCodes = cs; bestDelta = d; }
        }
      });
      if (bestB < 0) break;
      // caller's loss: remove the dead coordinates' own terms (H' row of a dead column is e_i)
      let change = -best;
      blocks[bestB].forEach((i, a) => {
        if (dead[i]) change -= 2 * bestDelta[a] * st.g[i] + bestDelta[a] * bestDelta[a];
      });
      cur += change;
      P.apply(st, blocks[bestB], bestCodes);
      traj.push(cur);
      nm++;
    }
    states.push(st);
    loss.push(Float64Array.from(traj));
    moves[r] = nm;
  }
  return finish(P, states, Float64Array.from(opt.init.scales), Float64Array.from(opt.init.zeros), loss, moves);
}

// ---------------------------------------------------------------------------------------
// Refit (one round: refit pass, then CD on the new grid)

export interface RefitResult extends CdResult {
  /** per row: number of groups whose grid was replaced */
  accepted: Int32Array;
  /** per row caller's loss: before the round, after the refit pass, after CD */
  lossBefore: Float64Array; lossAfterRefit: Float64Array; lossAfterCd: Float64Array;
}

export function refit(W: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number, opt: CdOptions): RefitResult {
  const sym = opt.sym ?? false;
  const P = new Problem(W, H, rows, cols, opt.bits, opt.groupSize ?? -1, opt.init);
  const { Hf, maxq, groups, gIdx } = P;
  const iters = opt.iters ?? cols;
  const scales = Float64Array.from(opt.init.scales);
  const zeros = Float64Array.from(opt.init.zeros);
  const members: number[][] = Array.from({ length: groups }, () => []);
  for (let c = 0; c < cols; c++) members[gIdx[c]].push(c);

  const states: RowState[] = [];
  const loss: Float64Array[] = [];
  const moves = new Int32Array(rows);
  const accepted = new Int32Array(rows);
  const lossBefore = new Float64Array(rows);
  const lossAfterRefit = new Float64Array(rows);
  const lossAfterCd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const st = P.row(r, opt.init);
    lossBefore[r] = P.callerRowLoss(r, st.q);
    for (let gi = 0; gi < groups; gi++) {
      const G = members[gi];
      const m = G.length;
      if (m === 0) continue;
      const HGG = subMatrix(Hf, cols, G);
      const c = G.map((i) => st.codes[i]);
      const qG = G.map((i) => st.q[i]);
      const gG = G.map((i) => st.g[i]);
      // rhs = H_GG q_G - g_G
      const rhs = G.map((_, a) => {
        let t = 0;
        for (let b = 0; b < m; b++) t += HGG[a * m + b] * qG[b];
        return t - gG[a];
      });
      let z = zeros[r * groups + gi];
      if (!sym) {
        // values a*c - b: M = [c, -1]; (M^T H M) (a, b) = M^T rhs
        const one = new Array(m).fill(-1);
        const Hc = matVec(HGG, c, m);
        const H1 = matVec(HGG, one, m);
        const A11 = dot(c, Hc), A12 = dot(c, H1), A22 = dot(one, H1);
        const b1 = dot(c, rhs), b2 = dot(one, rhs);
        const det = A11 * A22 - A12 * A12;
        const tr = A11 + A22;
        if (Math.abs(det) > 1e-12 * tr * tr) {
          const a = (b1 * A22 - A12 * b2) / det;
          const b = (A11 * b2 - A12 * b1) / det;
          if (a > 0 && Number.isFinite(a) && Number.isFinite(b)) {
            const zz = roundHalfEven(b / a);
            z = zz < 0 ? 0 : zz > maxq ? maxq : zz;
          }
        }
      }
      const v = c.map((ci) => ci - z);
      const Hv = matVec(HGG, v, m);
      const den = dot(v, Hv);
      if (!(den > 0)) continue;
      const a = dot(v, rhs) / den;
      if (!(a > 0) || !Number.isFinite(a)) continue;
      const d = G.map((i, k) => a * v[k] - st.q[i]);
      const change = 2 * dot(d, gG) + quadForm(HGG, d, m);
      if (!(change < 0)) continue;
      scales[r * groups + gi] = a;
      zeros[r * groups + gi] = z;
      G.forEach((i, k) => {
        st.s[i] = a;
        st.z[i] = z;
        st.q[i] = dequant(st.codes[i], a, z);
        for (let j = 0; j < cols; j++) st.g[j] += d[k] * Hf[j * cols + i];
      });
      accepted[r]++;
    }
    // refresh g exactly before CD (the incremental update above is exact up to rounding)
    st.g = P.grad(st.q, st.w);
    lossAfterRefit[r] = P.callerRowLoss(r, st.q);
    const res = cdRow(P, st, iters, lossAfterRefit[r]);
    lossAfterCd[r] = P.callerRowLoss(r, st.q);
    states.push(st);
    loss.push(Float64Array.from(res.traj));
    moves[r] = res.moves;
  }
  const base = finish(P, states, scales, zeros, loss, moves);
  return { ...base, accepted, lossBefore, lossAfterRefit, lossAfterCd };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
function matVec(A: ArrayLike<number>, x: ArrayLike<number>, m: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < m; i++) {
    let t = 0;
    for (let j = 0; j < m; j++) t += A[i * m + j] * x[j];
    out.push(t);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Random problems

/** mulberry32: tiny seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal sampler (Box-Muller) over a uniform source. */
export function gaussian(rand: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) { const s = spare; spare = null; return s; }
    let u = 0;
    while (u === 0) u = rand();
    const v = rand();
    const rad = Math.sqrt(-2 * Math.log(u));
    spare = rad * Math.sin(2 * Math.PI * v);
    return rad * Math.cos(2 * Math.PI * v);
  };
}

export interface ProblemOptions {
  /** heavy-tailed weights: ~3% of weights scaled by 5..15 */
  outliers?: boolean;
  /** number of dead columns (their X column is 0, so H_ii = 0 exactly) */
  deadCols?: number;
  /** correlated columns: X = latent factors (cols/4) mixed + small noise */
  correlated?: boolean;
  /** make row floor(rows/2) all zero */
  zeroRow?: boolean;
}

/** W [rows, cols] ~ N(0, 1) (+ options); X [n, cols] with per-column scales; H = 2/n X^T X. */
export function randomProblem(rows: number, cols: number, n: number, seed: number, opt: ProblemOptions = {}) {
  const rand = mulberry32(seed);
  const gauss = gaussian(rand);
  const W = new Float64Array(rows * cols);
  for (let i = 0; i < W.length; i++) {
    let w = gauss();
    if (opt.outliers && rand() < 0.03) w *= 5 + 10 * rand();
    W[i] = w;
  }
  if (opt.zeroRow && rows > 0) W.fill(0, Math.floor(rows / 2) * cols, (Math.floor(rows / 2) + 1) * cols);
  const colScale = new Float64Array(cols);
  for (let j = 0; j < cols; j++) colScale[j] = Math.exp(0.5 * gauss());
  const X = new Float64Array(n * cols);
  if (opt.correlated) {
    const f = Math.max(2, Math.floor(cols / 4));
    const mix = new Float64Array(f * cols);
    for (let i = 0; i < mix.length; i++) mix[i] = gauss();
    for (let k = 0; k < n; k++) {
      const lat = Array.from({ length: f }, () => gauss());
      for (let j = 0; j < cols; j++) {
        let s = 0;
        for (let a = 0; a < f; a++) s += lat[a] * mix[a * cols + j];
        X[k * cols + j] = colScale[j] * (s / Math.sqrt(f) + 0.1 * gauss());
      }
    }
  } else {
    for (let k = 0; k < n; k++) for (let j = 0; j < cols; j++) X[k * cols + j] = colScale[j] * gauss();
  }
  const deadList: number[] = [];
  const nd = Math.min(opt.deadCols ?? 0, cols);
  while (deadList.length < nd) {
    const j = Math.floor(rand() * cols);
    if (!deadList.includes(j)) deadList.push(j);
  }
  for (const j of deadList) for (let k = 0; k < n; k++) X[k * cols + j] = 0;
  const H = hessianOneShot(X, n, cols);
  return { W, H, X, n, rows, cols, dead: deadList.sort((a, b) => a - b) };
}
