// One band of a layer's rows quantized to a GGUF block type (ALGORITHMS.md "Fixed-format
// grids"; the solvers are described in src/quantize-gguf.ts), on a LayerSession's resident H:
// the unit of GGUF work for every BandSolver, this thread's or a worker's. Each row's bytes,
// loss and moves depend on that row and H only (the grid search, llama.cpp's quantizers, CD
// and the loss products all work row by row), so bands merge to the same bits however the
// rows were cut and wherever they ran.
import { NonFiniteError, OptionError, ShapeError } from '../core/errors.js';
import type { LayerSession } from '../core/session.js';
import type { WeightMatrix } from '../core/types.js';
import { GGUF_BLOCK_TYPES, ggufTypeInfo, type GgufBlockTypeName } from '../formats/gguf-blocks.js';

export type GgufSolver = 'cd' | 'owc' | 'imatrix' | 'ref';
export const GGUF_SOLVERS: readonly GgufSolver[] = ['cd', 'owc', 'imatrix', 'ref'];

/** What a GGUF band is solved with: the block type, the solver, and CD's moves per row. */
export interface GgufBandSpec {
  type: GgufBlockTypeName;
  solver: GgufSolver;
  iters: number;
}

/** One band's rows [r0, r1): their GGUF bytes, row after row, and per row the loss, the loss of
 * llama.cpp's reference rounding, and CD's moves (solver 'cd'). */
export interface GgufBandResult {
  r0: number;
  r1: number;
  bytes: Uint8Array;
  rowLoss: Float64Array;
  refRowLoss: Float64Array;
  moves: Int32Array | null;
}

/** Checks a band spec for a layer of `cols` columns (from a caller, a worker message or a
 * frame); `Err` is the error type to raise (OptionError for options, FormatError for bytes). */
export function checkGgufBandSpec(spec: unknown, cols: number, Err: new (message: string) => Error = OptionError): GgufBandSpec {
  const s = spec as Partial<GgufBandSpec> | null;
  if (s === null || typeof s !== 'object') throw new Err('GGUF band spec must be an object { type, solver, iters }');
  if (typeof s.type !== 'string' || !Object.prototype.hasOwnProperty.call(GGUF_BLOCK_TYPES, s.type)) {
    throw new Err(`GGUF type must be one of ${Object.keys(GGUF_BLOCK_TYPES).join(', ')}, got ${String(s.type)}`);
  }
  if (!GGUF_SOLVERS.includes(s.solver as GgufSolver)) throw new Err(`GGUF solver must be one of ${GGUF_SOLVERS.join(', ')}, got ${String(s.solver)}`);
  if (typeof s.iters !== 'number' || !Number.isSafeInteger(s.iters) || s.iters < 0 || s.iters > 2 ** 31 - 1) {
    throw new Err(`GGUF iters must be an integer in [0, 2^31 - 1], got ${String(s.iters)}`);
  }
  const info = ggufTypeInfo(s.type as GgufBlockTypeName);
  if (!Number.isSafeInteger(cols) || cols < 1 || cols % info.blockElems !== 0) {
    throw new Err(`${s.type} needs rows whose length is a multiple of ${info.blockElems}; got ${cols}`);
  }
  return { type: s.type as GgufBlockTypeName, solver: s.solver as GgufSolver, iters: s.iters };
}

/** Bytes of one row of `type` at `cols` columns. */
export function ggufRowBytesOf(type: GgufBlockTypeName, cols: number): number {
  const info = ggufTypeInfo(type);
  return (cols / info.blockElems) * info.blockBytes;
}

/**
 * Rows [r0, r1) of `weights` (the whole matrix, or just the band with r0 = 0) quantized as
 * `spec` says, on `session`'s H (hFix for the solvers, hLoss for the losses).
 */
