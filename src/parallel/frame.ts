// Bytes for everything that crosses a process boundary: prepared layers, band results and
// band requests of the fan-out protocol. One frame format, one codec:
//
//   magic (4 ASCII bytes), u32 LE header length, UTF-8 JSON header { meta, arrays }, then the
//   arrays' raw little-endian bytes, each at an 8-byte aligned offset from the payload start.
//   arrays: [{ name, type: 'u8' | 'i32' | 'f32' | 'f64', offset, length }].
//
// Frames come from other machines, so decoding checks every field against its arrays and the
// layer it claims to describe (a FormatError naming the field), before any solver sees it.
import { FormatError, assertFinite } from '../core/errors.js';
import { planLayer, resolveSolver, type LayerPlan } from '../core/options.js';
import { checkBandGrids } from '../core/validate.js';
import { actOrder, groupIndex } from '../core/gptq.js';
import type { BandResult, PreparedLayer } from '../core/types.js';
import { checkGgufBandSpec, ggufRowBytesOf, type GgufBandResult, type GgufBandSpec } from './gguf-band.js';

type ArrayType = 'u8' | 'i32' | 'f32' | 'f64';
type Typed = Uint8Array | Int32Array | Float32Array | Float64Array;
const CTOR = { u8: Uint8Array, i32: Int32Array, f32: Float32Array, f64: Float64Array } as const;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const align8 = (n: number) => Math.ceil(n / 8) * 8;

function typeOf(a: Typed): ArrayType {
  if (a instanceof Uint8Array) return 'u8';
  if (a instanceof Int32Array) return 'i32';
  if (a instanceof Float32Array) return 'f32';
  return 'f64';
}

export interface Frame {
  meta: Record<string, unknown>;
  arrays: Record<string, Typed>;
}

/** A frame's bytes. Null arrays are left out. */
export function encodeFrame(magic: string, meta: Record<string, unknown>, arrays: Record<string, Typed | null>): Uint8Array {
  if (!LITTLE_ENDIAN) throw new FormatError('cdquant frames are little-endian; this platform is not');
  const entries: Array<{ name: string; type: ArrayType; offset: number; length: number }> = [];
  let size = 0;
  for (const [name, a] of Object.entries(arrays)) {
    if (!a) continue;
    entries.push({ name, type: typeOf(a), offset: size, length: a.length });
    size += align8(a.byteLength);
  }
  const header = new TextEncoder().encode(JSON.stringify({ meta, arrays: entries }));
  const start = align8(8 + header.length);
  const out = new Uint8Array(start + size);
  out.set(new TextEncoder().encode(magic), 0);
  new DataView(out.buffer).setUint32(4, header.length, true);
  out.set(header, 8);
  for (const e of entries) {
    const a = arrays[e.name]!;
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), start + e.offset);
  }
  return out;
}

/** The meta and arrays of a frame (arrays copied into their own aligned buffers). */
export function decodeFrame(magic: string, bytes: Uint8Array): Frame {
  if (!LITTLE_ENDIAN) throw new FormatError('cdquant frames are little-endian; this platform is not');
  if (!(bytes instanceof Uint8Array) || bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== magic) {
    throw new FormatError(`not a cdquant ${magic} frame`);
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  if (8 + headerLength > bytes.length) throw new FormatError(`${magic} header runs past the end of the bytes`);
  let header: { meta?: unknown; arrays?: unknown };
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength)));
  } catch {
    throw new FormatError(`${magic} header is not valid JSON`);
  }
  if (!header || typeof header !== 'object' || !isRecord(header.meta) || !Array.isArray(header.arrays)) {
    throw new FormatError(`${magic} header needs an object "meta" and a list "arrays"`);
  }
  const start = align8(8 + headerLength);
  const arrays: Record<string, Typed> = {};
  let end = start;
  for (const e of header.arrays as unknown[]) {
    if (!isRecord(e) || typeof e.name !== 'string' || !isCount(e.offset) || !isCount(e.length) || e.offset % 8 !== 0) {
      throw new FormatError(`${magic} array entry ${JSON.stringify(e)} needs a name and 8-aligned integer offset and length`);
    }
    const Ctor = CTOR[e.type as ArrayType];
    if (!Ctor || !Object.prototype.hasOwnProperty.call(CTOR, e.type as string)) throw new FormatError(`${magic} array ${e.name} has unknown type ${String(e.type)}`);
    if (Object.prototype.hasOwnProperty.call(arrays, e.name)) throw new FormatError(`${magic} array ${e.name} appears twice`);
    const byteLength = e.length * Ctor.BYTES_PER_ELEMENT;
    const at = start + e.offset;
    if (at < end || at + byteLength > bytes.length) throw new FormatError(`${magic} array ${e.name} overlaps another or runs past the end of the bytes`);
    end = at + byteLength;
    arrays[e.name] = new Ctor(bytes.slice(at, at + byteLength).buffer);
  }
  return { meta: header.meta as Record<string, unknown>, arrays };
}

