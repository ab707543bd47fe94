// Checks on what callers hand the solvers, done once in TypeScript before any kernel runs, and
// on what the solvers hand back: a result is either within the float32 arithmetic the
// algorithms assume, or refused with a typed error that names the row and the problem.
import { cholesky } from './linalg.js';
import type { ParallelRunner } from './runner.js';
import { HessianError, KernelError, NonFiniteError, ShapeError, assertFinite } from './errors.js';
import type { Kernel } from './kernel.js';
import type { LayerPlan } from './options.js';
import type { WeightMatrix } from './types.js';

/** Relative tolerance for H's symmetry: accumulations of X^T X in another order differ by
 * rounding, not by more. */
const SYMMETRY_TOLERANCE = 1e-4;

/** What a zero diagonal entry of H may stand for: any true value below float32's normal range. */
const DEAD_DIAGONAL = 2 ** -126;

/** The largest finite float32. */
export const F32_MAX = 3.4028234663852886e38;

/**
 * "Positive semidefinite up to damping": H is accepted when H + PSD_DAMPING * mean(diag H) * I
 * has a Cholesky factor (in float32, after scaling H by 1 / max(diag H)), that is when no
 * eigenvalue of H lies below about -1% of its mean diagonal. H = (2/n) X^T X is PSD; built in
 * float32 it is PSD up to rounding, which moves its eigenvalues by orders of magnitude less
 * than that, so every real H passes, singular ones (fewer samples than columns, dead columns)
 * included. An H with a markedly negative eigenvalue is not a Hessian of squared errors: on it
 * every solver "improves" along the negative direction and reports a negative loss. 1% is
 * GPTQ's default damping (the reference's percdamp): GPTQ's own Cholesky of its damped H is
 * this check whenever its damping is at most 1%.
 * The check is on H as the solvers see it: symmetrized, dead diagonals set to 1.
 */
export const PSD_DAMPING = 0.01;

/** Throws ShapeError or NonFiniteError unless `weights` is a finite rows x cols Float32Array matrix. */
export function validateWeights(weights: WeightMatrix): void {
  if (weights === null || typeof weights !== 'object') throw new ShapeError('weights must be { data, rows, cols }');
  const { data, rows, cols } = weights;
  if (!(data instanceof Float32Array)) throw new ShapeError('weights.data must be a Float32Array');
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 1 || cols < 1) {
    throw new ShapeError(`weights rows and cols must be positive integers, got ${rows} x ${cols}`);
  }
  if (data.length !== rows * cols) {
    throw new ShapeError(`weights.data has ${data.length} values, expected rows * cols = ${rows} * ${cols} = ${rows * cols}`);
  }
  assertFinite(data, 'weights');
}

/** Throws unless `hessian` is a finite, symmetric cols x cols Float32Array with a
 * non-negative diagonal whose zero entries have zero rows and columns (H = X^T X is positive
 * semidefinite: a column no input ever reached is zero throughout). Definiteness itself is
 * checkPositiveSemidefinite's. */
export function validateHessian(hessian: Float32Array, cols: number): void {
  validateHessianShape(hessian, cols);
  assertFinite(hessian, 'hessian');
  for (let i = 0; i < cols; i++) {
    const d = hessian[i * cols + i];
    if (d < 0) throw new HessianError(`hessian has a negative diagonal entry H[${i},${i}] = ${d}; H = X^T X is positive semidefinite`);
    for (let j = i + 1; j < cols; j++) {
      const a = hessian[i * cols + j], b = hessian[j * cols + i];
      const dj = hessian[j * cols + j];
      // PSD means H_ij^2 <= H_ii H_jj; a zero diagonal in float32 stands for a true value
      // below 2^-126 (squares of tiny inputs underflow), so its row may hold only that much.
      const dead = d === 0 ? i : dj === 0 ? j : -1;
      if (dead >= 0) {
        const other = dead === i ? dj : d;
        if (Math.max(a * a, b * b) > DEAD_DIAGONAL * other) {
          throw new HessianError(`hessian is not positive semidefinite: H[${i},${j}] = ${a} although H[${dead},${dead}] = 0`);
        }
      }
      const scale = Math.abs(a) + Math.abs(b) + Math.abs(d) + Math.abs(dj);
      if (Math.abs(a - b) > SYMMETRY_TOLERANCE * scale) {
        throw new HessianError(`hessian is not symmetric: H[${i},${j}] = ${a} but H[${j},${i}] = ${b}`);
      }
    }
  }
}

/** validateHessian's shape tests alone (for an H about to be checked in a kernel). */
export function validateHessianShape(hessian: Float32Array, cols: number): void {
  if (!(hessian instanceof Float32Array)) throw new ShapeError('hessian must be a Float32Array');
  if (hessian.length !== cols * cols) {
    throw new ShapeError(`hessian has ${hessian.length} values, expected cols * cols = ${cols} * ${cols} = ${cols * cols} (H is [in, in])`);
  }
}

/** validateHessian for an H resident in a kernel: the same tests in WASM (check.ts
 * hessianFlawed, a tiled pass instead of JavaScript's row-by-column walk); only a flawed H is
 * walked again here, so the error names its first flaw exactly as validateHessian does. */
