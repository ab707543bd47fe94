// One layer quantized to a GGUF block type (ALGORITHMS.md "Fixed-format grids"). The grid is
// the format's own: its parameters are stored values (fp16 d and m, the k-quants' integer
// sub-block codes under fp16 super-scales), so the bytes written are exactly the ones that
// were optimised, never scales re-derived at write time. Solvers:
//   'ref'     llama.cpp's reference rounding (llama-quantize without an importance matrix)
//   'imatrix' llama.cpp's importance-weighted rounding with weights diag(H) (its imatrix is
//             diag(X^T X), the diagonal of the same H, up to a scale the quantizers ignore)
//   'owc'     the grid chosen block by block by its loss e^T H_bb e among storable candidates:
//             the clip searches' shrink factors of each group's range, stored as the format
//             stores them, and llama.cpp's importance-weighted grid; round to nearest on it
//   'cd'      that grid, then CDQuant's coordinate descent with the full H on exactly it (so
//             its loss is never above the importance-weighted rounding's)
// Rows are solved in bands (src/parallel/gguf-band.ts): in the layer session's kernel, which
// holds H, or on a band solver (a worker pool) with the same bits for any thread count and band.
import { AbortError, NonFiniteError, OptionError, ShapeError } from './core/errors.js';
import type { Kernel } from './core/kernel.js';
import type { LayerSession } from './core/session.js';
import type { PreparedLayer, WeightMatrix } from './core/types.js';
import { validateWeights } from './core/validate.js';
import { ggufTypeInfo, type GgufBlockTypeName } from './formats/gguf-blocks.js';
import { MAX_BAND_ROWS, bandRanges, type BandSolver, type SolveOptions } from './parallel/bands.js';
import { WorkerPool, autoThreads, checkThreads } from './parallel/pool.js';
import { workersAvailable } from './core/runtime.js';
import { GGUF_SOLVERS, checkGgufBandSpec, ggufRowBytesOf, solveGgufBand, type GgufBandResult, type GgufBandSpec, type GgufSolver } from './parallel/gguf-band.js';

export { GGUF_SOLVERS, type GgufSolver, type GgufBandSpec, type GgufBandResult };

export interface GgufLayerResult {
  type: GgufBlockTypeName;
  rows: number;
  cols: number;
  /** The tensor's bytes, row after row, as GGUF stores them. */
  bytes: Uint8Array;
  /** The values those bytes decode to (ggml's dequantization, bit for bit). */
  values: Float32Array;
  /** sum_r (q_r - w_r)^T H (q_r - w_r) with H as given. */
  loss: number;
  /** The same loss for llama.cpp's reference rounding (llama-quantize without an imatrix):
   * the baseline. */
  refLoss: number;
  /** CD's moves per row on average (solver 'cd'). */
  movesPerRow: number | null;
}

export interface GgufLayerOptions {
  /** CD moves per row (default: as many as columns). */
  iters?: number;
  signal?: AbortSignal;
  /** Rows per band (default: MAX_BAND_ROWS here; the band solver's own choice on a pool). */
  bandRows?: number;
  onProgress?: SolveOptions['onProgress'];
}

/** A band solver that takes GGUF bands (LocalBandSolver, WorkerPool). */
export interface GgufBandSolver {
  solveGgufBands(prepared: PreparedLayer, weights: WeightMatrix, spec: GgufBandSpec, options?: SolveOptions): Promise<GgufBandResult[]>;
}

function layerSpec(session: LayerSession, weights: WeightMatrix, type: GgufBlockTypeName, solver: GgufSolver, options: GgufLayerOptions): GgufBandSpec {
  validateWeights(weights);
  if (!GGUF_SOLVERS.includes(solver)) throw new OptionError(`GGUF solver must be one of ${GGUF_SOLVERS.join(', ')}, got ${String(solver)}`);
  const info = ggufTypeInfo(type);
  const { cols } = weights;
  if (cols !== session.facts.plan.cols) throw new OptionError(`weights have ${cols} columns but H was prepared for ${session.facts.plan.cols}`);
  if (cols % info.blockElems !== 0) throw new OptionError(`${type} needs rows whose length is a multiple of ${info.blockElems}; got ${cols}`);
  return checkGgufBandSpec({ type, solver, iters: options.iters ?? cols }, cols);
}

/** Quantizes W to `type` with `solver`, on the H of `session` (prepareResident), in bands on
 * this thread. Float types (F32, F16, BF16) are the weights rounded to that type. */
export function quantizeLayerGguf(session: LayerSession, weights: WeightMatrix, type: GgufBlockTypeName, solver: GgufSolver, options: GgufLayerOptions = {}): GgufLayerResult {
  const spec = layerSpec(session, weights, type, solver, options);
  const bands: GgufBandResult[] = [];
  for (const [r0, r1] of bandRanges(weights.rows, options.bandRows ?? MAX_BAND_ROWS)) {
    if (options.signal?.aborted) throw new AbortError();
    bands.push(solveGgufBand(session, weights, r0, r1, spec));
    options.onProgress?.({ rowsDone: r1, rows: weights.rows, stage: solver });
  }
  return mergeGgufBands(session.resident.kernel, spec, weights.rows, weights.cols, bands);
}