function isRecord(x: unknown): x is Record<string, any> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}
function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function want<T extends Typed>(frame: Frame, name: string, Ctor: { new (...a: any[]): T; name: string }, length: number | null, what: string): T {
  const a = frame.arrays[name];
  if (!(a instanceof Ctor)) throw new FormatError(`${what}: array ${name} is missing or not ${Ctor.name}`);
  if (length !== null && a.length !== length) throw new FormatError(`${what}: array ${name} has ${a.length} values, expected ${length}`);
  return a;
}

const PREPARED = 'CDQP';
const BAND = 'CDQB';
// 3: the solver spec carries the scale format (an older reader would solve f32 grids).
const VERSION = 3;

/** A prepared layer as bytes, so band solvers elsewhere skip the H-side preparation. g_idx is
 * not sent: it follows from the plan and the permutation. */
export function encodePrepared(prepared: PreparedLayer): Uint8Array {
  const { plan, dampUsed, hessian, dead, perm, gptqFactor } = prepared;
  return encodeFrame(PREPARED, { version: VERSION, cols: plan.cols, spec: plan.spec, dampUsed }, { hessian, dead, perm, gptqFactor });
}

/** The inverse of encodePrepared(), checking every field against the others. */
export function decodePrepared(bytes: Uint8Array): PreparedLayer {
  const what = 'prepared layer';
  const frame = decodeFrame(PREPARED, bytes);
  const { meta } = frame;
  if (meta.version !== VERSION) throw new FormatError(`${what}: version ${String(meta.version)}, this build reads ${VERSION}`);
  if (!isCount(meta.cols) || meta.cols < 1 || meta.cols > 1 << 16) throw new FormatError(`${what}: cols ${String(meta.cols)} is not a column count`);
  const cols = meta.cols;
  let plan: LayerPlan;
  try {
    plan = planLayer(resolveSolver(meta.spec as any), cols);
  } catch (e) {
    throw new FormatError(`${what}: solver spec is invalid (${(e as Error).message})`);
  }
  const hessian = want(frame, 'hessian', Float32Array, cols * cols, what);
  assertFinite(hessian, `${what} hessian`);
  // prepareLayer symmetrizes H exactly and gives dead columns H_ii = 1: every diagonal entry
  // is positive (CD divides by it) and H[i, j] is H[j, i] bit for bit (CD reads rows as columns).
  for (let i = 0; i < cols; i++) {
    if (!(hessian[i * cols + i] > 0)) throw new FormatError(`${what}: hessian diagonal H[${i},${i}] = ${hessian[i * cols + i]} is not positive`);
    for (let j = 0; j < i; j++) {
      if (!Object.is(hessian[i * cols + j], hessian[j * cols + i])) throw new FormatError(`${what}: hessian is not symmetric at [${i},${j}]`);
    }
  }
  const dead = want(frame, 'dead', Int32Array, null, what);
  for (let i = 0; i < dead.length; i++) {
    if (!(dead[i] >= 0 && dead[i] < cols) || (i > 0 && dead[i] <= dead[i - 1])) throw new FormatError(`${what}: dead columns must be ascending column indices`);
    if (hessian[dead[i] * cols + dead[i]] !== 1) throw new FormatError(`${what}: dead column ${dead[i]} must have H_ii = 1`);
  }
  let perm: Int32Array | null = null;
  if (frame.arrays.perm !== undefined || plan.spec.actOrder) {
    perm = want(frame, 'perm', Int32Array, cols, what);
    const seen = new Uint8Array(cols);
    for (const p of perm) {
      if (!(p >= 0 && p < cols) || seen[p]) throw new FormatError(`${what}: perm is not a permutation of ${cols} columns`);
      seen[p] = 1;
    }
    if (!plan.spec.actOrder) throw new FormatError(`${what}: perm given without act-order`);
    const order = actOrder(Float32Array.from({ length: cols }, (_, i) => hessian[i * cols + i]));
    if (order.some((c, j) => c !== perm![j])) throw new FormatError(`${what}: perm is not the act-order of the hessian (descending diagonal, ties in column order)`);
  }
  const gptq = plan.spec.start === 'gptq';
  const gptqFactor = gptq ? want(frame, 'gptqFactor', Float32Array, cols * cols, what) : null;
  if (!gptq && frame.arrays.gptqFactor !== undefined) throw new FormatError(`${what}: gptqFactor given for a solver that does not use GPTQ`);
  if (gptqFactor) {
    assertFinite(gptqFactor, `${what} gptqFactor`);
    // U = chol(H^-1) is upper triangular with a positive diagonal (the sweep divides by it).
    for (let i = 0; i < cols; i++) {
      if (!(gptqFactor[i * cols + i] > 0)) throw new FormatError(`${what}: gptqFactor diagonal U[${i},${i}] = ${gptqFactor[i * cols + i]} is not positive`);
      for (let j = 0; j < i; j++) {
        if (gptqFactor[i * cols + j] !== 0) throw new FormatError(`${what}: gptqFactor is not upper triangular at [${i},${j}]`);
      }
    }
  }
  const dampUsed = meta.dampUsed;
  if (gptq ? !(typeof dampUsed === 'number' && dampUsed >= 0 && Number.isFinite(dampUsed)) : dampUsed !== null) {
    throw new FormatError(`${what}: dampUsed ${String(dampUsed)} does not fit the solver`);
  }
  return { plan, hessian, dead, perm, gptqFactor, dampUsed: dampUsed as number | null, gIdx: groupIndex(plan, perm) };
}

