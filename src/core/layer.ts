// quantizeLayer(): validation, the H-side preparation shared by all rows, row bands solved in
// WebAssembly, and the merge. Rows are independent in every solver, so a band's result does
// not depend on which other rows share it: bands can run on any thread or machine.
import { AbortError, HessianError, ShapeError, assertFinite } from './errors.js';
import { Kernel, defaultKernel } from './kernel.js';
import { resolveOptions, type QuantizeOptions, type ResolvedOptions } from './options.js';
import { autoThreads, checkThreads, quantizeLayerThreaded } from '../parallel/pool.js';
import { workersAvailable } from './runtime.js';

export interface WeightMatrix {
  /** Row-major [rows = out, cols = in], PyTorch's layout. */
  data: Float32Array;
  rows: number;
  cols: number;
}

/** Everything derived from H alone: computed once per layer, read-only for every band. */
export interface PreparedLayer {
  cols: number;
  options: ResolvedOptions;
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

/** One band's solution; rows [r0, r1) of the layer. */
export interface BandResult {
  r0: number;
  r1: number;
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Float32Array;
  values: Float32Array;
  rowLoss: Float64Array;
  rtnRowLoss: Float64Array;
  moves: Int32Array | null;
}

export interface LayerResult {
  method: ResolvedOptions['method'];
  bits: number;
  /** Columns per group; -1 for per-channel. */
  groupSize: number;
  groups: number;
  clip: ResolvedOptions['clip'];
  init: ResolvedOptions['init'] | null;
  rows: number;
  cols: number;
  /** Integer codes in [0, 2^bits - 1], row-major [rows, cols], original column order. */
  codes: Uint8Array;
  /** [rows, groups]; value = scale * (code - zero). */
  scales: Float32Array;
  zeros: Float32Array;
  gIdx: Int32Array;
  perm: Int32Array | null;
  /** sum_r (q_r - w_r)^T H (q_r - w_r) with H as given. */
  loss: number;
  /** The same loss for round-to-nearest on min-max grids, the baseline. */
  rtnLoss: number;
  rowLoss: Float64Array;
  /** Damping used by GPTQ (raised from `damp` if Cholesky failed); null without GPTQ. */
  dampUsed: number | null;
  /** CD/BCD moves per row (last descent round). */
  moves: Int32Array | null;
  dequantize(): Float32Array;
}

const CLIP_CODE = { minmax: 0, mse: 1, owc: 2 } as const;
/** gridParams' method code: OWC with owcExact selects the exact per-channel search (3). */
const clipCode = (o: ResolvedOptions): number => (o.clip === 'owc' && o.owcExact ? 3 : CLIP_CODE[o.clip]);
const SYMMETRY_TOLERANCE = 1e-4;

/** Throws ShapeError or NonFiniteError unless `weights` is a finite rows x cols Float32Array matrix. */
export function validateWeights(weights: WeightMatrix): void {
  const { data, rows, cols } = weights;
  if (!(data instanceof Float32Array)) throw new ShapeError('weights.data must be a Float32Array');
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new ShapeError(`weights rows and cols must be positive integers, got ${rows} x ${cols}`);
  }
  if (data.length !== rows * cols) {
    throw new ShapeError(`weights.data has ${data.length} values, expected rows * cols = ${rows} * ${cols} = ${rows * cols}`);
  }
  assertFinite(data, 'weights');
}