export function validateResidentHessian(kernel: Kernel, h: number, cols: number): void {
  if (kernel.exports.hessianFlawed(h, cols, SYMMETRY_TOLERANCE, DEAD_DIAGONAL) === 0) return;
  validateHessian(kernel.f32(h, cols * cols), cols);
  throw new KernelError('hessianFlawed refused an H that validateHessian accepts');
}

/** assertFinite for `count` float32 resident in a kernel at `p`, in WASM (SIMD). */
export function assertFiniteResident(kernel: Kernel, p: number, count: number, what: string): void {
  const i = kernel.exports.nonFiniteIndex(p, count);
  if (i >= 0) throw new NonFiniteError(`${what} has a non-finite value (${kernel.f32(p, count)[i]}) at index ${i}`);
}

/** Throws HessianError unless the symmetric H resident at `h` (as the solvers see it) is
 * positive semidefinite up to damping (PSD_DAMPING): one float32 Cholesky in WASM on a scaled
 * copy, cols^3 / 3 multiply-adds. */
export function checkPositiveSemidefinite(kernel: Kernel, h: number, cols: number, runner?: ParallelRunner): void {
  const x = kernel.exports;
  const failed = kernel.scoped((alloc) => {
    const work = alloc(x.psdCheckScratch(cols));
    // With a runner (a pool's threads on shared memory), the Cholesky's pieces shared: same bits.
    if (!runner) return x.psdCheck(h, cols, PSD_DAMPING, work);
    if (!x.psdScaled(h, cols, PSD_DAMPING, work)) return 1;
    return cholesky(kernel, runner, work, cols, work + cols * cols * 4);
  });
  if (failed !== 0) {
    throw new HessianError(`hessian is not positive semidefinite: H + ${PSD_DAMPING} * mean(diag H) * I has no Cholesky factor (pivot ${failed - 1} fails), so H has an eigenvalue below -${PSD_DAMPING * 100}% of its mean diagonal`);
  }
}

/**
 * What the grid arithmetic of a layer can take, from H alone (see checkWeightRange).
 * hNorm = ||H||_1, the largest column sum of |H_ij| of H as the solvers see it.
 */
export interface WeightLimits {
  plan: LayerPlan;
  hNorm: number;
  /** Dead columns (zeroed in W before grids are chosen from it), as a mask. */
  dead: Uint8Array;
  /** Column -> group for each grid layout a band uses (consecutive columns; g_idx if it differs). */
  layouts: Int32Array[];
}

export function weightLimits(plan: LayerPlan, kernel: Kernel, h: number, dead: Int32Array, gIdx: Int32Array): WeightLimits {
  const { cols } = plan;
  const sums = kernel.scoped((alloc) => {
    const out = alloc(cols * 8);
    kernel.exports.columnAbsSums(h, cols, out);
    return kernel.f64(out, cols).slice();
  });
  let hNorm = 0;
  for (let j = 0; j < cols; j++) if (sums[j] > hNorm) hNorm = sums[j];
  const mask = new Uint8Array(cols);
  for (const d of dead) mask[d] = 1;
  const consecutive = Int32Array.from({ length: cols }, (_, c) => Math.floor(c / plan.groupWidth));
  const layouts = gIdx.every((g, c) => g === consecutive[c]) ? [consecutive] : [consecutive, gIdx];
  return { plan, hNorm, dead: mask, layouts };
}

/** The least value that rounds to Infinity as an fp16 (65504 is the largest finite one). */
const HALF_OVERFLOW = 65520;

/** Largest |w| of a group that is not zero but too small for a normal-range grid step. */
const SMALLEST_GROUP_MAX = 2 ** -115;

/**
 * Refuses (NonFiniteError) rows [r0, r1) whose magnitude leaves the float32 range of the grid
 * arithmetic, before any kernel sees them. The bounds follow from the arithmetic, per row, with
 * M = max |w_r|, N = ||H||_1 and a = 7/3 M:
 * - scale = (hi - lo) / maxq with hi - lo <= 2M: finite iff 2M <= F32_MAX (M < 2^127).
 * - Every error q - w and every descent move d lies in the grid's span, which is the row's
 *   range widened by half a step at most: |e|, |d| <= 2M (1 + 1/(2 maxq)) <= a (maxq >= 3).
 *   The float32 products with H (the loss's E H, CD's gradient g = H (q - w) and its updates
 *   d H[:, i]) are then at most a N: required a N <= F32_MAX / 4 (a factor 4 for the rounding
 *   of the sums and the gradient's drift over many updates).
 * - CD's float32 gain 2 d g_i + d^2 H_ii is at most 3 a^2 N; BCD's over a block of k
 *   coordinates at most 3 k a^2 N: required <= F32_MAX / 4.
 * - The MSE clip search sums |e|^2.4 <= max(1, a)^3 over a group in float32: required
 *   groupWidth max(1, a)^3 <= F32_MAX / 4 (else every candidate scores Inf and the search
 *   returns no grid of the row at all).
 * - Underflow: the smallest clip candidate's step is 0.21 M_g / maxq for a group whose largest
 *   |w| is M_g; below 2^-126 it is subnormal (imprecise), below 2^-150 zero (then x / scale is
 *   NaN). M_g >= 2^-115 keeps it normal at 8 bits; all-zero groups use the fixed grid (-1, 1).
 * GPTQ's sweep moves weights by its error feedback beyond these bounds in principle; what it
 * produces is checked after the band (checkBandGrids, checkLosses).
 */
