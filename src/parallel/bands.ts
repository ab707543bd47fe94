// Row bands as jobs: solve any band of a prepared layer anywhere (another thread, process,
// machine or serverless invocation), carry the prepared layer and the band results as bytes,
// and merge them with mergeBands() into the same bits as one quantizeLayer() call.
//
// Byte format (little-endian, version 1): 'CDQP' (prepared layer) or 'CDQB' (band result),
// u32 header length, a UTF-8 JSON header { meta, arrays: [{ name, type, offset, length }] },
// then the arrays' raw bytes, each starting at an 8-byte aligned offset from the payload start.
import { FormatError, ShapeError } from '../core/errors.js';
import { Kernel, defaultKernel } from '../core/kernel.js';
import { LayerSession, type BandResult, type PreparedLayer, type WeightMatrix } from '../core/layer.js';

/**
 * Solves rows [r0, r1) of `weights` (the whole matrix; only the band is read) for a prepared
 * layer on `kernel` (default: this thread's). Works in every runtime, workerd included.
 */
export async function solveBandJob(prepared: PreparedLayer, weights: WeightMatrix, r0: number, r1: number, kernel?: Kernel): Promise<BandResult> {
  if (weights.cols !== prepared.cols) throw new ShapeError(`weights have ${weights.cols} columns but the layer was prepared for ${prepared.cols}`);
  if (weights.data.length !== weights.rows * weights.cols) {
    throw new ShapeError(`weights.data has ${weights.data.length} values, expected rows * cols = ${weights.rows * weights.cols}`);
  }
  if (!Number.isInteger(r0) || !Number.isInteger(r1) || r0 < 0 || r1 <= r0 || r1 > weights.rows) {
    throw new ShapeError(`band [${r0}, ${r1}) is not a non-empty row range of ${weights.rows} rows`);
  }
  const session = new LayerSession(kernel ?? (await defaultKernel()), prepared);
  try {
    return session.solveBand(weights, r0, r1);
  } finally {
    session.free();
  }
}

type ArrayType = 'u8' | 'i32' | 'f32' | 'f64';
type Typed = Uint8Array | Int32Array | Float32Array | Float64Array;
const CTOR = { u8: Uint8Array, i32: Int32Array, f32: Float32Array, f64: Float64Array } as const;

function typeOf(a: Typed): ArrayType {
  if (a instanceof Uint8Array) return 'u8';
  if (a instanceof Int32Array) return 'i32';
  if (a instanceof Float32Array) return 'f32';
  return 'f64';
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function encode(magic: string, meta: unknown, arrays: Record<string, Typed | null>): Uint8Array {
  if (!LITTLE_ENDIAN) throw new FormatError('band and layer bytes are little-endian; this platform is not');
  const entries: Array<{ name: string; type: ArrayType; offset: number; length: number }> = [];
  let size = 0;
  for (const [name, a] of Object.entries(arrays)) {
    if (!a) continue;
    entries.push({ name, type: typeOf(a), offset: size, length: a.length });
    size += Math.ceil(a.byteLength / 8) * 8;
  }
  const header = new TextEncoder().encode(JSON.stringify({ meta, arrays: entries }));
  const start = Math.ceil((8 + header.length) / 8) * 8;
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

function decode(magic: string, bytes: Uint8Array): { meta: any; arrays: Record<string, Typed> } {
  if (!LITTLE_ENDIAN) throw new FormatError('band and layer bytes are little-endian; this platform is not');
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== magic) throw new FormatError(`not cdquant ${magic} bytes`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  if (8 + headerLength > bytes.length) throw new FormatError(`${magic} header runs past the end of the bytes`);
  let header: { meta: any; arrays: Array<{ name: string; type: ArrayType; offset: number; length: number }> };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch {
    throw new FormatError(`${magic} header is not valid JSON`);
  }
  const start = Math.ceil((8 + headerLength) / 8) * 8;
  const arrays: Record<string, Typed> = {};
  for (const e of header.arrays) {
    const Ctor = CTOR[e.type];
    if (!Ctor) throw new FormatError(`${magic} array ${e.name} has unknown type ${e.type}`);
    const byteLength = e.length * Ctor.BYTES_PER_ELEMENT;
    if (start + e.offset + byteLength > bytes.length) throw new FormatError(`${magic} array ${e.name} runs past the end of the bytes`);
    // Copied out, so the result owns aligned, transferable buffers.
    const copy = bytes.slice(start + e.offset, start + e.offset + byteLength);
    arrays[e.name] = new Ctor(copy.buffer);
  }
  return { meta: header.meta, arrays };
}

/** A band result as bytes (for another process, a file, an HTTP body). */
export function encodeBand(band: BandResult): Uint8Array {
  const { r0, r1, ...arrays } = band;
  return encode('CDQB', { version: 1, r0, r1 }, arrays);
}

/** The inverse of encodeBand(): the very same arrays. */
export function decodeBand(bytes: Uint8Array): BandResult {
  const { meta, arrays } = decode('CDQB', bytes);
  return {
    r0: meta.r0,
    r1: meta.r1,
    codes: arrays.codes as Uint8Array,
    scales: arrays.scales as Float32Array,
    zeros: arrays.zeros as Float32Array,
    values: arrays.values as Float32Array,
    rowLoss: arrays.rowLoss as Float64Array,
    rtnRowLoss: arrays.rtnRowLoss as Float64Array,
    moves: (arrays.moves as Int32Array | undefined) ?? null,
  };
}

/** A prepared layer as bytes, so band jobs elsewhere skip the H-side preparation. */
export function encodePrepared(prepared: PreparedLayer): Uint8Array {
  const { cols, options, dampUsed, ...arrays } = prepared;
  return encode('CDQP', { version: 1, cols, options, dampUsed }, arrays);
}

/** The inverse of encodePrepared(). */
export function decodePrepared(bytes: Uint8Array): PreparedLayer {
  const { meta, arrays } = decode('CDQP', bytes);
  return {
    cols: meta.cols,
    options: meta.options,
    dampUsed: meta.dampUsed,
    hessian: arrays.hessian as Float32Array,
    dead: arrays.dead as Int32Array,
    perm: (arrays.perm as Int32Array | undefined) ?? null,
    gptqFactor: (arrays.gptqFactor as Float32Array | undefined) ?? null,
    gIdx: arrays.gIdx as Int32Array,
  };
}
