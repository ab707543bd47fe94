// The model families of ../src/model/arch.ts: tiny random checkpoints of each family are read
// from their Hugging Face layout and run by the wasm forward pass, and the logits are compared
// with the float64 reference in ./family-reference.ts (written from transformers' modeling
// files). Plus: config.json refusals, HF write/read round trips, blocks loaded one at a time,
// and the pipeline over fused (Phi-3) and biased (Qwen2) layers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel } from '../src/core/kernel.js';
import { FormatError, OptionError } from '../src/core/errors.js';
import { LlamaRunner } from '../src/model/forward.js';
import { readHfModel, writeHfModel, parseHfConfig } from '../src/model/checkpoint/hf.js';
import { quantStages, linearNames } from '../src/model/arch.js';
import { parseSafetensors, readTensorF32 } from '../src/formats/safetensors.js';
import { quantizeModel } from '../src/model/pipeline.js';
import { gptqCheckpoint, readGptqCheckpoint, isPackable, type Provenance } from '../src/model/export.js';
import { f16BitsToF32, f32ToF16Bits } from '../src/formats/half.js';
import { referenceLogits } from './family-reference.js';
import { randomTensors, checkpoint, tokensOf } from './helpers/family-models.js';
import { sameArray, throwsType } from './helpers/util.js';

const kernel = await Kernel.create();

type Cfg = Record<string, any>;

function maxDiff(a: Float32Array, ref: Float64Array[], V: number): { diff: number; scale: number } {
  let diff = 0, scale = 0;
  ref.forEach((row, t) => row.forEach((v, i) => {
    diff = Math.max(diff, Math.abs(a[t * V + i] - v));
    scale = Math.max(scale, Math.abs(v));
  }));
  return { diff, scale };
}

// Tolerance: the wasm pass is float32 (rounding ~6e-8 relative per operation, dot products of
// at most 96 terms, exp/tanh within a few ulp, ~20 dependent operations per layer, 3-4 layers)
// against exact float64 math, so errors of a few 1e-7 relative to the largest logit are
// expected (measured: 2e-7 to 3e-7). 2e-5 keeps a margin of ~50x, while every semantic slip the
// tests guard against (a window off by one, the wrong norm, RoPE base, scale or fused-row order)
// moves logits by far more: each family test also checks that a changed config moves the
// reference by more than 50 x TOL.
const TOL = 2e-5;

function checkFamily(name: string, cfg: Cfg, T: number, mutations: [string, Cfg][] = [], seed = 1) {
  test(`${name}: wasm logits match the float64 transformers reference`, () => {
    const w = randomTensors(cfg, seed);
    const model = readHfModel(checkpoint(cfg, w));
    const runner = new LlamaRunner(kernel, model);
    try {
      const tokens = tokensOf(T, cfg.vocab_size, seed + 7);
      const logits = runner.logits(tokens);
      const ref = referenceLogits(cfg, w, tokens);
      const { diff, scale } = maxDiff(logits, ref, cfg.vocab_size);
      assert.ok(diff <= TOL * Math.max(1, scale), `${name}: max |wasm - reference| = ${diff} (largest logit ${scale})`);
      if (process.env.FAMILIES_VERBOSE) console.log(`${name}: max |wasm - reference| ${diff.toExponential(2)}, largest logit ${scale.toFixed(2)}`);
      // the test can fail: each feature under test changes the reference far beyond TOL
      for (const [what, change] of mutations) {
        const other = referenceLogits({ ...cfg, ...change }, w, tokens);
        const moved = maxDiff(logits, other, cfg.vocab_size).diff;
        assert.ok(moved > 50 * TOL * Math.max(1, scale), `${name}: ${what} should matter, moved logits by only ${moved}`);
      }
      // nll agrees with the logits' own cross-entropy (same kernels, chunked)
      const nll = runner.nll(tokens);
      let sum = 0;
      for (let t = 0; t + 1 < T; t++) {
        const row = ref[t];
        const m = Math.max(...row);
        sum += m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0)) - row[tokens[t + 1]];
      }
      assert.ok(Math.abs(nll.sum - sum) <= 1e-3 * T, `${name}: nll ${nll.sum} vs reference ${sum}`);
    } finally {
      runner.free();
    }
  });
}

