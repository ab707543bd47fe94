// GGUF tensor data types over the wasm kernel: the type table, llama.cpp's own quantizers
// (ggml_quantize_chunk, with and without an importance matrix) and dequantizers, and each block
// type's exact grid (integer codes + stored parameters + per-group affine map) for solvers
// that choose codes themselves. All arithmetic runs in wasm (assembly/gguf/); this file checks
// shapes, ranges and finiteness and moves bytes.
//
// Rows: a tensor of rows x cols (PyTorch [out, in]; GGUF's ne = [cols, rows]) is quantized row
// by row; a row is cols / blockElems blocks laid end to end, rows follow each other.
import { FormatError, NonFiniteError, OptionError, ShapeError, assertFinite } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import type { GgmlDecoder, GgmlType } from './gguf.js';

export type GgufBlockTypeName =
  | 'F32' | 'F16' | 'BF16' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

export interface GgufTypeInfo {
  name: GgufBlockTypeName;
  /** ggml_type id (ggml.h), as stored in a GGUF tensor info. */
  id: number;
  /** Elements per block (1 for the float types). */
  blockElems: number;
  /** Bytes per block: sizeof the ggml-common.h struct. */
  blockBytes: number;
  /** Block types: elements per group (one affine map each): 32, or 16 for Q2_K, Q3_K, Q6_K. 0 for float types. */
  groupSize: number;
  /** Largest integer code (codes are 0..maxq); 0 for float types. */
  maxq: number;
  /** The fixed zero z in value(c) = a * (c - z) + b. */
  zero: number;
  /** Byte offsets in a block of its stored fp16 parameters: [d] or [d, m/dmin]. */
  halfOffsets: readonly number[];
  /** Largest sub-block scale code (k-quants; Q6_K's are int8 bytes: 255), 0 if none. */
  maxSubScale: number;
  /** Largest sub-block min code (Q2_K, Q4_K, Q5_K), 0 if none. */
  maxSubMin: number;
}

const t = (
  name: GgufBlockTypeName, id: number, blockElems: number, blockBytes: number, groupSize: number, maxq: number,
  zero: number, halfOffsets: number[], maxSubScale = 0, maxSubMin = 0,
): GgufTypeInfo => ({ name, id, blockElems, blockBytes, groupSize, maxq, zero, halfOffsets, maxSubScale, maxSubMin });

/** The types this module reads and writes, by ggml name. */
export const GGUF_BLOCK_TYPES: Readonly<Record<GgufBlockTypeName, GgufTypeInfo>> = {
  F32: t('F32', 0, 1, 4, 0, 0, 0, []),
  F16: t('F16', 1, 1, 2, 0, 0, 0, []),
  BF16: t('BF16', 30, 1, 2, 0, 0, 0, []),
  Q4_0: t('Q4_0', 2, 32, 18, 32, 15, 8, [0]),
  Q4_1: t('Q4_1', 3, 32, 20, 32, 15, 0, [0, 2]),
  Q5_0: t('Q5_0', 6, 32, 22, 32, 31, 16, [0]),
  Q5_1: t('Q5_1', 7, 32, 24, 32, 31, 0, [0, 2]),
  Q8_0: t('Q8_0', 8, 32, 34, 32, 255, 128, [0]),
  Q2_K: t('Q2_K', 10, 256, 84, 16, 3, 0, [80, 82], 15, 15),
  Q3_K: t('Q3_K', 11, 256, 110, 16, 7, 4, [108], 63),
  Q4_K: t('Q4_K', 12, 256, 144, 32, 15, 0, [0, 2], 63, 63),
  Q5_K: t('Q5_K', 13, 256, 176, 32, 31, 0, [0, 2], 63, 63),
  Q6_K: t('Q6_K', 14, 256, 210, 16, 63, 32, [208], 255),
};

/** Looks a type up by name or ggml id; OptionError for anything else. */
export function ggufTypeInfo(type: GgufBlockTypeName | number): GgufTypeInfo {
  const info = typeof type === 'number'
    ? Object.values(GGUF_BLOCK_TYPES).find((i) => i.id === type)
    : GGUF_BLOCK_TYPES[type as GgufBlockTypeName];
  if (!info) throw new OptionError(`unsupported GGUF tensor type ${JSON.stringify(type)} (supported: ${Object.keys(GGUF_BLOCK_TYPES).join(', ')})`);
  return info;
}