function validateHessian(hessian: Float32Array, cols: number): void {
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

function stableDescendingOrder(keys: Float32Array): Int32Array {
  const idx = Array.from(keys, (_, i) => i);
  idx.sort((a, b) => (keys[b] > keys[a] ? 1 : keys[b] < keys[a] ? -1 : a - b));
  return Int32Array.from(idx);
}

function groupIndex(cols: number, o: ResolvedOptions, perm: Int32Array | null): Int32Array {
  const gIdx = new Int32Array(cols);
  if (o.groupSize === 0) return gIdx;
  // Dynamic GPTQ groups with act-order are formed in permuted order, as the reference does.
  const gptqDynamic = (o.method === 'gptq' || o.init === 'gptq') && !o.staticGroups && o.clip !== 'owc';
  for (let j = 0; j < cols; j++) {
    const original = perm && gptqDynamic && o.actOrder ? perm[j] : j;
    gIdx[original] = Math.floor(j / o.groupSize);
  }
  return gIdx;
}

/** H-side preparation (validation, symmetrization, dead columns, act-order, GPTQ factor). */
export async function prepareLayer(
  hessian: Float32Array, cols: number, options: QuantizeOptions = {}, kernel?: Kernel,
): Promise<PreparedLayer> {
  const o = resolveOptions(options, cols);
  validateHessian(hessian, cols);
  const k = kernel ?? (await defaultKernel());
  const x = k.exports;
  return k.scoped((alloc, put) => {
    const h = put(hessian);
    x.symmetrize(h, cols);
    const sym = k.f32(h, cols * cols);
    const dead: number[] = [];
    for (let i = 0; i < cols; i++) {
      if (sym[i * cols + i] === 0) {
        dead.push(i);
        sym[i * cols + i] = 1;
      }
    }
    const hFix = sym.slice();
    const diag = new Float32Array(cols);
    for (let i = 0; i < cols; i++) diag[i] = hFix[i * cols + i];
    const perm = o.actOrder ? stableDescendingOrder(diag) : null;

    let gptqFactor: Float32Array | null = null;
    let dampUsed: number | null = null;
    if (o.method === 'gptq' || o.init === 'gptq') {
      const permuted = perm ? permuteSquare(hFix, cols, perm) : hFix;
      const hd = alloc(cols * cols * 4);
      const u = alloc(cols * cols * 4);
      const work = alloc((cols * cols + 128 * cols) * 4);
      let percdamp = o.damp;
      for (let attempt = 0; ; attempt++) {
        k.f32(hd, cols * cols).set(permuted);
        x.addDamping(hd, cols, percdamp);
        if (x.upperCholeskyOfInverse(u, hd, cols, work) === 0) break;
        if (attempt === 4) {
          throw new HessianError(`hessian is not positive definite even with damping ${percdamp} x mean diagonal (Cholesky failed)`);
        }
        percdamp = percdamp > 0 ? percdamp * 10 : 0.01;
      }
      gptqFactor = k.f32(u, cols * cols).slice();
      dampUsed = percdamp;
      assertFinite(gptqFactor, 'GPTQ factor chol(H^-1)');
    }
    return { cols, options: o, hessian: hFix, dead: Int32Array.from(dead), perm, gptqFactor, dampUsed, gIdx: groupIndex(cols, o, perm) };
  });
}

function permuteSquare(m: Float32Array, n: number, perm: Int32Array): Float32Array {
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    const src = perm[i] * n;
    for (let j = 0; j < n; j++) out[i * n + j] = m[src + perm[j]];
  }
  return out;
}

function permuteColumns<T extends Float32Array | Uint8Array>(m: T, rows: number, cols: number, perm: Int32Array, inverse: boolean): T {
  const out = new (m.constructor as { new (n: number): T })(m.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) {
      if (inverse) out[base + perm[j]] = m[base + j];
      else out[base + j] = m[base + perm[j]];
    }
  }
  return out;
}

/** A kernel holding one prepared layer's H-side arrays in its memory. */
export class LayerSession {
  private readonly k: Kernel;
  private readonly p: PreparedLayer;
  private readonly ptrs: number[] = [];
  private readonly hFix: number;
  private readonly hLoss: number;
  private readonly u: number;
  private readonly order: number;
  private readonly hbb: number;
  private readonly hinv: number;
  private readonly hdiag: number;
  private readonly colGroupOriginal: number;
  /** Column -> group for grids of consecutive columns (the RTN baseline's; the same as
   * colGroupOriginal unless act-order formed GPTQ's groups in permuted order). */
  private readonly colGroupConsecutive: number;
  /** Columns sorted by group when groups are not consecutive columns (act-order + dynamic
   * GPTQ groups): refit works on contiguous groups, in this order. */
  private readonly groupOrder: Int32Array | null;
  private readonly hGroup: number;

