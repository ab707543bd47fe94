// quantizeLayer(): the layer API. It splits what to compute (solver options, resolved once)
// from how to run it (threads, a pool, abort, progress), prepares H once, and hands the rows
// to a BandSolver: this thread, a worker pool, or HTTP band workers. Same bits either way.
import { AbortError } from './core/errors.js';
import { defaultKernel, type Kernel } from './core/kernel.js';
import { mergeBands } from './core/merge.js';
import { resolveSolver, type SolverOptions, type SolverSpec } from './core/options.js';
import { prepareLayer } from './core/prepare.js';
import type { LayerResult, PreparedLayer, WeightMatrix } from './core/types.js';
import { validateWeights } from './core/validate.js';
import { LocalBandSolver, checkBandInputs, type BandSolver, type SolveOptions } from './parallel/bands.js';
import { WorkerPool, autoThreads, checkThreads } from './parallel/pool.js';
import { workersAvailable } from './core/runtime.js';

/** How a solve runs. None of these changes a result. */
export interface RunOptions {
  /** Worker threads: 1 solves on this thread; more solve row bands on a worker pool (same
   * bits). Default: the runtime's core count for layers large enough to gain from workers
   * (rows * cols^2 >= 2^29, e.g. 512 x 1024), else 1. Runtimes without workers (workerd)
   * always use 1. */
  threads?: number;
  /** Where to solve the row bands: a WorkerPool (reuses its workers across layers), a
   * FanoutPool (HTTP band workers), or any BandSolver. Overrides `threads`. */
  pool?: BandSolver;
  signal?: AbortSignal;
  onProgress?: SolveOptions['onProgress'];
  /** The kernel for preparation, merging and one-thread solves. Default: this realm's. */
  kernel?: Kernel;
}

/** quantizeLayer's options: the solver's and the run's in one object, for convenience. */
export type QuantizeOptions = SolverOptions & RunOptions;

/** Splits a QuantizeOptions into what to compute and how to run it. */
export function splitOptions(options: QuantizeOptions = {}): { solver: SolverSpec; run: RunOptions } {
  const { threads, pool, signal, onProgress, kernel, ...solver } = options;
  return { solver: resolveSolver(solver), run: { threads, pool, signal, onProgress, kernel } };
}

/**
 * Quantizes one linear layer W [out, in] given H [in, in] (H = 2/n X^T X of its inputs).
 * Resolves to codes, grids, g_idx and losses; `dequantize()` gives the quantized weights.
 */
export async function quantizeLayer(weights: WeightMatrix, hessian: Float32Array, options: QuantizeOptions = {}): Promise<LayerResult> {
  const { solver, run } = splitOptions(options);
  validateWeights(weights);
  if (run.signal?.aborted) throw new AbortError();
  const prepared = await prepareLayer(hessian, weights.cols, solver, run.kernel);
  return quantizePrepared(weights, prepared, run);
}

/**
 * Quantizes W with an H already prepared by prepareLayer (with its solver settings): layers
 * that share their input (q/k/v, gate/up) share one preparation, Cholesky factor included.
 */
export async function quantizePrepared(weights: WeightMatrix, prepared: PreparedLayer, run: RunOptions = {}): Promise<LayerResult> {
  validateWeights(weights);
  checkBandInputs(prepared, weights);
  if (run.signal?.aborted) throw new AbortError();
  const kernel = run.kernel ?? (await defaultKernel());
  const solve = (solver: BandSolver) => solver.solveBands(prepared, weights, { signal: run.signal, onProgress: run.onProgress });
  if (run.pool) return mergeBands(prepared, weights.rows, await solve(run.pool), kernel);
  const threads = checkThreads(run.threads) ?? (await autoThreads(weights.rows, weights.cols));
  if (threads > 1 && workersAvailable()) {
    const pool = new WorkerPool({ threads });
    try {
      return mergeBands(prepared, weights.rows, await solve(pool), kernel);
    } finally {
      pool.terminate();
    }
  }
  return mergeBands(prepared, weights.rows, await solve(new LocalBandSolver(kernel)), kernel);
}
