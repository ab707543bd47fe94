// Bands back into one layer result, and quantized weights back into values.
import { NonFiniteError, ShapeError } from './errors.js';
import { checkBandGrids } from './validate.js';
import { defaultKernel, type Kernel } from './kernel.js';
import type { BandResult, LayerResult, PreparedLayer, QuantizedWeights } from './types.js';

/** scale * (code - zero) for every weight, computed in WASM with the solvers' own arithmetic,
 * so the values are the ones the solver optimised, bit for bit. */
export function dequantize(kernel: Kernel, q: QuantizedWeights): Float32Array {
  return kernel.scoped((alloc) => {
    const out = alloc(q.rows * q.cols * 4);
    dequantizeInto(kernel, q, out);
    return kernel.f32(out, q.rows * q.cols).slice();
  });
}

/** dequantize, written to `out` in the kernel (rows x cols float32): values that stay in the
 * kernel (a model's weights for the next forward pass) never pass through JS. */
export function dequantizeInto(kernel: Kernel, q: QuantizedWeights, out: number): void {
  const { rows, cols, groups } = q;
  if (q.codes.length !== rows * cols || q.scales.length !== rows * groups || q.zeros.length !== rows * groups || q.gIdx.length !== cols) {
    throw new ShapeError(`quantized weights of ${rows} x ${cols} with ${groups} groups have arrays of the wrong length`);
  }
  kernel.scoped((_alloc, put) => kernel.exports.dequantizeCodes(put(q.codes), rows, cols, put(q.scales), put(q.zeros), groups, put(q.gIdx), out));
}

/** A band's arrays fit its rows and the layer, and hold what a solved band can hold (bands
 * may come from other threads, processes or machines). */
function checkBand(prepared: Pick<PreparedLayer, 'plan'>, b: BandResult): void {
  const { cols, groups, maxq, spec } = prepared.plan;
  const n = b.r1 - b.r0;
  const where = `band [${b.r0}, ${b.r1})`;
  const fits = (a: ArrayLike<number> | null, Ctor: Function, length: number) => a instanceof Ctor && a.length === length;
  if (!fits(b.codes, Uint8Array, n * cols) || !fits(b.scales, Float32Array, n * groups) || !fits(b.zeros, Float32Array, n * groups)
    || !fits(b.rowLoss, Float64Array, n) || (b.rtnRowLoss !== null && !fits(b.rtnRowLoss, Float64Array, n)) || (spec.descent ? !fits(b.moves, Int32Array, n) : b.moves !== null)) {
    throw new ShapeError(`${where}: its arrays do not have the lengths and types of ${n} rows of ${cols} columns in ${groups} groups`);
  }
  for (let i = 0; i < b.codes.length; i++) if (b.codes[i] > maxq) throw new ShapeError(`${where}: code ${b.codes[i]} exceeds ${maxq}`);
  checkBandGrids(prepared.plan, b.scales, b.zeros, b.r0);
  for (const losses of b.rtnRowLoss ? [b.rowLoss, b.rtnRowLoss] : [b.rowLoss]) {
    for (let i = 0; i < n; i++) if (!Number.isFinite(losses[i])) throw new NonFiniteError(`${where}: the loss of row ${b.r0 + i} is ${losses[i]}`);
  }
}

/** One layer result from bands that tile its rows (in any order; from any thread or machine).
 * `kernel` (default: this realm's) computes `dequantize()`. */
export async function mergeBands(prepared: Pick<PreparedLayer, 'plan' | 'gIdx' | 'perm' | 'dampUsed'>, rows: number, bands: BandResult[], kernel?: Kernel): Promise<LayerResult> {
  const k = kernel ?? (await defaultKernel());
  const { plan } = prepared;
  const { cols, groups, spec } = plan;
  const sorted = [...bands].sort((a, b) => a.r0 - b.r0);
  let next = 0;
  for (const b of sorted) {
    if (b.r0 !== next || !(Number.isSafeInteger(b.r1) && b.r1 > b.r0)) throw new ShapeError(`bands do not tile the rows: expected a band starting at row ${next}, got [${b.r0}, ${b.r1})`);
    checkBand(prepared, b);
    next = b.r1;
  }
  if (next !== rows) throw new ShapeError(`bands cover rows [0, ${next}) of ${rows}`);
  const baseline = sorted.length > 0 && sorted[0].rtnRowLoss !== null;
  if (sorted.some((b) => (b.rtnRowLoss !== null) !== baseline)) throw new ShapeError('bands disagree on whether they carry the RTN baseline');
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * groups);
  const zeros = new Float32Array(rows * groups);
  const rowLoss = new Float64Array(rows);
  const rtnRowLoss = baseline ? new Float64Array(rows) : null;
  const moves = spec.descent ? new Int32Array(rows) : null;
  for (const b of sorted) {
    codes.set(b.codes, b.r0 * cols);
    scales.set(b.scales, b.r0 * groups);
    zeros.set(b.zeros, b.r0 * groups);
    rowLoss.set(b.rowLoss, b.r0);
    if (rtnRowLoss) rtnRowLoss.set(b.rtnRowLoss!, b.r0);
    if (moves && b.moves) moves.set(b.moves, b.r0);
  }
  // Summed in row order, so the total is the same however the rows were banded.
  let loss = 0, rtnSum = 0;
  for (let r = 0; r < rows; r++) {
    loss += rowLoss[r];
    if (rtnRowLoss) rtnSum += rtnRowLoss[r];
  }
  const rtnLoss = rtnRowLoss ? rtnSum : null;
  const result: LayerResult = {
    method: spec.method,
    bits: spec.bits,
    groupSize: plan.perChannel ? -1 : plan.groupWidth,
    groups,
    clip: spec.clip,
    init: spec.init,
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
    dequantize: () => dequantize(k, result),
  };
  return result;
}
