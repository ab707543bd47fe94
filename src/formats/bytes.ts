// Little-endian typed reads and writes that work at any byte offset: file sections are not
// guaranteed to be aligned to the element size relative to the underlying ArrayBuffer.
import { FormatError } from '../core/errors.js';
import { HOST_LITTLE_ENDIAN } from './half.js';

type Ctor<T> = { new (buffer: ArrayBuffer): T; BYTES_PER_ELEMENT: number };

function readLE<T>(C: Ctor<T>, get: (v: DataView, o: number) => number, bytes: Uint8Array, offset: number, count: number): T {
  const size = C.BYTES_PER_ELEMENT;
  const copy = bytes.slice(offset, offset + count * size); // fresh, aligned buffer
  if (!HOST_LITTLE_ENDIAN && size > 1) {
    const view = new DataView(copy.buffer);
    const out = new C(new ArrayBuffer(count * size)) as unknown as { [i: number]: number };
    for (let i = 0; i < count; i++) out[i] = get(view, i * size);
    return out as unknown as T;
  }
  return new C(copy.buffer);
}

export const readF32LE = (b: Uint8Array, o: number, n: number) =>
  readLE(Float32Array, (v, p) => v.getFloat32(p, true), b, o, n);
export const readF64LE = (b: Uint8Array, o: number, n: number) =>
  readLE(Float64Array, (v, p) => v.getFloat64(p, true), b, o, n);
export const readI32LE = (b: Uint8Array, o: number, n: number) =>
  readLE(Int32Array, (v, p) => v.getInt32(p, true), b, o, n);
export const readU32LE = (b: Uint8Array, o: number, n: number) =>
  readLE(Uint32Array, (v, p) => v.getUint32(p, true), b, o, n);
export const readI16LE = (b: Uint8Array, o: number, n: number) =>
  readLE(Int16Array, (v, p) => v.getInt16(p, true), b, o, n);
export const readU16LE = (b: Uint8Array, o: number, n: number) =>
  readLE(Uint16Array, (v, p) => v.getUint16(p, true), b, o, n);
export const readI64LE = (b: Uint8Array, o: number, n: number) =>
  readLE(BigInt64Array, (v, p) => v.getBigInt64(p, true) as unknown as number, b, o, n);
export const readU64LE = (b: Uint8Array, o: number, n: number) =>
  readLE(BigUint64Array, (v, p) => v.getBigUint64(p, true) as unknown as number, b, o, n);

/** The bytes of a typed array in little-endian order (a view when the host already is LE). */
export function leBytes(a: ArrayBufferView & { BYTES_PER_ELEMENT?: number; length?: number }): Uint8Array {
  const u8 = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const size = (a as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT ?? 1;
  if (HOST_LITTLE_ENDIAN || size === 1) return u8;
  const out = new Uint8Array(u8.length);
  for (let i = 0; i < u8.length; i += size) for (let j = 0; j < size; j++) out[i + j] = u8[i + size - 1 - j];
  return out;
}

/** A file readable at offsets: Node reads at file positions, browsers `File.slice`. Large
 * checkpoints are read through one, a tensor at a time, never whole. */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A ByteSource over a Blob or File (browsers; Node 18+ has Blob too). */
export function blobSource(blob: Blob): ByteSource {
  return {
    size: blob.size,
    read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
  };
}

/** A ByteSource over bytes already in memory. */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: async (offset, length) => bytes.subarray(offset, offset + length) };
}

/** Exactly `length` bytes at `offset`, or a FormatError saying what was being read (a source
 * that returns fewer bytes was truncated or changed under us). */
export async function readBytesExactly(source: ByteSource, offset: number, length: number, what: string): Promise<Uint8Array> {
  if (offset + length > source.size) throw new FormatError(`${what}: ${length} bytes at ${offset} lie past the end of the ${source.size}-byte file`);
  const b = await source.read(offset, length);
  if (!(b instanceof Uint8Array) || b.length !== length) {
    throw new FormatError(`${what}: reading ${length} bytes at ${offset} returned ${b?.length ?? 'nothing'} (file changed or truncated?)`);
  }
  return b;
}
