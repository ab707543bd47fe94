// GGUF: the container against files built here byte by byte from gguf.h's layout and against
// node-llama-cpp's own GGUF parser; stories260K written as GGUF and run by llama.cpp itself
// (node-llama-cpp's prebuilt CPU binary) against our forward pass; the Hugging Face copy of
// the model giving the same file; reading back; the llama2.c vocabulary tokenized by
// llama.cpp; hostile files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufFileInfo, type Token } from 'node-llama-cpp';
import { FormatError, OptionError, DtypeError, ShapeError } from '../src/core/errors.js';
import { Kernel } from '../src/core/kernel.js';
import {
  parseGgufHeader, readGgufHeader, planGguf, writeGguf, assembleGguf, decodeTensor, tensorData, blobSource, bytesSource,
  GGML_TYPES, type ByteSource, type GgufFile, type GgufTensorWithData,
} from '../src/formats/gguf.js';
import type { GgufMetadata, GgufValue } from '../src/formats/gguf-types.js';
import { llama2cVocabMetadata } from '../src/formats/gguf-llama2c-vocab.js';
import { GGUF_TOKEN_TYPE } from '../src/formats/gguf-types.js';
import { readTokenizer } from '../src/formats/tokenizer.js';
import {
  writeLlamaGguf, writeLlamaGgufStream, planLlamaGguf, llamaFromGguf, readLlamaGguf, llamaConfigFromGguf,
} from '../src/model/gguf.js';
import { readLlama2c } from '../src/model/checkpoint/llama2c.js';
import { readHfLlama, permuteRopeRows } from '../src/model/checkpoint/hf.js';
import { LlamaRunner } from '../src/model/forward.js';
import { LINEAR_NAMES, type LlamaModel } from '../src/model/types.js';
import { readData, readDataText, rng, sameArray, throwsType, outcome } from './helpers/util.js';
import { loadGgufBytes, disposeLlamaCpp } from './helpers/llamacpp.js';

const model = readLlama2c(readData('stories260K.bin'));
const tok = readTokenizer(readData('tok512.bin'), 512);
const vocab = llama2cVocabMetadata(tok);
const paragraphs = readDataText('tinystories-valid-a.txt').split('\n\n').filter((p) => p.trim().length > 0);
const hf = (dir: string) => readHfLlama({ config: readDataText(`${dir}/config.json`), safetensors: readData(`${dir}/model.safetensors`) });

let kernel: Kernel;
test.before(async () => { kernel = await Kernel.create(); });
test.after(async () => { await disposeLlamaCpp(); });

// ------------------------------------------------------- a GGUF writer written from gguf.h

/** Little-endian bytes appended one field at a time, as gguf.h lays them out. */
class Spec {
  private parts: number[] = [];
  get length() { return this.parts.length; }
  raw(b: ArrayLike<number>) { for (let i = 0; i < b.length; i++) this.parts.push(b[i]); return this; }
  private dv(n: number, f: (v: DataView) => void) { const a = new Uint8Array(n); f(new DataView(a.buffer)); return this.raw(a); }
  u8(v: number) { return this.raw([v & 0xff]); }
  u16(v: number) { return this.dv(2, (d) => d.setUint16(0, v, true)); }
  u32(v: number) { return this.dv(4, (d) => d.setUint32(0, v >>> 0, true)); }
  i32(v: number) { return this.dv(4, (d) => d.setInt32(0, v, true)); }
  u64(v: bigint | number) { return this.dv(8, (d) => d.setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true)); }
  f32(v: number) { return this.dv(4, (d) => d.setFloat32(0, v, true)); }
  f64(v: number) { return this.dv(8, (d) => d.setFloat64(0, v, true)); }
  str(s: string | Uint8Array) { const b = typeof s === 'string' ? new TextEncoder().encode(s) : s; return this.u64(b.length).raw(b); }
  pad(to: number) { while (this.parts.length % to) this.parts.push(0); return this; }
  bytes() { return Uint8Array.from(this.parts); }
}

interface SpecTensor { name: string; dims: (number | bigint)[]; type: number; offset: number | bigint; nDims?: number }
interface SpecFile {
  magic?: string; version?: number; nTensors?: bigint; nKv?: bigint;
  kv: [string, (s: Spec) => void][]; tensors: SpecTensor[]; alignment: number; data: Uint8Array;
}

function specFile(f: SpecFile): Uint8Array {
  const s = new Spec();
  s.raw(new TextEncoder().encode(f.magic ?? 'GGUF')).u32(f.version ?? 3);
  s.u64(f.nTensors ?? BigInt(f.tensors.length)).u64(f.nKv ?? BigInt(f.kv.length));
  for (const [key, body] of f.kv) { s.str(key); body(s); }
  for (const t of f.tensors) {
    s.str(t.name).u32(t.nDims ?? t.dims.length);
    for (const d of t.dims) s.u64(d);
    s.u32(t.type).u64(t.offset);
  }
  if (f.tensors.length) s.pad(f.alignment);
  return Uint8Array.from([...s.bytes(), ...f.data]);
}

// Value type ids from gguf.h's enum gguf_type, ggml type ids from ggml.h's enum ggml_type.
const T = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 };
const G = { F32: 0, F16: 1, Q8_0: 8 };

