// llama2.c and Hugging Face Llama checkpoints against the real stories260K files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FormatError, OptionError, ShapeError } from '../src/core/errors.js';
import { Kernel } from '../src/core/kernel.js';
import { readLlama2c, writeLlama2c, ropeTables } from '../src/model/checkpoint/llama2c.js';
import { readHfLlama, writeHfLlama, permuteRopeRows, hfLinearName } from '../src/model/checkpoint/hf.js';
import { parseSafetensors, readTensorRaw, readTensorF32, writeSafetensors, type TensorToWrite } from '../src/formats/safetensors.js';
import { f32ToF16Bits, f32ToBf16Bits, f16BitsToF32, bf16BitsToF32 } from '../src/formats/half.js';
import { LINEAR_NAMES, type LlamaModel } from '../src/model/types.js';
import { readData, readDataText, rng, sameArray, throwsType, outcome } from './helpers/util.js';

const bin = readData('stories260K.bin');
const hfConfig = readDataText('stories260K-hf/config.json');
const hf32 = readData('stories260K-hf/model.safetensors');

/** Every tensor of two models, exactly (q/k optionally through a mapping). */
function sameModel(a: LlamaModel, b: LlamaModel, what: string, qk?: (name: 'q_proj' | 'k_proj', w: Float32Array) => Float32Array) {
  sameArray(a.embedding, b.embedding, `${what} embedding`);
  sameArray(a.classifier, b.classifier, `${what} classifier`);
  sameArray(a.finalNorm, b.finalNorm, `${what} finalNorm`);
  assert.is(a.blocks.length, b.blocks.length);
  a.blocks.forEach((blk, l) => {
    sameArray(blk.attnNorm, b.blocks[l].attnNorm, `${what} ${l} attnNorm`);
    sameArray(blk.ffnNorm, b.blocks[l].ffnNorm, `${what} ${l} ffnNorm`);
    for (const n of LINEAR_NAMES) {
      const w = qk && (n === 'q_proj' || n === 'k_proj') ? qk(n, blk.linear[n]) : blk.linear[n];
      sameArray(w, b.blocks[l].linear[n], `${what} ${l} ${n}`);
    }
  });
}

test('llama2.c: reads stories260K.bin', () => {
  const m = readLlama2c(bin);
  assert.equal(m.config, {
    dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, maxSeqLen: 512,
    normEps: 1e-5, ropeTheta: 10000, ropeStyle: 'interleaved', tiedEmbeddings: true,
  });
  assert.is(m.classifier, m.embedding);
  assert.is(m.embedding.length, 512 * 64);
  assert.is(m.blocks[4].linear.down_proj.length, 64 * 172);
  assert.is(m.blocks[0].linear.k_proj.length, 32 * 64);
  // first float after the header is the first embedding value
  assert.is(m.embedding[0], new DataView(bin.buffer, bin.byteOffset).getFloat32(28, true));
  // last weight before the final norm is the last w3 value
  const finalNormAt = bin.length - 4 * (64 + 512 * 8);
  assert.is(m.blocks[4].linear.up_proj[64 * 172 - 1], new DataView(bin.buffer, bin.byteOffset).getFloat32(finalNormAt - 4, true));
  assert.is(m.finalNorm[63], new DataView(bin.buffer, bin.byteOffset).getFloat32(finalNormAt + 63 * 4, true));
});

test('llama2.c: write reproduces the file byte for byte; RoPE tables recomputed in wasm agree with PyTorch\'s to float32 rounding', async () => {
  const kernel = await Kernel.create();
  const m = readLlama2c(bin);
  const out = writeLlama2c(m);
  assert.is(out.length, bin.length);
  sameArray(out, bin, 'the whole file, RoPE tables included (kept from the input)');
  const ropeAt = bin.length - 4 * 512 * 8; // two tables of [512, 4]
  const dv = new DataView(bin.buffer, bin.byteOffset);
  const [cos, sin] = ropeTables(kernel, 512, 8, 10000);
  let worst = 0;
  for (let i = 0; i < cos.length; i++) {
    worst = Math.max(worst, Math.abs(cos[i] - dv.getFloat32(ropeAt + 4 * i, true)), Math.abs(sin[i] - dv.getFloat32(ropeAt + 4 * (cos.length + i), true)));
  }
  assert.ok(worst < 1e-5, `RoPE tables differ by ${worst}`); // PyTorch forms pos*freq in float32: ~2e-6 apart
  // untied round trip
  const untied: LlamaModel = { ...m, config: { ...m.config, tiedEmbeddings: false }, classifier: m.embedding.map((x) => x * 2) };
  const back = readLlama2c(writeLlama2c(untied));
  // A model from elsewhere gets the computed tables, and needs a kernel for them.
  const fromElsewhere: LlamaModel = { ...m, llama2cRope: undefined };
  throwsType(() => writeLlama2c(fromElsewhere), OptionError, /needs a kernel/);
  const recomputed = writeLlama2c(fromElsewhere, kernel);
  sameArray(recomputed.subarray(0, ropeAt), bin.subarray(0, ropeAt), 'everything before the tables');
  sameArray(new Uint8Array(recomputed.buffer, recomputed.byteOffset + ropeAt, 4 * cos.length), new Uint8Array(cos.buffer), 'cos table = ropeTables');
  assert.is(back.config.tiedEmbeddings, false);
  sameModel(back, untied, 'untied');
  throwsType(() => writeLlama2c({ ...m, config: { ...m.config, normEps: 1e-6 } }), OptionError, /eps/);
  throwsType(() => writeLlama2c({ ...m, finalNorm: new Float32Array(3) }), ShapeError, /finalNorm/);
});