/** Bytes of one row of `cols` elements; ShapeError if the type's blocks do not tile the row. */
export function ggufRowBytes(type: GgufBlockTypeName | number, cols: number): number {
  const info = ggufTypeInfo(type);
  checkShape(info, 1, cols);
  return (cols / info.blockElems) * info.blockBytes;
}

function checkShape(info: GgufTypeInfo, rows: number, cols: number): void {
  if (!Number.isSafeInteger(rows) || rows < 0) throw new ShapeError(`${info.name}: row count must be a non-negative integer, got ${rows}`);
  if (!Number.isSafeInteger(cols) || cols <= 0) throw new ShapeError(`${info.name}: row length must be a positive integer, got ${cols}`);
  if (cols % info.blockElems !== 0) {
    throw new ShapeError(`${info.name} needs rows whose length is a multiple of ${info.blockElems}; got ${cols}`);
  }
  // The kernel indexes with 32-bit integers.
  if (rows * cols * 4 > 2 ** 31) throw new ShapeError(`${info.name}: ${rows} x ${cols} is too large for one call; split the rows`);
}

function checkLength(what: string, got: number, want: number): void {
  if (got !== want) throw new ShapeError(`${what}: expected ${want} elements, got ${got}`);
}

function blockType(type: GgufBlockTypeName | number): GgufTypeInfo {
  const info = ggufTypeInfo(type);
  if (!info.groupSize) throw new OptionError(`${info.name} is a float type: it has no integer grid`);
  return info;
}

/** Throws NonFiniteError if a stored fp16 parameter (d, m, dmin) of a block is Inf or NaN. */
function checkStoredHalves(info: GgufTypeInfo, bytes: Uint8Array, what: string): void {
  const blocks = bytes.length / info.blockBytes;
  for (let i = 0; i < blocks; i++) {
    for (const off of info.halfOffsets) {
      const o = i * info.blockBytes + off;
      if (((bytes[o] | (bytes[o + 1] << 8)) & 0x7c00) === 0x7c00) {
        throw new NonFiniteError(`${what}: block ${i} stores a non-finite fp16 scale at byte ${o}`);
      }
    }
  }
}

/**
 * llama.cpp's quantization of rows x cols float32 weights into `type` (what llama-quantize
 * writes): ggml_quantize_chunk, with the reference quantizers when `importance` is absent and
 * the importance-weighted ones (importance = one non-negative weight per column, llama.cpp's
 * imatrix entry for the tensor) when present. Q8_0, F16, BF16, F32 ignore importance, as in
 * ggml. NonFiniteError for non-finite input or a result whose fp16 scales overflow.
 */
export function quantizeRows(
  kernel: Kernel, type: GgufBlockTypeName | number, data: Float32Array, rows: number, cols: number, importance?: Float32Array,
): Uint8Array {
  const info = ggufTypeInfo(type);
  checkShape(info, rows, cols);
  checkLength(`${info.name} quantize input`, data.length, rows * cols);
  assertFinite(data, `${info.name} quantize input`);
  if (importance) {
    checkLength(`${info.name} importance weights`, importance.length, cols);
    assertFinite(importance, `${info.name} importance weights`);
    for (let i = 0; i < cols; i++) {
      if (importance[i] < 0) throw new OptionError(`${info.name} importance weights: negative weight ${importance[i]} at column ${i}`);
    }
  }
  const outBytes = rows * (cols / info.blockElems) * info.blockBytes;
  const out = kernel.scoped((alloc, put) => {
    const dst = alloc(outBytes);
    kernel.exports.ggufQuantize(info.id, put(data), rows, cols, importance ? put(importance) : 0, dst);
    return kernel.u8(dst, outBytes).slice();
  });
  if (info.groupSize) checkStoredHalves(info, out, `${info.name} quantization (values too large for its fp16 scales)`);
  else if (info.name !== 'F32') {
    const h = new Uint16Array(out.buffer, 0, rows * cols);
    const mask = info.name === 'F16' ? 0x7c00 : 0x7f80;
    for (let i = 0; i < h.length; i++) {
      if ((h[i] & mask) === mask) throw new NonFiniteError(`${info.name} quantization: element ${i} (${data[i]}) overflows ${info.name}`);
    }
  }
  return out;
}

