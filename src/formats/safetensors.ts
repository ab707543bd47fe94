// safetensors: u64 LE header length N, N bytes of UTF-8 JSON, then the raw tensor bytes.
// Files come from anywhere, so the parser checks every number before it indexes or
// allocates with it, and reports every problem as a FormatError/DtypeError naming the tensor.
import { DtypeError, FormatError, OptionError, ShapeError } from '../core/errors.js';
import { readBytesExactly, type ByteSource } from './bytes.js';
import {
  readF32LE, readF64LE, readI16LE, readI32LE, readI64LE, readU16LE, readU32LE, readU64LE, leBytes,
} from './bytes.js';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from './half.js';
import { parseJsonStrict } from './json.js';

export type SafetensorsDtype =
  | 'BOOL' | 'U8' | 'I8' | 'U16' | 'I16' | 'F16' | 'BF16' | 'U32' | 'I32' | 'F32' | 'F64' | 'I64' | 'U64';

export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 1, U8: 1, I8: 1, U16: 2, I16: 2, F16: 2, BF16: 2, U32: 4, I32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute offset into the bytes given to parseSafetensors. */
  byteOffset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  /** In header order. */
  tensors: Map<string, TensorInfo>;
  /** Where the data section starts (8 + header length). */
  dataOffset: number;
}

/** Larger headers are refused before decoding: the reference implementation uses the same 100 MB cap. */
export const MAX_HEADER_BYTES = 100_000_000;

const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
const isDtype = (s: string): s is SafetensorsDtype => hasOwn(DTYPE_SIZE, s);
const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parses a safetensors header. `bytes` is the whole file, or (for files read lazily) a
 * prefix of it that holds the header, with `fileSize` the whole file's size. */
export function parseSafetensors(bytes: Uint8Array, fileSize: number = bytes.length): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) throw new FormatError('safetensors: expected a Uint8Array');
  if (bytes.length < 8) throw new FormatError(`safetensors: file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  // Comparing the two halves avoids ever forming a number above 2^53.
  if (hi !== 0 || lo > MAX_HEADER_BYTES) {
    throw new FormatError(`safetensors: header length ${hi * 2 ** 32 + lo} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const n = lo;
  if (8 + n > fileSize) {
    throw new FormatError(`safetensors: header length ${n} runs past the end of the ${fileSize}-byte file (truncated?)`);
  }
  if (8 + n > bytes.length) throw new FormatError(`safetensors: the ${bytes.length} bytes given end inside the ${n}-byte header`);
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text so JSON.parse rejects it, as the reference parser does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new FormatError('safetensors: header is not valid UTF-8');
  }
  // Duplicate keys refused: JSON.parse would keep the last of two entries for one tensor.
  const header = parseJsonStrict(text, 'safetensors: header');
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new FormatError('safetensors: header must be a JSON object');
  }
  const dataOffset = 8 + n;
  const dataLength = fileSize - dataOffset;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const name of Object.keys(header)) {
    const entry = (header as Record<string, unknown>)[name];
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
        throw new FormatError('safetensors: __metadata__ must be an object of strings');
      }
      for (const k of Object.keys(entry)) {
        const v = (entry as Record<string, unknown>)[k];
        if (typeof v !== 'string') throw new FormatError(`safetensors: __metadata__ value for "${k}" is ${typeof v}, not a string`);
        metadata[k] = v;
      }
      continue;
    }
    tensors.set(name, parseEntry(name, entry, dataOffset, dataLength));
  }
  // Overlaps would let one write alias another tensor's bytes. Gaps between tensors are allowed
  // (the reference library refuses them) since they are harmless to read.
  // Zero-length tensors occupy no bytes and may sit anywhere, even on another tensor's start.
  const spans = [...tensors.values()].filter((t) => t.byteLength > 0).sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < spans.length; i++) {
    const a = spans[i - 1];
    const b = spans[i];
    if (b.byteOffset < a.byteOffset + a.byteLength) {
      throw new FormatError(`safetensors: tensor "${b.name}" overlaps tensor "${a.name}"`);
    }
  }
  return { metadata, tensors, dataOffset };
}

