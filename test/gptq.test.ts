// GPTQ packing: exact round trips, hand-computed words, and AutoGPTQ's 3-bit layout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NonFiniteError, OptionError, ShapeError } from '../src/core/errors.js';
import { packGptq, unpackGptq, gptqTensors, quantizeConfig, type GptqLayer } from '../src/formats/gptq.js';
import { parseSafetensors, readTensorRaw, writeSafetensors } from '../src/formats/safetensors.js';
import { f16BitsToF32, f32ToF16Bits } from '../src/formats/half.js';
import { rng, sameArray, throwsType } from './helpers/util.js';

function randomLayer(r: () => number, rows: number, cols: number, bits: number, groups: number, minZero = 0): GptqLayer {
  const maxq = (1 << bits) - 1;
  const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(r() * (maxq + 1)));
  const scales = Float32Array.from({ length: rows * groups }, () => f16BitsToF32(f32ToF16Bits(r() * 0.1 + 1e-4)));
  const zeros = Float32Array.from({ length: rows * groups }, () => minZero + Math.floor(r() * (maxq + 1 - minZero)));
  // act-order style: any column may belong to any group
  const gIdx = Int32Array.from({ length: cols }, (_, c) => (c < groups ? c : Math.floor(r() * groups)));
  return { codes, scales, zeros, gIdx, rows, cols, bits, groups };
}

function sameLayer(a: GptqLayer, b: GptqLayer, what: string) {
  sameArray(a.codes, b.codes, `${what} codes`);
  sameArray(a.scales, b.scales, `${what} scales`);
  sameArray(a.zeros, b.zeros, `${what} zeros`);
  sameArray(a.gIdx, b.gIdx, `${what} gIdx`);
}

test('pack -> unpack is exact for 2, 3, 4, 8 bits, both formats, many shapes', () => {
  const r = rng(2024);
  for (const bits of [2, 3, 4, 8]) {
    for (const [rows, cols] of [[32, 32], [64, 96], [96, 64], [32, 352]]) {
      for (const groups of [1, 2, cols / 32]) {
        for (const format of ['gptq', 'gptq_v2'] as const) {
          const layer = randomLayer(r, rows, cols, bits, groups, format === 'gptq' ? 1 : 0);
          const p = packGptq(layer, format);
          assert.equal(p.shapes, { qweight: [(cols / 32) * bits, rows], qzeros: [groups, (rows / 32) * bits], scales: [groups, rows], g_idx: [cols] });
          assert.is(p.qweight.length, (cols / 32) * bits * rows);
          sameLayer(unpackGptq(p, layer, format), layer, `${bits}b ${rows}x${cols} g${groups} ${format}`);
        }
      }
    }
  }
});

test('odd shapes: refused by default (loaders need multiples of 32), exact with pad: true', () => {
  const r = rng(5);
  for (const bits of [2, 3, 4, 8]) {
    for (const [rows, cols] of [[1, 1], [3, 7], [33, 65], [172, 64], [64, 172], [31, 33], [5, 100]]) {
      const layer = randomLayer(r, rows, cols, bits, Math.min(cols, 3), 1);
      throwsType(() => packGptq(layer, 'gptq'), ShapeError, /multiples of 32/);
      const p = packGptq(layer, 'gptq', { pad: true });
      assert.equal(p.shapes.qweight, [Math.ceil(cols / 32) * bits, rows]);
      assert.equal(p.shapes.qzeros, [layer.groups, Math.ceil(rows / 32) * bits]);
      sameLayer(unpackGptq(p, layer, 'gptq'), layer, `${bits}b ${rows}x${cols} padded`);
    }
  }
});

/** One output row with 32 inputs, the given codes; zero/scale fixed. */
function oneRow(bits: number, codes: number[], zero: number): GptqLayer {
  const rows = 32;
  const all = new Uint8Array(rows * 32);
  all.set(codes, 0); // row 0
  return {
    codes: all, scales: new Float32Array(rows).fill(0.5), zeros: new Float32Array(rows).fill(zero), gIdx: new Int32Array(32),
    rows, cols: 32, bits, groups: 1,
  };
}
const word = (p: { qweight: Int32Array }, w: number, rows = 32) => p.qweight[w * rows] >>> 0; // row 0 of word w

