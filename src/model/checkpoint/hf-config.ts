// config.json of a Hugging Face checkpoint <-> LlamaConfig, per family, with the defaults of
// each family's transformers configuration class. A field that would change what the model
// computes and that the forward pass does not honour (a RoPE type, an activation, a kind of
// layer) is refused with a FormatError naming it, never dropped.
import { FormatError } from '../../core/errors.js';
import type { Family, LayerType, LlamaConfig, RopeScaling } from '../types.js';
import { resolveArch } from '../arch.js';
import { CdquantError } from '../../core/errors.js';

type Json = Record<string, unknown>;

/** model_type -> family, and the class name written in `architectures`. */
const MODEL_TYPES: Record<string, Family> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', qwen3: 'qwen3', gemma3_text: 'gemma3', phi3: 'phi3' };
const ARCHITECTURES: Record<Family, string> = {
  llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM', gemma3: 'Gemma3ForCausalLM', phi3: 'Phi3ForCausalLM',
};
const MODEL_TYPE_OF: Record<Family, string> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', qwen3: 'qwen3', gemma3: 'gemma3_text', phi3: 'phi3' };

/** Defaults of each configuration class (transformers' configuration_<family>.py) for the
 * fields a checkpoint may leave out. */
const DEFAULTS: Record<Family, { maxPos: number; eps: number; theta: number; tie: boolean; kvHeads: number | null; headDim: number | null; act: string }> = {
  llama: { maxPos: 2048, eps: 1e-6, theta: 10000, tie: false, kvHeads: null, headDim: null, act: 'silu' },
  mistral: { maxPos: 4096 * 32, eps: 1e-6, theta: 10000, tie: false, kvHeads: 8, headDim: null, act: 'silu' },
  qwen2: { maxPos: 32768, eps: 1e-6, theta: 10000, tie: false, kvHeads: 32, headDim: null, act: 'silu' },
  qwen3: { maxPos: 32768, eps: 1e-6, theta: 10000, tie: false, kvHeads: 32, headDim: 128, act: 'silu' },
  gemma3: { maxPos: 131072, eps: 1e-6, theta: 1_000_000, tie: true, kvHeads: 4, headDim: 256, act: 'gelu_pytorch_tanh' },
  phi3: { maxPos: 4096, eps: 1e-5, theta: 10000, tie: false, kvHeads: null, headDim: null, act: 'silu' },
};

function familyOf(cfg: Json): Family {
  const mt = cfg.model_type;
  const archs = cfg.architectures;
  let fromArch: Family | undefined;
  if (archs !== undefined) {
    if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') throw new FormatError(`config.json: architectures ${JSON.stringify(archs)} must name one class`);
    fromArch = (Object.keys(ARCHITECTURES) as Family[]).find((f) => ARCHITECTURES[f] === archs[0]);
    if (!fromArch) throw new FormatError(`config.json: architectures "${archs[0]}" is not supported (${Object.values(ARCHITECTURES).join(', ')})`);
  }
  let fromType: Family | undefined;
  if (mt !== undefined) {
    if (mt === 'gemma3') throw new FormatError('config.json: model_type "gemma3" is the multimodal Gemma 3; only its text model (model_type "gemma3_text", Gemma3ForCausalLM) is supported');
    fromType = typeof mt === 'string' ? MODEL_TYPES[mt] : undefined;
    if (!fromType) throw new FormatError(`config.json: model_type ${JSON.stringify(mt)} is not supported (${Object.keys(MODEL_TYPES).join(', ')})`);
  }
  if (fromArch && fromType && fromArch !== fromType) throw new FormatError(`config.json: architectures "${ARCHITECTURES[fromArch]}" does not match model_type "${String(mt)}"`);
  return fromType ?? fromArch ?? 'llama'; // neither: a plain Llama, as before the families
}

/** The most layers a config may declare. */
export const MAX_LAYERS = 4096;