  constructor(kernel: Kernel, prepared: PreparedLayer) {
    this.k = kernel;
    this.p = prepared;
    const { cols, options: o } = prepared;
    const keep = (ptr: number) => (this.ptrs.push(ptr), ptr);
    this.hFix = keep(kernel.put(prepared.hessian));
    if (prepared.dead.length) {
      // The loss uses H as given: dead columns carry no weight in it.
      const given = prepared.hessian.slice();
      for (const i of prepared.dead) given[i * cols + i] = 0;
      this.hLoss = keep(kernel.put(given));
    } else {
      this.hLoss = this.hFix;
    }
    this.u = prepared.gptqFactor ? keep(kernel.put(prepared.gptqFactor)) : 0;
    const identity = Int32Array.from({ length: cols }, (_, i) => i);
    this.order = keep(kernel.put(prepared.perm ?? identity));
    const diag = new Float32Array(cols);
    for (let i = 0; i < cols; i++) diag[i] = prepared.hessian[i * cols + i];
    this.hdiag = keep(kernel.put(diag));
    this.colGroupOriginal = keep(kernel.put(prepared.gIdx));
    const gs = o.groupSize;
    const consecutive = Int32Array.from(identity, (c) => (gs ? Math.floor(c / gs) : 0));
    const contiguous = prepared.gIdx.every((g, c) => g === consecutive[c]);
    this.colGroupConsecutive = contiguous ? this.colGroupOriginal : keep(kernel.put(consecutive));
    if (!contiguous && o.refit > 0) {
      this.groupOrder = Int32Array.from(identity).sort((a, b) => prepared.gIdx[a] - prepared.gIdx[b] || a - b);
      this.hGroup = keep(kernel.put(permuteSquare(prepared.hessian, cols, this.groupOrder)));
    } else {
      this.groupOrder = null;
      this.hGroup = this.hFix;
    }
    if (o.method === 'bcd') {
      const blocks = Math.ceil(cols / o.blockSize) * o.blockSize * o.blockSize;
      this.hbb = keep(kernel.alloc(blocks * 4));
      this.hinv = keep(kernel.alloc(blocks * 4));
      kernel.exports.bcdPrepare(this.hFix, cols, o.blockSize, this.order, this.hbb, this.hinv);
    } else {
      this.hbb = 0;
      this.hinv = 0;
    }
  }

  free(): void {
    for (const p of this.ptrs.splice(0)) this.k.free(p);
  }

  /** Solves rows [r0, r1) of `weights` (the whole matrix is passed; only the band is read). */
  solveBand(weights: WeightMatrix, r0: number, r1: number): BandResult {
    const { cols, options: o } = this.p;
    const rows = r1 - r0;
    const band = weights.data.subarray(r0 * cols, r1 * cols);
    const k = this.k;
    const x = k.exports;
    const groups = o.groups;
    return k.scoped((alloc, put) => {
      const w = put(band);
      const w0 = put(band);
      this.zeroDead(k.f32(w0, rows * cols), rows);
      const scales = alloc(rows * groups * 4);
      const zeros = alloc(rows * groups * 4);
      const codes = alloc(rows * cols);
      const q = alloc(rows * cols * 4);
      const scratch = alloc(Math.max(2 * rows * cols, rows * cols + 256 * rows, 4 * rows * cols, 160 * cols, rows * o.gptqBlock + o.gptqBlock) * 4);
      const rowLoss = alloc(rows * 8);

      // Baseline: RTN on min-max grids of W as given.
      x.gridParams(w, rows, cols, o.groupSize, o.maxq, o.sym, 0, 0, scales, zeros, 0, 0);
      x.quantizeWith(w, rows, cols, o.maxq, scales, zeros, groups, this.colGroupConsecutive, codes, q);
      x.rowLosses(w, q, rows, cols, this.hLoss, rowLoss, scratch);
      const rtnRowLoss = k.f64(rowLoss, rows).slice();

      const start = o.method === 'gptq' || o.init === 'gptq' ? 'gptq' : 'rtn';
      if (start === 'gptq') this.gptq(w, w0, rows, scales, zeros, codes, q, scratch);
      else if (o.method !== 'rtn' || o.clip !== 'minmax') {
        // Grid from W as given (min-max, MSE) or from the dead-zeroed W in H's metric (OWC).
        const src = o.clip === 'owc' ? w0 : w;
        x.gridParams(src, rows, cols, o.groupSize, o.maxq, o.sym, clipCode(o), this.hFix, scales, zeros, 0, scratch);
        x.quantizeWith(w, rows, cols, o.maxq, scales, zeros, groups, this.colGroupConsecutive, codes, q);
      }

      let moves: Int32Array | null = null;
      if (o.method === 'cd' || o.method === 'bcd') {
        const g = alloc(rows * cols * 4);
        const movesPtr = alloc(rows * 4);
        const accepted = alloc(rows * 4);
        x.gradientBand(g, w0, q, rows, cols, this.hFix, scratch);
        for (let round = 0; ; round++) {
          if (o.method === 'cd') {
            x.cdBand(q, codes, g, rows, cols, this.hFix, this.hdiag, o.maxq, groups, this.colGroupOriginal, scales, zeros, o.iters, movesPtr, scratch);
          } else {
            x.bcdBand(q, codes, g, rows, cols, this.hFix, o.blockSize, this.order, this.hbb, this.hinv, o.maxq, groups, this.colGroupOriginal, scales, zeros, o.iters, movesPtr, scratch);
          }
          if (round === o.refit) break;
          this.inGroupOrder(rows, [w0, q, g], codes, false);
          x.refitBand(w0, q, codes, g, rows, cols, this.hGroup, o.maxq, o.sym, o.groupSize, groups, scales, zeros, accepted, scratch);
          this.inGroupOrder(rows, [w0, q, g], codes, true);
        }
        moves = k.i32(movesPtr, rows).slice();
      }

      // Plain RTN is the baseline itself: its loss is already in rowLoss.
      const isBaseline = o.method === 'rtn' && o.clip === 'minmax';
      if (!isBaseline) x.rowLosses(w, q, rows, cols, this.hLoss, rowLoss, scratch);
      return {
        r0,
        r1,
        codes: k.u8(codes, rows * cols).slice(),
        scales: k.f32(scales, rows * groups).slice(),
        zeros: k.f32(zeros, rows * groups).slice(),
        values: k.f32(q, rows * cols).slice(),
        rowLoss: k.f64(rowLoss, rows).slice(),
        rtnRowLoss,
        moves,
      };
    });
  }