const base = { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, max_position_embeddings: 64 };

// Llama: llama3 RoPE scaling (original context 32 with theta 10000 puts pair 0 in the
// high-frequency band, pair 1 in the smoothed band, the rest in the low band), explicit head_dim
// != hidden/heads, attention and MLP biases, untied.
const llama3 = {
  ...base, architectures: ['LlamaForCausalLM'], model_type: 'llama', head_dim: 12, attention_bias: true, mlp_bias: true, tie_word_embeddings: false,
  rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 },
};
checkFamily('llama (llama3 rope, head_dim 12, biases)', llama3, 40, [
  ['rope_scaling', { rope_scaling: null }], ['head_dim', { head_dim: 8 }],
]);
const llamaLinear = { ...base, model_type: 'llama', tie_word_embeddings: true, rope_theta: 500, rope_scaling: { type: 'linear', factor: 4 } };
checkFamily('llama (linear rope, tied)', llamaLinear, 30, [['rope_scaling', { rope_scaling: null }]]);

const mistral = { ...base, architectures: ['MistralForCausalLM'], model_type: 'mistral', head_dim: 10, sliding_window: 5, rope_theta: 1e6 };
checkFamily('mistral (sliding window 5 over 24 tokens, head_dim 10)', mistral, 24, [['sliding_window', { sliding_window: null }]]);

const qwen2 = {
  ...base, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', use_sliding_window: true, sliding_window: 6, max_window_layers: 1,
  rope_theta: 1e6, tie_word_embeddings: false,
};
checkFamily('qwen2 (q/k/v biases, layers 1-2 sliding)', qwen2, 20, [['use_sliding_window', { use_sliding_window: false }], ['max_window_layers', { max_window_layers: 2 }]]);

