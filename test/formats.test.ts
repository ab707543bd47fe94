// safetensors and float16/bfloat16 conversions, including hostile files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DtypeError, FormatError, ShapeError, OptionError } from '../src/core/errors.js';
import {
  parseSafetensors, readTensorF32, readTensorRaw, writeSafetensors, MAX_HEADER_BYTES,
} from '../src/formats/safetensors.js';
import { f16BitsToF32, f32ToF16Bits, f32ToBf16Bits, bf16BitsToF32, f32Bits, bitsF32 } from '../src/formats/half.js';
import { readData, rng, outcome, throwsType, sameArray } from './helpers/util.js';
import { sha256Hex } from '../src/formats/digest.js';

// ---- independent float64 references for the 16-bit roundings ----
function roundHalfEven(q: number): number {
  const f = Math.floor(q);
  const d = q - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
/** Nearest representable value with `mant` stored mantissa bits, min normal exponent emin, max finite `max`. */
function refRound(x: number, mant: number, emin: number, max: number): number {
  if (Number.isNaN(x) || x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const e = Math.max(Math.floor(Math.log2(a)), emin);
  let ulp = 2 ** (e - mant);
  // log2 may be off by one near powers of two: fix the exponent exactly.
  let ee = e;
  if (a >= 2 ** (ee + 1)) { ee++; ulp *= 2; }
  if (ee > emin && a < 2 ** ee) { ee--; ulp /= 2; }
  const r = roundHalfEven(a / ulp) * ulp;
  const limit = max + 2 ** (Math.floor(Math.log2(max)) - mant) / 2; // halfway to the next binade step
  const v = r >= limit || r > max ? Infinity : r;
  return x < 0 ? -v : v;
}
const refF16 = (x: number) => refRound(x, 10, -14, 65504);
const refBf16 = (x: number) => refRound(x, 7, -126, bitsF32(0x7f7f0000));

test('f16 -> f32 matches the IEEE formula for all 65536 patterns and round-trips', () => {
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 31;
    const mant = h & 1023;
    const want = exp === 0 ? sign * mant * 2 ** -24 : exp === 31 ? (mant ? NaN : sign * Infinity) : sign * (1 + mant / 1024) * 2 ** (exp - 15);
    const got = f16BitsToF32(h);
    if (!Object.is(got, want) && !(Number.isNaN(got) && Number.isNaN(want))) throw new Error(`h=${h}: ${got} vs ${want}`);
    const back = f32ToF16Bits(got);
    if (Number.isNaN(want)) assert.ok((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0, `NaN ${h} stays NaN`);
    else assert.is(back, h, `round trip ${h}`);
  }
});

test('f32 -> f16 and f32 -> bf16 round to nearest even (against a float64 reference)', () => {
  const r = rng(1);
  const xs: number[] = [];
  for (let i = 0; i < 20000; i++) xs.push(bitsF32((r() * 2 ** 32) >>> 0)); // all exponents
  for (let i = 0; i < 20000; i++) xs.push((r() - 0.5) * 2 ** Math.floor(r() * 50 - 30)); // half range
  // exact ties and near-ties around half subnormals, normals and the overflow edge
  for (const base of [2 ** -24, 2 ** -14, 1, 1000, 65504]) {
    for (const k of [0.5, 1.5, 2.5, 3.5]) xs.push(Math.fround(base + k * (base >= 2 ** -14 ? base / 1024 : 2 ** -24)));
  }
  xs.push(65519.99, 65520, 2 ** -25, Math.fround(2 ** -25 * 1.0000001), 2 ** -26, 0, -0, Infinity, -Infinity);
  for (const x0 of xs) {
    const x = Math.fround(x0);
    if (Number.isNaN(x)) continue;
    const h = f32ToF16Bits(x);
    const want = refF16(x);
    if (!Object.is(f16BitsToF32(h), want)) throw new Error(`f16(${x}) = ${f16BitsToF32(h)}, want ${want}`);
    const b = f32ToBf16Bits(x);
    const wantB = refBf16(x);
    if (!Object.is(bf16BitsToF32(b), wantB)) throw new Error(`bf16(${x}) = ${bf16BitsToF32(b)}, want ${wantB}`);
  }
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(bitsF32(0x7f800001)))), 'signalling NaN with low payload stays NaN');
  assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(bitsF32(0x7f800001)))));
  assert.is(f32Bits(bf16BitsToF32(0xffff)) >>> 0, 0xffff0000);
});