/** ggml's dequantize_row_* (to_float) of rows x cols stored as `type`. FormatError for a byte
 * length that does not match; NonFiniteError for stored Inf/NaN (scales or float elements). */
export function dequantizeRows(kernel: Kernel, type: GgufBlockTypeName | number, bytes: Uint8Array, rows: number, cols: number): Float32Array {
  const info = ggufTypeInfo(type);
  checkShape(info, rows, cols);
  checkBytes(info, bytes, rows, cols);
  if (info.groupSize) checkStoredHalves(info, bytes, `${info.name} data`);
  else if (info.name !== 'F32') {
    const mask = info.name === 'F16' ? 0x7c00 : 0x7f80;
    for (let i = 0; i < rows * cols; i++) {
      if (((bytes[2 * i] | (bytes[2 * i + 1] << 8)) & mask) === mask) throw new NonFiniteError(`${info.name} data: element ${i} is Inf or NaN`);
    }
  }
  return kernel.scoped((alloc, put) => {
    const dst = alloc(rows * cols * 4);
    kernel.exports.ggufDequantize(info.id, put(bytes), rows, cols, dst);
    const out = kernel.f32(dst, rows * cols).slice();
    if (info.name === 'F32') assertFinite(out, 'F32 data');
    return out;
  });
}

function checkBytes(info: GgufTypeInfo, bytes: Uint8Array, rows: number, cols: number): void {
  const want = rows * (cols / info.blockElems) * info.blockBytes;
  if (bytes.length !== want) {
    throw new FormatError(`${info.name} data for ${rows} x ${cols}: expected ${want} bytes (${info.blockBytes} per ${info.blockElems} elements), got ${bytes.length}`);
  }
}

/** A block type's stored parameters for rows x cols. */
export interface GgufGridParams {
  /** Per block: [d, second] fp16 bits; second is m (Q4_1, Q5_1), dmin (Q2_K, Q4_K, Q5_K) or 0. */
  halves: Uint16Array;
  /** Per group (k-quants; empty otherwise): the sub-block scale code. Q2_K 0..15; Q3_K 0..63
   * (scale = code - 32); Q4_K/Q5_K 0..63; Q6_K the int8 scale's byte (two's complement). */
  subScales: Uint8Array;
  /** Per group (Q2_K 0..15, Q4_K/Q5_K 0..63; zeros for other k-quants; empty otherwise). */
  subMins: Uint8Array;
}

/** Codes on a grid plus the grid: what ggml decodes, split into what a solver may change. */
export interface GgufGrid extends GgufGridParams {
  type: GgufBlockTypeName;
  rows: number;
  cols: number;
  /** One per element, 0..maxq (Q8_0: the int8 quant + 128). */
  codes: Uint8Array;
  /** Per group: element = a * f32(code - zero) + b, two f32 operations (see assembly/gguf/grid.ts). */
  a: Float32Array;
  b: Float32Array;
  zero: number;
  maxq: number;
  groupSize: number;
}

function paramSizes(info: GgufTypeInfo, rows: number, cols: number): { blocks: number; groups: number; sub: number } {
  const blocks = rows * (cols / info.blockElems);
  const groups = rows * (cols / info.groupSize);
  return { blocks, groups, sub: info.blockElems === 256 ? groups : 0 };
}

