// The GGUF v3 container (llama.cpp's ggml/include/gguf.h, ggml/src/gguf.cpp; gguf-py's
// gguf_writer.py / gguf_reader.py): everything little-endian,
//
//   "GGUF" | u32 version | u64 tensor count | u64 metadata count
//   metadata:     string key | u32 value type | value      (arrays: u32 item type | u64 count | items)
//   tensor infos: string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset
//   padding to `general.alignment` (default 32), counted from the start of the file
//   data section: each tensor at its offset (a multiple of the alignment), zero-padded after
//
// with strings as u64 byte length + UTF-8 bytes (no terminator). ne[0] is the row length
// (the fastest-varying dimension): a PyTorch [out, in] weight is ne = [in, out].
//
// The reader never needs the whole file: it parses a prefix (the async reader grows the prefix
// until the header fits) and returns each tensor's byte range, so tensors can be read lazily.
// Every count, length, dimension and offset is checked against the file size before anything
// is allocated or indexed. The writer computes the header and every tensor's offset from
// descriptors alone, so a model can be written tensor by tensor without holding the file.
import { FormatError, OptionError, DtypeError, ShapeError } from '../core/errors.js';
import { GGUF_VALUE_TYPE, type GgufMetadata, type GgufScalarType, type GgufValue } from './gguf-types.js';
import { readF32LE, leBytes, blobSource, bytesSource, readBytesExactly, type ByteSource } from './bytes.js';
import { f16Table32, f32ArrayToF16, f32ArrayToBf16, HOST_LITTLE_ENDIAN } from './half.js';

export { blobSource, bytesSource, type ByteSource };

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** llama.cpp's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;
/** llama.cpp's GGML_MAX_NAME: names must be shorter (they are stored NUL-terminated in 64 bytes). */
export const GGUF_MAX_NAME_BYTES = 63;

/**
 * ggml tensor types that may appear in a GGUF file: id, elements per block, bytes per block
 * (gguf-py's GGML_QUANT_SIZES). Ids 4, 5, 31-33 and 36-38 were removed from the format and
 * are refused like any unknown id.
 */
export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, typeSize: 4 },
  F16: { id: 1, blockSize: 1, typeSize: 2 },
  Q4_0: { id: 2, blockSize: 32, typeSize: 18 },
  Q4_1: { id: 3, blockSize: 32, typeSize: 20 },
  Q5_0: { id: 6, blockSize: 32, typeSize: 22 },
  Q5_1: { id: 7, blockSize: 32, typeSize: 24 },
  Q8_0: { id: 8, blockSize: 32, typeSize: 34 },
  Q8_1: { id: 9, blockSize: 32, typeSize: 36 },
  Q2_K: { id: 10, blockSize: 256, typeSize: 84 },
  Q3_K: { id: 11, blockSize: 256, typeSize: 110 },
  Q4_K: { id: 12, blockSize: 256, typeSize: 144 },
  Q5_K: { id: 13, blockSize: 256, typeSize: 176 },
  Q6_K: { id: 14, blockSize: 256, typeSize: 210 },
  Q8_K: { id: 15, blockSize: 256, typeSize: 292 },
  IQ2_XXS: { id: 16, blockSize: 256, typeSize: 66 },
  IQ2_XS: { id: 17, blockSize: 256, typeSize: 74 },
  IQ3_XXS: { id: 18, blockSize: 256, typeSize: 98 },
  IQ1_S: { id: 19, blockSize: 256, typeSize: 50 },
  IQ4_NL: { id: 20, blockSize: 32, typeSize: 18 },
  IQ3_S: { id: 21, blockSize: 256, typeSize: 110 },
  IQ2_S: { id: 22, blockSize: 256, typeSize: 82 },
  IQ4_XS: { id: 23, blockSize: 256, typeSize: 136 },
  I8: { id: 24, blockSize: 1, typeSize: 1 },
  I16: { id: 25, blockSize: 1, typeSize: 2 },
  I32: { id: 26, blockSize: 1, typeSize: 4 },
  I64: { id: 27, blockSize: 1, typeSize: 8 },
  F64: { id: 28, blockSize: 1, typeSize: 8 },
  IQ1_M: { id: 29, blockSize: 256, typeSize: 56 },
  BF16: { id: 30, blockSize: 1, typeSize: 2 },
  TQ1_0: { id: 34, blockSize: 256, typeSize: 54 },
  TQ2_0: { id: 35, blockSize: 256, typeSize: 66 },
  MXFP4: { id: 39, blockSize: 32, typeSize: 17 },
  NVFP4: { id: 40, blockSize: 64, typeSize: 36 },
  Q1_0: { id: 41, blockSize: 128, typeSize: 18 },
  Q2_0: { id: 42, blockSize: 64, typeSize: 18 },
} as const;