/** A band result as bytes (for another process, a file, an HTTP body). */
export function encodeBand(band: BandResult): Uint8Array {
  const { r0, r1, codes, scales, zeros, rowLoss, rtnRowLoss, moves } = band;
  return encodeFrame(BAND, { version: VERSION, r0, r1 }, { codes, scales, zeros, rowLoss, rtnRowLoss, moves });
}

/** The inverse of encodeBand(). With `plan`, every array's length is checked against the
 * layer and the codes against the bit width. */
export function decodeBand(bytes: Uint8Array, plan?: LayerPlan): BandResult {
  const what = 'band result';
  const frame = decodeFrame(BAND, bytes);
  const { meta } = frame;
  if (meta.version !== VERSION) throw new FormatError(`${what}: version ${String(meta.version)}, this build reads ${VERSION}`);
  const { r0, r1 } = meta;
  if (!isCount(r0) || !isCount(r1) || r1 <= r0) throw new FormatError(`${what}: rows [${String(r0)}, ${String(r1)}) are not a row range`);
  const n = r1 - r0;
  const band: BandResult = {
    r0,
    r1,
    codes: want(frame, 'codes', Uint8Array, plan ? n * plan.cols : null, what),
    scales: want(frame, 'scales', Float32Array, plan ? n * plan.groups : null, what),
    zeros: want(frame, 'zeros', Float32Array, plan ? n * plan.groups : null, what),
    rowLoss: want(frame, 'rowLoss', Float64Array, n, what),
    rtnRowLoss: frame.arrays.rtnRowLoss === undefined ? null : want(frame, 'rtnRowLoss', Float64Array, n, what),
    moves: frame.arrays.moves === undefined ? null : want(frame, 'moves', Int32Array, n, what),
  };
  for (const name of ['rowLoss', 'rtnRowLoss'] as const) {
    if (band[name] && !band[name]!.every(Number.isFinite)) throw new FormatError(`${what}: ${name} has a non-finite value`);
  }
  if (band.moves && band.moves.some((m) => m < 0)) throw new FormatError(`${what}: a negative move count`);
  if (plan) {
    if (plan.spec.descent !== (band.moves !== null)) throw new FormatError(`${what}: moves ${band.moves ? 'given' : 'missing'} for ${plan.spec.method}`);
    for (let i = 0; i < band.codes.length; i++) if (band.codes[i] > plan.maxq) throw new FormatError(`${what}: code ${band.codes[i]} exceeds ${plan.maxq}`);
    try {
      checkBandGrids(plan, band.scales, band.zeros, r0);
    } catch (e) {
      throw new FormatError(`${what}: ${(e as Error).message}`);
    }
  }
  return band;
}

