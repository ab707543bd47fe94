// GGUF block types (src/formats/gguf-blocks.ts, assembly/gguf/) against llama.cpp's own C:
// ggml-quants.c compiled from node-llama-cpp's llama.cpp source (test/helpers/ggml-ref.ts) is
// the reference for every byte the quantizers write and every float the dequantizers read.
// Grids are checked against ggml's dequantization, exact integer arithmetic, brute force and an
// independent float32 re-statement of the documented candidate rules.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../src/core/kernel.js';
import { FormatError, NonFiniteError, OptionError, ShapeError } from '../src/core/errors.js';
import {
  GGUF_BLOCK_TYPES, candidateGrid, decodeGrid, dequantizeRows, encodeGrid, gridFromRanges, gridValues, groupAffine,
  quantizeRows, rtnCodes, ggufRowBytes, type GgufBlockTypeName, type GgufGrid, type GgufTypeInfo,
} from '../src/formats/gguf-blocks.js';
import { f16BitsToF32, f32ToF16Bits } from '../src/formats/half.js';
import { ggmlDequantize, ggmlLayout, ggmlQuantize, ggmlRefBinary, requireTools, roundF32Times2m24 } from './helpers/ggml-ref.js';
import { DATA, rng, throwsType } from './helpers/util.js';

const TYPES = Object.values(GGUF_BLOCK_TYPES);
const BLOCK_TYPES = TYPES.filter((t) => t.groupSize > 0);
let kernelPromise: Promise<Kernel> | undefined;
const kernel = () => (kernelPromise ??= Kernel.create());

// ---- data ------------------------------------------------------------------------------

function gaussian(next: () => number): () => number {
  return () => {
    const u = 1 - next(), v = next(); // u in (0, 1]
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

/** Synthetic rows of 256, several of each kind; the kinds named for failure messages. */
function syntheticRows(): { data: Float32Array; kinds: string[]; rows: number; cols: number } {
  const cols = 256;
  const next = rng(11);
  const g = gaussian(next);
  const kinds: string[] = [];
  const rowsOut: number[][] = [];
  const add = (kind: string, f: (i: number) => number) => {
    kinds.push(kind);
    rowsOut.push(Array.from({ length: cols }, (_, i) => f(i)));
  };
  for (let r = 0; r < 6; r++) add('gaussian', () => g() * 0.05);
  for (let r = 0; r < 6; r++) add('heavy-tailed with outliers', () => g() * 0.02 * (next() < 0.03 ? 40 : 1) / Math.max(0.15, Math.abs(g())) ** 0.5);
  add('all zero', () => 0);
  add('zero blocks among values', (i) => ((i >> 4) % 3 === 0 ? 0 : g()));
  add('constant positive', () => 0.75);
  add('constant negative', () => -1.5);
  add('constant per 16', (i) => ((i >> 4) - 7) * 0.125);
  add('one-sided positive', () => Math.abs(g()) + 0.1);
  add('one-sided negative', () => -Math.abs(g()) - 0.1);
  for (let r = 0; r < 3; r++) add('tiny near fp16 subnormals', () => g() * 3e-6);
  add('tiny below fp16 subnormals', () => g() * 2e-9);
  add('float32 subnormal scale', () => g() * 1e-39);
  for (let r = 0; r < 3; r++) add('large', () => g() * 2000);
  add('large with a 60000 outlier', (i) => (i === 77 ? 60000 : g() * 500));
  add('grid-aligned (rounding ties)', () => Math.round(g() * 8) / 4);
  add('symmetric extremes (tie order)', (i) => (i % 32 === 3 ? -2 : i % 32 === 9 ? 2 : g() * 0.5));
  add('uniform', () => next() * 4 - 2);
  add('sparse', () => (next() < 0.1 ? g() : 0));
  const rows = rowsOut.length;
  return { data: Float32Array.from(rowsOut.flat()), kinds, rows, cols };
}

/** The example model's weight matrices (stories260K, llama2.c v0: dim 64, hidden 172, 5 layers, kv_dim 32). */
function storiesWeights(): { rows64: Float32Array; flat: Float32Array } {
  const buf = readFileSync(join(DATA, 'stories260K.bin'));
  const f = new Float32Array(buf.buffer.slice(buf.byteOffset + 28, buf.byteOffset + buf.byteLength));
  const dim = 64, hidden = 172, L = 5, kv = 32, vocab = 512;
  let o = 0;
  const take = (n: number) => { const s = f.subarray(o, o + n); o += n; return s; };
  const emb = take(vocab * dim);
  take(L * dim);
  const wq = take(L * dim * dim), wk = take(L * kv * dim), wv = take(L * kv * dim), wo = take(L * dim * dim);
  take(L * dim);
  const w1 = take(L * hidden * dim), w2 = take(L * dim * hidden), w3 = take(L * hidden * dim);
  // Matrices whose rows have 64 columns, as they are; everything (w2 included) flattened for rows of 256.
  const rows64 = Float32Array.from([...emb, ...wq, ...wk, ...wv, ...wo, ...w1, ...w3]);
  const all = Float32Array.from([...rows64, ...w2]);
  return { rows64, flat: all.subarray(0, Math.floor(all.length / 256) * 256) };
}

/** Importance weights like llama.cpp's imatrix (mean squared activations): log-normal, some zero. */
function importance(cols: number, seed: number, zeros = false): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: cols }, (_, i) => (zeros && i % 37 === 5 ? 0 : Math.exp(2 * g())));
}