export type GgmlType = keyof typeof GGML_TYPES;

const TYPE_BY_ID = new Map<number, GgmlType>(Object.entries(GGML_TYPES).map(([name, t]) => [t.id, name as GgmlType]));

/** The ggml type with numeric id `id`, or undefined for ids the format does not define. */
export function ggmlTypeById(id: number): GgmlType | undefined {
  return TYPE_BY_ID.get(id);
}

function isGgmlType(t: unknown): t is GgmlType {
  return typeof t === 'string' && Object.prototype.hasOwnProperty.call(GGML_TYPES, t);
}

/** Bytes of a tensor of `type` with ggml dims `ne` (ne[0] a multiple of the block size). */
export function ggmlByteLength(type: GgmlType, ne: readonly number[]): number {
  const { blockSize, typeSize } = GGML_TYPES[type];
  const elements = ne.reduce((a, b) => a * b, 1);
  return (elements / blockSize) * typeSize;
}

/** One tensor of a GGUF file. */
export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the row length. A PyTorch [rows, cols] weight has dims [cols, rows]. */
  dims: number[];
  type: GgmlType;
  elements: number;
  byteLength: number;
  /** From the start of the data section (a multiple of the alignment). */
  offset: number;
  /** From the start of the file: dataOffset + offset. */
  fileOffset: number;
}

/** A parsed GGUF header: metadata and where every tensor's bytes are. */
export interface GgufFile {
  version: number;
  metadata: GgufMetadata;
  alignment: number;
  /** Start of the data section in the file. */
  dataOffset: number;
  fileSize: number;
  /** In the order of the tensor infos. */
  tensors: GgufTensorInfo[];
  byName: Map<string, GgufTensorInfo>;
}

// ------------------------------------------------------------------------------------ reader

/** Thrown inside the parser when the prefix ends before the header does (the file may not). */
class PrefixTooShort {
  constructor(readonly needed: number) {}
}