const GGUF_BAND = 'CDQG';

/** A GGUF band result (gguf-band.ts) as bytes: its rows' GGUF bytes, losses and moves. */
export function encodeGgufBand(band: GgufBandResult): Uint8Array {
  const { r0, r1, bytes, rowLoss, refRowLoss, moves } = band;
  return encodeFrame(GGUF_BAND, { version: VERSION, r0, r1 }, { bytes, rowLoss, refRowLoss, moves });
}

/** The inverse of encodeGgufBand(). With `expect` (the spec and the layer's columns the band
 * was asked for), every array's length is checked against the rows and the block type, and
 * moves against the solver. */
export function decodeGgufBand(bytes: Uint8Array, expect?: { spec: GgufBandSpec; cols: number }): GgufBandResult {
  const what = 'GGUF band result';
  const frame = decodeFrame(GGUF_BAND, bytes);
  const { meta } = frame;
  if (meta.version !== VERSION) throw new FormatError(`${what}: version ${String(meta.version)}, this build reads ${VERSION}`);
  const { r0, r1 } = meta;
  if (!isCount(r0) || !isCount(r1) || r1 <= r0) throw new FormatError(`${what}: rows [${String(r0)}, ${String(r1)}) are not a row range`);
  const n = r1 - r0;
  let rowBytes: number | null = null;
  if (expect) {
    const spec = checkGgufBandSpec(expect.spec, expect.cols, FormatError);
    rowBytes = ggufRowBytesOf(spec.type, expect.cols);
  }
  const band: GgufBandResult = {
    r0,
    r1,
    bytes: want(frame, 'bytes', Uint8Array, rowBytes === null ? null : n * rowBytes, what),
    rowLoss: want(frame, 'rowLoss', Float64Array, n, what),
    refRowLoss: want(frame, 'refRowLoss', Float64Array, n, what),
    moves: frame.arrays.moves === undefined ? null : want(frame, 'moves', Int32Array, n, what),
  };
  for (const name of ['rowLoss', 'refRowLoss'] as const) {
    if (!band[name].every(Number.isFinite)) throw new FormatError(`${what}: ${name} has a non-finite value`);
  }
  if (band.moves && band.moves.some((m) => m < 0)) throw new FormatError(`${what}: a negative move count`);
  if (expect && (expect.spec.solver === 'cd') !== (band.moves !== null)) throw new FormatError(`${what}: moves ${band.moves ? 'given' : 'missing'} for solver ${expect.spec.solver}`);
  return band;
}
