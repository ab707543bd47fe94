// The normalized architecture of a model: what each family's config means for the forward pass,
// the linear layers it quantizes and the order of sequential quantization. Everything
// family-specific that is not a tensor name (checkpoint/hf.ts) or a config.json field
// (checkpoint/hf-config.ts) lives here, as data the runner and the pipeline iterate.
//
// Per family (Hugging Face module names; "stages" are the layers quantized from one Hessian,
// because they read the same input; everything not listed as linear stays dense):
//
// | family (architectures)            | linear layers [out x in]                          | stages                                  | dense                                                        |
// |-----------------------------------|---------------------------------------------------|-----------------------------------------|--------------------------------------------------------------|
// | llama (LlamaForCausalLM)          | q [H*d x D], k, v [K*d x D], o [D x H*d],          | [q,k,v] [o] [gate,up] [down]             | embed_tokens, lm_head (unless tied), input_layernorm,        |
// |                                   | gate, up [F x D], down [D x F]                    |                                         | post_attention_layernorm, norm; biases (attention_bias: q,k,v,o; mlp_bias: gate,up,down) |
// | mistral (MistralForCausalLM)      | as llama                                          | as llama                                | as llama, no biases                                          |
// | qwen2 (Qwen2ForCausalLM)          | as llama                                          | as llama                                | as llama; q,k,v biases always, o none                        |
// | qwen3 (Qwen3ForCausalLM)          | as llama (d = head_dim, free of D/H)              | as llama                                | as llama + self_attn.q_norm, k_norm [d]; attention_bias: q,k,v,o |
// | gemma3 (Gemma3ForCausalLM, text)  | as llama                                          | as llama                                | as qwen3 + pre_feedforward_layernorm, post_feedforward_layernorm; lm_head tied by default |
// | phi3 (Phi3ForCausalLM)            | qkv [(H+2K)*d x D] (q rows, then k, then v),       | [qkv] [o] [gate_up] [down]               | embed_tokens, lm_head, the two layer norms, norm; no biases  |
// |                                   | o [D x H*d], gate_up [2F x D] (gate rows, then up), down [D x F] |                          |                                                              |
//
// D = hidden_size, F = intermediate_size, H = num_attention_heads, K = num_key_value_heads,
// d = head_dim. Phi-3's fused matrices are quantized as the fused matrix, as GPTQ loaders expect.
import type { Family, LayerType, LinearName, LlamaConfig, RopeScaling } from './types.js';
import { OptionError, ShapeError } from '../core/errors.js';

export interface LinearSpec {
  name: LinearName;
  rows: number;
  cols: number;
  /** The Hugging Face submodule holding it. */
  module: 'self_attn' | 'mlp';
  /** Whether it has a bias in this family and config. */
  bias: boolean;
}

/** Where in a block a stage's shared input is taken. */
export type StagePoint = 'attn_in' | 'o_in' | 'mlp_in' | 'down_in';

export interface Stage {
  point: StagePoint;
  names: LinearName[];
}

export interface LayerArch {
  /** Keys seen by a query (0: all earlier ones). */
  window: number;
  /** Gemma 3 sliding layers use the local RoPE base. */
  localRope: boolean;
}

export interface Arch {
  family: Family;
  dim: number;
  hidden: number;
  nLayers: number;
  nHeads: number;
  nKv: number;
  head: number;
  qDim: number;
  kvDim: number;
  vocab: number;
  maxSeq: number;
  eps: number;
  /** Gemma: RMSNorm scales by (1 + w) (and so do its q/k norms). */
  gemmaNorm: boolean;
  act: 'silu' | 'gelu_tanh';
  qkNorm: boolean;
  /** Gemma 3: norms of the attention and MLP outputs before the residual adds. */
  sandwichNorms: boolean;
  /** Gemma: the embedding is multiplied by sqrt(dim) (in float32). */
  embedScale: boolean;
  /** Phi-3: qkv_proj and gate_up_proj. */
  fused: boolean;
  /** Rotated dimensions of a head (even). */
  rot: number;
  layers: LayerArch[];
  /** Attention scores scale by this^-0.5 (the head size, or query_pre_attn_scalar). */
  attnScalar: number;
  /** 0: none. */
  attnSoftcap: number;
  finalSoftcap: number;
  ropeScaling: RopeScaling | null;
  linears: LinearSpec[];
  stages: Stage[];
}

const FAMILIES: readonly Family[] = ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma3', 'phi3'];