// ---- writing and reading ----
function sample() {
  return writeSafetensors(
    [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 1e-30, -0, Infinity]) },
      { name: 'h', dtype: 'F16', shape: [3], data: new Float32Array([1, 0.1, 65504]) },
      { name: 'b', dtype: 'BF16', shape: [1, 2], data: new Float32Array([1.00390625, -3]) },
      { name: 'i', dtype: 'I32', shape: [2], data: new Int32Array([-5, 2 ** 31 - 1]) },
      { name: 'u', dtype: 'U8', shape: [3], data: new Uint8Array([0, 7, 255]) },
      { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    ],
    { format: 'pt', note: 'héllo' },
  );
}

test('write -> parse round trip, with 8-aligned space-padded header', () => {
  const bytes = sample();
  const n = new DataView(bytes.buffer).getUint32(0, true);
  assert.is((8 + n) % 8, 0);
  assert.is(bytes[8 + n - 1] === 0x20 || bytes[8 + n - 1] === 0x7d, true);
  const f = parseSafetensors(bytes);
  assert.equal(f.metadata, { format: 'pt', note: 'héllo' });
  assert.equal([...f.tensors.keys()], ['a', 'h', 'b', 'i', 'u', 'empty']);
  assert.equal(f.tensors.get('a')!.shape, [2, 3]);
  assert.is(f.tensors.get('a')!.byteOffset, 8 + n);
  sameArray(readTensorF32(f, bytes, 'a'), new Float32Array([1, -2, 3.5, 1e-30, -0, Infinity]), 'a');
  sameArray(readTensorF32(f, bytes, 'h'), [1, f16BitsToF32(f32ToF16Bits(0.1)), 65504], 'h');
  sameArray(readTensorF32(f, bytes, 'b'), [1, -3], 'b (1.00390625 ties to even -> 1)');
  sameArray(readTensorRaw(f, bytes, 'i') as Int32Array, [-5, 2 ** 31 - 1], 'i');
  sameArray(readTensorRaw(f, bytes, 'u') as Uint8Array, [0, 7, 255], 'u');
  assert.is(readTensorF32(f, bytes, 'empty').length, 0);
  throwsType(() => readTensorF32(f, bytes, 'i'), DtypeError);
  throwsType(() => readTensorF32(f, bytes, 'nope'), FormatError, /nope/);
});

test('record input, Uint16 bits for F16, and write errors', () => {
  const bytes = writeSafetensors({ x: { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xc000]) } });
  const f = parseSafetensors(bytes);
  assert.equal(f.metadata, {});
  sameArray(readTensorF32(f, bytes, 'x'), [1, -2], 'x');
  throwsType(() => writeSafetensors([{ name: 'x', dtype: 'F32', shape: [3], data: new Float32Array(2) }]), ShapeError);
  throwsType(() => writeSafetensors([{ name: 'x', dtype: 'I32', shape: [2], data: new Float32Array(2) }]), DtypeError);
  throwsType(() => writeSafetensors([{ name: 'x', dtype: 'F64' as 'F32', shape: [2], data: new Float32Array(2) }]), DtypeError);
  throwsType(() => writeSafetensors([{ name: '__metadata__', dtype: 'F32', shape: [0], data: new Float32Array(0) }]), OptionError);
  const t = { name: 'x', dtype: 'F32' as const, shape: [0], data: new Float32Array(0) };
  throwsType(() => writeSafetensors([t, t]), OptionError);
});

test('unaligned data sections and unaligned views read correctly', () => {
  // Header of odd length (not produced by us) puts data at an odd offset.
  const data = new Float32Array([1.5, -2.25, 3e-40]);
  const header = new TextEncoder().encode(JSON.stringify({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, s: { dtype: 'F16', shape: [1], data_offsets: [12, 14] } }) + ' ');
  assert.ok(header.length % 2 === 1 || header.length % 4 !== 0);
  for (const shift of [0, 1, 2, 3]) {
    const buf = new Uint8Array(shift + 8 + header.length + 14);
    const file = buf.subarray(shift);
    new DataView(buf.buffer).setUint32(shift, header.length, true);
    file.set(header, 8);
    file.set(new Uint8Array(data.buffer), 8 + header.length);
    new DataView(buf.buffer).setUint16(shift + 8 + header.length + 12, 0x3555, true);
    const f = parseSafetensors(file);
    sameArray(readTensorF32(f, file, 't'), data, `shift ${shift}`);
    sameArray(readTensorF32(f, file, 's'), [f16BitsToF32(0x3555)], `f16 shift ${shift}`);
  }
});