/** A small file holding every value type and three tensors (alignment 64, F32 / F16 / Q8_0). */
function sampleSpec(): SpecFile {
  const data = new Uint8Array(256);
  const dv = new DataView(data.buffer);
  [1.5, -0.25, 3, 2 ** -126, -1e30, 7].forEach((v, i) => dv.setFloat32(4 * i, v, true)); // "w" F32 [3, 2] at 0
  [0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000].forEach((h, i) => dv.setUint16(64 + 2 * i, h, true)); // "h" F16 [5] at 64
  for (let i = 0; i < 68; i++) data[128 + i] = (i * 37 + 11) & 0xff; // "q" Q8_0 [32, 2] at 128: 2 blocks of 34 bytes
  return {
    alignment: 64,
    kv: [
      ['general.architecture', (s) => s.u32(T.string).str('test')],
      ['general.alignment', (s) => s.u32(T.u32).u32(64)],
      ['k.u8', (s) => s.u32(T.u8).u8(200)],
      ['k.i8', (s) => s.u32(T.i8).u8(-100)],
      ['k.u16', (s) => s.u32(T.u16).u16(60000)],
      ['k.i16', (s) => s.u32(T.i16).u16(-30000)],
      ['k.u32', (s) => s.u32(T.u32).u32(4e9)],
      ['k.i32', (s) => s.u32(T.i32).i32(-2e9)],
      ['k.f32', (s) => s.u32(T.f32).f32(0.1)],
      ['k.bool', (s) => s.u32(T.bool).u8(1)],
      ['k.string', (s) => s.u32(T.string).str('héllo ▁ 日本')],
      ['k.u64', (s) => s.u32(T.u64).u64(2n ** 63n + 5n)],
      ['k.i64', (s) => s.u32(T.i64).u64(-(2n ** 62n))],
      ['k.f64', (s) => s.u32(T.f64).f64(Math.PI)],
      ['a.u8', (s) => s.u32(T.array).u32(T.u8).u64(3).u8(1).u8(2).u8(255)],
      ['a.i16', (s) => s.u32(T.array).u32(T.i16).u64(2).u16(-1).u16(300)],
      ['a.i32', (s) => s.u32(T.array).u32(T.i32).u64(2).i32(-1).i32(7)],
      ['a.f32', (s) => s.u32(T.array).u32(T.f32).u64(2).f32(0.25).f32(-2)],
      ['a.f64', (s) => s.u32(T.array).u32(T.f64).u64(1).f64(1e300)],
      ['a.bool', (s) => s.u32(T.array).u32(T.bool).u64(2).u8(1).u8(0)],
      ['a.u64', (s) => s.u32(T.array).u32(T.u64).u64(2).u64(0).u64(2n ** 64n - 1n)],
      ['a.string', (s) => s.u32(T.array).u32(T.string).u64(3).str('a').str('').str('日本')],
      ['a.empty', (s) => s.u32(T.array).u32(T.u16).u64(0)],
    ],
    tensors: [
      { name: 'w', dims: [3, 2], type: G.F32, offset: 0 },
      { name: 'h', dims: [5], type: G.F16, offset: 64 },
      { name: 'q', dims: [32, 2], type: G.Q8_0, offset: 128 },
    ],
    data,
  };
}

/** The same content as sampleSpec, as our writer's inputs. */
function sampleInputs(): { metadata: GgufMetadata; tensors: GgufTensorWithData[] } {
  const f = sampleSpec();
  const metadata: GgufMetadata = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'test' }],
    ['general.alignment', { type: 'u32', value: 64 }],
    ['k.u8', { type: 'u8', value: 200 }],
    ['k.i8', { type: 'i8', value: -100 }],
    ['k.u16', { type: 'u16', value: 60000 }],
    ['k.i16', { type: 'i16', value: -30000 }],
    ['k.u32', { type: 'u32', value: 4e9 }],
    ['k.i32', { type: 'i32', value: -2e9 }],
    ['k.f32', { type: 'f32', value: 0.1 }],
    ['k.bool', { type: 'bool', value: true }],
    ['k.string', { type: 'string', value: 'héllo ▁ 日本' }],
    ['k.u64', { type: 'u64', value: 2n ** 63n + 5n }],
    ['k.i64', { type: 'i64', value: -(2n ** 62n) }],
    ['k.f64', { type: 'f64', value: Math.PI }],
    ['a.u8', { type: 'array', itemType: 'u8', value: [1, 2, 255] }],
    ['a.i16', { type: 'array', itemType: 'i16', value: [-1, 300] }],
    ['a.i32', { type: 'array', itemType: 'i32', value: [-1, 7] }],
    ['a.f32', { type: 'array', itemType: 'f32', value: [0.25, -2] }],
    ['a.f64', { type: 'array', itemType: 'f64', value: [1e300] }],
    ['a.bool', { type: 'array', itemType: 'bool', value: [true, false] }],
    ['a.u64', { type: 'array', itemType: 'u64', value: [0n, 2n ** 64n - 1n] }],
    ['a.string', { type: 'array', itemType: 'string', value: ['a', '', '日本'] }],
    ['a.empty', { type: 'array', itemType: 'u16', value: [] }],
  ]);
  const tensors: GgufTensorWithData[] = [
    { name: 'w', dims: [3, 2], type: 'F32', data: f.data.slice(0, 24) },
    { name: 'h', dims: [5], type: 'F16', data: f.data.slice(64, 74) },
    { name: 'q', dims: [32, 2], type: 'Q8_0', data: f.data.slice(128, 196) },
  ];
  return { metadata, tensors };
}

/** Awaits `f` and expects it to reject with `Type` (message matching `match`). */
async function rejects(f: () => Promise<unknown>, Type: new (...a: never[]) => Error, match?: RegExp) {
  let error: unknown;
  try { await f(); } catch (e) { error = e; }
  if (!(error instanceof Type)) throw new Error(`expected ${Type.name}, got ${error === undefined ? 'no error' : String(error)}`);
  if (match && !match.test(error.message)) throw new Error(`message "${error.message}" does not match ${match}`);
}

const plainValue = (v: GgufValue | undefined) => (v && v.type === 'array' ? { ...v, value: Array.from(v.value as ArrayLike<unknown>) } : v);

test('container: a file built from gguf.h parses to exactly its fields', () => {
  const bytes = specFile(sampleSpec());
  const f = parseGgufHeader(bytes);
  const want = sampleInputs();
  assert.is(f.version, 3);
  assert.is(f.alignment, 64);
  assert.is(f.fileSize, bytes.length);
  assert.equal([...f.metadata.keys()], [...want.metadata.keys()]);
  for (const [k, v] of want.metadata) {
    // f32 values come back rounded to float32 (0.1 -> 0.10000000149...)
    const expected = v.type === 'f32' ? { type: 'f32', value: Math.fround(v.value) } : v;
    assert.equal(plainValue(f.metadata.get(k)), plainValue(expected as GgufValue), k);
  }
  // Tensor infos end at 8+4+... bytes; the data section starts at the next multiple of 64.
  const infoEnd = bytes.length - 256;
  assert.is(f.dataOffset % 64, 0);
  assert.is(f.dataOffset, infoEnd);
  assert.equal(f.tensors.map((t) => [t.name, t.dims, t.type, t.offset, t.byteLength, t.fileOffset]), [
    ['w', [3, 2], 'F32', 0, 24, infoEnd],
    ['h', [5], 'F16', 64, 10, infoEnd + 64],
    ['q', [32, 2], 'Q8_0', 128, 68, infoEnd + 128], // 2 blocks x (2-byte scale + 32 int8)
  ]);
  // Decoded values: IEEE half 0x3c00 = 1, 0xc000 = -2, 0x7bff = 65504 (largest), 0x0001 = 2^-24, 0x8000 = -0.
  sameArray(decodeTensor(f.byName.get('h')!, tensorData(f, bytes, f.byName.get('h')!)), [1, -2, 65504, 2 ** -24, -0], 'F16 decode');
  sameArray(decodeTensor(f.byName.get('w')!, tensorData(f, bytes, f.byName.get('w')!)), [1.5, -0.25, 3, 2 ** -126, Math.fround(-1e30), 7], 'F32 decode');
  throwsType(() => decodeTensor(f.byName.get('q')!, tensorData(f, bytes, f.byName.get('q')!)), DtypeError, /Q8_0/);
});