test('hand-computed words for 2, 4 and 8 bits', () => {
  // 4 bits: column c holds c % 16 -> nibbles 0..7 then 8..15, lowest index in the lowest bits
  const p4 = packGptq(oneRow(4, Array.from({ length: 32 }, (_, c) => c % 16), 8), 'gptq');
  assert.equal([0, 1, 2, 3].map((w) => word(p4, w)), [0x76543210, 0xfedcba98, 0x76543210, 0xfedcba98]);
  // zero 8 is stored as 7 in v1 for every row: qzeros word 0 = 0x77777777
  assert.equal(Array.from(p4.qzeros, (x) => x >>> 0), [0x77777777, 0x77777777, 0x77777777, 0x77777777]);
  assert.is(p4.scales[0], 0x3800); // 0.5 in float16
  const v2 = packGptq(oneRow(4, Array.from({ length: 32 }, (_, c) => c % 16), 8), 'gptq_v2');
  assert.is(v2.qzeros[0] >>> 0, 0x88888888);
  // 2 bits: codes 1,2,3,0 repeating -> each byte 0b00111001 = 0x39
  const p2 = packGptq(oneRow(2, Array.from({ length: 32 }, (_, c) => [1, 2, 3, 0][c % 4]), 2), 'gptq');
  assert.equal([0, 1].map((w) => word(p2, w)), [0x39393939, 0x39393939]);
  assert.is(p2.qzeros[0] >>> 0, 0x55555555); // zero 2 -> stored 1 in each 2-bit field
  // 8 bits: one byte per code
  const p8 = packGptq(oneRow(8, Array.from({ length: 32 }, (_, c) => c * 8), 128), 'gptq');
  assert.is(word(p8, 0), 0x18100800);
  assert.is(word(p8, 7), 0xf8f0e8e0);
  assert.is(p8.qzeros[0] >>> 0, 0x7f7f7f7f);
});

test('hand-computed words for 3 bits, including the two straddling values', () => {
  // value 10 = 0b111 -> bits 30, 31 of word 0 and bit 0 of word 1
  let p = packGptq(oneRow(3, Array.from({ length: 32 }, (_, c) => (c === 10 ? 7 : 0)), 1), 'gptq');
  assert.equal([0, 1, 2].map((w) => word(p, w)), [0xc0000000, 0x00000001, 0]);
  // value 21 = 0b110 -> bit 31 of word 1 holds its low bit (0), bits 0-1 of word 2 hold 0b11
  p = packGptq(oneRow(3, Array.from({ length: 32 }, (_, c) => (c === 21 ? 6 : 0)), 1), 'gptq');
  assert.equal([0, 1, 2].map((w) => word(p, w)), [0, 0, 0x00000003]);
  // value 21 = 0b101 -> bit 31 of word 1 set, word 2 bits 0-1 = 0b10
  p = packGptq(oneRow(3, Array.from({ length: 32 }, (_, c) => (c === 21 ? 5 : 0)), 1), 'gptq');
  assert.equal([0, 1, 2].map((w) => word(p, w)), [0, 0x80000000, 0x00000002]);
  // values 0, 11 and 22 = 1 -> bit 0 of word 0, bit 1 of word 1, bit 2 of word 2
  p = packGptq(oneRow(3, Array.from({ length: 32 }, (_, c) => (c === 0 || c === 11 || c === 22 ? 1 : 0)), 1), 'gptq');
  assert.equal([0, 1, 2].map((w) => word(p, w)), [1, 2, 4]);
  // all sevens fill all 96 bits
  p = packGptq(oneRow(3, new Array(32).fill(7), 1), 'gptq');
  assert.equal([0, 1, 2].map((w) => word(p, w)), [0xffffffff, 0xffffffff, 0xffffffff]);
});

/** AutoGPTQ's 3-bit pack() structure, written out: per 32 values, 10 + straddle + 10 + straddle + 10. */
function autoGptq3(values: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i += 32) {
    const v = values.slice(i, i + 32);
    let w0 = 0, w1 = 0, w2 = 0;
    for (let j = 0; j < 10; j++) w0 |= v[j] << (3 * j);
    w0 |= v[10] << 30;
    w1 |= (v[10] >> 2) & 1;
    for (let j = 0; j < 10; j++) w1 |= v[11 + j] << (3 * j + 1);
    w1 |= v[21] << 31;
    w2 |= (v[21] >> 1) & 3;
    for (let j = 0; j < 10; j++) w2 |= v[22 + j] << (3 * j + 2);
    out.push(w0 >>> 0, w1 >>> 0, w2 >>> 0);
  }
  return out;
}

test('3-bit qweight and qzeros equal the AutoGPTQ pack() structure on random data', () => {
  const r = rng(33);
  const layer = randomLayer(r, 64, 128, 3, 4, 1);
  const p = packGptq(layer, 'gptq');
  for (let row = 0; row < 64; row++) {
    const want = autoGptq3(Array.from(layer.codes.subarray(row * 128, row * 128 + 128)));
    const got = Array.from({ length: 12 }, (_, w) => p.qweight[w * 64 + row] >>> 0);
    assert.equal(got, want, `row ${row}`);
  }
  for (let g = 0; g < 4; g++) {
    const want = autoGptq3(Array.from({ length: 64 }, (_, row) => layer.zeros[row * 4 + g] - 1));
    assert.equal(Array.from(p.qzeros.subarray(g * 6, g * 6 + 6), (x) => x >>> 0), want, `group ${g}`);
  }
});