const VALUE_TYPE_NAME = new Map<number, keyof typeof GGUF_VALUE_TYPE>(
  Object.entries(GGUF_VALUE_TYPE).map(([name, id]) => [id, name as keyof typeof GGUF_VALUE_TYPE]),
);
const SCALAR_SIZE: Record<Exclude<GgufScalarType, 'string'>, number> = {
  u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8,
};
const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(private readonly bytes: Uint8Array, readonly fileSize: number) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Ensures n more bytes exist in the file (FormatError) and in the prefix (PrefixTooShort). */
  need(n: number, what: string): void {
    const end = this.pos + n;
    if (!(end <= this.fileSize)) {
      throw new FormatError(`GGUF: ${what} needs ${n} bytes at offset ${this.pos}, past the end of the ${this.fileSize}-byte file (truncated?)`);
    }
    if (end > this.bytes.length) throw new PrefixTooShort(end);
  }

  get remaining(): number {
    return this.fileSize - this.pos;
  }

  u8(what: string): number { this.need(1, what); return this.view.getUint8(this.pos++); }
  i8(what: string): number { this.need(1, what); return this.view.getInt8(this.pos++); }
  u16(what: string): number { this.need(2, what); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(what: string): number { this.need(2, what); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(what: string): number { this.need(4, what); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(what: string): number { this.need(4, what); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(what: string): number { this.need(4, what); const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(what: string): number { this.need(8, what); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(what: string): bigint { this.need(8, what); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64(what: string): bigint { this.need(8, what); const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }

  raw(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A u64 count that must not exceed what the rest of the file could hold at `minBytes` each. */
  count(what: string, minBytes: number): number {
    const at = this.pos;
    const n = this.u64(what);
    const room = BigInt(Math.floor((this.fileSize - this.pos) / minBytes));
    if (n > room) {
      throw new FormatError(`GGUF: ${what} = ${n} (at offset ${at}) cannot fit in the ${this.fileSize - this.pos} bytes left in the file`);
    }
    return Number(n);
  }

  string(what: string): string {
    const len = this.count(`${what} length`, 1);
    const b = this.raw(len, what);
    try {
      return utf8.decode(b);
    } catch {
      throw new FormatError(`GGUF: ${what} is not valid UTF-8`);
    }
  }
}

function readScalar(c: Cursor, type: GgufScalarType, what: string): number | bigint | boolean | string {
  switch (type) {
    case 'u8': return c.u8(what);
    case 'i8': return c.i8(what);
    case 'u16': return c.u16(what);
    case 'i16': return c.i16(what);
    case 'u32': return c.u32(what);
    case 'i32': return c.i32(what);
    case 'f32': return c.f32(what);
    case 'f64': return c.f64(what);
    case 'u64': return c.u64(what);
    case 'i64': return c.i64(what);
    case 'string': return c.string(what);
    case 'bool': {
      const at = c.pos;
      const b = c.u8(what);
      if (b > 1) throw new FormatError(`GGUF: ${what} is a bool stored as ${b} at offset ${at} (must be 0 or 1)`);
      return b === 1;
    }
  }
}

function valueType(c: Cursor, what: string): keyof typeof GGUF_VALUE_TYPE {
  const at = c.pos;
  const id = c.u32(`${what} type`);
  const name = VALUE_TYPE_NAME.get(id);
  if (!name) throw new FormatError(`GGUF: ${what} has unknown value type ${id} (at offset ${at})`);
  return name;
}

function readValue(c: Cursor, what: string): GgufValue {
  const type = valueType(c, what);
  if (type !== 'array') return { type, value: readScalar(c, type, what) } as GgufValue;
  const itemType = valueType(c, `${what} array item`);
  if (itemType === 'array') throw new FormatError(`GGUF: ${what} is an array of arrays (not supported by llama.cpp)`);
  // Strings take at least their 8-byte length each: bounds the count before anything is allocated.
  const n = c.count(`${what} array count`, itemType === 'string' ? 8 : SCALAR_SIZE[itemType]);
  if (itemType === 'string') {
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = c.string(`${what}[${i}]`);
    return { type, itemType, value: out };
  }
  if (itemType === 'bool') {
    const out: boolean[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = readScalar(c, 'bool', `${what}[${i}]`) as boolean;
    return { type, itemType, value: out };
  }
  const size = SCALAR_SIZE[itemType];
  const b = c.raw(n * size, `${what} array data`);
  if (itemType === 'u64' || itemType === 'i64') {
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out: bigint[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = itemType === 'u64' ? view.getBigUint64(8 * i, true) : view.getBigInt64(8 * i, true);
    return { type, itemType, value: out };
  }
  return { type, itemType, value: typedFromLE(itemType, b, n) };
}

type NumericItem = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
const TYPED: Record<NumericItem, { new (n: number): ArrayLike<number> & { [i: number]: number }; BYTES_PER_ELEMENT: number }> = {
  u8: Uint8Array, i8: Int8Array, u16: Uint16Array, i16: Int16Array, u32: Uint32Array, i32: Int32Array, f32: Float32Array, f64: Float64Array,
};
const GETTER: Record<NumericItem, (v: DataView, o: number) => number> = {
  u8: (v, o) => v.getUint8(o), i8: (v, o) => v.getInt8(o),
  u16: (v, o) => v.getUint16(o, true), i16: (v, o) => v.getInt16(o, true),
  u32: (v, o) => v.getUint32(o, true), i32: (v, o) => v.getInt32(o, true),
  f32: (v, o) => v.getFloat32(o, true), f64: (v, o) => v.getFloat64(o, true),
};

function typedFromLE(type: NumericItem, b: Uint8Array, n: number): ArrayLike<number> {
  const Ctor = TYPED[type];
  const out = new Ctor(n);
  if (HOST_LITTLE_ENDIAN) {
    new Uint8Array((out as unknown as Uint8Array).buffer).set(b);
    return out;
  }
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < n; i++) out[i] = GETTER[type](view, i * Ctor.BYTES_PER_ELEMENT);
  return out;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

function parseFrom(bytes: Uint8Array, fileSize: number): GgufFile {
  const c = new Cursor(bytes, fileSize);
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const text = Array.from(bytes.subarray(0, 4), (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '?')).join('');
    throw new FormatError(`GGUF: bad magic "${text}" (expected "GGUF")`);
  }
  const version = c.u32('version');
  if ((version & 0xffff) === 0 && version !== 0) throw new FormatError(`GGUF: version ${version} looks byte-swapped (big-endian files are not supported)`);
  // v2 and v3 share this layout (v3 only added the big-endian variant); v1 used 32-bit counts.
  if (version !== 2 && version !== 3) throw new FormatError(`GGUF: version ${version} is not supported (2 or 3)`);
  // Each tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes,
  // each metadata entry at least 8 (key length) + 1 (key) + 4 (type) + 1 (value).
  const nTensors = c.count('tensor count', 24);
  const nKv = c.count('metadata count', 14);

  const metadata: GgufMetadata = new Map();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key #${i}`);
    if (key.length === 0) throw new FormatError(`GGUF: metadata key #${i} is empty`);
    if (metadata.has(key)) throw new FormatError(`GGUF: metadata key "${key}" appears twice`);
    metadata.set(key, readValue(c, `metadata "${key}"`));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignValue = metadata.get('general.alignment');
  if (alignValue) {
    if (alignValue.type !== 'u32') throw new FormatError(`GGUF: general.alignment must be a u32, not ${alignValue.type}`);
    alignment = alignValue.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) throw new FormatError(`GGUF: general.alignment ${alignment} is not a power of two`);
  }

  const tensors: GgufTensorInfo[] = [];
  const byName = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor #${i} name`);
    const label = `tensor "${name}"`;
    if (name.length === 0) throw new FormatError(`GGUF: tensor #${i} has an empty name`);
    if (utf8Encoder.encode(name).length > GGUF_MAX_NAME_BYTES) throw new FormatError(`GGUF: ${label} name is longer than ${GGUF_MAX_NAME_BYTES} bytes`);
    if (byName.has(name)) throw new FormatError(`GGUF: ${label} appears twice`);
    const nDims = c.u32(`${label} n_dims`);
    if (nDims < 1 || nDims > GGUF_MAX_DIMS) throw new FormatError(`GGUF: ${label} has ${nDims} dimensions (1 to ${GGUF_MAX_DIMS} allowed)`);
    const ne: bigint[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = c.i64(`${label} ne[${d}]`);
      if (v < 0n) throw new FormatError(`GGUF: ${label} ne[${d}] = ${v} is negative`);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`GGUF: ${label} ne[${d}] = ${v} is too large`);
      ne.push(v);
    }
    const at = c.pos;
    const typeId = c.u32(`${label} type`);
    const type = ggmlTypeById(typeId);
    if (!type) throw new FormatError(`GGUF: ${label} has unknown ggml type ${typeId} (at offset ${at})`);
    const { blockSize, typeSize } = GGML_TYPES[type];
    if (ne[0] % BigInt(blockSize) !== 0n) throw new FormatError(`GGUF: ${label} of type ${type} has rows of ${ne[0]} elements, not a multiple of its block size ${blockSize}`);
    const elements = ne.reduce((a, b) => a * b, 1n);
    const byteLength = (elements / BigInt(blockSize)) * BigInt(typeSize);
    // Compared in bigint, so absurd dims cannot overflow into a plausible size.
    if (byteLength > BigInt(fileSize)) throw new FormatError(`GGUF: ${label} [${ne.join(', ')}] ${type} needs ${byteLength} bytes, more than the ${fileSize}-byte file`);
    const offset = c.u64(`${label} offset`);
    if (offset % BigInt(alignment) !== 0n) throw new FormatError(`GGUF: ${label} offset ${offset} is not a multiple of the alignment ${alignment}`);
    if (offset > BigInt(fileSize)) throw new FormatError(`GGUF: ${label} offset ${offset} is past the end of the ${fileSize}-byte file`);
    const info: GgufTensorInfo = {
      name, dims: ne.map(Number), type, elements: Number(elements), byteLength: Number(byteLength), offset: Number(offset), fileOffset: 0,
    };
    tensors.push(info);
    byName.set(name, info);
  }

  // llama.cpp pads to the alignment only when there are tensors.
  const dataOffset = nTensors > 0 ? alignUp(c.pos, alignment) : c.pos;
  if (dataOffset > fileSize) throw new FormatError(`GGUF: the data section would start at ${dataOffset}, past the end of the ${fileSize}-byte file`);
  const dataSize = fileSize - dataOffset;
  for (const t of tensors) {
    t.fileOffset = dataOffset + t.offset;
    if (t.offset + t.byteLength > dataSize) {
      throw new FormatError(`GGUF: tensor "${t.name}" (bytes ${t.offset}..${t.offset + t.byteLength} of the data section) runs past the end of the file (data section has ${dataSize} bytes)`);
    }
  }
  const sorted = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    const b = sorted[i];
    if (b.offset < a.offset + a.byteLength) throw new FormatError(`GGUF: tensors "${a.name}" and "${b.name}" overlap (data offsets ${a.offset}+${a.byteLength} and ${b.offset})`);
  }
  return { version, metadata, alignment, dataOffset, fileSize, tensors, byName };
}

/**
 * Parses a GGUF header from `bytes`, the whole file or a prefix of a file of `fileSize` bytes.
 * Tensor data is not touched: use `tensorData` (whole file in memory) or `readTensorData`.
 * A prefix that ends before the header does is an OptionError saying how many bytes are needed.
 */
export function parseGgufHeader(bytes: Uint8Array, fileSize: number = bytes.length): GgufFile {
  if (!(bytes instanceof Uint8Array)) throw new OptionError('parseGgufHeader: bytes must be a Uint8Array');
  if (!Number.isSafeInteger(fileSize) || fileSize < bytes.length) throw new OptionError(`parseGgufHeader: fileSize ${fileSize} must be an integer >= the ${bytes.length} bytes given`);
  try {
    return parseFrom(bytes, fileSize);
  } catch (e) {
    if (e instanceof PrefixTooShort) throw new OptionError(`parseGgufHeader: the header needs at least ${e.needed} bytes, only ${bytes.length} given`);
    throw e;
  }
}

async function readExactly(source: ByteSource, offset: number, length: number, what: string): Promise<Uint8Array> {
  return readBytesExactly(source, offset, length, `GGUF: reading ${what}`);
}

/** Headers larger than this are refused (a vocabulary of 256k tokens needs about 10 MB). */
export const GGUF_MAX_HEADER_BYTES = 512 * 1024 * 1024;

/**
 * Reads a GGUF header from `source`, fetching a prefix of `firstRead` bytes and growing it only
 * as far as the header reaches. Tensor data is not read.
 */
export async function readGgufHeader(source: ByteSource, { firstRead = 1 << 20, maxHeaderBytes = GGUF_MAX_HEADER_BYTES } = {}): Promise<GgufFile> {
  const size = source.size;
  if (!Number.isSafeInteger(size) || size < 0) throw new OptionError(`readGgufHeader: source size ${size} must be a non-negative integer`);
  let prefix = await readExactly(source, 0, Math.min(size, firstRead), 'the header');
  for (;;) {
    try {
      return parseFrom(prefix, size);
    } catch (e) {
      if (!(e instanceof PrefixTooShort)) throw e;
      if (e.needed > maxHeaderBytes) throw new FormatError(`GGUF: the header is larger than ${maxHeaderBytes} bytes (needs ${e.needed})`);
      const grown = Math.min(size, maxHeaderBytes, Math.max(e.needed, 2 * prefix.length));
      const more = await readExactly(source, prefix.length, grown - prefix.length, 'the header');
      const next = new Uint8Array(grown);
      next.set(prefix);
      next.set(more, prefix.length);
      prefix = next;
    }
  }
}

/** The bytes of tensor `info` inside the whole file `bytes` (a view, not a copy). */
export function tensorData(file: GgufFile, bytes: Uint8Array, info: GgufTensorInfo): Uint8Array {
  if (bytes.length !== file.fileSize) throw new OptionError(`tensorData: ${bytes.length} bytes given, the header was parsed for a ${file.fileSize}-byte file`);
  return bytes.subarray(info.fileOffset, info.fileOffset + info.byteLength);
}

/** Reads the bytes of tensor `info` from `source`. */
export function readTensorData(source: ByteSource, info: GgufTensorInfo): Promise<Uint8Array> {
  return readExactly(source, info.fileOffset, info.byteLength, `tensor "${info.name}"`);
}

// ------------------------------------------------------------------- float codecs (F32/F16/BF16)

/** Encodes float32 values (row-major, `rows` x `rowLength`) as one ggml type's bytes. */
export type GgmlEncoder = (values: Float32Array, rows: number, rowLength: number) => Uint8Array;
/** Decodes one ggml type's bytes back to float32 values. */
export type GgmlDecoder = (bytes: Uint8Array, elements: number) => Float32Array;

export const FLOAT_ENCODERS: Partial<Record<GgmlType, GgmlEncoder>> = {
  F32: (v) => leBytes(v),
  F16: (v) => leBytes(f32ArrayToF16(v)),
  BF16: (v) => leBytes(f32ArrayToBf16(v)),
};

const u16s = (b: Uint8Array, n: number) => typedFromLE('u16', b, n) as Uint16Array;

export const FLOAT_DECODERS: Partial<Record<GgmlType, GgmlDecoder>> = {
  F32: (b, n) => readF32LE(b, 0, n),
  F16: (b, n) => {
    const h = u16s(b, n);
    const t = f16Table32();
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = t[h[i]];
    return out;
  },
  BF16: (b, n) => {
    const h = u16s(b, n);
    const out = new Float32Array(n);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = h[i] << 16;
    return out;
  },
};

/** Decodes tensor bytes to float32 with `decoders` (F32/F16/BF16 by default); DtypeError for other types. */
export function decodeTensor(info: GgufTensorInfo, bytes: Uint8Array, decoders: Partial<Record<GgmlType, GgmlDecoder>> = FLOAT_DECODERS): Float32Array {
  const decode = decoders[info.type];
  if (!decode) throw new DtypeError(`GGUF: tensor "${info.name}" has type ${info.type}, which cannot be decoded here (supported: ${Object.keys(decoders).join(', ')})`);
  if (bytes.length !== info.byteLength) throw new ShapeError(`GGUF: tensor "${info.name}" needs ${info.byteLength} bytes, got ${bytes.length}`);
  const out = decode(bytes, info.elements);
  if (out.length !== info.elements) throw new ShapeError(`GGUF: decoder for ${info.type} returned ${out.length} values for tensor "${info.name}", expected ${info.elements}`);
  return out;
}

// ------------------------------------------------------------------------------------ writer

/** A tensor to lay out: name, ggml dims (dims[0] = row length) and type. */
export interface GgufTensorDescriptor {
  name: string;
  dims: readonly number[];
  type: GgmlType;
}

/** Where everything goes in a file, computed before any tensor byte exists. */
export interface GgufPlan {
  /** Magic through tensor infos plus the padding up to the data section: the file's first bytes. */
  header: Uint8Array;
  alignment: number;
  dataOffset: number;
  fileSize: number;
  tensors: GgufTensorInfo[];
}

/** Grows as needed; little-endian writes. */
class ByteWriter {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // room() may replace the buffer, so it runs before this.view is read.
  u8(v: number) { const at = this.room(1); this.view.setUint8(at, v); }
  i8(v: number) { const at = this.room(1); this.view.setInt8(at, v); }
  u16(v: number) { const at = this.room(2); this.view.setUint16(at, v, true); }
  i16(v: number) { const at = this.room(2); this.view.setInt16(at, v, true); }
  u32(v: number) { const at = this.room(4); this.view.setUint32(at, v, true); }
  i32(v: number) { const at = this.room(4); this.view.setInt32(at, v, true); }
  f32(v: number) { const at = this.room(4); this.view.setFloat32(at, v, true); }
  f64(v: number) { const at = this.room(8); this.view.setFloat64(at, v, true); }
  u64(v: bigint) { const at = this.room(8); this.view.setBigUint64(at, v, true); }
  i64(v: bigint) { const at = this.room(8); this.view.setBigInt64(at, v, true); }
  bytes(b: Uint8Array) { const at = this.room(b.length); this.buf.set(b, at); }
  string(s: string) { const b = utf8Encoder.encode(s); this.u64(BigInt(b.length)); this.bytes(b); }
  zeros(n: number) { this.room(n); } // fresh bytes are zero: the buffer only grows by copying into zeroed memory
  result(): Uint8Array { return this.buf.slice(0, this.length); }
}

const INT_RANGE: Record<'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32', [number, number]> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff], u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};

function writeScalar(w: ByteWriter, type: GgufScalarType, v: unknown, what: string): void {
  const bad = (why: string): never => { throw new OptionError(`GGUF writer: ${what}: ${why}`); };
  switch (type) {
    case 'u8': case 'i8': case 'u16': case 'i16': case 'u32': case 'i32': {
      const [lo, hi] = INT_RANGE[type];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad(`${String(v)} is not a ${type}`);
      w[type](v as number);
      return;
    }
    case 'f32': case 'f64':
      if (typeof v !== 'number') bad(`${String(v)} is not a number`);
      w[type](v as number);
      return;
    case 'u64': case 'i64': {
      const ok = typeof v === 'bigint' && (type === 'u64' ? v >= 0n && v < 1n << 64n : v >= -(1n << 63n) && v < 1n << 63n);
      if (!ok) bad(`${String(v)} is not a ${type} bigint`);
      w[type](v as bigint);
      return;
    }
    case 'bool':
      if (typeof v !== 'boolean') bad(`${String(v)} is not a boolean`);
      w.u8(v ? 1 : 0);
      return;
    case 'string':
      if (typeof v !== 'string') bad(`${String(v)} is not a string`);
      w.string(v as string);
      return;
  }
}

function writeValue(w: ByteWriter, v: GgufValue, what: string): void {
  const id = GGUF_VALUE_TYPE[v.type];
  if (id === undefined) throw new OptionError(`GGUF writer: ${what} has unknown type ${String(v.type)}`);
  w.u32(id);
  if (v.type !== 'array') {
    writeScalar(w, v.type, v.value, what);
    return;
  }
  const itemId = GGUF_VALUE_TYPE[v.itemType];
  if (itemId === undefined || v.itemType === ('array' as string)) throw new OptionError(`GGUF writer: ${what} has unsupported array item type ${String(v.itemType)}`);
  w.u32(itemId);
  const items = v.value as ArrayLike<unknown>;
  w.u64(BigInt(items.length));
  for (let i = 0; i < items.length; i++) writeScalar(w, v.itemType, items[i], `${what}[${i}]`);
}

/**
 * Lays out a GGUF file: serializes the header (metadata in Map order, then tensor infos in the
 * given order) and gives each tensor its offset, padding every tensor to the alignment as
 * llama.cpp and gguf-py do. `general.alignment` in `metadata` (a u32 power of two) overrides 32.
 */
export function planGguf(metadata: GgufMetadata, tensors: readonly GgufTensorDescriptor[]): GgufPlan {
  if (!(metadata instanceof Map)) throw new OptionError('GGUF writer: metadata must be a Map');
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignValue = metadata.get('general.alignment');
  if (alignValue) {
    if (alignValue.type !== 'u32' || !(alignValue.value > 0) || (alignValue.value & (alignValue.value - 1)) !== 0) {
      throw new OptionError('GGUF writer: general.alignment must be a u32 power of two');
    }
    alignment = alignValue.value;
  }
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(BigInt(tensors.length));
  w.u64(BigInt(metadata.size));
  for (const [key, value] of metadata) {
    if (typeof key !== 'string' || key.length === 0) throw new OptionError('GGUF writer: metadata keys must be non-empty strings');
    w.string(key);
    writeValue(w, value, `metadata "${key}"`);
  }
  const infos: GgufTensorInfo[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    const label = `GGUF writer: tensor "${t.name}"`;
    if (typeof t.name !== 'string' || t.name.length === 0) throw new OptionError('GGUF writer: tensor names must be non-empty strings');
    if (utf8Encoder.encode(t.name).length > GGUF_MAX_NAME_BYTES) throw new OptionError(`${label}: name is longer than ${GGUF_MAX_NAME_BYTES} bytes`);
    if (names.has(t.name)) throw new OptionError(`${label} appears twice`);
    names.add(t.name);
    if (!isGgmlType(t.type)) throw new DtypeError(`${label}: unknown ggml type ${String(t.type)}`);
    const dims = Array.from(t.dims);
    if (dims.length < 1 || dims.length > GGUF_MAX_DIMS || !dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
      throw new ShapeError(`${label}: dims [${dims.join(', ')}] must be 1 to ${GGUF_MAX_DIMS} positive integers`);
    }
    const { blockSize } = GGML_TYPES[t.type];
    if (dims[0] % blockSize !== 0) throw new ShapeError(`${label}: rows of ${dims[0]} elements are not a multiple of the ${t.type} block size ${blockSize}`);
    const elements = dims.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(elements)) throw new ShapeError(`${label}: dims [${dims.join(', ')}] hold too many elements`);
    const byteLength = ggmlByteLength(t.type, dims);
    w.string(t.name);
    w.u32(dims.length);
    for (const d of dims) w.i64(BigInt(d));
    w.u32(GGML_TYPES[t.type].id);
    w.u64(BigInt(offset));
    infos.push({ name: t.name, dims, type: t.type, elements, byteLength, offset, fileOffset: 0 });
    offset += alignUp(byteLength, alignment);
  }
  // llama.cpp's writer pads even when there are no tensors (its reader then does not skip it).
  const dataOffset = alignUp(w.length, alignment);
  w.zeros(dataOffset - w.length);
  for (const t of infos) t.fileOffset = dataOffset + t.offset;
  return { header: w.result(), alignment, dataOffset, fileSize: dataOffset + offset, tensors: infos };
}

/** Bytes of zero padding after tensor `info` of `plan`. */
export function paddingAfter(plan: GgufPlan, info: GgufTensorInfo): number {
  return alignUp(info.byteLength, plan.alignment) - info.byteLength;
}

/** Tensor bytes as one array or as chunks (e.g. a block of rows at a time). */
export type TensorChunks = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/**
 * Streams a planned file to `sink`: the header, then each tensor's bytes from `produce`
 * (called once per tensor, in order; its chunks must add up to the planned byte length),
 * each followed by its padding. Nothing but the current chunk is held.
 */
export async function writeGguf(
  plan: GgufPlan,
  produce: (info: GgufTensorInfo, index: number) => TensorChunks | Promise<TensorChunks>,
  sink: (chunk: Uint8Array) => void | Promise<void>,
): Promise<void> {
  await sink(plan.header);
  const zeros = new Uint8Array(plan.alignment);
  for (let i = 0; i < plan.tensors.length; i++) {
    const info = plan.tensors[i];
    const data = await produce(info, i);
    let written = 0;
    const emit = async (chunk: Uint8Array) => {
      if (!(chunk instanceof Uint8Array)) throw new OptionError(`GGUF writer: tensor "${info.name}" produced a chunk that is not a Uint8Array`);
      written += chunk.length;
      if (written > info.byteLength) throw new ShapeError(`GGUF writer: tensor "${info.name}" produced more than its ${info.byteLength} bytes`);
      await sink(chunk);
    };
    if (data instanceof Uint8Array) await emit(data);
    else if (Symbol.asyncIterator in (data as object)) for await (const ch of data as AsyncIterable<Uint8Array>) await emit(ch);
    else for (const ch of data as Iterable<Uint8Array>) await emit(ch);
    if (written !== info.byteLength) throw new ShapeError(`GGUF writer: tensor "${info.name}" produced ${written} bytes, expected ${info.byteLength}`);
    const pad = paddingAfter(plan, info);
    if (pad > 0) await sink(zeros.subarray(0, pad));
  }
}

/** A tensor with its bytes, for files assembled in memory. */
export interface GgufTensorWithData extends GgufTensorDescriptor {
  data: Uint8Array;
}

/** A whole GGUF file in memory (small models; large ones go through planGguf + writeGguf). */
export function assembleGguf(metadata: GgufMetadata, tensors: readonly GgufTensorWithData[]): Uint8Array {
  const plan = planGguf(metadata, tensors);
  const out = new Uint8Array(plan.fileSize);
  out.set(plan.header, 0);
  plan.tensors.forEach((info, i) => {
    const data = tensors[i].data;
    if (!(data instanceof Uint8Array) || data.length !== info.byteLength) {
      throw new ShapeError(`GGUF writer: tensor "${info.name}" has ${data?.length ?? 'no'} bytes, expected ${info.byteLength}`);
    }
    out.set(data, info.fileOffset);
  });
  return out;
}