export function solveGgufBand(session: LayerSession, weights: WeightMatrix, r0: number, r1: number, spec: GgufBandSpec): GgufBandResult {
  const { cols } = weights;
  const { type, solver, iters } = checkGgufBandSpec(spec, cols);
  if (cols !== session.facts.plan.cols) throw new ShapeError(`weights have ${cols} columns but the layer was prepared for ${session.facts.plan.cols}`);
  if (!Number.isInteger(r0) || !Number.isInteger(r1) || r0 < 0 || r1 <= r0 || r1 > weights.rows || weights.data.length !== weights.rows * cols) {
    throw new ShapeError(`GGUF band [${r0}, ${r1}) is not a non-empty row range of ${weights.rows} rows of ${cols}`);
  }
  const info = ggufTypeInfo(type);
  const { kernel: k, hFix, hLoss, hdiag } = session.resident;
  const x = k.exports;
  const m = r1 - r0;
  const rowBytes = ggufRowBytesOf(type, cols);
  const src = weights.data.subarray(r0 * cols, r1 * cols);
  for (let i = 0; i < src.length; i++) {
    if (!Number.isFinite(src[i])) throw new NonFiniteError(`weights: row ${r0 + Math.floor(i / cols)} column ${i % cols} is ${src[i]}`);
  }
  const gs = info.groupSize;
  const groups = gs ? cols / gs : 0;
  const blocks = cols / info.blockElems;
  return k.scoped((alloc, put) => {
    const n = m * cols;
    const w = put(src), w0 = put(src), q = alloc(n * 4), codes = alloc(n);
    const out = alloc(m * rowBytes);
    const rowLoss = alloc(m * 8);
    const halves = gs ? alloc(m * blocks * 4) : 0;
    const subScales = gs ? alloc(m * groups) : 0, subMins = gs ? alloc(m * groups) : 0;
    const ga = gs ? alloc(m * groups * 4) : 0, gb = gs ? alloc(m * groups * 4) : 0;
    const zs = gs ? put(new Float32Array(m * groups).fill(info.zero)) : 0;
    const colGroup = gs ? put(Int32Array.from({ length: cols }, (_, j) => Math.floor(j / gs))) : 0;
    const g = solver === 'cd' ? alloc(n * 4) : 0;
    const movesPtr = solver === 'cd' ? alloc(m * 4) : 0;
    const imatrix = solver !== 'ref' ? alloc(cols * 4) : 0;
    // llama.cpp's importance-weighted grid, a candidate of the H-weighted search
    const other = gs && (solver === 'owc' || solver === 'cd')
      ? { bytes: alloc(m * rowBytes), codes: alloc(n), halves: alloc(m * blocks * 4), sc: alloc(m * groups), mn: alloc(m * groups), ga: alloc(m * groups * 4), gb: alloc(m * groups * 4) }
      : null;
    if (imatrix) {
      // diag(H): llama.cpp's imatrix is diag(X^T X), the same up to a scale its quantizers ignore
      const h = k.f32(hLoss, cols * cols);
      k.f32(imatrix, cols).set(Float32Array.from({ length: cols }, (_, j) => h[j * cols + j]));
    }
    const scratch = alloc(Math.max(
      x.rowLossesScratch(m, cols),
      x.ggufOwcScratch(),
      solver === 'cd' ? Math.max(x.gradientScratch(m, cols), x.cdBandScratch(cols)) : 0,
    ));
    session.zeroDead(w0, m);
    // CD's moves per row: none on the float types, which are only rounded
    let moves: Int32Array | null = solver === 'cd' ? new Int32Array(m) : null;
    if (!gs || solver === 'ref' || solver === 'imatrix') {
      // llama.cpp's own quantizers (and the float types) on the weights as given
      x.ggufQuantize(info.id, w, m, cols, imatrix, out);
      x.ggufDequantize(info.id, out, m, cols, q);
    } else {
      x.ggufOwc(info.id, w0, m, cols, hFix, halves, subScales, subMins, scratch);
      const o = other!;
      x.ggufQuantize(info.id, w0, m, cols, imatrix, o.bytes);
      x.ggufDecodeGrid(info.id, o.bytes, m, cols, o.codes, o.halves, o.sc, o.mn, o.ga, o.gb);
      x.ggufKeepBetter(info.id, w0, m, cols, hFix, halves, subScales, subMins, o.halves, o.sc, o.mn, scratch);
      x.ggufGroupAffine(info.id, halves, subScales, subMins, m, cols, ga, gb);
      x.ggufRtnCodes(info.id, w0, ga, gb, m, cols, codes);
      x.ggufGridValues(info.id, codes, ga, gb, m, cols, q);
      if (solver === 'cd') {
        x.gradientBand(g, w0, q, m, cols, hFix, scratch);
        x.cdBand(q, codes, g, m, cols, hFix, hdiag, info.maxq, groups, colGroup, ga, zs, gb, iters, movesPtr, scratch);
        moves = k.i32(movesPtr, m).slice();
      }
      x.ggufEncodeGrid(info.id, codes, halves, subScales, subMins, m, cols, out);
    }
    x.rowLosses(w, q, m, cols, hLoss, rowLoss, scratch);
    const bytes = k.u8(out, m * rowBytes).slice();
    const losses = k.f64(rowLoss, m).slice();
    let refRowLoss = losses;
    if (solver !== 'ref') {
      // The baseline, llama.cpp's reference rounding, in the same buffers (the result is copied out above).
      x.ggufQuantize(info.id, w, m, cols, 0, out);
      x.ggufDequantize(info.id, out, m, cols, q);
      x.rowLosses(w, q, m, cols, hLoss, rowLoss, scratch);
      refRowLoss = k.f64(rowLoss, m).slice();
    }
    return { r0, r1, bytes, rowLoss: losses, refRowLoss, moves };
  });
}