  /** Permutes band matrices into (or back from) group order; a no-op when groups are contiguous. */
  private inGroupOrder(rows: number, floats: number[], codes: number, back: boolean): void {
    const order = this.groupOrder;
    if (!order) return;
    const { cols } = this.p;
    const k = this.k;
    for (const ptr of floats) k.f32(ptr, rows * cols).set(permuteColumns(k.f32(ptr, rows * cols), rows, cols, order, back));
    k.u8(codes, rows * cols).set(permuteColumns(k.u8(codes, rows * cols), rows, cols, order, back));
  }

  /** GPTQ on the band: fixed grids up front (per-channel, static groups, OWC) or dynamic. */
  private gptq(w: number, w0: number, rows: number, scales: number, zeros: number, codes: number, q: number, scratch: number): void {
    const { cols, options: o, perm } = this.p;
    const k = this.k;
    const x = k.exports;
    const dynamic = o.groupSize > 0 && !o.staticGroups && o.clip !== 'owc';
    if (!dynamic) {
      // Per-channel grids come from W before dead columns are zeroed (the reference calls
      // find_params first); static groups and OWC grids from the dead-zeroed W.
      const src = o.groupSize === 0 && o.clip !== 'owc' ? w : w0;
      x.gridParams(src, rows, cols, o.groupSize, o.maxq, o.sym, clipCode(o), this.hFix, scales, zeros, 0, scratch);
    }
    // Working order: act-order's permutation.
    const working = perm ? permuteColumns(k.f32(w0, rows * cols), rows, cols, perm, false) : null;
    if (working) k.f32(w0, rows * cols).set(working);
    const colGroup = new Int32Array(cols);
    for (let j = 0; j < cols; j++) colGroup[j] = this.p.gIdx[perm ? perm[j] : j];
    k.scoped((alloc, put) => {
      const cg = put(colGroup);
      const gptqScratch = alloc((rows * o.gptqBlock + o.gptqBlock) * 4);
      x.gptqBand(w0, rows, cols, this.u, o.maxq, o.sym, CLIP_CODE[o.clip], o.groupSize, dynamic, o.gptqBlock, o.groups, cg, scales, zeros, codes, q, gptqScratch);
    });
    if (perm) {
      k.u8(codes, rows * cols).set(permuteColumns(k.u8(codes, rows * cols), rows, cols, perm, true));
      k.f32(q, rows * cols).set(permuteColumns(k.f32(q, rows * cols), rows, cols, perm, true));
    }
    // GPTQ overwrote w0 as its working copy; descent continues from the dead-zeroed weights.
    const w0v = k.f32(w0, rows * cols);
    w0v.set(k.f32(w, rows * cols));
    this.zeroDead(w0v, rows);
  }

  private zeroDead(m: Float32Array, rows: number): void {
    const { cols, dead } = this.p;
    for (let r = 0; r < rows; r++) for (const d of dead) m[r * cols + d] = 0;
  }
}

/** Rows per band on one thread: bounds scratch memory and paces progress and abort checks. */
const BAND_ROWS = 128;