test('container: the writer produces the gguf.h bytes exactly, streamed or assembled', async () => {
  const expected = specFile(sampleSpec());
  const { metadata, tensors } = sampleInputs();
  const assembled = assembleGguf(metadata, tensors);
  sameArray(assembled, expected, 'assembled file vs gguf.h layout');
  const plan = planGguf(metadata, tensors);
  assert.is(plan.header.length, plan.dataOffset);
  assert.is(plan.fileSize, expected.length);
  const chunks: Uint8Array[] = [];
  // Tensor bytes offered in pieces (as a block-by-block encoder would) must stream the same file.
  await writeGguf(plan, (_info, i) => (function* () { const d = tensors[i].data; for (let p = 0; p < d.length; p += 7) yield d.subarray(p, p + 7); })(), (c) => { chunks.push(c.slice()); });
  sameArray(Uint8Array.from(chunks.flatMap((c) => [...c])), expected, 'streamed file');
  assert.ok(Math.max(...chunks.slice(1).map((c) => c.length)) <= 64, 'no chunk larger than a piece or a padding run');
  // A producer that gives the wrong number of bytes is caught.
  await rejects(() => writeGguf(plan, (_info, i) => tensors[i].data.subarray(1), () => {}), ShapeError, /"w" produced 23 bytes/);
  // Metadata only (a vocabulary file): llama.cpp's writer still pads to the alignment.
  const metaOnly = assembleGguf(metadata, []);
  assert.is(metaOnly.length % 64, 0);
  assert.equal([...parseGgufHeader(metaOnly).metadata.keys()], [...metadata.keys()]);
  assert.is(parseGgufHeader(metaOnly).tensors.length, 0);
  // Writer-side validation
  throwsType(() => planGguf(metadata, [{ name: 'q', dims: [31], type: 'Q8_0' }]), ShapeError, /block size/);
  throwsType(() => planGguf(metadata, [{ name: 'x', dims: [2], type: 'F32' }, { name: 'x', dims: [2], type: 'F32' }]), OptionError, /twice/);
  throwsType(() => planGguf(metadata, [{ name: 'n'.repeat(64), dims: [2], type: 'F32' }]), OptionError, /longer/);
  throwsType(() => planGguf(metadata, [{ name: 'x', dims: [2], type: 'Q9' as never }]), DtypeError);
  throwsType(() => planGguf(new Map([['k', { type: 'u8', value: 256 }]]), []), OptionError, /"k"/);
  throwsType(() => planGguf(new Map([['k', { type: 'u64', value: 1 as never }]]), []), OptionError, /"k"/);
  throwsType(() => planGguf(new Map([['general.alignment', { type: 'u32', value: 48 }]]), []), OptionError, /alignment/);
});