function parseEntry(name: string, entry: unknown, dataOffset: number, dataLength: number): TensorInfo {
  const where = `safetensors: tensor "${name}"`;
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new FormatError(`${where}: entry must be an object`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string') throw new FormatError(`${where}: dtype is missing or not a string`);
  if (!isDtype(dtype)) throw new DtypeError(`${where}: unknown dtype "${dtype}"`);
  if (!Array.isArray(shape)) throw new FormatError(`${where}: shape is missing or not an array`);
  let count = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (!isIndex(d)) throw new FormatError(`${where}: shape[${i}] = ${JSON.stringify(d)} is not a non-negative integer`);
    count *= d;
    if (!Number.isSafeInteger(count)) throw new FormatError(`${where}: shape [${shape.join(', ')}] has too many elements`);
  }
  const byteLength = count * DTYPE_SIZE[dtype];
  if (!Number.isSafeInteger(byteLength)) throw new FormatError(`${where}: shape [${shape.join(', ')}] is too large`);
  if (!Array.isArray(offsets) || offsets.length !== 2) throw new FormatError(`${where}: data_offsets must be an array of two integers`);
  const [begin, end] = offsets;
  if (!isIndex(begin) || !isIndex(end)) throw new FormatError(`${where}: data_offsets ${JSON.stringify(offsets)} are not non-negative integers`);
  if (end < begin) throw new FormatError(`${where}: data_offsets end ${end} is before begin ${begin}`);
  if (end > dataLength) throw new FormatError(`${where}: data_offsets end ${end} is past the ${dataLength}-byte data section (truncated?)`);
  if (end - begin !== byteLength) {
    throw new FormatError(`${where}: shape [${shape.join(', ')}] of ${dtype} needs ${byteLength} bytes but data_offsets span ${end - begin}`);
  }
  return { name, dtype, shape: shape.slice() as number[], byteOffset: dataOffset + begin, byteLength };
}

function info(file: SafetensorsFile, name: string): TensorInfo {
  const t = file.tensors.get(name);
  if (!t) throw new FormatError(`safetensors: no tensor named "${name}"`);
  return t;
}

function checkBytes(t: TensorInfo, bytes: Uint8Array) {
  if (t.byteOffset + t.byteLength > bytes.length) {
    throw new FormatError(`safetensors: tensor "${t.name}" lies past the end of the given bytes (were these the parsed bytes?)`);
  }
}

/** Reads a float tensor as float32: F32 copied, F16/BF16 widened exactly, F64 rounded to nearest. */
export function readTensorF32(file: SafetensorsFile, bytes: Uint8Array, name: string): Float32Array {
  const t = info(file, name);
  checkBytes(t, bytes);
  const n = t.byteLength / DTYPE_SIZE[t.dtype];
  switch (t.dtype) {
    case 'F32': return readF32LE(bytes, t.byteOffset, n);
    case 'F16': return f16ArrayToF32(readU16LE(bytes, t.byteOffset, n));
    case 'BF16': return bf16ArrayToF32(readU16LE(bytes, t.byteOffset, n));
    case 'F64': return Float32Array.from(readF64LE(bytes, t.byteOffset, n));
    default: throw new DtypeError(`safetensors: tensor "${name}" has dtype ${t.dtype}, not a float type`);
  }
}

export type RawTensor =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

/** The tensor's values in the typed array of its dtype (F16/BF16 as their Uint16 bit patterns, BOOL as Uint8). */
export function readTensorRaw(file: SafetensorsFile, bytes: Uint8Array, name: string): RawTensor {
  const t = info(file, name);
  checkBytes(t, bytes);
  const o = t.byteOffset;
  const n = t.byteLength / DTYPE_SIZE[t.dtype];
  switch (t.dtype) {
    case 'BOOL': case 'U8': return bytes.slice(o, o + n);
    case 'I8': return new Int8Array(bytes.slice(o, o + n).buffer);
    case 'U16': case 'F16': case 'BF16': return readU16LE(bytes, o, n);
    case 'I16': return readI16LE(bytes, o, n);
    case 'U32': return readU32LE(bytes, o, n);
    case 'I32': return readI32LE(bytes, o, n);
    case 'F32': return readF32LE(bytes, o, n);
    case 'F64': return readF64LE(bytes, o, n);
    case 'I64': return readI64LE(bytes, o, n) as unknown as BigInt64Array;
    case 'U64': return readU64LE(bytes, o, n) as unknown as BigUint64Array;
  }
}

export type WritableDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'U8';

export interface TensorToWrite {
  name: string;
  dtype: WritableDtype;
  shape: number[];
  /** F32/F16/BF16: Float32Array (F16/BF16 are rounded to nearest even), or Uint16Array of ready bits
   * for F16/BF16; I32: Int32Array; U8: Uint8Array. */
  data: Float32Array | Uint16Array | Int32Array | Uint8Array;
}

function encodeData(t: TensorToWrite): Uint8Array {
  const { dtype, data, name } = t;
  const bad = () => new DtypeError(`safetensors: tensor "${name}": cannot write ${data.constructor.name} as ${dtype}`);
  switch (dtype) {
    case 'F32':
      if (!(data instanceof Float32Array)) throw bad();
      return leBytes(data);
    case 'F16': case 'BF16':
      if (data instanceof Uint16Array) return leBytes(data);
      if (!(data instanceof Float32Array)) throw bad();
      return leBytes(dtype === 'F16' ? f32ArrayToF16(data) : f32ArrayToBf16(data));
    case 'I32':
      if (!(data instanceof Int32Array)) throw bad();
      return leBytes(data);
    case 'U8':
      if (!(data instanceof Uint8Array)) throw bad();
      return data;
    default:
      throw new DtypeError(`safetensors: writing dtype "${dtype as string}" is not supported (F32, F16, BF16, I32, U8)`);
  }
}