const qwen3 = { ...base, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', head_dim: 12, tie_word_embeddings: true, rope_theta: 1e6, attention_bias: true };
checkFamily('qwen3 (q/k norms, head_dim 12 != 32/4, attention_bias)', qwen3, 20, [['head_dim', { head_dim: 8 }]]);

const gemma3 = {
  ...base, num_hidden_layers: 4, architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', head_dim: 16, query_pre_attn_scalar: 24,
  sliding_window: 4, sliding_window_pattern: 2, rope_theta: 1e6, rope_local_base_freq: 10000, rope_scaling: { rope_type: 'linear', factor: 2 },
  attn_logit_softcapping: 3, final_logit_softcapping: 4, hidden_activation: 'gelu_pytorch_tanh',
};
checkFamily('gemma3 (sliding + global layers, two RoPE bases, softcaps, pre/post norms)', gemma3, 20, [
  ['sliding_window_pattern', { sliding_window_pattern: 3 }], ['query_pre_attn_scalar', { query_pre_attn_scalar: 16 }],
  ['rope_local_base_freq', { rope_local_base_freq: 1e6 }], ['final_logit_softcapping', { final_logit_softcapping: null }],
  ['attn_logit_softcapping', { attn_logit_softcapping: null }],
]);
// Gemma 3 with transformers' newer layer_types list instead of the pattern
checkFamily('gemma3 (layer_types, no softcaps)', { ...gemma3, sliding_window_pattern: undefined, attn_logit_softcapping: null, final_logit_softcapping: null, layer_types: ['full_attention', 'sliding_attention', 'sliding_attention', 'full_attention'] }, 20);

const longrope = { type: 'longrope', short_factor: [1, 1.5, 2, 3], long_factor: [2, 3, 5, 8] };
const phi3 = {
  ...base, architectures: ['Phi3ForCausalLM'], model_type: 'phi3', head_dim: 16, partial_rotary_factor: 0.5, rope_scaling: longrope,
  original_max_position_embeddings: 16, sliding_window: 7, rope_theta: 10000,
};
// 12 tokens: within the original context, the short factors; 24: the long ones
checkFamily('phi3 (fused qkv / gate_up, partial rotary, longrope short, window 7)', phi3, 12, [['rope_scaling', { rope_scaling: null }], ['partial_rotary_factor', { partial_rotary_factor: 0.25 }]]);
checkFamily('phi3 (longrope long factors beyond the original context)', phi3, 24, [['long_factor', { rope_scaling: { ...longrope, long_factor: longrope.short_factor } }], ['sliding_window', { sliding_window: null }]]);

// ------------------------------------------------------------------ kernels new to the families

test('tanh, gelu-tanh and soft-capping kernels: accurate against Math, finite and bounded at the extremes', () => {
  const nn = kernel.exports as unknown as {
    nn_tanh_f32(x: number): number; nn_geglu(g: number, u: number, out: number, n: number): void; nn_softcap(x: number, n: number, cap: number): void;
  };
  let worst = 0;
  for (let i = -4000; i <= 4000; i++) {
    const x = Math.fround(i / 200);
    worst = Math.max(worst, Math.abs(nn.nn_tanh_f32(x) - Math.tanh(x)));
  }
  assert.ok(worst < 2e-7, `tanh: max abs error ${worst}`); // a few float32 ulp of 1
  assert.is(nn.nn_tanh_f32(100), 1);
  assert.is(nn.nn_tanh_f32(-1e30), -1);
  assert.ok(Object.is(nn.nn_tanh_f32(-0), -0) && Object.is(nn.nn_tanh_f32(0), 0));
  // gelu-tanh(x) * 1 against its definition (transformers' gelu_pytorch_tanh), 4-lane and tail paths
  const xs = Float32Array.from([-1e30, -50, -3, -1, -0.1, 0, 0.1, 1, 3, 50, 1e3, 7.5, -7.5]);
  const out = kernel.scoped((alloc, put) => {
    const g = put(xs);
    const u = put(new Float32Array(xs.length).fill(1));
    const o = alloc(xs.length * 4);
    nn.nn_geglu(g, u, o, xs.length);
    return kernel.f32(o, xs.length).slice();
  });
  xs.forEach((x, i) => {
    const want = x < -1e3 ? -0 : 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    assert.ok(Number.isFinite(out[i]) && Math.abs(out[i] - want) <= 1e-6 * (1 + Math.abs(x)), `gelu(${x}) = ${out[i]}, want ${want}`);
  });
  const capped = kernel.scoped((_alloc, put) => {
    const p = put(Float32Array.from([1e30, -1e30, 0, 30, -3, 1, 2, 3, 4]));
    nn.nn_softcap(p, 9, 30);
    return kernel.f32(p, 9).slice();
  });
  assert.equal([capped[0], capped[1], capped[2]], [30, -30, 0]);
  for (let i = 3; i < 9; i++) {
    const x = [30, -3, 1, 2, 3, 4][i - 3];
    assert.ok(Math.abs(capped[i] - 30 * Math.tanh(x / 30)) < 1e-5, `softcap(${x})`);
  }
});

// ------------------------------------------------------------------ config refusals

test('config.json fields the forward pass would not honour are refused, naming the field', () => {
  const bad: [Cfg, RegExp][] = [
    [{ ...base, model_type: 'llama', rope_scaling: { rope_type: 'yarn', factor: 2 } }, /rope_scaling\.rope_type "yarn"/],
    [{ ...base, model_type: 'llama', rope_scaling: { type: 'dynamic', factor: 2 } }, /rope_scaling\.rope_type "dynamic"/],
    [{ ...base, model_type: 'llama', rope_scaling: { type: 'longrope', short_factor: [1, 1, 1, 1], long_factor: [1, 1, 1, 1] } }, /longrope is only supported for phi3/],
    [{ ...base, model_type: 'phi3', rope_scaling: { type: 'linear', factor: 2 } }, /linear is not part of phi3/],
    [{ ...phi3, rope_scaling: { ...longrope, short_factor: [1, 2] } }, /shortFactor must list 4/],
    [{ ...base, model_type: 'llama', hidden_act: 'gelu' }, /hidden_act "gelu"/],
    [{ ...gemma3, hidden_activation: 'gelu' }, /hidden_activation "gelu"/],
    [{ ...gemma3, layer_types: ['chunked_attention', 'full_attention', 'full_attention', 'full_attention'] }, /layer_types\[0\] "chunked_attention"/],
    [{ ...gemma3, layer_types: ['full_attention'] }, /layer_types must list/],
    [{ ...qwen2, use_sliding_window: false, layer_types: ['full_attention', 'sliding_attention', 'full_attention'] }, /use_sliding_window/],
    [{ ...base, model_type: 'gemma3' }, /multimodal/],
    [{ ...base, model_type: 'falcon' }, /model_type "falcon"/],
    [{ ...base, architectures: ['MistralForCausalLM'], model_type: 'llama' }, /does not match model_type/],
    [{ ...base, architectures: ['GPT2LMHeadModel'] }, /architectures "GPT2LMHeadModel"/],
    [{ ...mistral, sliding_window: -3 }, /sliding_window = -3/],
    [{ ...base, model_type: 'llama', head_dim: 7 }, /head_dim 7 is odd/],
    [{ ...base, model_type: 'llama', rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling\.low_freq_factor/],
    [{ ...base, model_type: 'llama', attention_bias: 'yes' }, /attention_bias/],
    [{ ...base, model_type: 'llama', hidden_size: undefined }, /hidden_size/],
    [{ ...base, model_type: 'qwen2', partial_rotary_factor: 0.5 }, /partial_rotary_factor 0.5 is not supported for qwen2/],
    [{ ...base, model_type: 'llama', rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 } }, /partial_rotary_factor/],
    [{ ...gemma3, use_bidirectional_attention: true }, /use_bidirectional_attention/],
    [{ ...gemma3, rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 }, sliding_attention: { rope_type: 'linear', factor: 2, rope_theta: 1e4 } } }, /sliding_attention\.rope_type "linear"/],
  ];
  for (const [cfg, match] of bad) throwsType(() => parseHfConfig(JSON.stringify(cfg)), FormatError, match);
  // a checkpoint missing a family tensor names it
  const w = randomTensors(qwen3, 3);
  w.delete('model.layers.1.self_attn.k_norm.weight');
  throwsType(() => readHfModel(checkpoint(qwen3, w)), FormatError, /model\.layers\.1\.self_attn\.k_norm\.weight/);
});

