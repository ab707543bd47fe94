// fp16 scales (SolverOptions.scales = 'f16', the default for models): GPTQ checkpoints store
// scales as fp16, so every grid is built on fp16-rounded scales and the solver optimises exactly
// what is written (ALGORITHMS.md, GPTQ checkpoint packing). The rounding (assembly/grid.ts
// roundScaleToHalf, integer arithmetic on the bits) is checked against src/formats/half.ts, an
// independent conversion written from IEEE 754 that the safetensors writer uses; the solvers'
// grids are checked for being fp16 values and valid grids, the loss against a float64 reference.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel } from '../src/core/kernel.js';
import { NonFiniteError } from '../src/core/errors.js';
import { quantizeLayer, type QuantizeOptions } from '../src/index.js';
import { bitsF32, f16BitsToF32, f32Bits, f32ToF16Bits } from '../src/formats/half.js';
import { layerLoss, mulberry32, randomProblem } from './reference.js';

const kernel = await Kernel.create();
const HALF_MIN = 2 ** -24;

/** fp16 rounding of a positive float32 as an fp16 store reads it back, a zero step replaced by
 * the smallest positive fp16 (a grid never has a zero step). */
function expected(x: number): number {
  const r = f16BitsToF32(f32ToF16Bits(x));
  return r === 0 ? HALF_MIN : r;
}

test('roundScaleToHalf is IEEE fp16 round-to-nearest-even (formats/half.ts) on every fp16 neighbourhood', () => {
  const x = kernel.exports;
  const check = (v: number) => {
    if (!(v > 0 && v < Infinity)) return;
    const got = x.roundScaleToHalf(v);
    const want = expected(v);
    if (!Object.is(got, want)) assert.unreachable(`roundScaleToHalf(${v}) = ${got}, want ${want}`);
  };
  // Every positive finite fp16 value, the float32 values beside it, and the midpoints to its
  // neighbours with one float32 step either side (the ties and the values just off them).
  for (let h = 1; h < 0x7c00; h++) {
    const v = f16BitsToF32(h), next = f16BitsToF32(h + 1);
    const b = f32Bits(v);
    for (const c of [v, bitsF32(b - 1), bitsF32(b + 1)]) check(c);
    const mid = Math.fround((v + next) / 2); // exact: an fp16 midpoint has 12 significant bits
    const m = f32Bits(mid);
    check(mid);
    check(bitsF32(m - 1));
    check(bitsF32(m + 1));
  }
  // Below the smallest subnormal, at the overflow edge, and random floats across the range.
  for (const v of [2 ** -30, 2 ** -25, Math.fround(2 ** -25 * 1.0000001), 65504, 65519.99, 65520, 1e6, 3e38]) check(Math.fround(v));
  assert.is(x.roundScaleToHalf(2 ** -30), HALF_MIN);
  const rand = mulberry32(5);
  for (let i = 0; i < 100000; i++) check(Math.fround(2 ** (rand() * 50 - 30)));
  assert.is(x.roundScaleToHalf(65520), Infinity);
  assert.is(x.roundScaleToHalf(Math.fround(65519.99)), 65504);
});

const METHODS: QuantizeOptions[] = [
  { method: 'rtn' },
  { method: 'rtn', clip: 'mse', groupSize: 16 },
  { method: 'rtn', clip: 'owc', sym: true },
  { method: 'gptq', groupSize: 16 },
  { method: 'gptq', groupSize: 16, actOrder: true },
  { method: 'gptq', groupSize: 16, actOrder: true, staticGroups: true },
  { method: 'cd' },
  { method: 'cd', groupSize: 16, refit: 2 },
  { method: 'cd', init: 'gptq', bits: 3 },
  { method: 'bcd', groupSize: 16, bits: 2 },
];

test('every solver on fp16 scales: every scale an fp16 value, valid grids, the loss it reports', async () => {
  const rows = 24, cols = 64;
  const p = randomProblem(rows, cols, 4 * cols, 11);
  const W = Float32Array.from(p.W), H = Float32Array.from(p.H);
  for (const o of METHODS) {
    const what = JSON.stringify(o);
    const half = await quantizeLayer({ data: W, rows, cols }, H, { ...o, scales: 'f16', threads: 1 });
    const single = await quantizeLayer({ data: W, rows, cols }, H, { ...o, scales: 'f32', threads: 1 });
    const maxq = 2 ** (o.bits ?? 4) - 1;
    for (const s of half.scales) assert.is(f16BitsToF32(f32ToF16Bits(s)), s, `${what}: scale ${s} is not an fp16 value`);
    for (const z of half.zeros) assert.ok(Number.isInteger(z) && z >= 0 && z <= maxq, `${what}: zero ${z}`);
    // The reported loss is the float64 loss of the dequantized values (test/reference.ts).
    const ref = layerLoss(Float64Array.from(W), Float64Array.from(half.dequantize()), Float64Array.from(H), rows, cols);
    assert.ok(Math.abs(half.loss - ref) <= 1e-4 * ref + 1e-9, `${what}: loss ${half.loss} vs float64 ${ref}`);
    // fp16 steps move the grid by 2^-11 at most: the loss barely changes.
    assert.ok(half.loss <= 1.05 * single.loss + 1e-9, `${what}: fp16 loss ${half.loss} vs f32 ${single.loss}`);
    // Some f32 grid is not an fp16 value, so the option did something.
    assert.ok(Array.from(single.scales).some((s) => f16BitsToF32(f32ToF16Bits(s)) !== s), `${what}: f32 scales all fp16`);
  }
});

test('fp16 scales: same bits for any thread count (the built package\'s worker pool)', async () => {
  const lib = await import('cdquant');
  const rows = 40, cols = 64;
  const p = randomProblem(rows, cols, 4 * cols, 12);
  const W = Float32Array.from(p.W), H = Float32Array.from(p.H);
  for (const o of [{ method: 'cd', groupSize: 16, refit: 1 }, { method: 'gptq', actOrder: true }] as QuantizeOptions[]) {
    const one = await lib.quantizeLayer({ data: W, rows, cols }, H, { ...o, scales: 'f16', threads: 1 });
    const three = await lib.quantizeLayer({ data: W, rows, cols }, H, { ...o, scales: 'f16', threads: 3 });
    assert.equal(three.codes, one.codes);
    assert.equal(three.scales, one.scales);
    assert.equal(three.zeros, one.zeros);
  }
});

test('fp16 scales: a row whose grid step leaves the fp16 range is refused, naming it; f32 scales take it', async () => {
  const rows = 4, cols = 32;
  const p = randomProblem(rows, cols, 4 * cols, 13);
  const W = Float32Array.from(p.W), H = Float32Array.from(p.H);
  W[2 * cols + 5] = 6e5; // 4-bit step up to 2 * 6e5 / 15 = 80000 > 65504
  let err: unknown = null;
  try { await quantizeLayer({ data: W, rows, cols }, H, { method: 'rtn', scales: 'f16' }); } catch (e) { err = e; }
  assert.ok(err instanceof NonFiniteError && /row 2/.test(err.message) && /fp16/.test(err.message), String(err));
  const f32 = await quantizeLayer({ data: W, rows, cols }, H, { method: 'rtn', scales: 'f32' });
  assert.ok(f32.scales.every((s) => Number.isFinite(s) && s > 0));
});

test.run();