/** Parses config.json text into a validated LlamaConfig (ropeStyle 'half', as HF stores q/k). */
export function parseHfConfig(text: string): LlamaConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`config.json is not valid JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new FormatError('config.json must be a JSON object');
  const cfg = raw as Json;
  const family = familyOf(cfg);
  const d = DEFAULTS[family];
  const given = (key: string) => cfg[key] !== undefined && cfg[key] !== null;
  const int = (key: string, fallback?: number | null): number => {
    const v = given(key) ? cfg[key] : fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new FormatError(`config.json: ${key} = ${JSON.stringify(cfg[key])} must be a positive integer`);
    return v;
  };
  const num = (obj: Json, key: string, fallback: number | undefined, where = ''): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new FormatError(`config.json: ${where}${key} = ${JSON.stringify(obj[key])} must be a positive number`);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = cfg[key] ?? fallback;
    if (typeof v !== 'boolean') throw new FormatError(`config.json: ${key} = ${JSON.stringify(cfg[key])} must be true or false`);
    return v;
  };

  const actKey = family === 'gemma3' ? 'hidden_activation' : 'hidden_act';
  const act = cfg[actKey] ?? d.act;
  if (act !== d.act) throw new FormatError(`config.json: ${actKey} "${String(act)}" is not supported for ${family} (${d.act} only)`);

  const dim = int('hidden_size');
  const nHeads = int('num_attention_heads');
  const nKvHeads = int('num_key_value_heads', d.kvHeads ?? nHeads);
  const nLayers = int('num_hidden_layers');
  // Per-layer tables are built from the config alone, before any tensor is seen: bounded here.
  if (nLayers > MAX_LAYERS) throw new FormatError(`config.json: num_hidden_layers ${nLayers} exceeds ${MAX_LAYERS} (the deepest published models have a few hundred)`);
  const maxSeqLen = int('max_position_embeddings', d.maxPos);
  if (nHeads % nKvHeads !== 0) throw new FormatError(`config.json: num_attention_heads ${nHeads} is not divisible by num_key_value_heads ${nKvHeads}`);
  let headDim: number;
  if (given('head_dim')) headDim = int('head_dim');
  else if (d.headDim !== null) headDim = d.headDim;
  else {
    if (dim % nHeads !== 0) throw new FormatError(`config.json: hidden_size ${dim} is not divisible by num_attention_heads ${nHeads}`);
    headDim = dim / nHeads;
  }
  if (headDim % 2 !== 0) throw new FormatError(`config.json: head_dim ${headDim} is odd; RoPE needs pairs`);

  const out: LlamaConfig = {
    dim,
    hiddenDim: int('intermediate_size'),
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: int('vocab_size'),
    maxSeqLen,
    normEps: num(cfg, 'rms_norm_eps', d.eps),
    ropeTheta: d.theta,
    ropeStyle: 'half',
    tiedEmbeddings: bool('tie_word_embeddings', d.tie),
  };
  if (family !== 'llama') out.family = family; // absent means a plain Llama, as llama2.c's reader leaves it
  if (headDim * nHeads !== dim || family === 'qwen3' || family === 'gemma3') out.headDim = headDim;

  // RoPE: legacy rope_theta + rope_scaling, or transformers 5's rope_parameters (for Gemma 3
  // keyed by layer type)
  let global: Json | null = null;
  let local: Json | null = null;
  const params = cfg.rope_parameters;
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params)) throw new FormatError('config.json: rope_parameters must be an object');
    const p = params as Json;
    if (family === 'gemma3' && (p.full_attention !== undefined || p.sliding_attention !== undefined)) {
      global = (p.full_attention ?? null) as Json | null;
      local = (p.sliding_attention ?? null) as Json | null;
    } else global = p;
  }
  const scalingRaw = cfg.rope_scaling ?? null;
  if (scalingRaw !== null && (typeof scalingRaw !== 'object' || Array.isArray(scalingRaw))) throw new FormatError('config.json: rope_scaling must be an object or null');
  out.ropeTheta = num(global ?? {}, 'rope_theta', num(cfg, 'rope_theta', d.theta), global ? 'rope_parameters.' : '');
  const scalingSrc = global ?? (scalingRaw as Json | null);
  const scaling = scalingSrc ? ropeScaling(scalingSrc, global ? 'rope_parameters' : 'rope_scaling', family, cfg, maxSeqLen) : null;
  if (scaling) out.ropeScaling = scaling;

  if (family !== 'phi3') {
    // modeling_rope_utils reads partial_rotary_factor for any model; only Phi-3 applies it
    const partial = cfg.partial_rotary_factor ?? global?.partial_rotary_factor ?? 1;
    if (partial !== 1) throw new FormatError(`config.json: partial_rotary_factor ${JSON.stringify(partial)} is not supported for ${family} (whole heads rotate)`);
  }
  if (family === 'gemma3' && cfg.use_bidirectional_attention === true) throw new FormatError('config.json: use_bidirectional_attention is not supported (causal attention only)');
  if (family === 'phi3') {
    const partial = cfg.partial_rotary_factor ?? (global?.partial_rotary_factor as number | undefined) ?? 1;
    if (typeof partial !== 'number' || !(partial > 0 && partial <= 1)) throw new FormatError(`config.json: partial_rotary_factor ${JSON.stringify(partial)} must be in (0, 1]`);
    if (partial !== 1) out.partialRotary = partial;
  }

  // biases
  if (family === 'llama' || family === 'qwen3' || family === 'gemma3') {
    if (bool('attention_bias', false)) out.attentionBias = true;
  }
  if (family === 'llama' && bool('mlp_bias', false)) out.mlpBias = true;

  // sliding windows and layer types
  const layerTypesGiven = (): LayerType[] | null => {
    if (!given('layer_types')) return null;
    const lt = cfg.layer_types;
    if (!Array.isArray(lt) || lt.length !== nLayers) throw new FormatError(`config.json: layer_types must list the kind of each of the ${nLayers} layers`);
    return lt.map((t, i) => {
      if (t === 'full_attention') return 'full';
      if (t === 'sliding_attention') return 'sliding';
      throw new FormatError(`config.json: layer_types[${i}] "${String(t)}" is not supported (full_attention, sliding_attention)`);
    });
  };
  const windowOf = (fallback: number | null): number | null => {
    const v = given('sliding_window') ? cfg.sliding_window : cfg.sliding_window === null ? null : fallback;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new FormatError(`config.json: sliding_window = ${JSON.stringify(v)} must be a positive integer or null`);
    return v;
  };
  let window: number | null = null;
  let types: LayerType[] | null = null;
  if (family === 'mistral' || family === 'phi3') {
    // every layer slides when sliding_window is set (MistralConfig's default is 4096, Phi3Config's null)
    window = windowOf(family === 'mistral' ? 4096 : null);
    if (window !== null) types = Array.from({ length: nLayers }, () => 'sliding');
  } else if (family === 'qwen2' || family === 'qwen3') {
    const use = bool('use_sliding_window', false);
    window = use ? windowOf(4096) : null;
    types = layerTypesGiven();
    if (!types) {
      const maxWindowLayers = given('max_window_layers') ? int('max_window_layers') : 28;
      types = Array.from({ length: nLayers }, (_, i) => (window !== null && i >= maxWindowLayers ? 'sliding' : 'full'));
    }
    if (types.includes('sliding') && window === null) throw new FormatError('config.json: layer_types has sliding_attention layers but use_sliding_window is false or sliding_window null');
  } else if (family === 'gemma3') {
    window = windowOf(4096);
    types = layerTypesGiven();
    if (!types) {
      const pattern = given('sliding_window_pattern') ? int('sliding_window_pattern') : 6;
      types = Array.from({ length: nLayers }, (_, i) => ((i + 1) % pattern !== 0 ? 'sliding' : 'full'));
    }
    if (types.includes('sliding') && window === null) throw new FormatError('config.json: Gemma 3 sliding layers need a sliding_window');
    out.ropeLocalTheta = num(local ?? {}, 'rope_theta', num(cfg, 'rope_local_base_freq', 10000), local ? 'rope_parameters.sliding_attention.' : '');
    if (local) {
      const t = local.rope_type ?? local.type ?? 'default';
      if (t !== 'default') throw new FormatError(`config.json: rope_parameters.sliding_attention.rope_type "${String(t)}" is not supported (default)`);
    }
    out.queryPreAttnScalar = num(cfg, 'query_pre_attn_scalar', 256);
    if (given('attn_logit_softcapping')) out.attnSoftcap = num(cfg, 'attn_logit_softcapping', undefined);
    if (given('final_logit_softcapping')) out.finalSoftcap = num(cfg, 'final_logit_softcapping', undefined);
  }
  if (window !== null && types?.includes('sliding')) out.slidingWindow = window;
  if (types && types.includes('sliding')) out.layerTypes = types;

  try {
    resolveArch(out);
  } catch (e) {
    if (e instanceof CdquantError) throw new FormatError(`config.json: ${e.message}`);
    throw e;
  }
  return out;
}

function ropeScaling(s: Json, where: string, family: Family, cfg: Json, maxSeqLen: number): RopeScaling | null {
  let type = s.rope_type ?? s.type ?? 'default';
  // Phi3Config: "su" and "yarn" are old names of longrope
  if (family === 'phi3' && (type === 'su' || type === 'yarn')) type = 'longrope';
  const num = (key: string): number => {
    const v = s[key];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new FormatError(`config.json: ${where}.${key} = ${JSON.stringify(v)} must be a positive number`);
    return v;
  };
  const opt = (key: string) => (s[key] === undefined || s[key] === null ? undefined : num(key));
  switch (type) {
    case 'default':
      return null;
    case 'linear':
      return { type: 'linear', factor: num('factor') };
    case 'llama3':
      return { type: 'llama3', factor: num('factor'), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'), originalMaxPositions: num('original_max_position_embeddings') };
    case 'longrope': {
      const list = (key: string): number[] => {
        const v = s[key];
        if (!Array.isArray(v) || v.some((x) => typeof x !== 'number')) throw new FormatError(`config.json: ${where}.${key} must be a list of numbers`);
        return v as number[];
      };
      const orig = s.original_max_position_embeddings ?? cfg.original_max_position_embeddings ?? 4096;
      if (typeof orig !== 'number' || !Number.isSafeInteger(orig) || orig <= 0) throw new FormatError(`config.json: original_max_position_embeddings = ${JSON.stringify(orig)} must be a positive integer`);
      const r: RopeScaling = { type: 'longrope', shortFactor: list('short_factor'), longFactor: list('long_factor'), originalMaxPositions: orig };
      const factor = opt('factor');
      const attentionFactor = opt('attention_factor');
      if (factor !== undefined) r.factor = factor;
      if (attentionFactor !== undefined) r.attentionFactor = attentionFactor;
      void maxSeqLen;
      return r;
    }
    default:
      throw new FormatError(`config.json: ${where}.rope_type "${String(type)}" is not supported (default, linear, llama3${family === 'phi3' ? ', longrope' : ''})`);
  }
}

export type HfDtype = 'F32' | 'F16' | 'BF16';

/** config.json text for `config`, in the family's own fields (legacy rope_theta / rope_scaling,
 * which every transformers version reads). Every field that changes the computation is written
 * explicitly, so no reader falls back to a default that differs from ours. */
export function hfConfigJson(config: LlamaConfig, dtype: HfDtype = 'F32'): string {
  const a = resolveArch(config);
  const family = a.family;
  const c = config;
  const j: Json = {
    architectures: [ARCHITECTURES[family]],
    model_type: MODEL_TYPE_OF[family],
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxSeqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    [family === 'gemma3' ? 'hidden_activation' : 'hidden_act']: family === 'gemma3' ? 'gelu_pytorch_tanh' : 'silu',
    tie_word_embeddings: c.tiedEmbeddings,
    // llama2.c's ids; other families' token ids are not part of the model we hold, so their
    // configuration classes' defaults stand
    ...(family === 'llama' ? { bos_token_id: 1, eos_token_id: 2 } : {}),
    torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype],
  };
  // Qwen2Config and Phi3Config have no head_dim field (their attention reads it with getattr)
  if ((family !== 'qwen2' && family !== 'phi3') || a.head * c.nHeads !== c.dim) j.head_dim = a.head;
  const s = a.ropeScaling;
  if (s?.type === 'linear') j.rope_scaling = { rope_type: 'linear', factor: s.factor };
  else if (s?.type === 'llama3') j.rope_scaling = { rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor, original_max_position_embeddings: s.originalMaxPositions };
  else if (s?.type === 'longrope') {
    j.rope_scaling = { type: 'longrope', short_factor: s.shortFactor, long_factor: s.longFactor, ...(s.factor !== undefined ? { factor: s.factor } : {}), ...(s.attentionFactor !== undefined ? { attention_factor: s.attentionFactor } : {}) };
    j.original_max_position_embeddings = s.originalMaxPositions;
  } else j.rope_scaling = null;
  const sliding = a.layers.map((l) => l.window > 0);
  const window = c.slidingWindow ?? null;
  const layerTypes = sliding.map((x) => (x ? 'sliding_attention' : 'full_attention'));
  switch (family) {
    case 'llama':
      j.attention_bias = c.attentionBias ?? false;
      j.mlp_bias = c.mlpBias ?? false;
      break;
    case 'mistral':
      j.sliding_window = sliding.some((x) => x) ? window : null;
      break;
    case 'qwen2':
    case 'qwen3': {
      if (family === 'qwen3') j.attention_bias = c.attentionBias ?? false;
      const any = sliding.some((x) => x);
      j.use_sliding_window = any;
      j.sliding_window = any ? window : null;
      // older readers derive the layer kinds from max_window_layers, newer ones read layer_types
      const first = sliding.indexOf(true);
      j.max_window_layers = any ? first : c.nLayers;
      j.layer_types = layerTypes;
      break;
    }
    case 'gemma3': {
      j.attention_bias = c.attentionBias ?? false;
      j.query_pre_attn_scalar = a.attnScalar;
      j.sliding_window = window ?? 4096;
      j.rope_local_base_freq = c.ropeLocalTheta ?? 10000;
      j.layer_types = layerTypes;
      // transformers before layer_types read sliding_window_pattern only: give it when one fits
      for (let p = 1; p <= c.nLayers + 1; p++) {
        if (sliding.every((x, i) => x === ((i + 1) % p !== 0))) {
          j.sliding_window_pattern = p;
          break;
        }
      }
      j.attn_logit_softcapping = c.attnSoftcap ?? null;
      j.final_logit_softcapping = c.finalSoftcap ?? null;
      break;
    }
    case 'phi3':
      j.partial_rotary_factor = c.partialRotary ?? 1;
      j.sliding_window = sliding.some((x) => x) ? window : null;
      if (j.original_max_position_embeddings === undefined) j.original_max_position_embeddings = c.maxSeqLen;
      break;
  }
  return JSON.stringify(j, null, 2);
}
