// The data a layer solve takes and gives, shared by every layer above the core (parallel
// execution, formats, the model pipeline).
import type { LayerPlan, Method, Clip, Init } from './options.js';

export interface WeightMatrix {
  /** Row-major [rows = out, cols = in], PyTorch's layout. */
  data: Float32Array;
  rows: number;
  cols: number;
}

/** A quantized weight matrix: codes on per-(row, group) grids, value = scale * (code - zero).
 * The one representation every writer (GPTQ checkpoint, dequantized model) and the pipeline use. */
export interface QuantizedWeights {
  rows: number;
  cols: number;
  bits: number;
  groups: number;
  /** Integer codes in [0, 2^bits - 1], row-major [rows, cols], original column order. */
  codes: Uint8Array;
  /** [rows, groups] row-major. */
  scales: Float32Array;
  /** Integer zero points, [rows, groups] row-major. */
  zeros: Float32Array;
  /** Group of each original column, [cols]. */
  gIdx: Int32Array;
}

/** Everything derived from H alone: computed once per layer, read-only for every band. */
export interface PreparedLayer {
  plan: LayerPlan;
  /** Symmetrized H with dead columns' diagonal set to 1 (CD, BCD, refit, OWC). */
  hessian: Float32Array;
  /** Indices of dead columns (H_ii == 0). */
  dead: Int32Array;
  /** Act-order permutation (working column -> original column), or null. */
  perm: Int32Array | null;
  /** GPTQ: upper Cholesky factor of the damped, permuted H^-1. */
  gptqFactor: Float32Array | null;
  /** Damping actually used (fraction of mean diag H); null when GPTQ is not involved. */
  dampUsed: number | null;
  /** g_idx: group of each original column. */
  gIdx: Int32Array;
}

/** One band's solution: rows [r0, r1) of the layer. The dequantized values are not carried:
 * they are scale * (code - zero), recomputed exactly wherever needed. */
export interface BandResult {
  r0: number;
  r1: number;
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Float32Array;
  rowLoss: Float64Array;
  /** The RTN baseline's row losses, when the solve was asked for them (SolveOptions.baseline). */
  rtnRowLoss: Float64Array | null;
  /** CD/BCD moves per row (last descent round); null without descent. */
  moves: Int32Array | null;
}

export interface LayerResult extends QuantizedWeights {
  method: Method;
  /** Columns per group; -1 for per-channel. */
  groupSize: number;
  clip: Clip;
  init: Init | null;
  perm: Int32Array | null;
  /** sum_r (q_r - w_r)^T H (q_r - w_r) with H as given. */
  loss: number;
  /** The same loss for round-to-nearest on min-max grids, the baseline: only when asked for
   * (RunOptions.baseline), as it costs a quadratic form per row; else null. */
  rtnLoss: number | null;
  rowLoss: Float64Array;
  /** Damping used by GPTQ (raised from `damp` if Cholesky failed); null without GPTQ. */
  dampUsed: number | null;
  /** CD/BCD moves per row (last descent round). */
  moves: Int32Array | null;
  /** The quantized weights, scale * (code - zero), computed in WASM. */
  dequantize(): Float32Array;
}