test('real file: stories260K-hf F32 / F16 / BF16 agree under RNE rounding', () => {
  const b32 = readData('stories260K-hf/model.safetensors');
  const b16 = readData('stories260K-hf-f16/model.safetensors');
  const bbf = readData('stories260K-hf-bf16/model.safetensors');
  const f32 = parseSafetensors(b32);
  const f16 = parseSafetensors(b16);
  const fbf = parseSafetensors(bbf);
  assert.is(f32.tensors.size, 47);
  assert.equal(f32.metadata, { format: 'pt' });
  for (const [name, t] of f32.tensors) {
    assert.is(t.dtype, 'F32');
    assert.equal(f16.tensors.get(name)!.shape, t.shape);
    assert.is(f16.tensors.get(name)!.dtype, 'F16');
    assert.is(fbf.tensors.get(name)!.dtype, 'BF16');
    const x = readTensorF32(f32, b32, name);
    const h = readTensorRaw(f16, b16, name) as Uint16Array;
    const b = readTensorRaw(fbf, bbf, name) as Uint16Array;
    for (let i = 0; i < x.length; i++) {
      if (f32ToF16Bits(x[i]) !== h[i]) throw new Error(`${name}[${i}] f16`);
      if (f32ToBf16Bits(x[i]) !== b[i]) throw new Error(`${name}[${i}] bf16`);
    }
    sameArray(readTensorF32(f16, b16, name), Array.from(h, f16BitsToF32), name);
  }
});

// ---- hostile input ----
function rawFile(header: unknown, dataBytes: number, lengthOverride?: [number, number]): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  const v = new DataView(out.buffer);
  v.setUint32(0, lengthOverride ? lengthOverride[0] : json.length, true);
  v.setUint32(4, lengthOverride ? lengthOverride[1] : 0, true);
  out.set(json, 8);
  return out;
}
const entry = (dtype: string, shape: unknown, a: unknown, b?: unknown) => ({ dtype, shape, data_offsets: b === undefined ? a : [a, b] });

test('hostile headers: each problem is a FormatError or DtypeError naming the tensor', () => {
  const F = FormatError;
  throwsType(() => parseSafetensors(new Uint8Array(0)), F);
  throwsType(() => parseSafetensors(new Uint8Array(7)), F);
  throwsType(() => parseSafetensors(rawFile('{}', 0, [0xffffffff, 0xffffffff])), F, /limit/);
  throwsType(() => parseSafetensors(rawFile('{}', 0, [1, 0x200000])), F, /limit/); // 2^53 + 1
  throwsType(() => parseSafetensors(rawFile('{}', 0, [MAX_HEADER_BYTES + 1, 0])), F, /limit/);
  throwsType(() => parseSafetensors(rawFile('{}', 0, [1000, 0])), F, /past the end/);
  throwsType(() => parseSafetensors(rawFile('[]', 0)), F, /object/);
  throwsType(() => parseSafetensors(rawFile('null', 0)), F, /object/);
  throwsType(() => parseSafetensors(rawFile('7', 0)), F, /object/);
  throwsType(() => parseSafetensors(rawFile('{"a":', 0)), F, /JSON/);
  throwsType(() => parseSafetensors(rawFile('\ufeff{}', 0)), F, /JSON/);
  const bad = rawFile('{"x":1}', 0);
  bad[9] = 0xff; // invalid UTF-8
  throwsType(() => parseSafetensors(bad), F, /UTF-8/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2], 0, 8), v: entry('F32', [2], 4, 12) }, 12)), F, /overlaps/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2], 0, 8) }, 7)), F, /"w".*past/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [3], 0, 8) }, 8)), F, /"w".*needs 12 bytes/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [-2], 0, 8) }, 8)), F, /"w".*shape\[0\]/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2.5], 0, 10) }, 10)), F, /shape/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', ['2'], 0, 8) }, 8)), F, /shape/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', 2, 0, 8) }, 8)), F, /shape/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2 ** 40, 2 ** 40], 0, 8) }, 8)), F, /too many|too large/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F64', [2 ** 50], 0, 8) }, 8)), F, /too large|needs/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2], 8, 0) }, 8)), F, /before/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2], -8, 0) }, 8)), F, /"w"/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2], [0, 8, 9]) }, 9)), F, /two/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('F32', [2], 1e300, 1e300 + 8) }, 8)), F, /"w"/);
  throwsType(() => parseSafetensors(rawFile({ w: entry('Q4', [2], 0, 8) }, 8)), DtypeError, /"w".*Q4/);
  throwsType(() => parseSafetensors(rawFile({ w: { shape: [2], data_offsets: [0, 8] } }, 8)), F, /dtype/);
  throwsType(() => parseSafetensors(rawFile({ w: 5 }, 0)), F, /"w"/);
  throwsType(() => parseSafetensors(rawFile({ __metadata__: { a: 1 } }, 0)), F, /__metadata__.*"a"/);
  throwsType(() => parseSafetensors(rawFile({ __metadata__: { a: null } }, 0)), F, /__metadata__/);
  throwsType(() => parseSafetensors(rawFile({ __metadata__: 'x' }, 0)), F, /__metadata__/);
  throwsType(() => parseSafetensors(rawFile({ __metadata__: ['x'] }, 0)), F, /__metadata__/);
  // Legal corner cases still parse.
  const ok = parseSafetensors(rawFile({ z: entry('F32', [0], 4, 4), w: entry('F32', [1], 0, 4), __proto__x: entry('U8', [], 4, 5) }, 5));
  assert.is(ok.tensors.size, 3);
  assert.equal(ok.tensors.get('__proto__x')!.shape, []);
  const proto = parseSafetensors(rawFile('{"__proto__": {"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1));
  assert.equal([...proto.tensors.keys()], ['__proto__']);
  // Reading with bytes that are not the parsed ones is caught, not an out-of-bounds read.
  const f = parseSafetensors(sample());
  throwsType(() => readTensorF32(f, new Uint8Array(10), 'a'), F);
});