test('llama2.c: truncated, padded or nonsensical headers are FormatErrors', () => {
  for (const cut of [0, 3, 27, 28, 29, 1000, bin.length - 4, bin.length - 1]) {
    throwsType(() => readLlama2c(bin.subarray(0, cut)), FormatError);
  }
  const longer = new Uint8Array(bin.length + 4);
  longer.set(bin);
  throwsType(() => readLlama2c(longer), FormatError, /implies/);
  const withHeader = (i: number, v: number) => {
    const b = bin.slice();
    new DataView(b.buffer).setInt32(4 * i, v, true);
    return b;
  };
  throwsType(() => readLlama2c(withHeader(0, 0)), FormatError, /dim/);
  throwsType(() => readLlama2c(withHeader(0, 60)), FormatError, /divisible/);
  throwsType(() => readLlama2c(withHeader(4, 3)), FormatError, /divisible/);
  throwsType(() => readLlama2c(withHeader(3, -8)), FormatError, /n_heads/);
  throwsType(() => readLlama2c(withHeader(5, -512)), FormatError, /implies/); // untied needs a classifier
  throwsType(() => readLlama2c(withHeader(0, 0x7fffffff & ~15)), FormatError);
  const r = rng(3);
  for (let i = 0; i < 300; i++) {
    const b = bin.slice(0, 28 + Math.floor(r() * 64));
    for (let k = 0; k < 28; k++) if (r() < 0.2) b[k] = Math.floor(r() * 256);
    assert.is(outcome(() => readLlama2c(b)), 'BAD_FILE');
  }
});

test('permuteRopeRows matches the HF converter formula and inverts', () => {
  const nHeads = 3, headDim = 6, cols = 5, rows = nHeads * headDim;
  const w = Float32Array.from({ length: rows * cols }, (_, i) => i);
  const half = permuteRopeRows(w, nHeads, rows, cols, 'toHalf');
  // w.view(n_heads, head/2, 2, cols).transpose(1, 2).reshape(rows, cols)
  for (let h = 0; h < nHeads; h++) for (let j = 0; j < 2; j++) for (let i = 0; i < headDim / 2; i++) {
    const dst = h * headDim + j * (headDim / 2) + i;
    const src = h * headDim + i * 2 + j;
    sameArray(half.subarray(dst * cols, dst * cols + cols), w.subarray(src * cols, src * cols + cols), `row ${dst}`);
  }
  sameArray(permuteRopeRows(half, nHeads, rows, cols, 'toInterleaved'), w, 'inverse');
  throwsType(() => permuteRopeRows(w, 4, rows, cols, 'toHalf'), ShapeError);
});

test('HF F32 file equals the llama2.c file exactly, q/k under the RoPE row permutation', async () => {
  const l2c = readLlama2c(bin);
  const hf = readHfLlama({ config: hfConfig, safetensors: [hf32] });
  assert.equal(hf.config, { ...l2c.config, ropeStyle: 'half' });
  assert.is(hf.classifier, hf.embedding);
  sameModel(l2c, hf, 'hf vs llama2c', (n, w) => permuteRopeRows(w, n === 'q_proj' ? 8 : 4, n === 'q_proj' ? 64 : 32, 64, 'toHalf'));
  // and back: llama2.c written from the HF model is the original file up to the RoPE tables
  const out = writeLlama2c(hf, await Kernel.create());
  const ropeAt = bin.length - 4 * 512 * 8; // two tables of [512, 4]
  sameArray(out.subarray(0, ropeAt), bin.subarray(0, ropeAt), 'llama2.c from HF');
});

test('HF F16/BF16 files read as the rounded F32 weights', () => {
  const hf = readHfLlama({ config: hfConfig, safetensors: [hf32] });
  for (const [dir, to, from] of [
    ['stories260K-hf-f16', f32ToF16Bits, f16BitsToF32],
    ['stories260K-hf-bf16', f32ToBf16Bits, bf16BitsToF32],
  ] as const) {
    const m = readHfLlama({ config: readDataText(`${dir}/config.json`), safetensors: [readData(`${dir}/model.safetensors`)] });
    const round = (a: Float32Array) => a.map((x) => from(to(x)));
    sameArray(m.embedding, round(hf.embedding), `${dir} embedding`);
    sameArray(m.blocks[2].linear.down_proj, round(hf.blocks[2].linear.down_proj), `${dir} down_proj`);
    sameArray(m.blocks[4].attnNorm, round(hf.blocks[4].attnNorm), `${dir} norm`);
  }
});