const posInt = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/** The architecture `config` describes, validated (OptionError / ShapeError naming the field). */
export function resolveArch(config: LlamaConfig): Arch {
  const c = config;
  const family = c.family ?? 'llama';
  if (!FAMILIES.includes(family)) throw new OptionError(`config.family must be one of ${FAMILIES.join(', ')}, got ${String(family)}`);
  for (const key of ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'maxSeqLen'] as const) {
    if (!posInt(c[key])) throw new OptionError(`config.${key} must be a positive integer, got ${c[key]}`);
  }
  if (c.nHeads % c.nKvHeads !== 0) throw new ShapeError(`nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`);
  let head: number;
  if (c.headDim !== undefined) {
    if (!posInt(c.headDim)) throw new OptionError(`config.headDim must be a positive integer, got ${c.headDim}`);
    head = c.headDim;
  } else {
    if (c.dim % c.nHeads !== 0) throw new ShapeError(`dim ${c.dim} is not a multiple of nHeads ${c.nHeads}`);
    head = c.dim / c.nHeads;
  }
  if (head % 2 !== 0) throw new ShapeError(`head size ${head} must be even for RoPE`);
  if (!(c.normEps > 0)) throw new OptionError(`config.normEps must be positive, got ${c.normEps}`);
  if (!(c.ropeTheta > 0)) throw new OptionError(`config.ropeTheta must be positive, got ${c.ropeTheta}`);
  if (c.ropeStyle !== 'interleaved' && c.ropeStyle !== 'half') throw new OptionError(`config.ropeStyle must be 'interleaved' or 'half', got ${String(c.ropeStyle)}`);
  if (c.ropeStyle === 'interleaved' && family !== 'llama') throw new OptionError(`config.ropeStyle 'interleaved' is llama2.c's layout; ${family} models are 'half'`);

  const partial = c.partialRotary ?? 1;
  if (!(partial > 0 && partial <= 1)) throw new OptionError(`config.partialRotary must be in (0, 1], got ${partial}`);
  // transformers: dim = int(head_dim * partial_rotary_factor)
  const rot = Math.floor(head * partial);
  if (rot < 2 || rot % 2 !== 0) throw new ShapeError(`rotary dimensions ${rot} (headDim ${head} x partialRotary ${partial}) must be even and at least 2`);
  if (partial !== 1 && family !== 'phi3') throw new OptionError(`config.partialRotary is a Phi-3 field; ${family} rotates whole heads`);

  const scaling = c.ropeScaling ?? null;
  if (scaling) checkScaling(scaling, rot);
  // transformers: longrope is Phi-3's; Phi3Config accepts only default and longrope
  if (scaling?.type === 'longrope' && family !== 'phi3') throw new OptionError(`config.ropeScaling longrope is only supported for phi3, not ${family}`);
  if (scaling && scaling.type !== 'longrope' && family === 'phi3') throw new OptionError(`config.ropeScaling ${scaling.type} is not part of phi3 (default or longrope)`);

  let window = 0;
  if (c.slidingWindow !== undefined) {
    if (!posInt(c.slidingWindow)) throw new OptionError(`config.slidingWindow must be a positive integer, got ${c.slidingWindow}`);
    if (family === 'llama') throw new OptionError('config.slidingWindow is not part of Llama');
    window = c.slidingWindow;
  }
  let types: LayerType[];
  if (c.layerTypes !== undefined) {
    if (!Array.isArray(c.layerTypes) || c.layerTypes.length !== c.nLayers || c.layerTypes.some((t) => t !== 'full' && t !== 'sliding')) {
      throw new OptionError(`config.layerTypes must list 'full' or 'sliding' for each of the ${c.nLayers} layers`);
    }
    types = c.layerTypes;
    if (types.includes('sliding') && !window) throw new OptionError('config.layerTypes has sliding layers but no slidingWindow');
  } else {
    types = Array.from({ length: c.nLayers }, () => (window ? 'sliding' : 'full'));
  }
  const gemma = family === 'gemma3';
  if (c.ropeLocalTheta !== undefined && (!gemma || !(c.ropeLocalTheta > 0))) throw new OptionError(`config.ropeLocalTheta is a positive Gemma 3 field, got ${c.ropeLocalTheta} for ${family}`);
  if (c.queryPreAttnScalar !== undefined && (!gemma || !(c.queryPreAttnScalar > 0))) throw new OptionError(`config.queryPreAttnScalar is a positive Gemma 3 field, got ${c.queryPreAttnScalar} for ${family}`);
  for (const key of ['attnSoftcap', 'finalSoftcap'] as const) {
    if (c[key] !== undefined && (!gemma || !(c[key]! > 0))) throw new OptionError(`config.${key} is a positive Gemma 3 field, got ${c[key]} for ${family}`);
  }
  const layers = types.map((t) => ({ window: t === 'sliding' ? window : 0, localRope: gemma && t === 'sliding' }));

  const attnBias = c.attentionBias ?? false;
  const mlpBias = c.mlpBias ?? false;
  if (attnBias && (family === 'mistral' || family === 'phi3' || family === 'qwen2')) throw new OptionError(`config.attentionBias is not part of ${family}${family === 'qwen2' ? ' (its q/k/v biases are always there)' : ''}`);
  if (mlpBias && family !== 'llama') throw new OptionError(`config.mlpBias is a Llama field, not part of ${family}`);

  const D = c.dim, F = c.hiddenDim;
  const qDim = c.nHeads * head, kvDim = c.nKvHeads * head;
  const fused = family === 'phi3';
  const qkvBias = family === 'qwen2' || attnBias;
  const lin = (name: LinearName, rows: number, cols: number, module: LinearSpec['module'], bias: boolean): LinearSpec => ({ name, rows, cols, module, bias });
  const linears: LinearSpec[] = fused
    ? [
      lin('qkv_proj', qDim + 2 * kvDim, D, 'self_attn', false),
      lin('o_proj', D, qDim, 'self_attn', false),
      lin('gate_up_proj', 2 * F, D, 'mlp', false),
      lin('down_proj', D, F, 'mlp', false),
    ]
    : [
      lin('q_proj', qDim, D, 'self_attn', qkvBias),
      lin('k_proj', kvDim, D, 'self_attn', qkvBias),
      lin('v_proj', kvDim, D, 'self_attn', qkvBias),
      lin('o_proj', D, qDim, 'self_attn', attnBias),
      lin('gate_proj', F, D, 'mlp', mlpBias),
      lin('up_proj', F, D, 'mlp', mlpBias),
      lin('down_proj', D, F, 'mlp', mlpBias),
    ];
  const stages: Stage[] = fused
    ? [{ point: 'attn_in', names: ['qkv_proj'] }, { point: 'o_in', names: ['o_proj'] }, { point: 'mlp_in', names: ['gate_up_proj'] }, { point: 'down_in', names: ['down_proj'] }]
    : [{ point: 'attn_in', names: ['q_proj', 'k_proj', 'v_proj'] }, { point: 'o_in', names: ['o_proj'] }, { point: 'mlp_in', names: ['gate_proj', 'up_proj'] }, { point: 'down_in', names: ['down_proj'] }];

  return {
    family, dim: D, hidden: F, nLayers: c.nLayers, nHeads: c.nHeads, nKv: c.nKvHeads, head, qDim, kvDim,
    vocab: c.vocabSize, maxSeq: c.maxSeqLen, eps: c.normEps,
    gemmaNorm: gemma, act: gemma ? 'gelu_tanh' : 'silu', qkNorm: gemma || family === 'qwen3', sandwichNorms: gemma, embedScale: gemma, fused,
    rot, layers, attnScalar: c.queryPreAttnScalar ?? head, attnSoftcap: c.attnSoftcap ?? 0, finalSoftcap: c.finalSoftcap ?? 0,
    ropeScaling: scaling, linears, stages,
  };
}

