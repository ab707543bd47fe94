// quantizeLayer(): the layer API. It splits what to compute (solver options, resolved once)
// from how to run it (threads, a pool, abort, progress), prepares H once, and hands the rows
// to a BandSolver: this thread, a worker pool, or HTTP band workers. Same bits either way.
import { AbortError } from './core/errors.js';
import { defaultKernel, type Kernel } from './core/kernel.js';
import { mergeBands } from './core/merge.js';
import { resolveSolver, type SolverOptions, type SolverSpec } from './core/options.js';
import { prepareLayer } from './core/prepare.js';
import type { BandResult, LayerResult, PreparedLayer, WeightMatrix } from './core/types.js';
import { LayerSession } from './core/session.js';
import { validateWeights } from './core/validate.js';
import { LocalBandSolver, checkBandInputs, solveOnSession, type BandSolver, type SolveOptions } from './parallel/bands.js';
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
  /** Also the RTN baseline's loss (LayerResult.rtnLoss: round-to-nearest on min-max grids, for
   * comparison): one more quadratic form per row, so only when asked. Default false. */
  baseline?: boolean;
}

/** quantizeLayer's options: the solver's and the run's in one object, for convenience. */
export type QuantizeOptions = SolverOptions & RunOptions;

/** Splits a QuantizeOptions into what to compute and how to run it. */
export function splitOptions(options: QuantizeOptions = {}): { solver: SolverSpec; run: RunOptions } {
  const { threads, pool, signal, onProgress, kernel, baseline, ...solver } = options;
  return { solver: resolveSolver(solver), run: { threads, pool, signal, onProgress, kernel, baseline } };
}

/**
 * Quantizes one linear layer W [out, in] given H [in, in] (H = 2/n X^T X of its inputs).
 * Resolves to codes, grids, g_idx and losses; `dequantize()` gives the quantized weights.
 */
export async function quantizeLayer(weights: WeightMatrix, hessian: Float32Array, options: QuantizeOptions = {}): Promise<LayerResult> {
  const { solver, run } = splitOptions(options);
  validateWeights(weights);
  if (run.signal?.aborted) throw new AbortError();
  // A worker pool with shared wasm memory prepares H where its workers read it (GPTQ's
  // factorization shared among them) and solves in place: H and its factor exist once.
  const threads = run.pool ? undefined : checkThreads(run.threads);
  const own = !run.pool && threads !== undefined && threads > 1 && workersAvailable() ? new WorkerPool({ threads }) : null;
  const pool = run.pool ?? own ?? undefined;
  try {
    if (pool instanceof WorkerPool) {
      const session = await pool.prepareShared(hessian, weights.cols, solver, run.signal);
      if (session) {
        try {
          if (run.signal?.aborted) throw new AbortError();
          return await quantizePrepared(weights, session, { ...run, pool });
        } finally {
          // After a worker failure the pool has dropped its memory whole (see holdsMemory).
          if (pool.holdsMemory(session.resident.kernel)) session.free();
        }
      }
    }
    const prepared = await prepareLayer(hessian, weights.cols, solver, run.kernel);
    return await quantizePrepared(weights, prepared, { ...run, pool });
  } finally {
    own?.terminate();
  }
}

/**
 * Quantizes W with an H already prepared (with its solver settings): layers that share their
 * input (q/k/v, gate/up) share one preparation, Cholesky factor included. `layer` is a
 * PreparedLayer (plain arrays) or a LayerSession resident in a kernel (prepareResident):
 * solved in place on this thread, exported once for a pool.
 */
export async function quantizePrepared(weights: WeightMatrix, layer: PreparedLayer | LayerSession, run: RunOptions = {}): Promise<LayerResult> {
  validateWeights(weights);
  const facts = layer instanceof LayerSession ? layer.facts : layer;
  checkBandInputs(facts, weights);
  if (run.signal?.aborted) throw new AbortError();
  const kernel = run.kernel ?? (await defaultKernel());
  const options = { signal: run.signal, onProgress: run.onProgress, baseline: run.baseline ?? false };
  const portable = () => (layer instanceof LayerSession ? layer.portable() : layer);
  const merge = (bands: BandResult[]) => mergeBands(facts, weights.rows, bands, kernel);
  if (run.pool instanceof WorkerPool) return merge(await run.pool.solveBands(layer, weights, options));
  if (run.pool) return merge(await run.pool.solveBands(portable(), weights, options));
  const threads = checkThreads(run.threads) ?? (await autoThreads(weights.rows, weights.cols));
  if (threads > 1 && workersAvailable()) {
    const pool = new WorkerPool({ threads });
    try {
      return merge(await pool.solveBands(portable(), weights, options));
    } finally {
      pool.terminate();
    }
  }
  if (layer instanceof LayerSession) return merge(solveOnSession(layer, weights, options));
  return merge(await new LocalBandSolver(kernel).solveBands(layer, weights, options));
}