test('invalid inputs are typed errors', () => {
  const r = rng(1);
  const ok = randomLayer(r, 32, 64, 4, 2, 1);
  const withZero = { ...ok, zeros: ok.zeros.map((z, i) => (i === 5 ? 0 : z)) };
  throwsType(() => packGptq(withZero, 'gptq'), OptionError, /zero point 0.*sym.*gptq_v2/);
  sameLayer(unpackGptq(packGptq(withZero, 'gptq_v2'), ok, 'gptq_v2'), withZero, 'v2 keeps zero 0');
  throwsType(() => packGptq({ ...ok, zeros: ok.zeros.map((z, i) => (i === 3 ? 16 : z)) }, 'gptq_v2'), OptionError, /16/);
  throwsType(() => packGptq({ ...ok, zeros: ok.zeros.map((z, i) => (i === 3 ? 2.5 : z)) }, 'gptq'), OptionError, /2\.5/);
  throwsType(() => packGptq({ ...ok, codes: ok.codes.map((c, i) => (i === 9 ? 16 : c)) }, 'gptq'), OptionError, /code 16/);
  throwsType(() => packGptq({ ...ok, scales: ok.scales.map((s, i) => (i === 1 ? 1e6 : s)) }, 'gptq'), NonFiniteError);
  throwsType(() => packGptq({ ...ok, scales: ok.scales.map((s, i) => (i === 1 ? NaN : s)) }, 'gptq'), NonFiniteError);
  throwsType(() => packGptq({ ...ok, gIdx: ok.gIdx.map((g, i) => (i === 0 ? 2 : g)) }, 'gptq'), OptionError, /gIdx\[0\]/);
  throwsType(() => packGptq({ ...ok, codes: ok.codes.subarray(1) }, 'gptq'), ShapeError);
  throwsType(() => packGptq({ ...ok, bits: 5 }, 'gptq'), OptionError);
  throwsType(() => packGptq(ok, 'gptq_v3' as 'gptq'), OptionError);
  const p = packGptq(ok, 'gptq');
  throwsType(() => unpackGptq({ ...p, qweight: p.qweight.subarray(1) }, ok, 'gptq'), ShapeError, /qweight/);
});

test('gptqTensors -> safetensors -> unpack round trip', () => {
  const layer = randomLayer(rng(8), 64, 96, 3, 3, 1);
  const bytes = writeSafetensors(gptqTensors('model.layers.0.mlp.up_proj', packGptq(layer, 'gptq')));
  const f = parseSafetensors(bytes);
  const t = (k: string) => f.tensors.get(`model.layers.0.mlp.up_proj.${k}`)!;
  assert.equal([t('qweight').dtype, t('qweight').shape], ['I32', [9, 64]]);
  assert.equal([t('qzeros').dtype, t('qzeros').shape], ['I32', [3, 6]]);
  assert.equal([t('scales').dtype, t('scales').shape], ['F16', [3, 64]]);
  assert.equal([t('g_idx').dtype, t('g_idx').shape], ['I32', [96]]);
  const raw = (k: string) => readTensorRaw(f, bytes, `model.layers.0.mlp.up_proj.${k}`);
  const back = unpackGptq(
    { qweight: raw('qweight') as Int32Array, qzeros: raw('qzeros') as Int32Array, scales: raw('scales') as Uint16Array, g_idx: raw('g_idx') as Int32Array },
    layer, 'gptq',
  );
  sameLayer(back, layer, 'through safetensors');
});

test('quantizeConfig', () => {
  assert.equal(quantizeConfig({ bits: 4, groupSize: 128, descAct: true, sym: false, extra: { method: 'bcd', cd_iters: 3 } }), {
    bits: 4, group_size: 128, desc_act: true, sym: false, true_sequential: true, damp_percent: 0.01, static_groups: false,
    quant_method: 'gptq', checkpoint_format: 'gptq', method: 'bcd', cd_iters: 3,
  });
  const c = quantizeConfig({ bits: 3, groupSize: -1, descAct: false, sym: true, format: 'gptq_v2', dampPercent: 0.1, staticGroups: true, trueSequential: false });
  assert.is(c.checkpoint_format, 'gptq_v2');
  assert.is(c.group_size, -1);
  assert.is(c.damp_percent, 0.1);
  throwsType(() => quantizeConfig({ bits: 4, groupSize: 0, descAct: false, sym: true }), OptionError);
  throwsType(() => quantizeConfig({ bits: 4, groupSize: 32, descAct: false, sym: true, extra: { bits: 8 } }), OptionError, /bits/);
});

test.run();