function checkScaling(s: RopeScaling, rot: number): void {
  const pos = (v: number, what: string) => {
    if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new OptionError(`config.ropeScaling.${what} must be a positive number, got ${v}`);
  };
  switch (s.type) {
    case 'linear':
      pos(s.factor, 'factor');
      return;
    case 'llama3':
      pos(s.factor, 'factor');
      pos(s.lowFreqFactor, 'lowFreqFactor');
      pos(s.highFreqFactor, 'highFreqFactor');
      pos(s.originalMaxPositions, 'originalMaxPositions');
      if (!(s.highFreqFactor > s.lowFreqFactor)) throw new OptionError(`config.ropeScaling.highFreqFactor ${s.highFreqFactor} must exceed lowFreqFactor ${s.lowFreqFactor}`);
      return;
    case 'longrope':
      for (const key of ['shortFactor', 'longFactor'] as const) {
        const f = s[key];
        if (!Array.isArray(f) || f.length !== rot / 2) throw new OptionError(`config.ropeScaling.${key} must list ${rot / 2} numbers (one per rotated pair), got ${Array.isArray(f) ? f.length : typeof f}`);
        f.forEach((v, i) => pos(v, `${key}[${i}]`));
      }
      pos(s.originalMaxPositions, 'originalMaxPositions');
      if (s.factor !== undefined) pos(s.factor, 'factor');
      if (s.attentionFactor !== undefined) pos(s.attentionFactor, 'attentionFactor');
      return;
    default:
      throw new OptionError(`config.ropeScaling.type ${String((s as { type: unknown }).type)} is not supported (linear, llama3, longrope)`);
  }
}

/** The linear layers of a block of this config, in quantization order. */
export function linearNames(config: LlamaConfig): LinearName[] {
  return resolveArch(config).linears.map((l) => l.name);
}

/** [rows, cols] of a linear layer under `config`. */
export function linearShape(config: LlamaConfig, name: LinearName): [number, number] {
  const spec = resolveArch(config).linears.find((l) => l.name === name);
  if (!spec) throw new OptionError(`${config.family ?? 'llama'} models have no linear layer ${String(name)}`);
  return [spec.rows, spec.cols];
}

/** The stages of sequential quantization of this config (layers sharing one input). */
export function quantStages(config: LlamaConfig): LinearName[][] {
  return resolveArch(config).stages.map((s) => s.names);
}