/** Splits rows of a block type into codes, stored parameters and per-group affine maps. */
export function decodeGrid(kernel: Kernel, type: GgufBlockTypeName | number, bytes: Uint8Array, rows: number, cols: number): GgufGrid {
  const info = blockType(type);
  checkShape(info, rows, cols);
  checkBytes(info, bytes, rows, cols);
  checkStoredHalves(info, bytes, `${info.name} data`);
  const { blocks, groups, sub } = paramSizes(info, rows, cols);
  return kernel.scoped((alloc, put) => {
    const codes = alloc(rows * cols), halves = alloc(blocks * 4), sc = alloc(sub), mn = alloc(sub);
    const ga = alloc(groups * 4), gb = alloc(groups * 4);
    kernel.exports.ggufDecodeGrid(info.id, put(bytes), rows, cols, codes, halves, sc, mn, ga, gb);
    return {
      type: info.name, rows, cols,
      codes: kernel.u8(codes, rows * cols).slice(),
      halves: new Uint16Array(kernel.u8(halves, blocks * 4).slice().buffer),
      subScales: kernel.u8(sc, sub).slice(),
      subMins: kernel.u8(mn, sub).slice(),
      a: kernel.f32(ga, groups).slice(),
      b: kernel.f32(gb, groups).slice(),
      zero: info.zero, maxq: info.maxq, groupSize: info.groupSize,
    };
  });
}

function checkParams(info: GgufTypeInfo, p: GgufGridParams, rows: number, cols: number): void {
  const { blocks, sub } = paramSizes(info, rows, cols);
  checkLength(`${info.name} halves`, p.halves.length, blocks * 2);
  checkLength(`${info.name} subScales`, p.subScales.length, sub);
  checkLength(`${info.name} subMins`, p.subMins.length, sub);
  for (let i = 0; i < blocks; i++) {
    for (let h = 0; h < info.halfOffsets.length; h++) {
      if ((p.halves[2 * i + h] & 0x7c00) === 0x7c00) throw new NonFiniteError(`${info.name}: block ${i} has a non-finite fp16 parameter`);
    }
    if (info.halfOffsets.length === 1 && p.halves[2 * i + 1] !== 0) {
      throw new OptionError(`${info.name} stores one fp16 parameter per block; block ${i} has a second (${p.halves[2 * i + 1]})`);
    }
  }
  for (let j = 0; j < sub; j++) {
    if (p.subScales[j] > info.maxSubScale) throw new OptionError(`${info.name}: sub-block scale code ${p.subScales[j]} at group ${j} exceeds ${info.maxSubScale}`);
    if (p.subMins[j] > info.maxSubMin) throw new OptionError(`${info.name}: sub-block min code ${p.subMins[j]} at group ${j} exceeds ${info.maxSubMin}`);
  }
}

/** The bytes ggml reads for `grid`'s codes and stored parameters (a and b are not read). */
export function encodeGrid(kernel: Kernel, grid: Omit<GgufGrid, 'a' | 'b' | 'zero' | 'maxq' | 'groupSize'>): Uint8Array {
  const info = blockType(grid.type);
  const { rows, cols } = grid;
  checkShape(info, rows, cols);
  checkLength(`${info.name} codes`, grid.codes.length, rows * cols);
  checkParams(info, grid, rows, cols);
  for (let i = 0; i < grid.codes.length; i++) {
    if (grid.codes[i] > info.maxq) throw new OptionError(`${info.name}: code ${grid.codes[i]} at element ${i} exceeds ${info.maxq}`);
  }
  const outBytes = rows * (cols / info.blockElems) * info.blockBytes;
  return kernel.scoped((alloc, put) => {
    const dst = alloc(outBytes);
    kernel.exports.ggufEncodeGrid(info.id, put(grid.codes), put(new Uint8Array(grid.halves.buffer, grid.halves.byteOffset, grid.halves.byteLength)),
      put(grid.subScales), put(grid.subMins), rows, cols, dst);
    return kernel.u8(dst, outBytes).slice();
  });
}

/** Per-group (a, b) of stored parameters. */
export function groupAffine(kernel: Kernel, type: GgufBlockTypeName | number, params: GgufGridParams, rows: number, cols: number): { a: Float32Array; b: Float32Array } {
  const info = blockType(type);
  checkShape(info, rows, cols);
  checkParams(info, params, rows, cols);
  const { groups } = paramSizes(info, rows, cols);
  return kernel.scoped((alloc, put) => {
    const ga = alloc(groups * 4), gb = alloc(groups * 4);
    kernel.exports.ggufGroupAffine(info.id, put(new Uint8Array(params.halves.buffer, params.halves.byteOffset, params.halves.byteLength)),
      put(params.subScales), put(params.subMins), rows, cols, ga, gb);
    return { a: kernel.f32(ga, groups).slice(), b: kernel.f32(gb, groups).slice() };
  });
}

