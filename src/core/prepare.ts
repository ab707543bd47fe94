// The H side of a layer, computed once and shared read-only by every band of rows (and by
// every layer that shares the input: q/k/v, gate/up): validation, symmetrization, dead
// columns, act-order, GPTQ's factor, the positive-semidefiniteness check, g_idx.
import { defaultKernel, type Kernel } from './kernel.js';
import { planLayer, resolveSolver, type SolverOptions, type SolverSpec } from './options.js';
import { actOrder, deadColumns, gptqFactor, groupIndex } from './gptq.js';
import type { PreparedLayer } from './types.js';
import { PSD_DAMPING, checkPositiveSemidefinite, validateHessian } from './validate.js';
import { assertFinite } from './errors.js';

export async function prepareLayer(
  hessian: Float32Array, cols: number, solver: SolverOptions | SolverSpec = {}, kernel?: Kernel,
): Promise<PreparedLayer> {
  const plan = planLayer(resolveSolver(solver), cols);
  validateHessian(hessian, cols);
  const k = kernel ?? (await defaultKernel());
  // (H + H^T) / 2 in WASM, so row i of H is exactly its column i (CD reads columns as rows).
  const h = k.scoped((_alloc, put) => {
    const ptr = put(hessian);
    k.exports.symmetrize(ptr, cols);
    return k.f32(ptr, cols * cols).slice();
  });
  assertFinite(h, 'hessian (symmetrized: (H + H^T) / 2 overflows float32)');
  const dead = deadColumns(h, cols);
  const { spec } = plan;
  const perm = spec.actOrder ? actOrder(h, cols) : null;
  const gptq = spec.start === 'gptq' ? gptqFactor(k, h, cols, perm, spec.damp) : null;
  // Every method refuses an H that is not positive semidefinite up to damping; GPTQ's Cholesky
  // of H + dampUsed * mean(diag) * I already shows it when dampUsed is at most PSD_DAMPING.
  if (!gptq || gptq.dampUsed > PSD_DAMPING) checkPositiveSemidefinite(k, h, cols);
  return {
    plan,
    hessian: h,
    dead,
    perm,
    gptqFactor: gptq?.factor ?? null,
    dampUsed: gptq?.dampUsed ?? null,
    gIdx: groupIndex(plan, perm),
  };
}