/** quantizeLayerGguf with the bands solved by `pool` (a WorkerPool, or HTTP band workers: a
 * FanoutPool); the same bits as on this thread. */
export async function quantizeLayerGgufOn(
  pool: GgufBandSolver, session: LayerSession, weights: WeightMatrix, type: GgufBlockTypeName, solver: GgufSolver, options: GgufLayerOptions = {},
): Promise<GgufLayerResult> {
  const spec = layerSpec(session, weights, type, solver, options);
  if (options.signal?.aborted) throw new AbortError();
  const bands = await pool.solveGgufBands(session.portable(), weights, spec, {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.bandRows !== undefined ? { bandRows: options.bandRows } : {}),
  });
  return mergeGgufBands(session.resident.kernel, spec, weights.rows, weights.cols, bands);
}

/** Whether `pool` takes GGUF bands (WorkerPool, FanoutPool and LocalBandSolver do; a
 * BandSolver of the caller's own may not). */
export function takesGgufBands(pool: BandSolver | GgufBandSolver | undefined): pool is BandSolver & GgufBandSolver {
  return !!pool && typeof (pool as Partial<GgufBandSolver>).solveGgufBands === 'function';
}

/**
 * quantizeLayerGguf as the pipeline runs it, like quantizePrepared for the integer grids: on
 * `pool` when given (one that does not take GGUF bands leaves the layer to this thread), else
 * on `threads` workers (default: autoThreads) started for this layer, else here. The same bits
 * every way.
 */
export async function runLayerGguf(
  session: LayerSession, weights: WeightMatrix, type: GgufBlockTypeName, solver: GgufSolver,
  options: GgufLayerOptions & { pool?: BandSolver; threads?: number } = {},
): Promise<GgufLayerResult> {
  const { pool, threads: requested, ...layer } = options;
  if (pool) return takesGgufBands(pool) ? quantizeLayerGgufOn(pool, session, weights, type, solver, layer) : quantizeLayerGguf(session, weights, type, solver, layer);
  const threads = checkThreads(requested) ?? (await autoThreads(weights.rows, weights.cols));
  if (threads > 1 && workersAvailable()) {
    const own = new WorkerPool({ threads });
    try {
      return await quantizeLayerGgufOn(own, session, weights, type, solver, layer);
    } finally {
      own.terminate();
    }
  }
  return quantizeLayerGguf(session, weights, type, solver, layer);
}

/** One layer from its bands (in any order; together every row once): the bytes in row order,
 * the values they decode to (ggml's dequantization in `kernel`), the losses summed row by row
 * in row order (so the same bits for any cut). */
export function mergeGgufBands(kernel: Kernel, spec: GgufBandSpec, rows: number, cols: number, bands: GgufBandResult[]): GgufLayerResult {
  const { type, solver } = spec;
  const info = ggufTypeInfo(type);
  const rowBytes = ggufRowBytesOf(type, cols);
  const sorted = [...bands].sort((a, b) => a.r0 - b.r0);
  const bytes = new Uint8Array(rows * rowBytes);
  let next = 0;
  let loss = 0, refLoss = 0, moves = 0;
  for (const b of sorted) {
    const m = b.r1 - b.r0;
    if (b.r0 !== next || m < 1 || b.r1 > rows) throw new ShapeError(`GGUF bands do not cover rows 0..${rows} once each (band [${b.r0}, ${b.r1}) after row ${next})`);
    if (b.bytes.length !== m * rowBytes || b.rowLoss.length !== m || b.refRowLoss.length !== m || (solver === 'cd') !== (b.moves !== null) || (b.moves && b.moves.length !== m)) {
      throw new ShapeError(`GGUF band [${b.r0}, ${b.r1}): arrays do not fit ${m} rows of ${type}/${solver}`);
    }
    bytes.set(b.bytes, b.r0 * rowBytes);
    for (let i = 0; i < m; i++) {
      loss += b.rowLoss[i];
      refLoss += b.refRowLoss[i];
      if (b.moves) moves += b.moves[i];
    }
    next = b.r1;
  }
  if (next !== rows) throw new ShapeError(`GGUF bands cover rows 0..${next} of ${rows}`);
  const values = kernel.scoped((alloc, put) => {
    const q = alloc(rows * cols * 4);
    kernel.exports.ggufDequantize(info.id, put(bytes), rows, cols, q);
    return kernel.f32(q, rows * cols).slice();
  });
  // Bands from elsewhere are bytes: a block whose fp16 scale is not finite decodes to values
  // no solver made.
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new NonFiniteError(`GGUF band bytes of ${type} decode to ${values[bad]} at row ${Math.floor(bad / cols)} column ${bad % cols}`);
  return { type, rows, cols, bytes, values, loss, refLoss, movesPerRow: solver === 'cd' ? moves / rows : null };
}