/** Every element's value a * (code - zero) + b, evaluated in wasm as ggml decodes it. */
export function gridValues(kernel: Kernel, grid: Pick<GgufGrid, 'type' | 'rows' | 'cols' | 'codes' | 'a' | 'b'>): Float32Array {
  const info = blockType(grid.type);
  const { rows, cols } = grid;
  checkShape(info, rows, cols);
  const { groups } = paramSizes(info, rows, cols);
  checkLength(`${info.name} codes`, grid.codes.length, rows * cols);
  checkLength(`${info.name} a`, grid.a.length, groups);
  checkLength(`${info.name} b`, grid.b.length, groups);
  return kernel.scoped((alloc, put) => {
    const out = alloc(rows * cols * 4);
    kernel.exports.ggufGridValues(info.id, put(grid.codes), put(grid.a), put(grid.b), rows, cols, out);
    return kernel.f32(out, rows * cols).slice();
  });
}

/**
 * Round to nearest on given grids: per element the code whose decoded value is nearest
 * (ties to the code nearest the type's zero), per-group grids (a, b) as from groupAffine.
 */
export function rtnCodes(
  kernel: Kernel, type: GgufBlockTypeName | number, data: Float32Array, a: Float32Array, b: Float32Array, rows: number, cols: number,
): Uint8Array {
  const info = blockType(type);
  checkShape(info, rows, cols);
  const { groups } = paramSizes(info, rows, cols);
  checkLength(`${info.name} weights`, data.length, rows * cols);
  checkLength(`${info.name} a`, a.length, groups);
  checkLength(`${info.name} b`, b.length, groups);
  assertFinite(data, `${info.name} weights`);
  assertFinite(a, `${info.name} a`);
  assertFinite(b, `${info.name} b`);
  return kernel.scoped((alloc, put) => {
    const codes = alloc(rows * cols);
    kernel.exports.ggufRtnCodes(info.id, put(data), put(a), put(b), rows, cols, codes);
    return kernel.u8(codes, rows * cols).slice();
  });
}

function finishGrid(kernel: Kernel, info: GgufTypeInfo, rows: number, cols: number, params: GgufGridParams, data?: Float32Array): GgufGrid {
  checkStoredParamsFinite(info, params);
  const { a, b } = groupAffine(kernel, info.name, params, rows, cols);
  const codes = data ? rtnCodes(kernel, info.name, data, a, b, rows, cols) : new Uint8Array(rows * cols);
  return { type: info.name, rows, cols, codes, ...params, a, b, zero: info.zero, maxq: info.maxq, groupSize: info.groupSize };
}

function checkStoredParamsFinite(info: GgufTypeInfo, p: GgufGridParams): void {
  for (let i = 0; i < p.halves.length; i++) {
    if ((p.halves[i] & 0x7c00) === 0x7c00) throw new NonFiniteError(`${info.name}: a range too large for the fp16 scales (block ${i >> 1})`);
  }
}

function storedParams(kernel: Kernel, info: GgufTypeInfo, rows: number, cols: number, call: (halves: number, sc: number, mn: number) => void): GgufGridParams {
  const { blocks, sub } = paramSizes(info, rows, cols);
  return kernel.scoped((alloc) => {
    const halves = alloc(blocks * 4), sc = alloc(sub), mn = alloc(sub);
    call(halves, sc, mn);
    return {
      halves: new Uint16Array(kernel.u8(halves, blocks * 4).slice().buffer),
      subScales: kernel.u8(sc, sub).slice(),
      subMins: kernel.u8(mn, sub).slice(),
    };
  });
}