/** What a safetensors file will hold, before any tensor's bytes exist. */
export interface TensorLayout {
  name: string;
  dtype: WritableDtype;
  shape: number[];
}

/** The header (8-byte length, JSON, space padding to 8 bytes) of a file holding `tensors` in
 * this order, and each tensor's byte length: a file can then be written tensor by tensor. */
export function planSafetensors(tensors: readonly TensorLayout[], metadata?: Record<string, string>): { header: Uint8Array; sizes: number[] } {
  const json: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new OptionError(`safetensors: metadata value for "${k}" must be a string`);
    }
    json.__metadata__ = { ...metadata };
  }
  const sizes: number[] = [];
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__') throw new OptionError('safetensors: "__metadata__" is reserved and cannot name a tensor');
    if (seen.has(t.name)) throw new OptionError(`safetensors: tensor "${t.name}" given twice`);
    seen.add(t.name);
    if (!isDtype(t.dtype)) throw new DtypeError(`safetensors: tensor "${t.name}": unknown dtype "${t.dtype as string}"`);
    const bytes = elementCount(t) * DTYPE_SIZE[t.dtype];
    json[t.name] = { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + bytes] };
    sizes.push(bytes);
    offset += bytes;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil(text.length / 8) * 8;
  const header = new Uint8Array(8 + padded);
  new DataView(header.buffer).setUint32(0, padded, true);
  header.set(text, 8);
  header.fill(0x20, 8 + text.length);
  return { header, sizes };
}

function elementCount(t: TensorLayout): number {
  let count = 1;
  for (const d of t.shape) {
    if (!isIndex(d)) throw new ShapeError(`safetensors: tensor "${t.name}": bad dimension ${d} in shape [${t.shape.join(', ')}]`);
    count *= d;
  }
  return count;
}

/** A tensor's bytes as safetensors stores them (F16/BF16 from float32: round to nearest even). */
export function encodeTensor(t: TensorToWrite): Uint8Array {
  const count = elementCount(t);
  if (t.data.length !== count) {
    throw new ShapeError(`safetensors: tensor "${t.name}": shape [${t.shape.join(', ')}] has ${count} elements but data has ${t.data.length}`);
  }
  return encodeData(t);
}

/** Serializes tensors in the given order; the header is space-padded so the data starts 8-aligned. */
export function writeSafetensors(
  tensors: TensorToWrite[] | Record<string, Omit<TensorToWrite, 'name'>>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list: TensorToWrite[] = Array.isArray(tensors)
    ? tensors
    : Object.keys(tensors).map((name) => ({ name, ...tensors[name] }));
  const { header, sizes } = planSafetensors(list, metadata);
  const out = new Uint8Array(header.length + sizes.reduce((a, b) => a + b, 0));
  out.set(header);
  let p = header.length;
  list.forEach((t) => {
    const bytes = encodeTensor(t);
    out.set(bytes, p);
    p += bytes.length;
  });
  return out;
}

/** The header of a safetensors file read lazily from `source`: two small reads, no tensor data. */
export async function readSafetensorsHeader(source: ByteSource, what = 'safetensors file'): Promise<SafetensorsFile> {
  if (source.size < 8) throw new FormatError(`${what}: ${source.size} bytes, shorter than the 8-byte header length`);
  const head = await readBytesExactly(source, 0, 8, what);
  const view = new DataView(head.buffer, head.byteOffset, 8);
  const lo = view.getUint32(0, true);
  if (view.getUint32(4, true) !== 0 || lo > MAX_HEADER_BYTES || 8 + lo > source.size) {
    return parseSafetensors(head, source.size); // refuses it, with the same message as a whole file
  }
  const prefix = new Uint8Array(8 + lo);
  prefix.set(head);
  prefix.set(await readBytesExactly(source, 8, lo, what), 8);
  return parseSafetensors(prefix, source.size);
}

/** A float tensor read from `source` as float32 (widened exactly as readTensorF32). */
export async function readTensorF32From(file: SafetensorsFile, source: ByteSource, name: string): Promise<Float32Array> {
  const t = info(file, name);
  const bytes = await readBytesExactly(source, t.byteOffset, t.byteLength, `safetensors tensor "${name}"`);
  return readTensorF32({ ...file, tensors: new Map([[name, { ...t, byteOffset: 0 }]]) }, bytes, name);
}

/** The raw little-endian bytes of a tensor read from `source`. */
export function readTensorBytesFrom(file: SafetensorsFile, source: ByteSource, name: string): Promise<Uint8Array> {
  const t = info(file, name);
  return readBytesExactly(source, t.byteOffset, t.byteLength, `safetensors tensor "${name}"`);
}
