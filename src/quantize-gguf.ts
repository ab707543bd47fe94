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
// Rows are solved in bands in the layer session's kernel, which holds H.
import { AbortError, OptionError } from './core/errors.js';
import type { LayerSession } from './core/session.js';
import type { WeightMatrix } from './core/types.js';
import { validateWeights } from './core/validate.js';
import { ggufTypeInfo, type GgufBlockTypeName } from './formats/gguf-blocks.js';
import { MAX_BAND_ROWS } from './parallel/bands.js';

export type GgufSolver = 'cd' | 'owc' | 'imatrix' | 'ref';
export const GGUF_SOLVERS: readonly GgufSolver[] = ['cd', 'owc', 'imatrix', 'ref'];

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
}

/** Quantizes W to `type` with `solver`, on the H of `session` (prepareResident). Float types
 * (F32, F16, BF16) are the weights rounded to that type. */
export function quantizeLayerGguf(session: LayerSession, weights: WeightMatrix, type: GgufBlockTypeName, solver: GgufSolver, options: GgufLayerOptions = {}): GgufLayerResult {
  validateWeights(weights);
  if (!GGUF_SOLVERS.includes(solver)) throw new OptionError(`GGUF solver must be one of ${GGUF_SOLVERS.join(', ')}, got ${String(solver)}`);
  const info = ggufTypeInfo(type);
  const { rows, cols } = weights;
  if (cols !== session.facts.plan.cols) throw new OptionError(`weights have ${cols} columns but H was prepared for ${session.facts.plan.cols}`);
  if (cols % info.blockElems !== 0) throw new OptionError(`${type} needs rows whose length is a multiple of ${info.blockElems}; got ${cols}`);
  const iters = options.iters ?? cols;
  const { kernel: k, hFix, hLoss, hdiag } = session.resident;
  const x = k.exports;
  const rowBytes = (cols / info.blockElems) * info.blockBytes;
  const bytes = new Uint8Array(rows * rowBytes);
  const values = new Float32Array(rows * cols);
  let loss = 0, refLoss = 0;
  let moves = 0;
  const gs = info.groupSize;
  const groups = gs ? cols / gs : 0;
  const blocks = cols / info.blockElems;
  k.scoped((alloc, put) => {
    const band = Math.min(rows, MAX_BAND_ROWS);
    const n = band * cols;
    const w = alloc(n * 4), w0 = alloc(n * 4), q = alloc(n * 4), codes = alloc(n);
    const out = alloc(band * rowBytes);
    const rowLoss = alloc(band * 8);
    const halves = gs ? alloc(band * blocks * 4) : 0;
    const subScales = gs ? alloc(band * groups) : 0, subMins = gs ? alloc(band * groups) : 0;
    const ga = gs ? alloc(band * groups * 4) : 0, gb = gs ? alloc(band * groups * 4) : 0;
    const zs = gs ? put(new Float32Array(band * groups).fill(info.zero)) : 0;
    const colGroup = gs ? put(Int32Array.from({ length: cols }, (_, j) => Math.floor(j / gs))) : 0;
    const g = solver === 'cd' ? alloc(n * 4) : 0;
    const movesPtr = solver === 'cd' ? alloc(band * 4) : 0;
    const imatrix = solver !== 'ref' ? alloc(cols * 4) : 0;
    // llama.cpp's importance-weighted grid, a candidate of the H-weighted search
    const other = gs && (solver === 'owc' || solver === 'cd')
      ? { bytes: alloc(band * rowBytes), codes: alloc(n), halves: alloc(band * blocks * 4), sc: alloc(band * groups), mn: alloc(band * groups), ga: alloc(band * groups * 4), gb: alloc(band * groups * 4) }
      : null;
    if (imatrix) {
      const h = k.f32(hLoss, cols * cols);
      k.f32(imatrix, cols).set(Float32Array.from({ length: cols }, (_, j) => h[j * cols + j]));
    }
    const scratch = alloc(Math.max(
      x.rowLossesScratch(band, cols),
      x.ggufOwcScratch(),
      solver === 'cd' ? Math.max(x.gradientScratch(band, cols), x.cdBandScratch(cols)) : 0,
    ));
    for (let r0 = 0; r0 < rows; r0 += band) {
      if (options.signal?.aborted) throw new AbortError();
      const m = Math.min(band, rows - r0);
      const src = weights.data.subarray(r0 * cols, (r0 + m) * cols);
      k.f32(w, m * cols).set(src);
      k.f32(w0, m * cols).set(src);
      session.zeroDead(w0, m);
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
          for (const v of k.i32(movesPtr, m)) moves += v;
        }
        x.ggufEncodeGrid(info.id, codes, halves, subScales, subMins, m, cols, out);
      }
      x.rowLosses(w, q, m, cols, hLoss, rowLoss, scratch);
      for (const l of k.f64(rowLoss, m)) loss += l;
      bytes.set(k.u8(out, m * rowBytes), r0 * rowBytes);
      values.set(k.f32(q, m * cols), r0 * cols);
      if (solver === 'ref') refLoss = loss;
      else {
        // The baseline, in the same buffers (this band's result is copied out above).
        x.ggufQuantize(info.id, w, m, cols, 0, out);
        x.ggufDequantize(info.id, out, m, cols, q);
        x.rowLosses(w, q, m, cols, hLoss, rowLoss, scratch);
        for (const l of k.f64(rowLoss, m)) refLoss += l;
      }
    }
  });
  return { type, rows, cols, bytes, values, loss, refLoss, movesPerRow: solver === 'cd' ? moves / rows : null };
}