test('configuration class defaults (transformers) fill fields a config.json leaves out', () => {
  // Qwen3Config.head_dim = 128, Gemma3TextConfig.head_dim = 256 / tie = true / pattern 6 /
  // window 4096, MistralConfig.sliding_window = 4096, Phi3Config.rms_norm_eps = 1e-5
  const q3 = parseHfConfig(JSON.stringify({ ...base, model_type: 'qwen3' }));
  assert.is(q3.headDim, 128);
  assert.is(q3.tiedEmbeddings, false);
  const g = parseHfConfig(JSON.stringify({ ...base, num_hidden_layers: 12, model_type: 'gemma3_text' }));
  assert.is(g.headDim, 256);
  assert.is(g.tiedEmbeddings, true);
  assert.is(g.slidingWindow, 4096);
  assert.is(g.queryPreAttnScalar, 256);
  assert.is(g.ropeTheta, 1e6);
  assert.is(g.ropeLocalTheta, 10000);
  assert.equal(g.layerTypes!.map((t) => t[0]).join(''), 'sssssfsssssf');
  const m = parseHfConfig(JSON.stringify({ ...base, model_type: 'mistral' }));
  assert.is(m.slidingWindow, 4096);
  assert.is(parseHfConfig(JSON.stringify({ ...base, model_type: 'mistral', sliding_window: null })).slidingWindow, undefined);
  assert.is(parseHfConfig(JSON.stringify({ ...base, model_type: 'phi3' })).normEps, 1e-5);
  // Qwen2: sliding only with use_sliding_window, from max_window_layers on
  assert.is(parseHfConfig(JSON.stringify({ ...base, model_type: 'qwen2', sliding_window: 4 })).layerTypes, undefined);
  assert.equal(parseHfConfig(JSON.stringify(qwen2)).layerTypes, ['full', 'sliding', 'sliding']);
  // transformers 5's rope_parameters (Gemma 3: one per layer type)
  const g5 = parseHfConfig(JSON.stringify({ ...gemma3, rope_theta: undefined, rope_local_base_freq: undefined, rope_scaling: undefined,
    rope_parameters: { full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } } }));
  assert.equal([g5.ropeTheta, g5.ropeLocalTheta, g5.ropeScaling], [1e6, 1e4, { type: 'linear', factor: 8 }]);
  const rp = parseHfConfig(JSON.stringify({ ...base, model_type: 'llama', rope_parameters: { rope_type: 'linear', rope_theta: 1234, factor: 2 } }));
  assert.is(rp.ropeTheta, 1234);
  assert.equal(rp.ropeScaling, { type: 'linear', factor: 2 });
});