function shrinkFactors(info: GgufTypeInfo, p: number | Float32Array, groups: number): Float32Array {
  const f = typeof p === 'number' ? new Float32Array(groups).fill(p) : p;
  checkLength(`${info.name} shrink factors`, f.length, groups);
  for (let i = 0; i < groups; i++) {
    if (!(f[i] > 0) || !Number.isFinite(f[i])) throw new OptionError(`${info.name}: shrink factor ${f[i]} at group ${i} must be a positive finite number`);
  }
  return f;
}

/**
 * OWC's candidate grid for shrink factor p (one number, or one per group): each group's range
 * (min, max) of `data` shrunk to (p * min, p * max) (symmetric types: p * the signed largest
 * value), stored as the format stores it (fp16 d/m; k-quants: integer sub-block codes under
 * fp16 super-scales chosen so every sub-code fits), with the RTN codes of `data` on that
 * stored grid. p = 1 is the format's own min-max rule (for Q4_0..Q8_0 exactly the d and m of
 * llama.cpp's reference quantizer). Rules in assembly/gguf/grid.ts (storeBlockGrid).
 */
export function candidateGrid(kernel: Kernel, type: GgufBlockTypeName | number, data: Float32Array, rows: number, cols: number, p: number | Float32Array = 1): GgufGrid {
  const info = blockType(type);
  checkShape(info, rows, cols);
  checkLength(`${info.name} weights`, data.length, rows * cols);
  assertFinite(data, `${info.name} weights`);
  const { groups } = paramSizes(info, rows, cols);
  const f = shrinkFactors(info, p, groups);
  const params = kernel.scoped((_alloc, put) => {
    const x = put(data), pp = put(f);
    return storedParams(kernel, info, rows, cols, (h, sc, mn) => kernel.exports.ggufCandidateGrid(info.id, x, pp, rows, cols, h, sc, mn));
  });
  return finishGrid(kernel, info, rows, cols, params, data);
}

/**
 * Stored grid for given group ranges lo[g] <= hi[g] (per group, e.g. sub-block ranges picked
 * by a search), by the same rules as candidateGrid; symmetric types use hi if |hi| > |lo|,
 * else lo (candidateGrid breaks that tie by position, as ggml does). With `data`, also its
 * RTN codes on the grid; without, codes are all 0.
 */
export function gridFromRanges(
  kernel: Kernel, type: GgufBlockTypeName | number, lo: Float32Array, hi: Float32Array, rows: number, cols: number, data?: Float32Array,
): GgufGrid {
  const info = blockType(type);
  checkShape(info, rows, cols);
  const { groups } = paramSizes(info, rows, cols);
  checkLength(`${info.name} lo`, lo.length, groups);
  checkLength(`${info.name} hi`, hi.length, groups);
  assertFinite(lo, `${info.name} lo`);
  assertFinite(hi, `${info.name} hi`);
  for (let g = 0; g < groups; g++) {
    if (!(lo[g] <= hi[g])) throw new OptionError(`${info.name}: group ${g} has lo ${lo[g]} > hi ${hi[g]}`);
  }
  if (data) {
    checkLength(`${info.name} weights`, data.length, rows * cols);
    assertFinite(data, `${info.name} weights`);
  }
  const params = kernel.scoped((_alloc, put) => {
    const l = put(lo), h = put(hi);
    return storedParams(kernel, info, rows, cols, (hp, sc, mn) => kernel.exports.ggufGridFromRanges(info.id, l, h, rows, cols, hp, sc, mn));
  });
  return finishGrid(kernel, info, rows, cols, params, data);
}

/** Decoders of the block types, for the GGUF readers (GgufReadOptions.decoders): a tensor's
 * bytes are its rows end to end, so it decodes as one row of all its elements. */
export function blockDecoders(kernel: Kernel): Partial<Record<GgmlType, GgmlDecoder>> {
  const out: Partial<Record<GgmlType, GgmlDecoder>> = {};
  for (const info of Object.values(GGUF_BLOCK_TYPES)) {
    if (info.groupSize) out[info.name as GgmlType] = (bytes, elements) => dequantizeRows(kernel, info.name, bytes, 1, elements);
  }
  return out;
}
