// Checks on what callers hand the solvers, done once in TypeScript before any kernel runs.
import { HessianError, ShapeError, assertFinite } from './errors.js';
import type { Kernel } from './kernel.js';
import type { WeightMatrix } from './types.js';

/** Relative tolerance for H's symmetry: accumulations of X^T X in another order differ by
 * rounding, not by more. */
const SYMMETRY_TOLERANCE = 1e-4;

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
 * non-negative diagonal (H = X^T X is positive semidefinite). */
export function validateHessian(hessian: Float32Array, cols: number): void {
  if (!(hessian instanceof Float32Array)) throw new ShapeError('hessian must be a Float32Array');
  if (hessian.length !== cols * cols) {
    throw new ShapeError(`hessian has ${hessian.length} values, expected cols * cols = ${cols} * ${cols} = ${cols * cols} (H is [in, in])`);
  }
  assertFinite(hessian, 'hessian');
  for (let i = 0; i < cols; i++) {
    const d = hessian[i * cols + i];
    if (d < 0) throw new HessianError(`hessian has a negative diagonal entry H[${i},${i}] = ${d}; H = X^T X is positive semidefinite`);
    for (let j = i + 1; j < cols; j++) {
      const a = hessian[i * cols + j], b = hessian[j * cols + i];
      const scale = Math.abs(a) + Math.abs(b) + Math.abs(d) + Math.abs(hessian[j * cols + j]);
      if (Math.abs(a - b) > SYMMETRY_TOLERANCE * scale) {
        throw new HessianError(`hessian is not symmetric: H[${i},${j}] = ${a} but H[${j},${i}] = ${b}`);
      }
    }
  }
}

/** validateHessian for an H resident in a kernel (read through a view: no copy). */
export function validateResidentHessian(kernel: Kernel, h: number, cols: number): void {
  validateHessian(kernel.f32(h, cols * cols), cols);
}
