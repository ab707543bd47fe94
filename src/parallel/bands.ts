// Row bands: the unit of parallel work. Every way of running a layer's rows (this thread,
// a worker pool, HTTP band workers) is a BandSolver: it solves all rows of a prepared layer in
// bands and returns them for mergeBands(). Rows are independent in every solver, so the
// merged result is the same bits however the rows were cut and wherever they ran.
import { AbortError, OptionError, ShapeError } from '../core/errors.js';
import { defaultKernel, type Kernel } from '../core/kernel.js';
import { LayerSession } from '../core/session.js';
import type { BandResult, PreparedLayer, WeightMatrix } from '../core/types.js';
import { checkGgufBandSpec, solveGgufBand, type GgufBandResult, type GgufBandSpec } from './gguf-band.js';

export interface SolveOptions {
  signal?: AbortSignal;
  onProgress?: (progress: { rowsDone: number; rows: number; stage: string }) => void;
  /** Rows per band. Default: about four bands per worker, between 8 and 128 rows. */
  bandRows?: number;
  /** Also the RTN baseline's row losses (BandResult.rtnRowLoss): a quadratic form per row. */
  baseline?: boolean;
}

/** The contract of LocalBandSolver, WorkerPool and FanoutPool: solve every row of a prepared
 * layer, in bands. */
export interface BandSolver {
  solveBands(prepared: PreparedLayer, weights: WeightMatrix, options?: SolveOptions): Promise<BandResult[]>;
}

/** Rows per band on one thread, and the cap elsewhere: bounds scratch memory and paces
 * progress reports and abort checks. */
export const MAX_BAND_ROWS = 128;

/** Rows per band for `slots` parallel solvers: about four bands each, so idle ones balance the
 * load, between 8 and MAX_BAND_ROWS. */
export function bandRowsFor(rows: number, slots: number): number {
  return Math.max(8, Math.min(MAX_BAND_ROWS, Math.ceil(rows / (slots * 4))));
}

/** The band ranges [r0, r1) of `rows` rows, `bandRows` at a time. */
export function bandRanges(rows: number, bandRows: number): Array<[number, number]> {
  if (!Number.isInteger(bandRows) || bandRows < 1) throw new OptionError(`bandRows must be a positive integer, got ${String(bandRows)}`);
  const out: Array<[number, number]> = [];
  for (let r0 = 0; r0 < rows; r0 += bandRows) out.push([r0, Math.min(rows, r0 + bandRows)]);
  return out;
}

/** Checks that `weights` fit a prepared layer. */
export function checkBandInputs(prepared: Pick<PreparedLayer, 'plan'>, weights: WeightMatrix): void {
  const { rows, cols, data } = weights;
  if (cols !== prepared.plan.cols) throw new ShapeError(`weights have ${cols} columns but the layer was prepared for ${prepared.plan.cols}`);
  if (!(data instanceof Float32Array) || data.length !== rows * cols) throw new ShapeError(`weights.data must be a Float32Array of rows * cols = ${rows * cols} values`);
}

/** Every band on this thread's kernel (or the one given), one after another. */
export class LocalBandSolver implements BandSolver {
  constructor(private readonly kernel?: Kernel) {}

  async solveBands(prepared: PreparedLayer, weights: WeightMatrix, options: SolveOptions = {}): Promise<BandResult[]> {
    checkBandInputs(prepared, weights);
    const session = LayerSession.fromPrepared(this.kernel ?? (await defaultKernel()), prepared);
    try {
      return solveOnSession(session, weights, options);
    } finally {
      session.free();
    }
  }

  /** Every GGUF band (gguf-band.ts) on this thread's kernel, one after another. */
  async solveGgufBands(prepared: PreparedLayer, weights: WeightMatrix, spec: GgufBandSpec, options: SolveOptions = {}): Promise<GgufBandResult[]> {
    checkBandInputs(prepared, weights);
    checkGgufBandSpec(spec, weights.cols);
    const session = LayerSession.fromPrepared(this.kernel ?? (await defaultKernel()), prepared);
    try {
      const bands: GgufBandResult[] = [];
      for (const [r0, r1] of bandRanges(weights.rows, options.bandRows ?? MAX_BAND_ROWS)) {
        if (options.signal?.aborted) throw new AbortError();
        bands.push(solveGgufBand(session, weights, r0, r1, spec));
        options.onProgress?.({ rowsDone: r1, rows: weights.rows, stage: spec.solver });
      }
      return bands;
    } finally {
      session.free();
    }
  }
}

/** The one-thread band loop: every band of `weights` on a session already open. */
export function solveOnSession(session: LayerSession, weights: WeightMatrix, options: SolveOptions = {}): BandResult[] {
  const { plan } = session.facts;
  checkBandInputs(session.facts, weights);
  const bands: BandResult[] = [];
  for (const [r0, r1] of bandRanges(weights.rows, options.bandRows ?? MAX_BAND_ROWS)) {
    if (options.signal?.aborted) throw new AbortError();
    bands.push(session.solveBand(weights, r0, r1, options.baseline ?? false));
    options.onProgress?.({ rowsDone: r1, rows: weights.rows, stage: plan.spec.method });
  }
  return bands;
}

/**
 * Solves rows [r0, r1) of `weights` (the whole matrix; only the band is read) for a prepared
 * layer: one band, anywhere (another process, machine or serverless invocation), workerd
 * included. Merge the bands of all rows with mergeBands().
 */
export async function solveBand(
  prepared: PreparedLayer, weights: WeightMatrix, r0: number, r1: number, options: { kernel?: Kernel; baseline?: boolean } = {},
): Promise<BandResult> {
  checkBandInputs(prepared, weights);
  if (!Number.isInteger(r0) || !Number.isInteger(r1) || r0 < 0 || r1 <= r0 || r1 > weights.rows) {
    throw new ShapeError(`band [${r0}, ${r1}) is not a non-empty row range of ${weights.rows} rows`);
  }
  const session = LayerSession.fromPrepared(options.kernel ?? (await defaultKernel()), prepared);
  try {
    return session.solveBand(weights, r0, r1, options.baseline ?? false);
  } finally {
    session.free();
  }
}