test('container: node-llama-cpp\'s own GGUF parser reads our file the same way', async () => {
  const { metadata, tensors } = sampleInputs();
  const bytes = assembleGguf(metadata, tensors);
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-gguf-'));
  try {
    writeFileSync(join(dir, 'sample.gguf'), bytes);
    const info = await readGgufFileInfo(join(dir, 'sample.gguf'), { logWarnings: false });
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    assert.is(md.general.architecture, 'test');
    assert.is(md.k.u16, 60000);
    assert.is(md.k.i32, -2e9);
    assert.is(md.k.string, 'héllo ▁ 日本');
    assert.is(BigInt(md.k.u64 as bigint), 2n ** 63n + 5n);
    assert.is(md.k.f64, Math.PI);
    assert.equal(Array.from(md.a.string as string[]), ['a', '', '日本']);
    assert.is(Number(info.tensorInfo!.length), 3);
    const ours = parseGgufHeader(bytes);
    info.tensorInfo!.forEach((t, i) => {
      assert.is(t.name, ours.tensors[i].name);
      assert.equal(t.dimensions.map(Number), ours.tensors[i].dims);
      assert.is(Number(t.ggmlType), GGML_TYPES[ours.tensors[i].type].id);
      assert.is(Number(t.offset), ours.tensors[i].offset);
      assert.is(Number(t.fileOffset), ours.tensors[i].fileOffset);
    });
    assert.is(Number(info.infoEndOffset), ours.dataOffset);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A ByteSource that records every read. */
function recording(bytes: Uint8Array): ByteSource & { reads: [number, number][] } {
  const reads: [number, number][] = [];
  return { size: bytes.length, reads, read: async (o, n) => { reads.push([o, n]); return bytes.slice(o, o + n); } };
}

test('container: the header is read from a growing prefix, tensor data only on request', async () => {
  const bytes = writeLlamaGguf(model, { metadata: vocab });
  const whole = parseGgufHeader(bytes);
  const src = recording(bytes);
  const lazy = await readGgufHeader(src, { firstRead: 100 });
  assert.equal(lazy.tensors, whole.tensors);
  assert.equal([...lazy.metadata.keys()], [...whole.metadata.keys()]);
  // The prefix doubles as it grows, so it may overshoot the header, by less than the header's size.
  const furthest = Math.max(...src.reads.map(([o, n]) => o + n));
  assert.ok(furthest < 2 * whole.dataOffset, `header reads reached ${furthest}, data starts at ${whole.dataOffset}`);
  assert.ok(src.reads.length > 1 && src.reads.length < 20, `${src.reads.length} reads`);
  // parseGgufHeader on a prefix with the file size: enough prefix parses, too little says how much is needed.
  assert.equal(parseGgufHeader(bytes.subarray(0, whole.dataOffset), bytes.length).tensors, whole.tensors);
  throwsType(() => parseGgufHeader(bytes.subarray(0, 1000), bytes.length), OptionError, /needs at least/);
  // Blob/File source (the browser's File.slice path)
  const viaBlob = await readGgufHeader(blobSource(new Blob([bytes as BlobPart])), { firstRead: 4096 });
  assert.equal(viaBlob.tensors, whole.tensors);
  // A model read lazily equals one read from memory, tensor by tensor.
  const src2 = recording(bytes);
  sameModel(await readLlamaGguf(src2), llamaFromGguf(bytes), 'lazy read');
  const read = src2.reads.reduce((a, [, n]) => a + n, 0);
  assert.ok(read < bytes.length + 2 * (1 << 20), `read ${read} bytes of a ${bytes.length}-byte file`);
  await rejects(() => readGgufHeader(bytesSource(bytes), { firstRead: 64, maxHeaderBytes: 4096 }), FormatError, /header is larger than 4096 bytes/);
  // A file on disk read at offsets (what a Node CLI does).
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-gguf-'));
  try {
    writeFileSync(join(dir, 'm.gguf'), bytes);
    const handle = await open(join(dir, 'm.gguf'), 'r');
    try {
      const fileSource: ByteSource = {
        size: (await handle.stat()).size,
        read: async (offset, length) => {
          const b = new Uint8Array(length);
          const { bytesRead } = await handle.read(b, 0, length, offset);
          return b.subarray(0, bytesRead);
        },
      };
      sameModel(await readLlamaGguf(fileSource), llamaFromGguf(bytes), 'read from a file handle');
    } finally {
      await handle.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // A source that comes back short is a FormatError.
  await rejects(() => readGgufHeader({ size: bytes.length, read: async (o, n) => bytes.slice(o, o + n - 1) }), FormatError, /returned/);
  await rejects(() => readLlamaGguf(bytesSource(bytes.subarray(0, bytes.length - 100))), FormatError, /runs past the end/);
});

// -------------------------------------------------------------------------- hostile files

/** Expects a FormatError whose message matches `why` (the field it names). */
function refused(bytes: Uint8Array, why: RegExp) {
  throwsType(() => parseGgufHeader(bytes), FormatError, why);
}

test('container: truncation anywhere before the last tensor byte is a FormatError', () => {
  const bytes = specFile(sampleSpec());
  const end = bytes.length - 256 + 196; // last tensor ends here; the rest is its padding
  for (let cut = 0; cut < end; cut++) assert.is(outcome(() => parseGgufHeader(bytes.subarray(0, cut))), 'BAD_FILE', `cut at ${cut}`);
  assert.is(outcome(() => parseGgufHeader(bytes.subarray(0, end))), 'ok');
});

test('container: huge counts and lengths are refused before anything is allocated', () => {
  const base = sampleSpec();
  const withKv = (k: [string, (s: Spec) => void]) => specFile({ ...base, kv: [...base.kv, k] });
  // The messages come from the count checks, which run before any array is created.
  refused(specFile({ ...base, nTensors: 2n ** 63n }), /tensor count .* cannot fit/);
  refused(specFile({ ...base, nTensors: 2n ** 64n - 1n }), /tensor count .* cannot fit/);
  refused(specFile({ ...base, nKv: 10n ** 12n }), /metadata count .* cannot fit/);
  refused(withKv(['s', (s) => s.u32(T.string).u64(2n ** 62n)]), /"s" length .* cannot fit/);
  refused(withKv(['a', (s) => s.u32(T.array).u32(T.f32).u64(10n ** 8n)]), /"a" array count .* cannot fit/);
  refused(withKv(['a', (s) => s.u32(T.array).u32(T.string).u64(2n ** 60n)]), /"a" array count .* cannot fit/);
  refused(withKv(['a', (s) => s.u32(T.array).u32(T.u64).u64(2n ** 61n)]), /"a" array count .* cannot fit/);
  // A key or tensor name claiming to be longer than the file
  const longKey = new Spec().raw(new TextEncoder().encode('GGUF')).u32(3).u64(0).u64(1).u64(2n ** 40n).raw(new Uint8Array(40)).bytes();
  refused(longKey, /metadata key #0 length .* cannot fit/);
  const t0 = base.tensors[0];
  refused(specFile({ ...base, tensors: [{ ...t0, dims: [2n ** 40n, 2n ** 40n] }] }), /tensor "w" .* needs \d+ bytes, more than/);
  refused(specFile({ ...base, tensors: [{ ...t0, dims: [2n ** 62n, 4] }] }), /ne\[0\] .* too large/);
  refused(specFile({ ...base, tensors: [{ ...t0, dims: [2n ** 63n] }] }), /negative/);
});

test('container: unknown types, bad alignment, bad offsets and overlaps are FormatErrors naming the field', () => {
  const base = sampleSpec();
  const [w, h, q] = base.tensors;
  const withKv = (k: [string, (s: Spec) => void]) => specFile({ ...base, kv: [...base.kv, k] });
  const withTensors = (tensors: SpecTensor[]) => specFile({ ...base, tensors });
  refused(specFile({ ...base, magic: 'GGUG' }), /magic/);
  refused(specFile({ ...base, version: 1 }), /version 1/);
  refused(specFile({ ...base, version: 4 }), /version 4/);
  refused(specFile({ ...base, version: 0x03000000 }), /byte-swapped/);
  refused(withKv(['x', (s) => s.u32(13)]), /"x" has unknown value type 13/);
  refused(withKv(['x', (s) => s.u32(0xffffffff)]), /"x" has unknown value type/);
  refused(withKv(['x', (s) => s.u32(T.array).u32(99).u64(0)]), /"x" array item has unknown value type 99/);
  refused(withKv(['x', (s) => s.u32(T.array).u32(T.array).u64(0)]), /"x" is an array of arrays/);
  refused(withKv(['x', (s) => s.u32(T.bool).u8(2)]), /"x" is a bool stored as 2/);
  refused(withKv(['k.u8', (s) => s.u32(T.u8).u8(1)]), /"k.u8" appears twice/);
  refused(withKv(['', (s) => s.u32(T.u8).u8(1)]), /key #23 is empty/);
  refused(withKv(['bad', (s) => s.u32(T.string).str(Uint8Array.from([0xff, 0xfe]))]), /"bad" is not valid UTF-8/);
  const alignAt = base.kv.findIndex(([k]) => k === 'general.alignment');
  const withAlign = (body: (s: Spec) => void) => specFile({ ...base, kv: base.kv.map((kv, i) => (i === alignAt ? ['general.alignment', body] : kv)) });
  refused(withAlign((s) => s.u32(T.u32).u32(48)), /alignment 48 is not a power of two/);
  refused(withAlign((s) => s.u32(T.u32).u32(0)), /alignment 0 is not a power of two/);
  refused(withAlign((s) => s.u32(T.u64).u64(64)), /general.alignment must be a u32/);
  for (const id of [4, 5, 31, 33, 36, 38, 43, 1000, 0xffffffff]) refused(withTensors([w, h, { ...q, type: id }]), new RegExp(`tensor "q" has unknown ggml type ${id}`));
  refused(withTensors([w, h, { ...q, dims: [31, 2] }]), /tensor "q" of type Q8_0 has rows of 31 elements/);
  refused(withTensors([w, h, { ...q, nDims: 5, dims: [32, 2, 1, 1, 1] }]), /tensor "q" has 5 dimensions/);
  refused(withTensors([w, h, { ...q, nDims: 0, dims: [] }]), /tensor "q" has 0 dimensions/);
  refused(withTensors([w, h, { ...q, offset: 130 }]), /tensor "q" offset 130 is not a multiple of the alignment 64/);
  refused(withTensors([w, h, { ...q, offset: 192 }]), /tensor "q" .* runs past the end of the file/);
  refused(withTensors([w, h, { ...q, offset: 2n ** 63n }]), /tensor "q" offset .* past the end/);
  refused(withTensors([w, { ...h, offset: 0 }, q]), /tensors "w" and "h" overlap/);
  refused(withTensors([w, h, { ...q, name: 'w' }]), /tensor "w" appears twice/);
  refused(withTensors([w, h, { ...q, name: '' }]), /tensor #2 has an empty name/);
  refused(withTensors([w, h, { ...q, name: 'x'.repeat(64) }]), /name is longer than 63 bytes/);
  // Offsets out of file order but aligned and disjoint are valid GGUF (llama.cpp itself wants them contiguous).
  const shuffled = parseGgufHeader(withTensors([{ ...w, offset: 192 }, { ...h, offset: 128 }, { ...q, offset: 0 }]));
  assert.equal(shuffled.tensors.map((t) => t.offset), [192, 128, 0]);
});

test('container: random byte corruption gives a parse or a FormatError, nothing else', () => {
  const good = writeLlamaGguf({ ...model, config: { ...model.config } }, { metadata: vocab });
  const headerEnd = parseGgufHeader(good).dataOffset;
  const r = rng(1234);
  const seen = new Set<string>();
  for (let trial = 0; trial < 1500; trial++) {
    const b = good.slice(0, headerEnd + 4096);
    const flips = 1 + Math.floor(r() * 4);
    for (let k = 0; k < flips; k++) {
      // Mostly the fixed header and tensor infos (counts, types, dims, offsets), some anywhere.
      const at = r() < 0.5 ? Math.floor(r() * 32) : r() < 0.5 ? headerEnd - 1 - Math.floor(r() * 4000) : Math.floor(r() * headerEnd);
      b[at] = Math.floor(r() * 256);
    }
    seen.add(outcome(() => parseGgufHeader(b, good.length)));
  }
  assert.ok(seen.has('BAD_FILE'));
  assert.ok([...seen].every((o) => o === 'ok' || o === 'BAD_FILE' || o === 'BAD_OPTION'), [...seen].join(','));
});

// --------------------------------------------------------------------------- model <-> GGUF

/** Every tensor of two models, exactly. */
function sameModel(a: LlamaModel, b: LlamaModel, what: string) {
  assert.equal(a.config, b.config, `${what} config`);
  sameArray(a.embedding, b.embedding, `${what} embedding`);
  sameArray(a.classifier, b.classifier, `${what} classifier`);
  sameArray(a.finalNorm, b.finalNorm, `${what} finalNorm`);
  a.blocks.forEach((blk, l) => {
    sameArray(blk.attnNorm, b.blocks[l].attnNorm, `${what} ${l} attnNorm`);
    sameArray(blk.ffnNorm, b.blocks[l].ffnNorm, `${what} ${l} ffnNorm`);
    for (const n of LINEAR_NAMES) sameArray(blk.linear[n], b.blocks[l].linear[n], `${what} ${l} ${n}`);
  });
}

/** The same tensor names, dims, types and bytes in two GGUF files, for tensors passing `which`. */
function sameTensors(a: Uint8Array, b: Uint8Array, which: (t: GgufFile['tensors'][0]) => boolean, what: string) {
  const fa = parseGgufHeader(a);
  const fb = parseGgufHeader(b);
  assert.equal(fa.tensors.map((t) => t.name), fb.tensors.map((t) => t.name), `${what}: tensor names`);
  let compared = 0;
  for (const t of fa.tensors.filter(which)) {
    const u = fb.byName.get(t.name)!;
    assert.equal([t.dims, t.type], [u.dims, u.type], `${what}: ${t.name}`);
    sameArray(tensorData(fa, a, t), tensorData(fb, b, u), `${what}: ${t.name}`);
    compared++;
  }
  assert.ok(compared > 0);
}

// f32 metadata (eps) comes back as its float32 value; the forward pass uses eps in float32 anyway.
const asRead = (m: LlamaModel): LlamaModel => ({ ...m, config: { ...m.config, normEps: Math.fround(m.config.normEps) }, llama2cRope: undefined });
const dropRope = (m: LlamaModel): LlamaModel => { const { llama2cRope: _, ...rest } = m; return rest; };

test('model: layout and metadata as convert_hf_to_gguf.py writes them, read by node-llama-cpp\'s parser', async () => {
  const bytes = writeLlamaGguf(model, { name: 'stories260K', metadata: vocab });
  const f = parseGgufHeader(bytes);
  assert.equal([...f.metadata.keys()].slice(0, 15), [
    'general.architecture', 'general.type', 'general.name', 'llama.block_count', 'llama.context_length', 'llama.embedding_length',
    'llama.feed_forward_length', 'llama.attention.head_count', 'llama.attention.head_count_kv', 'llama.rope.freq_base',
    'llama.attention.layer_norm_rms_epsilon', 'general.file_type', 'llama.vocab_size', 'llama.rope.dimension_count', 'general.quantization_version',
  ]);
  // 1 + 9 per block + output_norm; no output.weight because the embeddings are tied
  assert.is(f.tensors.length, 2 + 9 * 5);
  assert.not.ok(f.byName.has('output.weight'));
  assert.equal(f.byName.get('token_embd.weight')!.dims, [64, 512]);
  assert.equal(f.byName.get('blk.0.attn_k.weight')!.dims, [64, 32]);
  assert.equal(f.byName.get('blk.4.ffn_down.weight')!.dims, [172, 64]);
  assert.equal(f.byName.get('blk.4.ffn_gate.weight')!.dims, [64, 172]);
  assert.is(f.byName.get('blk.2.ffn_norm.weight')!.type, 'F32');
  const f16 = parseGgufHeader(writeLlamaGguf(model, { type: 'F16' }));
  assert.is(f16.byName.get('blk.2.attn_q.weight')!.type, 'F16');
  assert.is(f16.byName.get('blk.2.attn_norm.weight')!.type, 'F32'); // 1-D tensors stay F32
  assert.equal(f16.metadata.get('general.file_type'), { type: 'u32', value: 1 }); // LlamaFileType.MOSTLY_F16
  // llama.cpp requires offsets contiguous in file order, each padded to the alignment.
  let expect = 0;
  for (const t of f.tensors) { assert.is(t.offset, expect); expect += Math.ceil(t.byteLength / 32) * 32; }
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-gguf-'));
  try {
    writeFileSync(join(dir, 'm.gguf'), bytes);
    const info = await readGgufFileInfo(join(dir, 'm.gguf'), { logWarnings: false });
    const md = info.metadata as unknown as { general: Record<string, unknown>; llama: Record<string, unknown> & { attention: Record<string, unknown>; rope: Record<string, unknown> }; tokenizer: { ggml: Record<string, unknown> } };
    assert.is(md.general.architecture, 'llama');
    assert.is(md.general.name, 'stories260K');
    assert.is(md.llama.context_length, 512);
    assert.is(md.llama.embedding_length, 64);
    assert.is(md.llama.feed_forward_length, 172);
    assert.is(md.llama.block_count, 5);
    assert.is(md.llama.attention.head_count, 8);
    assert.is(md.llama.attention.head_count_kv, 4);
    assert.is(md.llama.attention.layer_norm_rms_epsilon, Math.fround(1e-5));
    assert.is(md.llama.rope.freq_base, 10000);
    assert.is(md.llama.rope.dimension_count, 8);
    assert.is(md.tokenizer.ggml.model, 'llama');
    assert.is((md.tokenizer.ggml.tokens as string[]).length, 512);
    assert.equal(info.tensorInfo!.map((t) => t.name), f.tensors.map((t) => t.name));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('model: the Hugging Face copy (half-split q/k rows) gives the same GGUF file as llama2.c\'s', () => {
  const fromBin = writeLlamaGguf(model, { name: 'stories260K', metadata: vocab });
  const hf32 = hf('stories260K-hf');
  assert.is(hf32.config.ropeStyle, 'half');
  const fromHf = writeLlamaGguf(hf32, { name: 'stories260K', metadata: vocab });
  // Same config, same tensors after undoing HF's permutation: the whole files are equal.
  sameArray(fromHf, fromBin, 'GGUF from HF vs from llama2.c');
  // F16 / BF16: PyTorch's .half() / .bfloat16() copies written as F16 / BF16 hold the same 2-D
  // tensors as our rounding of the F32 weights (their norms are rounded too; GGUF keeps ours F32).
  for (const [dir, type] of [['stories260K-hf-f16', 'F16'], ['stories260K-hf-bf16', 'BF16']] as const) {
    sameTensors(writeLlamaGguf(hf(dir), { type }), writeLlamaGguf(model, { type }), (t) => t.dims.length === 2, `${type} GGUF from ${dir} vs from llama2.c`);
  }
  // The q rows really move: GGUF's blk.0.attn_q is llama2.c's wq, not HF's q_proj.
  const f = parseGgufHeader(fromBin);
  const q = decodeTensor(f.byName.get('blk.0.attn_q.weight')!, tensorData(f, fromBin, f.byName.get('blk.0.attn_q.weight')!));
  sameArray(q, model.blocks[0].linear.q_proj, 'attn_q = llama2.c wq');
  assert.ok(q.some((v, i) => v !== hf32.blocks[0].linear.q_proj[i]), 'HF q_proj rows differ from GGUF rows');
});

test('model: read back, the model and its logits are the original\'s exactly', () => {
  const f32 = writeLlamaGguf(model, { metadata: vocab });
  const back = llamaFromGguf(f32);
  sameModel(back, asRead(dropRope(model)), 'F32 read-back');
  // In HF's row layout it is exactly the HF checkpoint.
  const hf32 = hf('stories260K-hf');
  sameModel(llamaFromGguf(f32, { ropeStyle: 'half' }), asRead(hf32), 'F32 read-back as HF');
  // F16 / BF16: the 2-D weights are exactly PyTorch's rounding (the HF f16 / bf16 copies), the
  // norms exactly the float32 originals.
  for (const [dir, type] of [['stories260K-hf-f16', 'F16'], ['stories260K-hf-bf16', 'BF16']] as const) {
    const torch = hf(dir);
    const expected = asRead({ ...torch, blocks: torch.blocks.map((b, l) => ({ ...b, attnNorm: hf32.blocks[l].attnNorm, ffnNorm: hf32.blocks[l].ffnNorm })), finalNorm: hf32.finalNorm });
    sameModel(llamaFromGguf(writeLlamaGguf(model, { type }), { ropeStyle: 'half' }), expected, `${type} read-back vs PyTorch's rounding`);
  }
  const tokens = tok.encode(paragraphs[3]);
  const a = new LlamaRunner(kernel, model);
  const b = new LlamaRunner(kernel, back);
  try {
    sameArray(b.logits(tokens), a.logits(tokens), 'logits of the read-back model');
  } finally {
    a.free();
    b.free();
  }
  // Untied classifier: written as output.weight and read back as its own array.
  const untied: LlamaModel = { ...dropRope(model), config: { ...model.config, tiedEmbeddings: false }, classifier: model.embedding.map((x) => x * 0.5) };
  const ub = writeLlamaGguf(untied);
  assert.ok(parseGgufHeader(ub).byName.has('output.weight'));
  const uback = llamaFromGguf(ub);
  assert.is.not(uback.classifier, uback.embedding);
  sameModel(uback, asRead(untied), 'untied read-back');
  throwsType(() => writeLlamaGguf({ ...model, classifier: untied.classifier }), OptionError, /tied/);
});

test('model: streamed writing gives the same bytes, one tensor at a time', async () => {
  const whole = writeLlamaGguf(model, { type: 'F16', metadata: vocab });
  const { plan } = planLlamaGguf(model, { type: 'F16', metadata: vocab });
  assert.is(plan.fileSize, whole.length);
  const chunks: Uint8Array[] = [];
  await writeLlamaGgufStream(model, (c) => { chunks.push(c.slice()); }, { type: 'F16', metadata: vocab });
  const largestTensor = Math.max(...plan.tensors.map((t) => t.byteLength));
  assert.ok(chunks.slice(1).every((c) => c.length <= largestTensor));
  sameArray(Uint8Array.from(chunks.flatMap((c) => [...c])), whole, 'streamed model');
});

test('model: GGUF files we cannot run are refused with typed errors', async () => {
  const good = writeLlamaGguf(model, { metadata: vocab });
  const f = parseGgufHeader(good);
  /** Rewrites `good` with changed metadata/tensors (tensor bytes carried over). */
  const remake = (md: (m: GgufMetadata) => void, tensors = (t: GgufTensorWithData[]) => t) => {
    const m = new Map(f.metadata);
    md(m);
    const ts = f.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: tensorData(f, good, t) }));
    return assembleGguf(m, tensors(ts));
  };
  throwsType(() => llamaFromGguf(remake((m) => m.set('general.architecture', { type: 'string', value: 'gpt2' }))), FormatError, /"gpt2" is not supported/);
  throwsType(() => llamaFromGguf(remake((m) => m.delete('general.architecture'))), FormatError, /general.architecture/);
  throwsType(() => llamaFromGguf(remake((m) => m.delete('llama.block_count'))), FormatError, /"llama.block_count" is missing/);
  throwsType(() => llamaFromGguf(remake((m) => m.set('llama.block_count', { type: 'f32', value: 5 }))), FormatError, /block_count" is a f32/);
  throwsType(() => llamaFromGguf(remake((m) => m.set('llama.feed_forward_length', { type: 'array', itemType: 'u32', value: [172] }))), FormatError, /per-layer/);
  throwsType(() => llamaFromGguf(remake((m) => m.set('llama.rope.dimension_count', { type: 'u32', value: 4 }))), FormatError, /dimension_count/);
  throwsType(() => llamaFromGguf(remake((m) => m.set('llama.rope.scaling.type', { type: 'string', value: 'yarn' }))), FormatError, /scaling/);
  throwsType(() => llamaFromGguf(remake((m) => m.set('llama.attention.head_count', { type: 'u32', value: 7 }))), FormatError, /divisible/);
  throwsType(() => llamaFromGguf(remake((m) => m.set('llama.embedding_length', { type: 'u32', value: 65 }))), FormatError);
  throwsType(() => llamaFromGguf(remake((m) => m.set('llama.block_count', { type: 'u32', value: 6 }))), FormatError, /blk.5.attn_norm.weight" is missing/);
  throwsType(() => llamaFromGguf(remake(() => {}, (t) => t.filter((x) => x.name !== 'blk.3.ffn_up.weight'))), FormatError, /blk.3.ffn_up.weight" is missing/);
  const withBias = remake(() => {}, (t) => [...t, { name: 'blk.0.attn_q.bias', dims: [64], type: 'F32', data: new Uint8Array(256) }]);
  throwsType(() => llamaFromGguf(withBias), FormatError, /attn_q.bias" is not part/);
  // Read lazily, the file is refused from its header: no tensor byte is read.
  const src = recording(withBias);
  await rejects(() => readLlamaGguf(src, { firstRead: 4096 }), FormatError, /attn_q.bias" is not part/);
  const dataOffset = parseGgufHeader(withBias).dataOffset;
  assert.ok(src.reads.every(([o, n]) => o + n < 2 * dataOffset), 'reads stay within the header\'s doubling prefix');
  throwsType(() => llamaFromGguf(remake(() => {}, (t) => t.map((x) => (x.name === 'blk.1.attn_v.weight' ? { ...x, dims: [32, 64] } : x)))), ShapeError, /attn_v.weight" has dims \[32, 64\]/);
  // A quantized tensor (valid Q8_0 bytes: 2 blocks of 34 bytes per 64-wide row) without a decoder.
  throwsType(() => llamaFromGguf(remake(() => {}, (t) => t.map((x) => (x.name === 'blk.0.attn_k.weight' ? { ...x, type: 'Q8_0', data: new Uint8Array(32 * 68) } : x)))), DtypeError, /Q8_0/);
  throwsType(() => writeLlamaGguf(model, { type: 'Q4_K' }), DtypeError, /encoder/);
  throwsType(() => writeLlamaGguf(model, { family: 'gpt2' }), OptionError, /family/);
  throwsType(() => writeLlamaGguf(model, { metadata: new Map([['llama.block_count', { type: 'u32', value: 1 }]]) }), OptionError, /block_count/);
  throwsType(() => llamaFromGguf(good, { ropeStyle: 'sideways' as never }), OptionError);
  // The config of a good file
  assert.equal(llamaConfigFromGguf(f).config, { ...model.config, normEps: Math.fround(1e-5) });
});

test('vocab: tokenizer.ggml.* for tok512.bin as llama.cpp\'s llama2.c converter builds it', () => {
  const tokens = vocab.get('tokenizer.ggml.tokens')!.value as string[];
  const types = Array.from(vocab.get('tokenizer.ggml.token_type')!.value as ArrayLike<number>);
  assert.is(tokens.length, 512);
  assert.equal(tokens.slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
  assert.equal(types.slice(0, 3), [GGUF_TOKEN_TYPE.unknown, GGUF_TOKEN_TYPE.control, GGUF_TOKEN_TYPE.control]);
  // ids 3..258 are the byte pieces <0x00>..<0xFF> (data README), everything after is a normal piece
  for (let id = 3; id < 259; id++) {
    assert.is(tokens[id], `<0x${(id - 3).toString(16).toUpperCase().padStart(2, '0')}>`);
    assert.is(types[id], GGUF_TOKEN_TYPE.byte);
  }
  assert.ok(types.slice(259).every((t) => t === GGUF_TOKEN_TYPE.normal));
  assert.is(tokens[259], '\u2581t'); // llama2.c's " t": spaces back to SentencePiece's U+2581
  assert.ok(tokens.every((t) => !t.includes(' ')));
  sameArray(vocab.get('tokenizer.ggml.scores')!.value as Float32Array, tok.scores, 'scores');
  assert.equal(vocab.get('tokenizer.ggml.bos_token_id'), { type: 'u32', value: 1 });
  assert.equal(vocab.get('tokenizer.ggml.eos_token_id'), { type: 'u32', value: 2 });
  assert.equal(vocab.get('tokenizer.ggml.add_bos_token'), { type: 'bool', value: true });
  const bad = { ...tok, pieces: tok.pieces.map((p, i) => (i === 300 ? Uint8Array.from([0xc3]) : p)) };
  throwsType(() => llama2cVocabMetadata(bad), FormatError, /piece 300/);
});

// ---------------------------------------------------------------- llama.cpp as the reader

/** max |a - b| */
function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.is(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// A real token sequence: the first paragraphs of the example text, as llama2.c tokenizes them.
const sequence = tok.encode(paragraphs.slice(0, 3).join('\n\n')).slice(0, 256);

test('llama.cpp: F32 GGUF logits match our forward pass at every position', async () => {
  assert.is(sequence.length, 256);
  const bytes = writeLlamaGguf(model, { name: 'stories260K', metadata: vocab });
  const lc = await loadGgufBytes(bytes);
  const ours = new LlamaRunner(kernel, model);
  try {
    assert.is(lc.model.trainContextSize, 512);
    assert.is(lc.model.embeddingVectorSize, 64);
    assert.is(lc.model.tokens.bos, 1);
    assert.is(lc.model.tokens.eos, 2);
    const theirs = await lc.logits(sequence);
    const mine = ours.logits(sequence);
    assert.is(theirs.length, 256 * 512);
    // Both compute in float32, with different summation orders (ggml's SIMD dot products,
    // RMSNorm, softmax) and different RoPE angles: ggml forms them in float32 (theta = p *
    // theta_scale^i by repeated multiplication, ggml_rope_cache_init), where the spacing of
    // floats near p = 255 is 2^-16 = 1.5e-5 rad; we form them in float64. Measured: 1.2e-5
    // over the first 64 positions, 5.9e-5 over all 256 (growing with the position, as the
    // angle errors do), on logits up to |22|. Bound: 2e-4, 2500 times below what a wrong
    // tensor or row order does (test below).
    const d = maxDiff(theirs, mine);
    assert.ok(d < 2e-4, `F32: max |llama.cpp - ours| = ${d}`);
  } finally {
    ours.free();
    await lc.dispose();
  }
});

test('llama.cpp: F16 and BF16 GGUF logits match our forward pass on the rounded weights', async () => {
  const full = new LlamaRunner(kernel, model);
  const reference = full.logits(sequence);
  full.free();
  for (const type of ['F16', 'BF16'] as const) {
    const bytes = writeLlamaGguf(model, { type, metadata: vocab });
    const lc = await loadGgufBytes(bytes);
    const ours = new LlamaRunner(kernel, llamaFromGguf(bytes)); // the rounded weights (checked against PyTorch's rounding above)
    try {
      const theirs = await lc.logits(sequence);
      const mine = ours.logits(sequence);
      const roundingEffect = maxDiff(reference, mine);
      // ggml's CPU matmul rounds the activations to the weights' type too (vec_dot_type of F16
      // is F16, of BF16 is BF16, in ggml-cpu.c), which our float32 forward pass does not: a
      // relative error of 2^-11 (2^-8) per input, the size of the weight rounding itself,
      // whose effect on the logits we measure here. Measured on three 256-token windows:
      // F16 0.010-0.012 against a weight-rounding effect of 0.013-0.018, BF16 0.076-0.10
      // against 0.10-0.24. Bound: 3x the weight-rounding effect.
      const d = maxDiff(theirs, mine);
      assert.ok(roundingEffect > 1e-3 && roundingEffect < 0.5, `${type}: weight rounding moves logits by ${roundingEffect}`);
      assert.ok(d < 3 * roundingEffect, `${type}: max |llama.cpp - ours| = ${d} (weight rounding alone: ${roundingEffect})`);
    } finally {
      ours.free();
      await lc.dispose();
    }
  }
});

test('llama.cpp: the comparison can fail: unpermuted q/k rows or a separate classifier change the logits', async () => {
  // HF's half-split rows written without the permutation (what a converter bug would do).
  const hf32 = hf('stories260K-hf');
  const wrong = writeLlamaGguf({ ...hf32, config: { ...hf32.config, ropeStyle: 'interleaved' } }, { metadata: vocab });
  const untied: LlamaModel = { ...dropRope(model), config: { ...model.config, tiedEmbeddings: false }, classifier: model.embedding.map((x, i) => (i % 3 === 0 ? x * 0.5 : x)) };
  const ours = new LlamaRunner(kernel, model);
  const oursUntied = new LlamaRunner(kernel, untied);
  const short = sequence.slice(0, 64);
  try {
    const mine = ours.logits(short);
    const lcWrong = await loadGgufBytes(wrong);
    const dWrong = maxDiff(await lcWrong.logits(short), mine);
    await lcWrong.dispose();
    assert.ok(dWrong > 0.5, `mis-permuted q/k: max diff only ${dWrong}`);
    // llama.cpp uses output.weight when present: it matches the untied model, not the tied one.
    const lcUntied = await loadGgufBytes(writeLlamaGguf(untied, { metadata: vocab }));
    const theirs = await lcUntied.logits(short);
    await lcUntied.dispose();
    assert.ok(maxDiff(theirs, oursUntied.logits(short)) < 2e-4);
    assert.ok(maxDiff(theirs, mine) > 0.5);
  } finally {
    ours.free();
    oursUntied.free();
  }
});

test('llama.cpp: its tokenizer on our vocabulary equals llama2.c\'s encoder', async () => {
  const lc = await loadGgufBytes(writeLlamaGguf(model, { metadata: vocab }));
  try {
    // Every paragraph of the example text (3,354 of them), token for token.
    let differ = 0;
    for (const p of paragraphs) {
      const a = lc.tokenize(p);
      const b = Array.from(tok.encode(p, { bos: false }));
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) differ++;
    }
    assert.is(differ, 0, `${differ} of ${paragraphs.length} paragraphs tokenize differently`);
    // Edge cases: empty, spaces, newlines, special-token text as plain text, byte fallback
    // for characters the 512-piece vocabulary lacks (CJK, emoji, NUL), multi-byte pieces.
    for (const s of ['', ' ', '  a  b ', 'Hello\nworld\n\n', '<s>', '</s>', '<unk>', 'café naïve – “quoted” — 10€', '日本語', '😀 emoji', '\t tab', 'x\u0000y', 'â Ã¢']) {
      const a = lc.tokenize(s);
      const b = Array.from(tok.encode(s, { bos: false }));
      assert.equal(a, b, JSON.stringify(s));
      assert.is(lc.model.detokenize(a as Token[]), s, `llama.cpp decodes ${JSON.stringify(s)} back`);
    }
    // The one divergence found: a literal U+2581 in the input is a space to llama.cpp (its
    // vocabulary marks spaces with it) but three UTF-8 bytes to llama2.c (whose pieces use ' ').
    assert.equal(lc.tokenize('\u2581'), lc.tokenize(' '));
    assert.equal(Array.from(tok.encode('\u2581', { bos: false })), [410, 229, 153, 132]); // " " then bytes E2 96 81 (+3)
  } finally {
    await lc.dispose();
  }
});

test.run();