test('truncation at every cut point of a small file and many of the real one', () => {
  const small = sample();
  for (let cut = 0; cut < small.length; cut++) {
    const got = outcome(() => parseSafetensors(small.subarray(0, cut)));
    assert.is(got, 'BAD_FILE', `cut ${cut}`);
  }
  const real = readData('stories260K-hf-f16/model.safetensors');
  const hdr = 8 + new DataView(real.buffer, real.byteOffset).getUint32(0, true);
  const r = rng(7);
  const cuts = [0, 4, 8, 9, hdr - 1, hdr, hdr + 1, real.length - 1];
  for (let i = 0; i < 150; i++) cuts.push(Math.floor(r() * hdr));
  for (let i = 0; i < 50; i++) cuts.push(hdr + Math.floor(r() * (real.length - hdr)));
  for (const cut of cuts) assert.is(outcome(() => parseSafetensors(real.subarray(0, cut))), 'BAD_FILE', `real cut ${cut}`);
});

test('fuzz: 600 seeded byte flips in headers parse consistently or throw a CdquantError', () => {
  const bases = [sample(), readData('stories260K-hf-bf16/model.safetensors')];
  const r = rng(12345);
  const counts: Record<string, number> = {};
  for (let i = 0; i < 600; i++) {
    const base = bases[i % 2];
    const bytes = base.slice();
    const hdr = Math.min(8 + new DataView(base.buffer, base.byteOffset).getUint32(0, true), bytes.length);
    const flips = 1 + Math.floor(r() * 4);
    for (let k = 0; k < flips; k++) {
      const pos = r() < 0.1 ? Math.floor(r() * 8) : Math.floor(r() * hdr);
      bytes[pos] = r() < 0.5 ? bytes[pos] ^ (1 << Math.floor(r() * 8)) : Math.floor(r() * 256);
    }
    const got = outcome(() => {
      const f = parseSafetensors(bytes);
      // A file that parses must be fully readable, and consistently so.
      const again = parseSafetensors(bytes);
      assert.equal([...again.tensors.keys()], [...f.tensors.keys()]);
      for (const [name, t] of f.tensors) {
        assert.ok(t.byteOffset + t.byteLength <= bytes.length);
        const raw = readTensorRaw(f, bytes, name);
        assert.is(raw.length * (raw.BYTES_PER_ELEMENT as number), t.byteLength);
        if (['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) readTensorF32(f, bytes, name);
      }
    });
    counts[got] = (counts[got] ?? 0) + 1;
  }
  assert.ok((counts.BAD_FILE ?? 0) > 100, JSON.stringify(counts));
  // random garbage, too
  for (let i = 0; i < 200; i++) {
    const g = new Uint8Array(Math.floor(r() * 64));
    for (let k = 0; k < g.length; k++) g[k] = Math.floor(r() * 256);
    if (g.length >= 8 && r() < 0.5) { g[0] = g.length - 8; g[1] = g[2] = g[3] = g[4] = g[5] = g[6] = g[7] = 0; g[8] = 0x7b; }
    outcome(() => parseSafetensors(g));
  }
});

test('sha256Hex matches the data README (and a known vector)', async () => {
  assert.is(await sha256Hex(new TextEncoder().encode('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.is(await sha256Hex(readData('tok512.bin')), '037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312');
  assert.is(await sha256Hex(readData('stories260K.bin')), 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696');
  const shared = new Uint8Array(new SharedArrayBuffer(3));
  shared.set([97, 98, 99]);
  assert.is(await sha256Hex(shared), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test.run();