test('writeHfLlama reproduces the real tensors bit for bit in F32, F16 and BF16', () => {
  const l2c = readLlama2c(bin);
  for (const [dtype, dir] of [['F32', 'stories260K-hf'], ['F16', 'stories260K-hf-f16'], ['BF16', 'stories260K-hf-bf16']] as const) {
    const { config, safetensors } = writeHfLlama(l2c, dtype, { source: 'test' });
    const realBytes = readData(`${dir}/model.safetensors`);
    const real = parseSafetensors(realBytes);
    const mine = parseSafetensors(safetensors);
    assert.equal(mine.metadata, { format: 'pt', source: 'test' });
    assert.equal(new Set(mine.tensors.keys()), new Set(real.tensors.keys()));
    for (const [name, t] of real.tensors) {
      const a = readTensorRaw(real, realBytes, name) as Float32Array | Uint16Array;
      const b = readTensorRaw(mine, safetensors, name) as Float32Array | Uint16Array;
      assert.equal(mine.tensors.get(name)!.shape, t.shape, name);
      sameArray(new Uint8Array(b.buffer), new Uint8Array(a.buffer), `${dtype} ${name}`);
    }
    const cfg = JSON.parse(config);
    const realCfg = JSON.parse(readDataText(`${dir}/config.json`));
    for (const k of Object.keys(realCfg)) assert.equal(cfg[k], realCfg[k], `config ${k}`);
    // and it reads back
    const back = readHfLlama({ config, safetensors: [safetensors] });
    if (dtype === 'F32') sameModel(back, readHfLlama({ config: hfConfig, safetensors: [hf32] }), 'F32 round trip');
  }
  // an untied HF model round-trips with lm_head
  const untied: LlamaModel = { ...l2c, config: { ...l2c.config, tiedEmbeddings: false }, classifier: l2c.embedding.map((x) => -x) };
  const w = writeHfLlama(untied, 'F32');
  assert.ok(parseSafetensors(w.safetensors).tensors.has('lm_head.weight'));
  const back = readHfLlama(w);
  sameArray(back.classifier, untied.classifier, 'lm_head');
  assert.is(JSON.parse(w.config).tie_word_embeddings, false);
});

test('HF: shards, missing tensors, bad shapes and bad configs', () => {
  const real = parseSafetensors(hf32);
  const all: TensorToWrite[] = [...real.tensors.keys()].map((name) => ({
    name, dtype: 'F32', shape: real.tensors.get(name)!.shape, data: readTensorF32(real, hf32, name),
  }));
  const shardA = writeSafetensors(all.slice(0, 20));
  const shardB = writeSafetensors(all.slice(20));
  const one = readHfLlama({ config: hfConfig, safetensors: [hf32] });
  sameModel(readHfLlama({ config: hfConfig, safetensors: [shardB, shardA] }), one, 'two shards');
  throwsType(() => readHfLlama({ config: hfConfig, safetensors: [shardA, shardB, shardA] }), FormatError, /more than one shard/);
  throwsType(() => readHfLlama({ config: hfConfig, safetensors: [shardA] }), FormatError, /missing tensor "model\.layers\.\d\./);
  const q = hfLinearName(3, 'q_proj');
  const reshaped = all.map((t) => (t.name === q ? { ...t, shape: [32, 128] } : t));
  throwsType(() => readHfLlama({ config: hfConfig, safetensors: [writeSafetensors(reshaped)] }), ShapeError, /q_proj.*\[32, 128\]/);
  const cfg = JSON.parse(hfConfig);
  const withCfg = (patch: Record<string, unknown>) => () => readHfLlama({ config: JSON.stringify({ ...cfg, ...patch }), safetensors: [hf32] });
  throwsType(withCfg({ tie_word_embeddings: false }), FormatError, /lm_head/);
  throwsType(withCfg({ hidden_size: undefined }), FormatError, /hidden_size/);
  throwsType(withCfg({ num_hidden_layers: 0 }), FormatError, /num_hidden_layers/);
  throwsType(withCfg({ num_key_value_heads: 3 }), FormatError, /divisible/);
  throwsType(withCfg({ intermediate_size: 100 }), ShapeError, /mlp/);
  throwsType(withCfg({ rope_scaling: { type: 'llama3' } }), FormatError, /rope_scaling/);
  throwsType(withCfg({ model_type: 'gpt2' }), FormatError, /model_type/);
  throwsType(() => readHfLlama({ config: '{', safetensors: [hf32] }), FormatError, /JSON/);
  // without num_key_value_heads, kv heads default to the attention heads: k_proj [64, 64] expected
  throwsType(withCfg({ num_key_value_heads: undefined }), ShapeError, /k_proj.*\[32, 64\].*\[64, 64\]/);
  const noTheta = readHfLlama({ config: JSON.stringify({ ...cfg, rope_theta: undefined }), safetensors: [hf32] });
  assert.is(noTheta.config.ropeTheta, 10000);
});

test.run();