function firstDiff(a: Uint8Array | Float32Array, b: Uint8Array | Float32Array): number {
  const ua = a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;
  const ub = b instanceof Float32Array ? new Uint32Array(b.buffer, b.byteOffset, b.length) : b;
  if (ua.length !== ub.length) return Math.min(ua.length, ub.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

function compareWithGgml(k: Kernel, info: GgufTypeInfo, data: Float32Array, rows: number, cols: number, kinds: (r: number) => string, imatrix?: Float32Array): void {
  const ref = ggmlQuantize(info.id, rows, cols, data, ggufRowBytes(info.name, cols), imatrix);
  const ours = quantizeRows(k, info.name, data, rows, cols, imatrix);
  const rowBytes = ggufRowBytes(info.name, cols);
  const d = firstDiff(ours, ref.bytes);
  if (d >= 0) {
    const r = Math.floor(d / rowBytes);
    assert.unreachable(`${info.name}${imatrix ? ' (imatrix)' : ''}: byte ${d} differs (row ${r}, ${kinds(r)}, block ${Math.floor((d % rowBytes) / info.blockBytes)}, byte ${(d % rowBytes) % info.blockBytes}): ours ${ours[d]}, ggml ${ref.bytes[d]}`);
  }
  const deq = dequantizeRows(k, info.name, ours, rows, cols);
  const e = firstDiff(deq, ref.dequant);
  if (e >= 0) assert.unreachable(`${info.name}: dequantized element ${e} differs (${kinds(Math.floor(e / cols))}): ours ${deq[e]}, ggml ${ref.dequant[e]}`);
}

// ---- the harness itself --------------------------------------------------------------

test('harness: missing git or cc is a clear error, not a skip', () => {
  let message = '';
  try {
    requireTools({ ...process.env, PATH: '/nonexistent' });
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(message, /need `git` on PATH/);
  requireTools(); // this machine has both; the comparisons below need them
  assert.ok(ggmlRefBinary().length > 0);
});

test('layout: ids, block sizes and parameter offsets equal ggml.h / ggml-common.h (C sizeof, offsetof)', () => {
  const layout = ggmlLayout();
  assert.equal(layout.size, TYPES.length);
  for (const info of TYPES) {
    const c = layout.get(info.id);
    assert.ok(c, `${info.name}: ggml id ${info.id} unknown to the C harness`);
    assert.equal([c!.blockElems, c!.blockBytes], [info.blockElems, info.blockBytes], info.name);
    const halves = ['d', 'm', 'dmin'].filter((f) => f in c!.fields).map((f) => c!.fields[f]);
    assert.equal([...info.halfOffsets], halves, `${info.name} fp16 parameter offsets`);
  }
});

// ---- llama.cpp's quantizers, byte for byte ----------------------------------------------

const synth = syntheticRows();
for (const info of TYPES) {
  test(`${info.name}: quantize (reference and imatrix) and dequantize equal ggml on synthetic rows`, async () => {
    const k = await kernel();
    const kind = (r: number) => synth.kinds[r];
    compareWithGgml(k, info, synth.data, synth.rows, synth.cols, kind);
    compareWithGgml(k, info, synth.data, synth.rows, synth.cols, kind, importance(synth.cols, 5));
    compareWithGgml(k, info, synth.data, synth.rows, synth.cols, kind, importance(synth.cols, 6, true));
    compareWithGgml(k, info, synth.data, synth.rows, synth.cols, kind, new Float32Array(synth.cols).fill(1));
  });
}

test('stories260K weights: every type, with and without importance weights, equals ggml', async () => {
  const k = await kernel();
  const { rows64, flat } = storiesWeights();
  for (const info of TYPES) {
    const what = (r: number) => `stories260K row ${r}`;
    if (info.blockElems <= 64) {
      compareWithGgml(k, info, rows64, rows64.length / 64, 64, what);
      compareWithGgml(k, info, rows64, rows64.length / 64, 64, what, importance(64, 7));
    }
    compareWithGgml(k, info, flat, flat.length / 256, 256, what);
    compareWithGgml(k, info, flat, flat.length / 256, 256, what, importance(256, 8));
  }
});

test.run();