// ------------------------------------------------------------------ HF write / read round trips

const families: [string, Cfg][] = [['llama', llama3], ['llama tied', llamaLinear], ['mistral', mistral], ['qwen2', qwen2], ['qwen3', qwen3], ['gemma3', gemma3], ['phi3', phi3]];

test('HF write/read round trip per family: same tensors, same config, same logits by the reference', () => {
  for (const [name, cfg] of families) {
    const w = randomTensors(cfg, 11);
    const model = readHfModel(checkpoint(cfg, w));
    const out = writeHfModel(model, 'F32');
    const back = readHfModel(out);
    assert.equal(back.config, model.config, `${name}: config`);
    // the written tensors are the original ones, under the original names
    const file = parseSafetensors(out.safetensors);
    assert.equal([...file.tensors.keys()].sort(), [...w.keys()].sort(), `${name}: tensor names`);
    for (const [tn, data] of w) sameArray(readTensorF32(file, out.safetensors, tn), data, `${name} ${tn}`);
    // the written config.json, read as transformers reads it (the reference), is the same model
    const tokens = tokensOf(20, cfg.vocab_size, 5);
    const written = JSON.parse(out.config);
    const a = referenceLogits(cfg, w, tokens);
    const b = referenceLogits(written, w, tokens);
    a.forEach((row, t) => row.forEach((v, i) => assert.ok(Math.abs(v - b[t][i]) < 1e-9, `${name}: written config changes logit [${t}, ${i}]: ${v} vs ${b[t][i]}`)));
  }
});

// ------------------------------------------------------------------ bounded memory

test('blocks loaded one at a time and hidden states passed in and out give the same bits', () => {
  for (const [name, cfg] of families) {
    const model = readHfModel(checkpoint(cfg, randomTensors(cfg, 21)));
    const tokens = tokensOf(18, cfg.vocab_size, 9);
    const full = new LlamaRunner(kernel, model);
    const expected = full.logits(tokens);
    full.free();
    const lazy = new LlamaRunner(kernel, { ...model, blocks: [] }, { blocks: 'none' });
    try {
      let state = lazy.embed(tokens);
      throwsType(() => lazy.runBlock(0, state), OptionError, /not loaded/);
      for (let l = 0; l < model.config.nLayers; l++) {
        lazy.loadBlock(l, model.blocks[l]);
        lazy.runBlock(l, state);
        lazy.unloadBlock(l);
        // out to a Float32Array and back in, as a next process would
        const values = lazy.readState(state);
        lazy.freeState(state);
        state = lazy.stateFrom(values, l + 1);
      }
      sameArray(lazy.logitsFrom(state), expected, `${name}: lazy logits`);
    } finally {
      lazy.free();
    }
  }
});

