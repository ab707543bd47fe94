// CDQuant on the GGUF block grids (src/quantize-gguf.ts) and llama.cpp's named mixes
// (src/model/gguf-mix.ts). The references: the layer loss in float64 written in the test
// (test/reference.ts), llama.cpp's own quantizers (bit-exact in gguf-blocks.test.ts against its
// C), and the type rules read from llama.cpp's src/llama-quant.cpp for hand-worked cases.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel } from '../src/core/kernel.js';
import { prepareResident } from '../src/core/prepare.js';
import { quantizeLayerGguf, type GgufSolver } from '../src/quantize-gguf.js';
import { dequantizeRows, quantizeRows, type GgufBlockTypeName } from '../src/formats/gguf-blocks.js';
import { mixTypes, type MixTensor } from '../src/model/gguf-mix.js';
import { layerLoss, randomProblem } from './reference.js';

const kernel = await Kernel.create();

/** A layer problem with uneven column scales and a few outlier weights, H = 2/n X^T X. */
function problem(rows: number, cols: number, seed: number) {
  const p = randomProblem(rows, cols, 4 * cols, seed);
  return { W: Float32Array.from(p.W), H: Float32Array.from(p.H), rows, cols };
}

function solve(p: ReturnType<typeof problem>, type: GgufBlockTypeName, solver: GgufSolver) {
  const session = prepareResident(kernel, kernel.put(p.H), p.cols, { method: 'rtn' });
  try {
    return quantizeLayerGguf(session, { data: p.W, rows: p.rows, cols: p.cols }, type, solver);
  } finally {
    session.free();
  }
}

const TYPES: GgufBlockTypeName[] = ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];

test('every solver writes bytes that decode to the values it optimised, with the loss it reports', () => {
  const p = problem(6, 512, 3);
  for (const type of TYPES) {
    for (const solver of ['ref', 'imatrix', 'owc', 'cd'] as GgufSolver[]) {
      const r = solve(p, type, solver);
      const decoded = dequantizeRows(kernel, type, r.bytes, p.rows, p.cols);
      for (let i = 0; i < decoded.length; i++) {
        if (!Object.is(decoded[i], r.values[i])) assert.unreachable(`${type} ${solver}: value ${i} decodes to ${decoded[i]}, solver holds ${r.values[i]}`);
      }
      const want = layerLoss(p.W, r.values, p.H, p.rows, p.cols);
      assert.ok(Math.abs(r.loss - want) <= 1e-4 * want + 1e-12, `${type} ${solver}: loss ${r.loss} vs float64 ${want}`);
    }
  }
});

test('ref and imatrix are llama.cpp\'s quantizers (imatrix = diag(H)); CD never loses to them', () => {
  const p = problem(8, 512, 5);
  const diag = Float32Array.from({ length: p.cols }, (_, j) => p.H[j * p.cols + j]);
  for (const type of TYPES) {
    const ref = solve(p, type, 'ref');
    const imatrix = solve(p, type, 'imatrix');
    assert.equal(ref.bytes, quantizeRows(kernel, type, p.W, p.rows, p.cols), `${type}: ref is llama.cpp's reference rounding`);
    assert.equal(imatrix.bytes, quantizeRows(kernel, type, p.W, p.rows, p.cols, diag), `${type}: imatrix is llama.cpp's weighted rounding`);
    assert.is(ref.refLoss, ref.loss);
    assert.is(imatrix.refLoss, ref.loss, `${type}: the baseline loss is the reference rounding's`);
    const owc = solve(p, type, 'owc');
    const cd = solve(p, type, 'cd');
    // CD starts from round-to-nearest on the chosen grid and only takes moves that lower the loss.
    assert.ok(cd.loss <= owc.loss * (1 + 1e-6), `${type}: cd ${cd.loss} vs owc ${owc.loss}`);
    // The grid search keeps llama.cpp's weighted grid where it scores lower, block by block.
    assert.ok(cd.loss < imatrix.loss, `${type}: cd ${cd.loss} vs imatrix ${imatrix.loss}`);
    assert.ok(cd.movesPerRow !== null && cd.movesPerRow > 0, `${type}: CD moved`);
  }
});

test('dead input columns: H_jj = 0 columns carry no loss and the bytes still decode', () => {
  const p = problem(8, 256, 9);
  for (const j of [3, 100]) for (let i = 0; i < p.cols; i++) p.H[j * p.cols + i] = p.H[i * p.cols + j] = 0;
  for (const type of ['Q4_K', 'Q4_0'] as GgufBlockTypeName[]) {
    const r = solve(p, type, 'cd');
    assert.ok(Number.isFinite(r.loss) && r.loss >= 0);
    const want = layerLoss(p.W, r.values, p.H, p.rows, p.cols);
    assert.ok(Math.abs(r.loss - want) <= 1e-4 * want + 1e-12, `${type}: ${r.loss} vs ${want}`);
  }
});

test('a row length the type cannot tile is refused', () => {
  const p = problem(4, 96, 1);
  let threw = false;
  try {
    solve(p, 'Q4_K', 'cd');
  } catch (e) {
    threw = /multiple of 256/.test((e as Error).message);
  }
  assert.ok(threw);
});

// ---------------------------------------------------------------------------------- mixes

