// The H side of a layer, computed once and shared read-only by every band of rows (and by
// every layer that shares the input: q/k/v, gate/up): validation, symmetrization, dead
// columns, act-order, GPTQ's factor, the positive-semidefiniteness check, g_idx. It is
// computed where H already is, in the kernel; a portable copy (plain arrays) is made only for
// solvers elsewhere.
import { defaultKernel, type Kernel } from './kernel.js';
import { planLayer, resolveSolver, type SolverOptions, type SolverSpec } from './options.js';
import { actOrder, deadColumns, gptqFactor, groupIndex } from './gptq.js';
import { LayerSession } from './session.js';
import type { PreparedLayer } from './types.js';
import type { ParallelRunner } from './runner.js';
import { PSD_DAMPING, assertFiniteResident, checkPositiveSemidefinite, validateHessianShape, validateResidentHessian } from './validate.js';

/**
 * Prepares the layer whose H ([cols, cols], accumulated in `kernel`) is at `h`, taking
 * ownership of that allocation (it becomes the session's symmetrized H, with no copy). The
 * session solves bands on this kernel; `portable()` gives the arrays for solvers elsewhere.
 * `runner`: shares GPTQ's factorization among threads (a WorkerPool's, over a shared kernel).
 */
export function prepareResident(kernel: Kernel, h: number, cols: number, solver: SolverOptions | SolverSpec = {}, runner?: ParallelRunner): LayerSession {
  let owned = h;
  try {
    const plan = planLayer(resolveSolver(solver), cols);
    validateResidentHessian(kernel, h, cols);
    // (H + H^T) / 2 in WASM, so row i of H is exactly its column i (CD reads columns as rows).
    kernel.exports.symmetrize(h, cols);
    assertFiniteResident(kernel, h, cols * cols, 'hessian (symmetrized: (H + H^T) / 2 overflows float32)');
    const dead = deadColumns(kernel, h, cols);
    const { spec } = plan;
    const m = kernel.f32(h, cols * cols);
    const perm = spec.actOrder ? actOrder(Float32Array.from({ length: cols }, (_, i) => m[i * cols + i])) : null;
    const gptq = spec.start === 'gptq' ? gptqFactor(kernel, h, cols, perm, spec.damp, runner) : null;
    // CD, BCD and RTN refuse an H that is not positive semidefinite up to damping (their
    // descent and losses assume it); GPTQ's Cholesky of H + dampUsed * mean(diag) * I already
    // shows it when dampUsed is at most PSD_DAMPING. GPTQ itself handles a failed Cholesky as
    // ALGORITHMS.md step 3 says (more damping, reported), so plain GPTQ is not refused here;
    // a loss that comes out negative still is (checkLosses).
    if (spec.method !== 'gptq' && (!gptq || gptq.dampUsed > PSD_DAMPING)) {
      try {
        checkPositiveSemidefinite(kernel, h, cols, runner);
      } catch (e) {
        if (gptq) kernel.free(gptq.factor);
        throw e;
      }
    }
    owned = 0; // the session owns h (and the factor) from here, and frees them if it fails
    return new LayerSession(kernel, { plan, dead, perm, dampUsed: gptq?.dampUsed ?? null, gIdx: groupIndex(plan, perm) }, h, gptq?.factor ?? 0);
  } finally {
    if (owned) kernel.free(owned);
  }
}

/** The H side of a layer as plain arrays (a PreparedLayer any band solver can take), from
 * H [cols, cols] given in JavaScript. */
export async function prepareLayer(
  hessian: Float32Array, cols: number, solver: SolverOptions | SolverSpec = {}, kernel?: Kernel,
): Promise<PreparedLayer> {
  resolveSolver(solver); // option errors before shape errors, as callers expect
  validateHessianShape(hessian, cols); // its values are checked in the kernel (prepareResident)
  const k = kernel ?? (await defaultKernel());
  const session = prepareResident(k, k.put(hessian), cols, solver);
  try {
    return session.portable();
  } finally {
    session.free();
  }
}