export function mergeBands(prepared: PreparedLayer, rows: number, bands: BandResult[]): LayerResult {
  const { cols, options: o } = prepared;
  const sorted = [...bands].sort((a, b) => a.r0 - b.r0);
  let next = 0;
  for (const b of sorted) {
    if (b.r0 !== next) throw new ShapeError(`bands do not tile the rows: expected a band starting at row ${next}, got ${b.r0}`);
    next = b.r1;
  }
  if (next !== rows) throw new ShapeError(`bands cover rows [0, ${next}) of ${rows}`);
  const codes = new Uint8Array(rows * cols);
  const values = new Float32Array(rows * cols);
  const scales = new Float32Array(rows * o.groups);
  const zeros = new Float32Array(rows * o.groups);
  const rowLoss = new Float64Array(rows);
  const rtnRowLoss = new Float64Array(rows);
  const moves = o.method === 'cd' || o.method === 'bcd' ? new Int32Array(rows) : null;
  for (const b of sorted) {
    codes.set(b.codes, b.r0 * cols);
    values.set(b.values, b.r0 * cols);
    scales.set(b.scales, b.r0 * o.groups);
    zeros.set(b.zeros, b.r0 * o.groups);
    rowLoss.set(b.rowLoss, b.r0);
    rtnRowLoss.set(b.rtnRowLoss, b.r0);
    if (moves && b.moves) moves.set(b.moves, b.r0);
  }
  // Summed in row order, so the total is the same however the rows were banded.
  let loss = 0, rtnLoss = 0;
  for (let r = 0; r < rows; r++) {
    loss += rowLoss[r];
    rtnLoss += rtnRowLoss[r];
  }
  return {
    method: o.method,
    bits: o.bits,
    groupSize: o.groupSize === 0 ? -1 : o.groupSize,
    groups: o.groups,
    clip: o.clip,
    init: o.method === 'cd' || o.method === 'bcd' ? o.init : null,
    rows,
    cols,
    codes,
    scales,
    zeros,
    gIdx: prepared.gIdx,
    perm: prepared.perm,
    loss,
    rtnLoss,
    rowLoss,
    dampUsed: prepared.dampUsed,
    moves,
    dequantize: () => values.slice(),
  };
}

/**
 * Quantizes one linear layer W [out, in] given H [in, in] (H = 2/n X^T X of its inputs).
 * Resolves to codes, grids, g_idx and losses; `dequantize()` gives the quantized weights.
 */
export async function quantizeLayer(weights: WeightMatrix, hessian: Float32Array, options: QuantizeOptions = {}): Promise<LayerResult> {
  validateWeights(weights);
  if (options.signal?.aborted) throw new AbortError();
  const prepared = await prepareLayer(hessian, weights.cols, options, await defaultKernel());
  return quantizePrepared(weights, prepared, options);
}

/**
 * Quantizes W with an H already prepared by prepareLayer: layers that share their input
 * (q/k/v, gate/up) share one preparation, Cholesky factor included. The solver settings are
 * the ones `prepared` was made with; `options` contributes only threads, pool, signal and
 * onProgress.
 */
export async function quantizePrepared(weights: WeightMatrix, prepared: PreparedLayer, options: QuantizeOptions = {}): Promise<LayerResult> {
  validateWeights(weights);
  if (weights.cols !== prepared.cols) throw new ShapeError(`weights have ${weights.cols} columns but H was prepared for ${prepared.cols}`);
  if (options.signal?.aborted) throw new AbortError();
  const threads = checkThreads(options.threads) ?? (await autoThreads(weights.rows, weights.cols));
  const kernel = await defaultKernel();
  // threads > 1: row bands on a worker pool (same bits); falls back to this thread where the
  // runtime has no workers.
  if (options.pool) return mergeBands(prepared, weights.rows, await options.pool.solveBands(prepared, weights, options));
  if (threads > 1 && workersAvailable()) return quantizeLayerThreaded(prepared, weights, threads, options);
  const session = new LayerSession(kernel, prepared);
  const bands: BandResult[] = [];
  try {
    for (let r0 = 0; r0 < weights.rows; r0 += BAND_ROWS) {
      if (options.signal?.aborted) throw new AbortError();
      const r1 = Math.min(weights.rows, r0 + BAND_ROWS);
      bands.push(session.solveBand(weights, r0, r1));
      options.onProgress?.({ rowsDone: r1, rows: weights.rows, stage: prepared.options.method });
    }
  } finally {
    session.free();
  }
  return mergeBands(prepared, weights.rows, bands);
}