test('rows do not depend on the sequence length (sliding windows included)', () => {
  for (const [name, cfg] of families.filter(([n]) => n !== 'phi3')) {
    const model = readHfModel(checkpoint(cfg, randomTensors(cfg, 31)));
    const runner = new LlamaRunner(kernel, model);
    try {
      const tokens = tokensOf(20, cfg.vocab_size, 4);
      const V = cfg.vocab_size;
      sameArray(runner.logits(tokens.subarray(0, 13)), runner.logits(tokens).subarray(0, 13 * V), `${name}: prefix rows`);
    } finally {
      runner.free();
    }
  }
});

// ------------------------------------------------------------------ pipeline over families

test('sequential quantization follows each family\'s stages; GPTQ export keeps biases and fused layers', async () => {
  const provenance: Provenance = {
    method: 'rtn', bits: 4, groupSize: -1, sym: false, actOrder: false, staticGroups: false, damp: 0.01, clip: 'minmax', init: null, refit: 0,
    calibrationSha256: '0'.repeat(64), nsamples: 2, seqlen: 16,
  };
  for (const [name, cfg] of [['phi3', phi3], ['qwen2', qwen2], ['gemma3', gemma3]] as [string, Cfg][]) {
    const model = readHfModel(checkpoint(cfg, randomTensors(cfg, 41)));
    const samples = [tokensOf(16, cfg.vocab_size, 1), tokensOf(16, cfg.vocab_size, 2)];
    const seen: string[] = [];
    const res = await quantizeModel(model, samples, { kernel, method: 'rtn', bits: 4, onProgress: (p) => { if (p.stage === 'done' && p.block === 0) seen.push(p.name); } });
    assert.equal(seen, quantStages(model.config).flat(), `${name}: layer order`);
    assert.equal(seen, linearNames(model.config), `${name}: every linear layer`);
    assert.is(res.layers.length, model.config.nLayers * seen.length);
    // the GPTQ checkpoint reads back to the quantized model, biases and norms included
    const ck = await gptqCheckpoint(kernel, model, res.layers, provenance);
    const back = readGptqCheckpoint(kernel, { config: ck.config, safetensors: ck.safetensors });
    assert.equal(back.config, model.config, `${name}: config`);
    for (const l of res.layers) {
      // packed layers hold the codes with float16 scales (GPTQ stores scales as f16), exactly;
      // dense ones the quantized weights themselves
      const got = back.blocks[l.block].linear[l.name];
      const want = isPackable(l.rows, l.cols)
        ? Float32Array.from(got, (_, i) => {
          const r = Math.floor(i / l.cols);
          return Math.fround(f16BitsToF32(f32ToF16Bits(l.scales[r])) * Math.fround(l.codes[i] - l.zeros[r]));
        })
        : res.model!.blocks[l.block].linear[l.name];
      sameArray(got, want, `${name} ${l.block} ${l.name}`);
    }
    back.blocks.forEach((b, l) => {
      for (const [n, bias] of Object.entries(model.blocks[l].bias ?? {})) sameArray(b.bias![n], bias, `${name} ${l} bias ${n}`);
      for (const f of ['attnNorm', 'ffnNorm', 'postAttnNorm', 'postFfnNorm', 'qNorm', 'kNorm'] as const) {
        if (model.blocks[l][f]) sameArray(b[f]!, model.blocks[l][f]!, `${name} ${l} ${f}`);
      }
    });
    assert.ok(res.layers.some((l) => isPackable(l.rows, l.cols)), `${name}: some layer is packed`);
  }
});

test.run();
