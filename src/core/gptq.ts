// GPTQ as ALGORITHMS.md states it (IST-DASLab gptq.py `fasterquant`), steps 1-7 in one place.
// The H side (steps 1-4) is computed once per layer by prepareLayer; the W side (steps 5-7)
// runs per band of rows, the sweep itself in WASM (assembly/gptq.ts).
//   1. dead columns: H_ii == 0 -> H_ii = 1 and W[:, i] = 0        (deadColumns, session)
//   2. act-order: columns by descending diag(H), stable             (actOrder)
//   3. damping, retried x10 if the Cholesky fails                   (gptqFactor)
//   4. U = chol(H^-1), upper                                        (gptqFactor)
//   5. lazy blocks of `gptqBlock` columns, the GEMM update after each (gptqSweep -> kernel)
//   6. group grids: fixed up front (per-channel, static, OWC) or dynamic, from the weights as
//      they stood at the start of the current block                  (gptqSweep)
//   7. g_idx of each original column; undo the permutation          (groupIndex, gptqSweep)
import { upperCholeskyOfInverse } from './linalg.js';
import type { ParallelRunner } from './runner.js';
import { HessianError } from './errors.js';
import { assertFiniteResident } from './validate.js';
import type { Kernel } from './kernel.js';
import type { LayerPlan } from './options.js';
import { permuteColumns } from './permute.js';

/** Step 1: dead columns (H_ii == 0) of H resident at `h` get H_ii = 1; returns their indices. */
export function deadColumns(kernel: Kernel, h: number, cols: number): Int32Array {
  const m = kernel.f32(h, cols * cols);
  const dead: number[] = [];
  for (let i = 0; i < cols; i++) {
    if (m[i * cols + i] === 0) {
      dead.push(i);
      m[i * cols + i] = 1;
    }
  }
  return Int32Array.from(dead);
}

/** Step 2: working column -> original column, by descending diag(H), ties in column order. */
export function actOrder(diag: Float32Array): Int32Array {
  const idx = Array.from(diag, (_, i) => i);
  idx.sort((a, b) => (diag[b] > diag[a] ? 1 : diag[b] < diag[a] ? -1 : a - b));
  return Int32Array.from(idx);
}

/** How many times the damping is raised tenfold before H is declared unusable. */
const DAMP_ATTEMPTS = 5;

/** Steps 3-4: U = chol((P H P^T + damp * mean(diag) * I)^-1) of H resident at `h` (read only),
 * raising the damping tenfold while the Cholesky fails (ALGORITHMS.md step 3). Returns U (a
 * kernel allocation the caller owns) and the damping fraction used. */
export function gptqFactor(kernel: Kernel, h: number, cols: number, perm: Int32Array | null, damp: number, runner?: ParallelRunner): { factor: number; dampUsed: number } {
  const x = kernel.exports;
  const bytes = cols * cols * 4;
  const u = kernel.alloc(bytes);
  try {
    const percdamp = kernel.scoped((alloc, put) => {
      const hd = alloc(bytes);
      const scratch = alloc(x.upperCholeskyOfInverseScratch(cols));
      const permPtr = perm ? put(perm) : 0;
      let percdamp = damp;
      for (let attempt = 0; ; attempt++) {
        // The factorization consumes its input: start each attempt from H again.
        if (perm) x.permuteSquare(hd, h, cols, permPtr);
        else kernel.u8(hd, bytes).set(kernel.u8(h, bytes));
        x.addDamping(hd, cols, percdamp);
        // With a runner (a pool's threads on shared memory), the same pieces shared: same bits.
        const failed = runner ? upperCholeskyOfInverse(kernel, runner, u, hd, cols, scratch) : x.upperCholeskyOfInverse(u, hd, cols, scratch);
        if (failed === 0) return percdamp;
        // ALGORITHMS.md step 3: raise the damping tenfold and retry, a few times.
        if (attempt === DAMP_ATTEMPTS - 1) {
          throw new HessianError(`hessian is not positive semidefinite: H + ${percdamp} * mean(diag H) * I has no Cholesky factor`);
        }
        percdamp = percdamp > 0 ? percdamp * 10 : 0.01;
      }
    });
    assertFiniteResident(kernel, u, cols * cols, 'GPTQ factor chol(H^-1)');
    return { factor: u, dampUsed: percdamp };
  } catch (e) {
    kernel.free(u);
    throw e;
  }
}

/** Step 7: the group of each original column. Dynamic groups with act-order are formed in
 * permuted (working) order, as the reference does; every other grid covers consecutive columns. */
export function groupIndex(plan: LayerPlan, perm: Int32Array | null): Int32Array {
  const gIdx = new Int32Array(plan.cols);
  if (plan.perChannel) return gIdx;
  const permuted = perm !== null && plan.dynamicGroups;
  for (let j = 0; j < plan.cols; j++) gIdx[permuted ? perm![j] : j] = Math.floor(j / plan.groupWidth);
  return gIdx;
}

/** What the sweep needs from the session: kernel-resident H-side arrays and the layer's facts. */
export interface GptqContext {
  kernel: Kernel;
  plan: LayerPlan;
  perm: Int32Array | null;
  gIdx: Int32Array;
  /** U = chol(H^-1) in the kernel (working order). */
  factor: number;
  /** Symmetrized H with dead diagonals 1, in the kernel (OWC grids). */
  hessian: number;
  /** gridParams' search code for the plan's clip (see Kernel grid constants). */
  gridSearch: number;
}

/** Kernel pointers of one band (rows x cols): the weights as given, the dead-zeroed copy the
 * sweep overwrites, and the outputs. */
export interface GptqBand {
  rows: number;
  w: number;
  w0: number;
  scales: number;
  zeros: number;
  codes: number;
  q: number;
  /** At least gptqBandScratch and gridParamsScratch bytes. */
  scratch: number;
  /** Room for cols i32: column -> group in working order. */
  colGroup: number;
}

/** Steps 5-7 on a band: fixed grids (per-channel, static groups, OWC) or dynamic ones, the
 * sweep in working order, codes and values back in original order. w0 is consumed. */
export function gptqSweep(c: GptqContext, b: GptqBand): void {
  const { kernel: k, plan, perm } = c;
  const { cols } = plan;
  const x = k.exports;
  const { rows } = b;
  const { spec } = plan;
  if (!plan.dynamicGroups) {
    // Per-channel grids come from W before dead columns are zeroed (the reference calls
    // find_params first); static groups and OWC grids from the dead-zeroed W.
    const src = plan.perChannel && spec.clip !== 'owc' ? b.w : b.w0;
    x.gridParams(src, rows, cols, plan.groupWidth, plan.maxq, spec.sym, c.gridSearch, c.hessian, b.scales, b.zeros, b.scratch);
  }
  if (perm) k.f32(b.w0, rows * cols).set(permuteColumns(k.f32(b.w0, rows * cols), rows, cols, perm, false));
  const colGroup = k.i32(b.colGroup, cols);
  for (let j = 0; j < cols; j++) colGroup[j] = c.gIdx[perm ? perm[j] : j];
  x.gptqBand(b.w0, rows, cols, c.factor, plan.maxq, spec.sym, c.gridSearch, plan.groupWidth, plan.dynamicGroups, spec.gptqBlock, plan.groups, b.colGroup, b.scales, b.zeros, b.codes, b.q, b.scratch);
  if (perm) {
    k.u8(b.codes, rows * cols).set(permuteColumns(k.u8(b.codes, rows * cols), rows, cols, perm, true));
    k.f32(b.q, rows * cols).set(permuteColumns(k.f32(b.q, rows * cols), rows, cols, perm, true));
  }
}