export function checkWeightRange(limits: WeightLimits, data: Float32Array, r0: number, r1: number): void {
  const { plan, hNorm, dead, layouts } = limits;
  const { cols, spec } = plan;
  const quarter = F32_MAX / 4;
  const groupMax = new Float64Array(plan.groups);
  const liveMax = new Float64Array(plan.groups);
  for (let r = r0; r < r1; r++) {
    const row = r * cols;
    let m = 0;
    for (let c = 0; c < cols; c++) {
      const v = Math.abs(data[row + c]);
      if (v > m) m = v;
    }
    const a = (7 / 3) * m;
    const refuse = (why: string) => {
      throw new NonFiniteError(`weights row ${r} has max |w| = ${m}, too large for float32 grid arithmetic with this hessian (||H||_1 = ${hNorm}): ${why}`);
    };
    if (2 * m > F32_MAX) refuse('the grid step (max - min) / maxq overflows');
    if (spec.scales === 'f16' && 2 * m >= HALF_OVERFLOW * plan.maxq) refuse('the grid step (max - min) / maxq, up to 2 max|w| / maxq, rounds to Infinity as an fp16 scale (scales: \'f32\' keeps it)');
    if (a * hNorm > quarter) refuse('the products (q - w) H of the loss and the gradient overflow');
    if (spec.method === 'cd' && 3 * a * a * hNorm > quarter) refuse("CD's gains 2 d g + d^2 H_ii overflow");
    if (spec.method === 'bcd' && 3 * spec.blockSize * a * a * hNorm > quarter) refuse("BCD's block gains overflow");
    if (spec.clip === 'mse') {
      const big = Math.max(1, a);
      if (plan.groupWidth * big * big * big > quarter) refuse("the MSE clip search's sums of |error|^2.4 overflow");
    }
    for (const layout of layouts) {
      groupMax.fill(0);
      liveMax.fill(0);
      for (let c = 0; c < cols; c++) {
        const g = layout[c];
        const v = Math.abs(data[row + c]);
        if (v > groupMax[g]) groupMax[g] = v;
        if (!dead[c] && v > liveMax[g]) liveMax[g] = v;
      }
      for (let g = 0; g < plan.groups; g++) {
        for (const mg of [groupMax[g], liveMax[g]]) {
          if (mg !== 0 && mg < SMALLEST_GROUP_MAX) {
            throw new NonFiniteError(`weights row ${r}, group ${g}: its largest |w| is ${mg}, not 0 but below 2^-115, too small for a float32 grid step (it would be subnormal or 0)`);
          }
        }
      }
    }
  }
}

/**
 * Checks a band's grids after it is solved: every scale finite, positive and small enough that
 * scale * (code - zero) stays finite (scale * maxq <= F32_MAX), every zero finite. A zero that
 * is not an integer in [0, maxq] breaks the solvers' own invariant (KernelError).
 */
export function checkBandGrids(plan: LayerPlan, scales: Float32Array, zeros: Float32Array, r0: number): void {
  const { groups, maxq } = plan;
  for (let i = 0; i < scales.length; i++) {
    const s = scales[i], z = zeros[i];
    const where = `row ${r0 + Math.floor(i / groups)}, group ${i % groups}`;
    if (!(s > 0) || !(s * maxq <= F32_MAX)) throw new NonFiniteError(`the solved grid of ${where} has scale ${s}: not a positive float32 step whose grid values stay finite`);
    if (!Number.isFinite(z)) throw new NonFiniteError(`the solved grid of ${where} has zero ${z}`);
    if (!Number.isInteger(z) || z < 0 || z > maxq) throw new KernelError(`the solved grid of ${where} has zero ${z}, not an integer in [0, ${maxq}]`);
  }
}

/**
 * Checks a band's row losses: finite, and not below zero by more than `tolerance` (per row,
 * from the kernel's lossTolerance: the damping PSD_DAMPING allows plus the loss's rounding).
 * A loss further below zero proves H is not positive semidefinite (HessianError).
 */
export function checkLosses(losses: Float64Array, tolerance: Float64Array, r0: number, what: string): void {
  for (let i = 0; i < losses.length; i++) {
    const l = losses[i];
    if (!Number.isFinite(l)) throw new NonFiniteError(`the ${what} loss of row ${r0 + i} is ${l}: the float32 arithmetic overflowed`);
    if (l < -tolerance[i]) {
      throw new HessianError(`the ${what} loss of row ${r0 + i} is ${l}, below zero by more than rounding allows (${tolerance[i]}): the hessian is not positive semidefinite`);
    }
  }
}