/** The tensors of a Llama-like model in llama.cpp's order, llama.cpp's names. */
function llamaTensors(layers: number, dim: number, ff: number, tied: boolean, fusedQkv = false): MixTensor[] {
  const t: MixTensor[] = [{ name: 'token_embd.weight', rowLength: dim, dims: 2 }];
  for (let l = 0; l < layers; l++) {
    t.push({ name: `blk.${l}.attn_norm.weight`, rowLength: dim, dims: 1 });
    for (const n of fusedQkv ? ['attn_qkv'] : ['attn_q', 'attn_k', 'attn_v']) t.push({ name: `blk.${l}.${n}.weight`, rowLength: dim, dims: 2 });
    t.push({ name: `blk.${l}.attn_output.weight`, rowLength: dim, dims: 2 });
    t.push({ name: `blk.${l}.ffn_norm.weight`, rowLength: dim, dims: 1 });
    t.push({ name: `blk.${l}.ffn_gate.weight`, rowLength: dim, dims: 2 }, { name: `blk.${l}.ffn_up.weight`, rowLength: dim, dims: 2 });
    t.push({ name: `blk.${l}.ffn_down.weight`, rowLength: ff, dims: 2 });
  }
  t.push({ name: 'output_norm.weight', rowLength: dim, dims: 1 });
  if (!tied) t.push({ name: 'output.weight', rowLength: dim, dims: 2 });
  return t;
}

test('Q4_K_M on a 32-layer Llama: llama-quant.cpp\'s use_more_bits layers get Q6_K', () => {
  const types = mixTypes('Q4_K_M', llamaTensors(32, 4096, 11008, false), { layers: 32, gqa: 1, tiedEmbeddings: false }, false);
  // use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2 -> 0-3, 6, 9, ..., 27, 28-31.
  const more = new Set([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
  for (let l = 0; l < 32; l++) {
    assert.is(types.get(`blk.${l}.attn_v.weight`), more.has(l) ? 'Q6_K' : 'Q4_K', `attn_v ${l}`);
    assert.is(types.get(`blk.${l}.ffn_down.weight`), more.has(l) ? 'Q6_K' : 'Q4_K', `ffn_down ${l}`);
    assert.is(types.get(`blk.${l}.attn_q.weight`), 'Q4_K');
    assert.is(types.get(`blk.${l}.attn_norm.weight`), 'F32');
  }
  assert.is(types.get('output.weight'), 'Q6_K');
  assert.is(types.get('token_embd.weight'), 'Q4_K');
});

test('mixes: tied embeddings, fused qkv, Q2_K with GQA, Q3_K_M, Q4_0 with an imatrix, F16', () => {
  const tied = mixTypes('Q4_K_M', llamaTensors(16, 2048, 8192, true), { layers: 16, gqa: 4, tiedEmbeddings: true }, true);
  assert.is(tied.get('token_embd.weight'), 'Q6_K', 'a tied embedding is quantized as the output');
  const phi = mixTypes('Q4_K_M', llamaTensors(8, 3072, 8192, false, true), { layers: 8, gqa: 1, tiedEmbeddings: false }, true);
  // attn_qkv follows attn_v's rule (category_is_attn_v comes first): use_more_bits(i, 8) = 0, 7, 3 ((i-1)%3==2).
  assert.equal([0, 1, 2, 3, 4, 5, 6, 7].map((l) => phi.get(`blk.${l}.attn_qkv.weight`)), ['Q6_K', 'Q4_K', 'Q4_K', 'Q6_K', 'Q4_K', 'Q4_K', 'Q6_K', 'Q6_K']);
  const q2 = mixTypes('Q2_K', llamaTensors(8, 4096, 14336, false), { layers: 8, gqa: 4, tiedEmbeddings: false }, true);
  assert.is(q2.get('blk.0.attn_v.weight'), 'Q4_K');
  assert.is(q2.get('blk.0.ffn_down.weight'), 'Q3_K');
  assert.is(q2.get('blk.0.attn_output.weight'), 'Q3_K');
  assert.is(q2.get('blk.0.attn_q.weight'), 'Q2_K');
  const q3 = mixTypes('Q3_K_M', llamaTensors(32, 4096, 14336, false), { layers: 32, gqa: 4, tiedEmbeddings: false }, true);
  assert.equal([0, 1, 2].map((l) => q3.get(`blk.${l}.attn_v.weight`)), ['Q5_K', 'Q5_K', 'Q4_K']);
  assert.equal([0, 1, 2].map((l) => q3.get(`blk.${l}.ffn_down.weight`)), ['Q5_K', 'Q5_K', 'Q4_K']);
  const q40 = mixTypes('Q4_0', llamaTensors(16, 2048, 5632, false), { layers: 16, gqa: 8, tiedEmbeddings: false }, true);
  assert.equal([0, 1, 2].map((l) => q40.get(`blk.${l}.ffn_down.weight`)), ['Q4_1', 'Q4_1', 'Q4_0']);
  assert.is(mixTypes('Q4_0', llamaTensors(16, 2048, 5632, false), { layers: 16, gqa: 8, tiedEmbeddings: false }, false).get('blk.0.ffn_down.weight'), 'Q4_0');
  const f16 = mixTypes('F16', llamaTensors(2, 64, 172, false), { layers: 2, gqa: 1, tiedEmbeddings: false }, false);
  assert.is(f16.get('output.weight'), 'F16');
  assert.is(f16.get('blk.0.ffn_down.weight'), 'F16');
  // 64-wide rows cannot take 256-blocks: Q4_K falls back to Q5_0; 172-wide rows fit no block: F16.
  const tiny = mixTypes('Q4_K_M', llamaTensors(5, 64, 172, true), { layers: 5, gqa: 2, tiedEmbeddings: true }, true);
  assert.is(tiny.get('blk.1.attn_q.weight'), 'Q5_0');
  assert.is(tiny.get('blk.1.ffn_down.weight'), 'F16');
  assert.is(tiny.get('token_embd.weight'), 'Q8_0');
});

test.run();
