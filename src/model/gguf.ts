// A model of any family in ./arch.ts <-> GGUF, as llama.cpp's converter writes it
// (conversion/{llama,qwen,gemma,phi,base}.py: each model class's set_gguf_parameters,
// modify_tensors, generate_extra_tensors; gguf-py's tensor_mapping.py) and llama.cpp loads it
// (src/llama-model.cpp's llama_model_base::load_hparams, src/models/<arch>.cpp):
//
// | family   | arch   | q/k rows                    | family-specific keys                                   | family-specific tensors                                    |
// |----------|--------|-----------------------------|--------------------------------------------------------|------------------------------------------------------------|
// | llama    | llama  | permuted to adjacent pairs  | vocab_size, rope.dimension_count                       | biases (attention_bias: q,k,v,o; mlp_bias: gate,up,down);  |
// | mistral  | llama  | (LlamaModel.permute), incl. |                                                        | llama3 RoPE: rope_freqs (per-pair divisors)                |
// |          |        | q/k biases                  |                                                        |                                                            |
// | qwen2    | qwen2  | as in HF (NeoX RoPE)        | -                                                      | q,k,v biases                                               |
// | qwen3    | qwen3  | as in HF                    | attention.key_length / value_length                    | attn_q_norm, attn_k_norm [head]; q,k,v biases              |
// | gemma3   | gemma3 | as in HF                    | key/value_length, rope.freq_base_swa, sliding_window   | attn_q/k_norm, post_attention_norm, post_ffw_norm; every   |
// |          |        |                             | (+ _pattern), final_logit_softcapping                  | norm stored as 1 + w (Gemma3Model.norm_shift)              |
// | phi3     | phi3   | as in HF                    | rope.dimension_count (partial rotary), sliding_window, | attn_qkv (q, k, v rows), ffn_up (gate rows, then up);      |
// |          |        |                             | rope.scaling.original_context_length / attn_factor     | longrope: rope_factors_long / rope_factors_short           |
//
// Common: general.*, block_count, context_length, embedding_length, feed_forward_length,
// attention.head_count(_kv), rope.freq_base, attention.layer_norm_rms_epsilon, linear RoPE
// scaling as rope.scaling.type/factor, key/value_length when the head size is set; tensors
// token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate,
// ffn_up, ffn_down}, output_norm, output (absent when tied: llama.cpp then uses token_embd).
// 1-D tensors are F32 whatever the weights' type, as in the converter.
//
// What llama.cpp cannot run the way transformers runs it is refused with an OptionError naming
// the config field (see `unrepresentable`); a file whose meaning our model cannot hold is refused
// with a FormatError naming the key or tensor. The one runtime difference that no file can
// express: llama.cpp picks Phi-3's long or short RoPE factors by the context size it was given
// (n_ctx_seq > original context), transformers (and our forward pass) by the sequence length.
//
// Llama 3 RoPE: llama.cpp reads only the per-pair divisors (rope_freqs); the converter writes
// none of the four llama3 parameters. So that a file we write reads back to the same config,
// they are also written as cdquant.rope.llama3.* (f64), which llama.cpp ignores. Files without
// them (from the converter) are read if Llama 3's published parameters (low 1, high 4, original
// context 8192, factor = the largest divisor) reproduce their rope_freqs.
import { FormatError, OptionError, ShapeError, DtypeError } from '../core/errors.js';
import { defaultKernel, type Kernel } from '../core/kernel.js';
import {
  planGguf, writeGguf, readGgufHeader, readTensorData, tensorData, decodeTensor, parseGgufHeader,
  FLOAT_ENCODERS, FLOAT_DECODERS, GGML_TYPES,
  type GgmlType, type GgmlEncoder, type GgmlDecoder, type GgufFile, type GgufPlan, type ByteSource,
} from '../formats/gguf.js';
import type { GgufMetadata, GgufValue } from '../formats/gguf-types.js';
import { ggufTokenizerMetadata } from '../formats/gguf-tokenizer.js';
import type { Family, LayerType, LinearName, LlamaBlock, LlamaConfig, LlamaModel, RopeScaling, RopeStyle } from './types.js';
import { resolveArch, type Arch } from './arch.js';
import { checkModelShapes, checkModelValues } from './checkpoint/shapes.js';
import { permuteRopeRows } from './checkpoint/rope.js';

/** How one of our families is written in GGUF. */
export interface GgufFamily {
  /** Our family (LlamaConfig.family; 'llama' when absent). */
  family: Family;
  /** general.architecture, also the prefix of its hyperparameter keys. */
  arch: string;
  /** q/k row layout its RoPE expects: 'interleaved' for llama.cpp's normal RoPE on adjacent
   * pairs (llama), 'half' for NeoX RoPE (qwen2, qwen3, gemma3, phi3: their converters do not
   * permute). */
  qkRows: RopeStyle;
}

export const GGUF_FAMILIES: Readonly<Record<Family, GgufFamily>> = {
  llama: { family: 'llama', arch: 'llama', qkRows: 'interleaved' },
  // MistralForCausalLM is converted by LlamaModel: arch llama, q/k permuted.
  mistral: { family: 'mistral', arch: 'llama', qkRows: 'interleaved' },
  qwen2: { family: 'qwen2', arch: 'qwen2', qkRows: 'half' },
  qwen3: { family: 'qwen3', arch: 'qwen3', qkRows: 'half' },
  gemma3: { family: 'gemma3', arch: 'gemma3', qkRows: 'half' },
  phi3: { family: 'phi3', arch: 'phi3', qkRows: 'half' },
};

/** The family a GGUF architecture is read as (Mistral files are llama files). */
const FAMILY_OF_ARCH: Readonly<Record<string, Family>> = { llama: 'llama', qwen2: 'qwen2', qwen3: 'qwen3', gemma3: 'gemma3', phi3: 'phi3' };

/** llama.cpp's tensor names (llama-arch.cpp LLM_TENSOR_NAMES, shared by its architectures). */
export const GGUF_LINEAR: Readonly<Record<LinearName, string>> = {
  q_proj: 'attn_q', k_proj: 'attn_k', v_proj: 'attn_v', o_proj: 'attn_output',
  gate_proj: 'ffn_gate', up_proj: 'ffn_up', down_proj: 'ffn_down',
  // Phi-3's fused layers: llama.cpp keeps them fused (gate and up as one ffn_up of 2 x ff rows).
  qkv_proj: 'attn_qkv', gate_up_proj: 'ffn_up',
};
type NormField = 'attnNorm' | 'ffnNorm' | 'postAttnNorm' | 'postFfnNorm' | 'qNorm' | 'kNorm';
/** Per-block norms (tensor_mapping.py: input_layernorm, post_attention_layernorm (Gemma's
 * post_attention_norm, everyone else's ffn_norm), pre_feedforward_layernorm,
 * post_feedforward_layernorm, self_attn.q_norm / k_norm). */
export const GGUF_NORM: Readonly<Record<NormField, string>> = {
  attnNorm: 'attn_norm', ffnNorm: 'ffn_norm', postAttnNorm: 'post_attention_norm', postFfnNorm: 'post_ffw_norm', qNorm: 'attn_q_norm', kNorm: 'attn_k_norm',
};
export const GGUF_EMBEDDING = 'token_embd.weight';
export const GGUF_FINAL_NORM = 'output_norm.weight';
export const GGUF_CLASSIFIER = 'output.weight';
export const GGUF_ROPE_FREQS = 'rope_freqs.weight';
export const GGUF_ROPE_LONG = 'rope_factors_long.weight';
export const GGUF_ROPE_SHORT = 'rope_factors_short.weight';
export const ggufBlockName = (layer: number, base: string, suffix: 'weight' | 'bias' = 'weight') => `blk.${layer}.${base}.${suffix}`;

/** Our keys for the llama3 RoPE parameters (f64), which no llama.cpp key holds. */
export const LLAMA3_KEYS = {
  factor: 'cdquant.rope.llama3.factor',
  lowFreqFactor: 'cdquant.rope.llama3.low_freq_factor',
  highFreqFactor: 'cdquant.rope.llama3.high_freq_factor',
  originalMaxPositions: 'cdquant.rope.llama3.original_max_position_embeddings',
} as const;

/** llama.cpp's LlamaFileType for a file whose 2-D weights are all of one type (general.file_type). */
const FILE_TYPE: Partial<Record<GgmlType, number>> = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q2_K: 10, Q3_K: 11, Q4_K: 14, Q5_K: 16, Q6_K: 18,
  IQ4_NL: 25, IQ4_XS: 30, BF16: 32, TQ1_0: 36, TQ2_0: 37,
};

/** gguf-py's GGML_QUANT_VERSION, which the converter writes as general.quantization_version. */
const QUANTIZATION_VERSION = 2;

export interface GgufWriteOptions {
  /** A key of GGUF_FAMILIES; must be the model's own family (config.family, 'llama' when absent). */
  family?: string;
  /** general.name (the converter uses the model's directory name). */
  name?: string;
  /** ggml type of the 2-D weights (default F32). 1-D tensors are always F32, as in the converter. */
  type?: GgmlType;
  /** Per-tensor override of `type` for 2-D weights (return undefined to keep it). */
  typeOf?: (name: string, dims: readonly number[]) => GgmlType | undefined;
  /** Encoders for types beyond F32/F16/BF16 (the block codecs). */
  encoders?: Partial<Record<GgmlType, GgmlEncoder>>;
  /** general.file_type; by default derived from `type`. */
  fileType?: number;
  /** Entries appended after the architecture's: the vocabulary (tokenizer.ggml.*) and anything else. */
  metadata?: GgufMetadata;
  /** Computes what the file derives from the config with transcendental functions (llama3's
   * rope_freqs, Phi-3's default attention factor). The synchronous functions need it for such
   * models; the asynchronous ones fall back to defaultKernel(). */
  kernel?: Kernel;
}

const u32 = (value: number): GgufValue => ({ type: 'u32', value });
const f32 = (value: number): GgufValue => ({ type: 'f32', value });
const f64 = (value: number): GgufValue => ({ type: 'f64', value });
const str = (value: string): GgufValue => ({ type: 'string', value });

function familyOfModel(config: LlamaConfig, requested: string | undefined): GgufFamily {
  const own = config.family ?? 'llama';
  if (!Object.prototype.hasOwnProperty.call(GGUF_FAMILIES, own)) throw new OptionError(`GGUF: config.family "${String(own)}" has no GGUF mapping (${Object.keys(GGUF_FAMILIES).join(', ')})`);
  if (requested !== undefined) {
    if (!Object.prototype.hasOwnProperty.call(GGUF_FAMILIES, requested)) throw new OptionError(`GGUF: unknown family "${requested}" (known: ${Object.keys(GGUF_FAMILIES).join(', ')})`);
    if (requested !== own) throw new OptionError(`GGUF: family "${requested}" was asked for, but the model is ${own} (config.family)`);
  }
  return GGUF_FAMILIES[own];
}

// ------------------------------------------------------------------ what llama.cpp can run

/**
 * Refuses, naming the config field, what llama.cpp's architecture for this family would
 * compute differently from transformers (src/models/<arch>.cpp):
 * - sliding windows: only gemma3 has them (llama, qwen2, qwen3 read no window; phi3 reads it
 *   and disables it). A window at least the context length changes nothing within it.
 * - llama3 RoPE needs rope_freqs, which only the llama graph reads.
 * - qwen2 and phi3 size q by n_embd: heads x head size must be the hidden size.
 * - qwen3 and gemma3 have no attn_output.bias (their q/k/v biases would load, but
 *   transformers' attention_bias puts one on o_proj too).
 * - gemma3 scales scores by 1/sqrt(head size) (1/sqrt(n_embd / n_head) at 62 layers, Gemma 3
 *   27B) whatever query_pre_attn_scalar says, and has no attention soft-capping.
 */
function unrepresentable(c: LlamaConfig, a: Arch, g: GgufFamily): void {
  const refuse = (field: string, why: string) => { throw new OptionError(`GGUF ${g.arch}: config.${field} ${why}`); };
  if (g.family !== 'gemma3') {
    const window = Math.min(...a.layers.map((l) => l.window || Infinity));
    if (window < c.maxSeqLen) refuse('slidingWindow', `${window} cannot be written: llama.cpp's ${g.arch} attends to every earlier position${g.family === 'phi3' ? ' (it disables Phi-3 sliding windows)' : ''}, and the window is shorter than the context (${c.maxSeqLen})`);
  }
  if (a.ropeScaling?.type === 'llama3' && g.arch !== 'llama') refuse('ropeScaling', `llama3 cannot be written: only llama.cpp's llama architecture reads rope_freqs`);
  if ((g.family === 'qwen2' || g.family === 'phi3') && a.qDim !== a.dim) refuse('headDim', `${a.head} x ${a.nHeads} heads = ${a.qDim} differs from the hidden size ${a.dim}, which llama.cpp's ${g.arch} assumes`);
  if ((g.family === 'qwen3' || g.family === 'gemma3') && c.attentionBias) refuse('attentionBias', `cannot be written: llama.cpp's ${g.arch} has no attn_output bias`);
  if (g.family === 'gemma3') {
    const scalar = gemmaAttnScalar(a);
    if (a.attnScalar !== scalar) refuse('queryPreAttnScalar', `${a.attnScalar} cannot be written: llama.cpp's gemma3 scales scores by 1/sqrt(${scalar})${a.nLayers === 62 ? ' (n_embd / n_head at 62 layers)' : ' (the head size)'}`);
    if (a.attnSoftcap) refuse('attnSoftcap', `${a.attnSoftcap} cannot be written: llama.cpp's gemma3 has no attention soft-capping`);
  }
}

/** The score scale llama.cpp's gemma3 uses: 1/sqrt of this (models/gemma3.cpp; integer division). */
const gemmaAttnScalar = (a: Arch) => (a.nLayers === 62 ? Math.floor(a.dim / a.nHeads) : a.head);

// ------------------------------------------------------------------ wasm for derived values

interface RopeKernels {
  nn_rope_freqs(out: number, rot: number, theta: number, kind: number, factor: number, low: number, high: number, origMax: number, ext: number): void;
  nn_longrope_mscale(factor: number, origMax: number): number;
}

function kernelFor(kernel: Kernel | undefined, what: string): RopeKernels {
  if (!kernel) throw new OptionError(`GGUF: ${what} is computed in wasm; pass options.kernel (or use the asynchronous reader/writer)`);
  return kernel.exports as unknown as RopeKernels;
}

/**
 * Llama 3's rope_freqs: per pair, the divisor of the default inverse frequency that gives the
 * llama3 one (LlamaModel.generate_extra_tensors: 1, factor, or 1 / ((1 - s) / factor + s)).
 * Both frequencies come from nn_rope_freqs, the forward pass's own, so the bands are split
 * where the forward pass splits them; their f64 quotient is rounded to float32 once.
 */
function llama3RopeFreqs(kernel: Kernel | undefined, rot: number, theta: number, s: Extract<RopeScaling, { type: 'llama3' }>): Float32Array {
  const nn = kernelFor(kernel, 'rope_freqs (llama3 RoPE)');
  const half = rot / 2;
  return kernel!.scoped((alloc) => {
    const plain = alloc(half * 8);
    const scaled = alloc(half * 8);
    nn.nn_rope_freqs(plain, rot, theta, 0, 1, 0, 0, 0, 0);
    nn.nn_rope_freqs(scaled, rot, theta, 2, s.factor, s.lowFreqFactor, s.highFreqFactor, s.originalMaxPositions, 0);
    const p = kernel!.f64(plain, half);
    const q = kernel!.f64(scaled, half);
    // one IEEE division per pair (exact-rounded in every engine), then one rounding to float32
    return Float32Array.from(p, (x, i) => x / q[i]);
  });
}

/** LongRoPE's attention factor as transformers computes it (rope_scaling.attention_factor, else
 * from rope_scaling.factor, else max_position_embeddings / original_max_position_embeddings);
 * the converter's own formula ignores the first two. */
function longropeAttnFactor(kernel: Kernel | undefined, c: LlamaConfig, s: Extract<RopeScaling, { type: 'longrope' }>): number {
  if (s.attentionFactor !== undefined) return s.attentionFactor;
  return kernelFor(kernel, 'the LongRoPE attention factor').nn_longrope_mscale(s.factor ?? c.maxSeqLen / s.originalMaxPositions, s.originalMaxPositions);
}

// ------------------------------------------------------------------ metadata

/** The sliding_window_pattern llama.cpp assumes when the key is absent (gemma3.cpp). */
const GEMMA3_DEFAULT_PATTERN = 6;
/** llama_hparams::set_swa_pattern(n, dense_first = false): layer i slides iff i % n < n - 1 (n = 0: all). */
const slidesInPattern = (i: number, n: number) => n === 0 || i % n < n - 1;

/** general.* and {arch}.* metadata for `config`, in the converter's order. */
export function llamaGgufMetadata(config: LlamaConfig, options: GgufWriteOptions = {}): GgufMetadata {
  const g = familyOfModel(config, options.family);
  const a = resolveArch(config);
  unrepresentable(config, a, g);
  return metadataOf(config, a, g, options);
}

function metadataOf(c: LlamaConfig, a: Arch, g: GgufFamily, options: GgufWriteOptions): GgufMetadata {
  const type = options.type ?? 'F32';
  const fileType = options.fileType ?? FILE_TYPE[type];
  if (fileType === undefined) throw new OptionError(`GGUF: no general.file_type is known for ${type}; pass fileType`);
  const k = (key: string) => `${g.arch}.${key}`;
  const md: GgufMetadata = new Map([
    ['general.architecture', str(g.arch)],
    ['general.type', str('model')],
    ['general.name', str(options.name ?? 'model')],
  ]);
  const put = (key: string, v: GgufValue) => md.set(key, v);
  const s = a.ropeScaling;
  if (g.family === 'phi3') {
    // Phi3MiniModel.set_gguf_parameters (its own list; the base class's is not called)
    put(k('context_length'), u32(c.maxSeqLen));
    put(k('rope.scaling.original_context_length'), u32(s?.type === 'longrope' ? s.originalMaxPositions : c.maxSeqLen));
    put(k('embedding_length'), u32(a.dim));
    put(k('feed_forward_length'), u32(a.hidden));
    put(k('block_count'), u32(a.nLayers));
    put(k('attention.head_count'), u32(a.nHeads));
    put(k('attention.head_count_kv'), u32(a.nKv));
    put(k('attention.layer_norm_rms_epsilon'), f32(a.eps));
    put(k('rope.dimension_count'), u32(a.rot));
    put(k('rope.freq_base'), f32(c.ropeTheta));
    put('general.file_type', u32(fileType));
    // 0 when there is none ("to distinguish Phi-4"); llama.cpp ignores it either way
    put(k('attention.sliding_window'), u32(c.slidingWindow ?? 0));
    // generate_extra_tensors, with the rope_factors_* tensors
    if (s?.type === 'longrope') put(k('rope.scaling.attn_factor'), f32(longropeAttnFactor(options.kernel, c, s)));
  } else {
    // TextModel.set_gguf_parameters, then the family's additions
    put(k('block_count'), u32(a.nLayers));
    put(k('context_length'), u32(c.maxSeqLen));
    put(k('embedding_length'), u32(a.dim));
    put(k('feed_forward_length'), u32(a.hidden));
    put(k('attention.head_count'), u32(a.nHeads));
    put(k('attention.head_count_kv'), u32(a.nKv));
    if (s?.type === 'linear') {
      put(k('rope.scaling.type'), str('linear'));
      put(k('rope.scaling.factor'), f32(s.factor));
    }
    put(k('rope.freq_base'), f32(c.ropeTheta));
    if (g.family === 'gemma3' && c.ropeLocalTheta !== undefined) put(k('rope.freq_base_swa'), f32(c.ropeLocalTheta));
    put(k('attention.layer_norm_rms_epsilon'), f32(a.eps));
    // written when config.json has head_dim (Gemma3Model: always)
    if (c.headDim !== undefined || g.family === 'gemma3') {
      put(k('attention.key_length'), u32(a.head));
      put(k('attention.value_length'), u32(a.head));
    }
    put('general.file_type', u32(fileType));
    if (g.arch === 'llama') {
      // LlamaModel.set_gguf_parameters
      put(k('vocab_size'), u32(a.vocab));
      put(k('rope.dimension_count'), u32(a.head));
      if (s?.type === 'llama3') {
        put(LLAMA3_KEYS.factor, f64(s.factor));
        put(LLAMA3_KEYS.lowFreqFactor, f64(s.lowFreqFactor));
        put(LLAMA3_KEYS.highFreqFactor, f64(s.highFreqFactor));
        put(LLAMA3_KEYS.originalMaxPositions, f64(s.originalMaxPositions));
      }
    }
    if (g.family === 'gemma3') {
      if (a.finalSoftcap) put(k('final_logit_softcapping'), f32(a.finalSoftcap));
      const sliding = a.layers.map((l) => l.window > 0);
      if (sliding.some((x) => x)) {
        put(k('attention.sliding_window'), u32(c.slidingWindow!));
        // The converter leaves the pattern to llama.cpp's default of 6; any other layout is
        // written out, as a period when one fits, else layer by layer.
        if (!sliding.every((x, i) => x === slidesInPattern(i, GEMMA3_DEFAULT_PATTERN))) {
          let period = -1;
          for (let n = 0; n <= a.nLayers + 1 && period < 0; n++) if (sliding.every((x, i) => x === slidesInPattern(i, n))) period = n;
          put(k('attention.sliding_window_pattern'), period >= 0 ? u32(period) : { type: 'array', itemType: 'bool', value: sliding });
        }
      }
    }
  }
  put('general.quantization_version', u32(QUANTIZATION_VERSION));
  for (const [key, v] of options.metadata ?? []) {
    if (md.has(key)) throw new OptionError(`GGUF: metadata "${key}" is written from the model config; do not pass it again`);
    md.set(key, v);
  }
  return md;
}

// ------------------------------------------------------------------ the tensor table

/** Where a GGUF tensor's values live (or come from). */
export type GgufSlot = Slot;
type Slot =
  | { kind: 'embedding' | 'finalNorm' | 'classifier' }
  | { kind: 'rope'; which: 'freqs' | 'long' | 'short' }
  | { kind: 'norm'; layer: number; field: NormField }
  | { kind: 'linear' | 'bias'; layer: number; name: LinearName };

interface TensorEntry {
  name: string;
  /** PyTorch order ([rows, cols]; 1-D: [n]); GGUF dims are its reverse. */
  shape: number[];
  slot: Slot;
}

/** Every tensor of a model of `c` in file order (generated tensors first, as the converter
 * writes them), under its GGUF name. Both directions go through this one table. */
function tensorTable(c: LlamaConfig, a: Arch): TensorEntry[] {
  const out: TensorEntry[] = [];
  const s = a.ropeScaling;
  if (s?.type === 'llama3') out.push({ name: GGUF_ROPE_FREQS, shape: [a.rot / 2], slot: { kind: 'rope', which: 'freqs' } });
  if (s?.type === 'longrope') {
    out.push({ name: GGUF_ROPE_LONG, shape: [a.rot / 2], slot: { kind: 'rope', which: 'long' } });
    out.push({ name: GGUF_ROPE_SHORT, shape: [a.rot / 2], slot: { kind: 'rope', which: 'short' } });
  }
  out.push({ name: GGUF_EMBEDDING, shape: [a.vocab, a.dim], slot: { kind: 'embedding' } });
  for (let layer = 0; layer < a.nLayers; layer++) {
    const norm = (field: NormField, n = a.dim) => out.push({ name: ggufBlockName(layer, GGUF_NORM[field]), shape: [n], slot: { kind: 'norm', layer, field } });
    norm('attnNorm');
    if (a.qkNorm) {
      norm('qNorm', a.head);
      norm('kNorm', a.head);
    }
    for (const spec of a.linears) {
      if (spec.module === 'mlp' && spec.name === a.linears.find((l) => l.module === 'mlp')!.name) {
        if (a.sandwichNorms) norm('postAttnNorm');
        norm('ffnNorm');
      }
      const base = GGUF_LINEAR[spec.name];
      out.push({ name: ggufBlockName(layer, base), shape: [spec.rows, spec.cols], slot: { kind: 'linear', layer, name: spec.name } });
      if (spec.bias) out.push({ name: ggufBlockName(layer, base, 'bias'), shape: [spec.rows], slot: { kind: 'bias', layer, name: spec.name } });
    }
    if (a.sandwichNorms) norm('postFfnNorm');
  }
  out.push({ name: GGUF_FINAL_NORM, shape: [a.dim], slot: { kind: 'finalNorm' } });
  // The converter writes output.weight only when the checkpoint has an lm_head; llama.cpp
  // falls back to token_embd without it.
  if (!c.tiedEmbeddings) out.push({ name: GGUF_CLASSIFIER, shape: [a.vocab, a.dim], slot: { kind: 'classifier' } });
  return out;
}

/** Moves q/k rows (weights and biases) between RoPE layouts; other tensors pass through. */
function qkRows(w: Float32Array, slot: Slot, a: Arch, from: RopeStyle, to: RopeStyle): Float32Array {
  if (from === to || (slot.kind !== 'linear' && slot.kind !== 'bias') || (slot.name !== 'q_proj' && slot.name !== 'k_proj')) return w;
  const heads = slot.name === 'q_proj' ? a.nHeads : a.nKv;
  const cols = slot.kind === 'linear' ? a.dim : 1;
  return permuteRopeRows(w, heads, heads * a.head, cols, to === 'half' ? 'toHalf' : 'toInterleaved');
}

/** Gemma's RMSNorm scales by 1 + w; its converter stores 1 + w, so llama.cpp's plain RMSNorm
 * computes the same (Gemma3Model.modify_tensors, after widening to float32). Math.fround of the
 * double sum is float32 addition exactly (a double holds 2 x 24 + 2 bits, so rounding twice
 * rounds once), the same bits as the forward pass's nn_one_plus. */
const onePlus = (w: Float32Array) => Float32Array.from(w, (x) => 1 + x);

/** The stored norm back to w, refusing a value no float32 w gives as 1 + w (then the forward
 * pass's 1 + w could not be the file's norm). Every value the converter writes passes. */
function minusOne(g: Float32Array, name: string): Float32Array {
  const w = Float32Array.from(g, (x) => x - 1); // exact float32 subtraction, as onePlus
  for (let i = 0; i < g.length; i++) {
    if (!Object.is(Math.fround(1 + w[i]), g[i])) throw new FormatError(`GGUF gemma3: ${name}[${i}] = ${g[i]} is not 1 + w for any float32 w (Gemma norms are stored as 1 + w)`);
  }
  return w;
}

function tensorOf(model: LlamaModel, slot: Slot): Float32Array | undefined {
  switch (slot.kind) {
    case 'embedding': return model.embedding;
    case 'finalNorm': return model.finalNorm;
    case 'classifier': return model.classifier;
    case 'norm': return model.blocks[slot.layer][slot.field];
    case 'linear': return model.blocks[slot.layer].linear[slot.name];
    case 'bias': return model.blocks[slot.layer].bias?.[slot.name];
    case 'rope': return undefined;
  }
}

const isNorm = (slot: Slot) => slot.kind === 'norm' || slot.kind === 'finalNorm';

// ------------------------------------------------------------------ writer

/** A GGUF file laid out for a config: its plan (header, every tensor's type and offset) and,
 * per tensor, where its values live and how stored values are made from them. */
export interface GgufLayout {
  plan: GgufPlan;
  /** The tensors in file order (plan.tensors[i] is tensors[i]). */
  tensors: readonly { name: string; shape: number[]; slot: Slot }[];
  /** Bytes of tensor `index` from its float32 values as the model holds them: q/k rows moved to
   * the family's layout, Gemma's norms stored as 1 + w, encoded to the tensor's type. Generated
   * tensors (rope_freqs, LongRoPE factors) take no values. */
  encode(index: number, values?: Float32Array): Uint8Array;
  /** The row order of tensor `index` in the file (file row i = model row order[i]), or null:
   * how to write rows quantized in the model's layout (the bytes of a row do not change). */
  rowOrder(index: number): Int32Array | null;
}

/** Lays out a GGUF file for a model of `config`, each 2-D weight of type `typeOf(name)` (1-D
 * tensors F32, as the converter writes them). */
export function layoutGguf(config: LlamaConfig, typeOf: (name: string, dims: readonly number[]) => GgmlType, options: GgufWriteOptions = {}): GgufLayout {
  const c = config;
  const g = familyOfModel(c, options.family);
  const a = resolveArch(c);
  unrepresentable(c, a, g);
  const encoders = { ...FLOAT_ENCODERS, ...options.encoders };
  const sources = tensorTable(c, a);
  // The generated tensors are small: computed now, so a missing kernel fails before any byte.
  const s = a.ropeScaling;
  const rope: Partial<Record<'freqs' | 'long' | 'short', Float32Array>> = {};
  // from the float32 base the file stores (and llama.cpp and the reader use)
  if (s?.type === 'llama3') rope.freqs = llama3RopeFreqs(options.kernel, a.rot, Math.fround(c.ropeTheta), s);
  if (s?.type === 'longrope') {
    // transformers keeps the factors as float32 tensors too
    rope.long = Float32Array.from(s.longFactor);
    rope.short = Float32Array.from(s.shortFactor);
  }
  const descriptors = sources.map((t) => {
    const dims = [...t.shape].reverse(); // ggml order: row length first
    const tt: GgmlType = t.shape.length === 1 ? 'F32' : typeOf(t.name, dims);
    if (!Object.prototype.hasOwnProperty.call(GGML_TYPES, tt)) throw new DtypeError(`GGUF: unknown ggml type ${String(tt)} (tensor "${t.name}")`);
    return { name: t.name, dims, type: tt };
  });
  const plan = planGguf(metadataOf(c, a, g, options), descriptors);
  return {
    plan,
    tensors: sources,
    encode(index: number, given?: Float32Array): Uint8Array {
      const t = sources[index];
      const info = plan.tensors[index];
      if (!t || !info) throw new OptionError(`GGUF: no tensor #${index}`);
      let values = t.slot.kind === 'rope' ? rope[t.slot.which]! : given;
      if (!values) throw new OptionError(`GGUF: tensor "${t.name}" needs its values`);
      values = qkRows(values, t.slot, a, c.ropeStyle, g.qkRows);
      if (a.gemmaNorm && isNorm(t.slot)) values = onePlus(values);
      const encoder = encoders[info.type];
      if (!encoder) throw new DtypeError(`GGUF: no encoder for ${info.type} (tensor "${t.name}"); pass one in options.encoders`);
      const rows = t.shape.length === 1 ? 1 : t.shape[0];
      const bytes = encoder(values, rows, info.dims[0]);
      if (bytes.length !== info.byteLength) throw new ShapeError(`GGUF: the ${info.type} encoder gave ${bytes.length} bytes for "${info.name}", expected ${info.byteLength}`);
      return bytes;
    },
    rowOrder(index: number): Int32Array | null {
      const t = sources[index];
      if (!t || t.shape.length !== 2) return null;
      const rows = t.shape[0];
      const order = qkRows(Float32Array.from({ length: rows }, (_, i) => i), t.slot.kind === 'linear' ? { kind: 'bias', layer: t.slot.layer, name: t.slot.name } : t.slot, a, c.ropeStyle, g.qkRows);
      return order.every((v, i) => v === i) ? null : Int32Array.from(order);
    },
  };
}

/** A planned GGUF file for `model` and the bytes of each tensor, computed when asked for. */
export interface LlamaGgufPlan {
  plan: GgufPlan;
  /** Bytes of plan.tensors[index] (permuted, shifted and encoded now; nothing is kept). */
  tensorBytes(index: number): Uint8Array;
}

/**
 * Lays out `model` as a GGUF file without encoding any weight: write `plan.header`, then each
 * tensor's bytes at its offset (see writeGguf), so a large model streams tensor by tensor.
 */
export function planLlamaGguf(model: LlamaModel, options: GgufWriteOptions = {}): LlamaGgufPlan {
  checkModelShapes(model);
  const c = model.config;
  if (c.tiedEmbeddings && model.classifier !== model.embedding) {
    for (let i = 0; i < model.embedding.length; i++) {
      if (!Object.is(model.classifier[i], model.embedding[i])) throw new OptionError('GGUF: config says tied embeddings but classifier differs from embedding');
    }
  }
  const type = options.type ?? 'F32';
  if (!Object.prototype.hasOwnProperty.call(GGML_TYPES, type)) throw new DtypeError(`GGUF: unknown ggml type ${String(type)}`);
  // Every weight is encoded here: a type without an encoder fails now, before any byte.
  const encoders = { ...FLOAT_ENCODERS, ...options.encoders };
  const layout = layoutGguf(c, (name, dims) => {
    const t = options.typeOf?.(name, dims) ?? type;
    if (Object.prototype.hasOwnProperty.call(GGML_TYPES, t) && !encoders[t]) throw new DtypeError(`GGUF: no encoder for ${t} (tensor "${name}"); pass one in options.encoders`);
    return t;
  }, options);
  return {
    plan: layout.plan,
    tensorBytes: (index) => layout.encode(index, layout.tensors[index] && tensorOf(model, layout.tensors[index].slot)),
  };
}

const withKernel = async (options: GgufWriteOptions): Promise<GgufWriteOptions> => (options.kernel ? options : { ...options, kernel: await defaultKernel() });

/** Streams `model` as GGUF to `sink`, one tensor in memory at a time. */
export async function writeLlamaGgufStream(model: LlamaModel, sink: (chunk: Uint8Array) => void | Promise<void>, options: GgufWriteOptions = {}): Promise<void> {
  const { plan, tensorBytes } = planLlamaGguf(model, await withKernel(options));
  await writeGguf(plan, (_info, i) => tensorBytes(i), sink);
}

/** `model` as a whole GGUF file in memory. */
export function writeLlamaGguf(model: LlamaModel, options: GgufWriteOptions = {}): Uint8Array {
  const { plan, tensorBytes } = planLlamaGguf(model, options);
  const out = new Uint8Array(plan.fileSize);
  out.set(plan.header, 0);
  plan.tensors.forEach((info, i) => out.set(tensorBytes(i), info.fileOffset));
  return out;
}

// ------------------------------------------------------------------------------------ reader

export interface GgufReadOptions {
  /** q/k row layout of the returned model (default: the file's, so no row moves). Only llama
   * files can be read as 'interleaved'. */
  ropeStyle?: RopeStyle;
  /** Decoders for types beyond F32/F16/BF16. */
  decoders?: Partial<Record<GgmlType, GgmlDecoder>>;
  /** readLlamaGguf: bytes of the first header read (see readGgufHeader). */
  firstRead?: number;
  /** Checks rope_freqs (llama3) and Phi-3's attention factor against the config read (wasm).
   * llamaFromGguf needs it for such files; readLlamaGguf falls back to defaultKernel(). */
  kernel?: Kernel;
}

const INTEGER_TYPES = new Set(['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'u64', 'i64']);

function metaInt(md: GgufMetadata, key: string, fallback?: number, min = 1): number {
  const v = md.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`GGUF: metadata "${key}" is missing`);
  }
  if (!INTEGER_TYPES.has(v.type)) throw new FormatError(`GGUF: metadata "${key}" is ${v.type === 'array' ? 'an array (per-layer values are not supported)' : `a ${v.type}`}, expected an integer`);
  const n = Number(v.value);
  if (!Number.isSafeInteger(n) || n < min || n > 0x7fffffff) throw new FormatError(`GGUF: metadata "${key}" = ${String(v.value)} must be ${min === 1 ? 'a positive' : 'a non-negative'} 32-bit integer`);
  return n;
}

function metaFloat(md: GgufMetadata, key: string, fallback?: number, allowZero = false): number {
  const v = md.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`GGUF: metadata "${key}" is missing`);
  }
  if (v.type !== 'f32' && v.type !== 'f64') throw new FormatError(`GGUF: metadata "${key}" is a ${v.type}, expected a float`);
  if (!Number.isFinite(v.value) || !(v.value > 0 || (allowZero && v.value === 0))) throw new FormatError(`GGUF: metadata "${key}" = ${v.value} must be a positive number`);
  return v.value;
}

function metaString(md: GgufMetadata, key: string): string | undefined {
  const v = md.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'string') throw new FormatError(`GGUF: metadata "${key}" is a ${v.type}, expected a string`);
  return v.value;
}

/** Names of the small tensors the config is read from (the RoPE factors). */
const ROPE_TENSORS = [GGUF_ROPE_FREQS, GGUF_ROPE_LONG, GGUF_ROPE_SHORT];

/**
 * The family and LlamaConfig a GGUF file describes, read as llama.cpp reads it; FormatError
 * for what our model cannot hold. `ropeTensor` gives the decoded values of rope_freqs /
 * rope_factors_* (required when the file has them).
 */
export function llamaConfigFromGguf(
  file: GgufFile, ropeTensor?: (name: string) => Float32Array, kernel?: Kernel,
): { family: GgufFamily; config: LlamaConfig } {
  const md = file.metadata;
  const arch = metaString(md, 'general.architecture');
  if (arch === undefined) throw new FormatError('GGUF: general.architecture is missing or not a string');
  const familyName = Object.prototype.hasOwnProperty.call(FAMILY_OF_ARCH, arch) ? FAMILY_OF_ARCH[arch] : undefined;
  if (!familyName) throw new FormatError(`GGUF: architecture "${arch}" is not supported (${Object.keys(FAMILY_OF_ARCH).join(', ')})`);
  const g = GGUF_FAMILIES[familyName];
  const k = (key: string) => `${arch}.${key}`;
  const has = (key: string) => md.has(k(key));
  const dim = metaInt(md, k('embedding_length'));
  const nHeads = metaInt(md, k('attention.head_count'));
  const nKvHeads = metaInt(md, k('attention.head_count_kv'), nHeads);
  const nLayers = metaInt(md, k('block_count'));
  // every block has tensors: a count beyond them is refused before anything is sized by it
  if (nLayers > file.tensors.length) throw new FormatError(`GGUF: ${k('block_count')} = ${nLayers}, but the file has only ${file.tensors.length} tensors`);
  if (nHeads % nKvHeads !== 0) throw new FormatError(`GGUF: head_count ${nHeads} is not divisible by head_count_kv ${nKvHeads}`);
  // load_hparams: key/value length default to n_embd / n_head, the RoPE dimensions to the key length
  if (!has('attention.key_length') && dim % nHeads !== 0) throw new FormatError(`GGUF: ${k('embedding_length')} ${dim} is not divisible by head_count ${nHeads}`);
  const head = metaInt(md, k('attention.key_length'), Math.floor(dim / nHeads));
  const valueLength = metaInt(md, k('attention.value_length'), head);
  if (valueLength !== head) throw new FormatError(`GGUF: ${k('attention.value_length')} ${valueLength} differs from key_length ${head} (not supported)`);
  if (head % 2 !== 0) throw new FormatError(`GGUF: head size ${head} is odd; RoPE needs pairs`);
  const rot = metaInt(md, k('rope.dimension_count'), head);
  if (rot !== head && familyName !== 'phi3') throw new FormatError(`GGUF: ${k('rope.dimension_count')} = ${rot} differs from the head size ${head} (not supported for ${arch})`);
  if (rot > head || rot % 2 !== 0) throw new FormatError(`GGUF: ${k('rope.dimension_count')} = ${rot} must be even and at most the head size ${head}`);
  for (const key of ['attention.key_length_swa', 'attention.value_length_swa', 'rope.dimension_count_swa']) {
    if (has(key) && metaInt(md, k(key)) !== (key.startsWith('rope') ? rot : head)) throw new FormatError(`GGUF: ${k(key)} differs from the global layers' (not supported)`);
  }
  const experts = md.get(k('expert_count'));
  if (experts && Number(experts.value) !== 0) throw new FormatError(`GGUF: ${k('expert_count')} ${String(experts.value)}: mixture-of-experts models are not supported`);
  const embedding = file.byName.get(GGUF_EMBEDDING);
  if (!embedding) throw new FormatError(`GGUF: tensor "${GGUF_EMBEDDING}" is missing`);

  const config: LlamaConfig = {
    dim,
    hiddenDim: metaInt(md, k('feed_forward_length')),
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: metaInt(md, k('vocab_size'), embedding.dims.length === 2 ? embedding.dims[1] : 0),
    maxSeqLen: metaInt(md, k('context_length')),
    normEps: metaFloat(md, k('attention.layer_norm_rms_epsilon')),
    ropeTheta: metaFloat(md, k('rope.freq_base'), 10000), // llama.cpp's default
    ropeStyle: g.qkRows,
    tiedEmbeddings: !file.byName.has(GGUF_CLASSIFIER),
  };
  if (familyName !== 'llama') config.family = familyName;
  if (head * nHeads !== dim || familyName === 'qwen3' || familyName === 'gemma3') config.headDim = head;
  if (rot !== head) {
    const partial = rot / head;
    if (Math.floor(head * partial) !== rot) throw new FormatError(`GGUF: ${k('rope.dimension_count')} ${rot} of a ${head}-wide head is no fraction transformers can express`);
    config.partialRotary = partial;
  }

  // RoPE scaling: load_hparams reads rope.scaling.type (default "linear") and rope.scaling.factor
  // (freq_scale = 1 / factor) for every architecture; rope.scaling.attn_factor multiplies cos and sin.
  const scalingType = metaString(md, k('rope.scaling.type')) ?? 'linear';
  if (scalingType !== 'linear' && scalingType !== 'none' && !(scalingType === 'longrope' && familyName === 'phi3')) {
    throw new FormatError(`GGUF: ${k('rope.scaling.type')} "${scalingType}" is not supported for ${arch}`);
  }
  // (rope.scale_linear is the factor's old key; type "none" means no scaling whatever the factor)
  const factor = scalingType === 'none' ? 0 : metaFloat(md, k('rope.scaling.factor'), metaFloat(md, k('rope.scale_linear'), 0, true), true);
  const attnFactor = metaFloat(md, k('rope.scaling.attn_factor'), 1);
  const freqs = file.byName.has(GGUF_ROPE_FREQS);
  const longrope = file.byName.has(GGUF_ROPE_LONG) || file.byName.has(GGUF_ROPE_SHORT);
  if (factor !== 0 && (freqs || longrope)) throw new FormatError(`GGUF: ${k('rope.scaling.factor')} together with RoPE factor tensors is not supported`);
  if (factor !== 0) config.ropeScaling = { type: 'linear', factor };
  const values = (name: string): Float32Array => {
    if (!ropeTensor) throw new OptionError(`GGUF: the config of this file depends on tensor "${name}"; pass its values`);
    const v = ropeTensor(name);
    if (v.length !== rot / 2) throw new ShapeError(`GGUF: tensor "${name}" has ${v.length} values, expected ${rot / 2} (one per rotated pair)`);
    return v;
  };
  if (freqs) {
    if (familyName !== 'llama') throw new FormatError(`GGUF: tensor "${GGUF_ROPE_FREQS}" is not read by llama.cpp's ${arch} (not supported)`);
    config.ropeScaling = llama3FromFreqs(md, values(GGUF_ROPE_FREQS), rot, config.ropeTheta, kernel);
  }
  if (longrope) {
    if (familyName !== 'phi3') throw new FormatError(`GGUF: LongRoPE factor tensors in a ${arch} file are not supported`);
    for (const name of [GGUF_ROPE_LONG, GGUF_ROPE_SHORT]) if (!file.byName.has(name)) throw new FormatError(`GGUF: tensor "${name}" is missing (LongRoPE needs both factor tensors)`);
    const s: RopeScaling = {
      type: 'longrope',
      shortFactor: Array.from(values(GGUF_ROPE_SHORT)),
      longFactor: Array.from(values(GGUF_ROPE_LONG)),
      originalMaxPositions: metaInt(md, k('rope.scaling.original_context_length')),
    };
    // llama.cpp multiplies by the key's value (1 when absent); transformers' default is kept
    // implicit when it rounds to the same float32
    const defaultFactor = kernelFor(kernel, 'the LongRoPE attention factor').nn_longrope_mscale(config.maxSeqLen / s.originalMaxPositions, s.originalMaxPositions);
    if (Math.fround(defaultFactor) !== attnFactor) s.attentionFactor = attnFactor;
    config.ropeScaling = s;
  } else if (attnFactor !== 1) {
    throw new FormatError(`GGUF: ${k('rope.scaling.attn_factor')} = ${attnFactor} without LongRoPE factors is not supported`);
  }

  if (familyName === 'gemma3') {
    // gemma3.cpp: sliding_window > 0 turns on the pattern (default 6), and with it the local RoPE base
    const window = metaInt(md, k('attention.sliding_window'), 0, 0);
    if (has('rope.freq_base_swa')) config.ropeLocalTheta = metaFloat(md, k('rope.freq_base_swa'));
    if (window > 0) {
      const types = gemmaLayerTypes(md.get(k('attention.sliding_window_pattern')), nLayers, k('attention.sliding_window_pattern'));
      if (types.includes('sliding')) {
        config.slidingWindow = window;
        config.layerTypes = types;
      }
    }
    const cap = metaFloat(md, k('final_logit_softcapping'), 0, true);
    if (cap > 0) config.finalSoftcap = cap;
    // what llama.cpp scales scores by, whatever the checkpoint said
    config.queryPreAttnScalar = nLayers === 62 ? Math.floor(dim / nHeads) : head;
  } else if (familyName === 'phi3') {
    // llama.cpp disables Phi-3's window: it attends to everything. A window of at least the
    // context is the same model within the context, so it is kept.
    const window = metaInt(md, k('attention.sliding_window'), 0, 0);
    if (window >= config.maxSeqLen) {
      config.slidingWindow = window;
      config.layerTypes = Array.from({ length: nLayers }, () => 'sliding');
    }
  }
  return { family: g, config };
}

/** Layer kinds from gemma3's sliding_window_pattern: a period (u32), or one flag per layer. */
function gemmaLayerTypes(v: GgufValue | undefined, nLayers: number, key: string): LayerType[] {
  if (v === undefined) return Array.from({ length: nLayers }, (_, i) => (slidesInPattern(i, GEMMA3_DEFAULT_PATTERN) ? 'sliding' : 'full'));
  if (v.type === 'array') {
    if (v.itemType !== 'bool' && v.itemType !== 'u32' && v.itemType !== 'i32') throw new FormatError(`GGUF: ${key} is an array of ${v.itemType}, expected bool`);
    if (v.value.length !== nLayers) throw new FormatError(`GGUF: ${key} lists ${v.value.length} layers, the model has ${nLayers}`);
    return Array.from(v.value as ArrayLike<number | boolean>, (x) => (x ? 'sliding' : 'full'));
  }
  if (!INTEGER_TYPES.has(v.type)) throw new FormatError(`GGUF: ${key} is a ${v.type}, expected an integer or an array`);
  const n = Number(v.value);
  if (!Number.isSafeInteger(n) || n < 0) throw new FormatError(`GGUF: ${key} = ${String(v.value)} must be a non-negative integer`);
  return Array.from({ length: nLayers }, (_, i) => (slidesInPattern(i, n) ? 'sliding' : 'full'));
}

/** Llama 3.x's published rope_scaling, used for files without our llama3 keys (the
 * converter's defaults too): the factor is read from the file's largest divisor. */
const LLAMA3_PUBLISHED = { lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };
/** The converter computes rope_freqs from float32 frequencies, we from float64: their float32
 * divisors differ by rounding (a few 1e-7 relative). A wrong parameter moves them by far more. */
const LLAMA3_CONVERTER_TOLERANCE = 1e-5;

/** The llama3 RoPE scaling whose rope_freqs are `r`: from our keys (then exactly), else
 * Llama 3's published parameters (then within the converter's rounding). */
function llama3FromFreqs(md: GgufMetadata, r: Float32Array, rot: number, theta: number, kernel: Kernel | undefined): RopeScaling {
  const ours = Object.values(LLAMA3_KEYS).filter((key) => md.has(key));
  let s: Extract<RopeScaling, { type: 'llama3' }>;
  let tolerance = 0;
  if (ours.length > 0) {
    if (ours.length !== 4) throw new FormatError(`GGUF: only ${ours.join(', ')} of the four ${Object.values(LLAMA3_KEYS).join(', ')} are present`);
    s = {
      type: 'llama3', factor: metaFloat(md, LLAMA3_KEYS.factor), lowFreqFactor: metaFloat(md, LLAMA3_KEYS.lowFreqFactor),
      highFreqFactor: metaFloat(md, LLAMA3_KEYS.highFreqFactor), originalMaxPositions: metaFloat(md, LLAMA3_KEYS.originalMaxPositions),
    };
    if (!(s.highFreqFactor > s.lowFreqFactor)) throw new FormatError(`GGUF: ${LLAMA3_KEYS.highFreqFactor} ${s.highFreqFactor} must exceed ${LLAMA3_KEYS.lowFreqFactor} ${s.lowFreqFactor}`);
  } else {
    let factor = 0;
    for (const x of r) if (x > factor) factor = x;
    if (!(factor > 0) || !Number.isFinite(factor)) throw new FormatError(`GGUF: ${GGUF_ROPE_FREQS} holds no positive divisor`);
    s = { type: 'llama3', factor, ...LLAMA3_PUBLISHED };
    tolerance = LLAMA3_CONVERTER_TOLERANCE;
  }
  const want = llama3RopeFreqs(kernel, rot, theta, s);
  for (let i = 0; i < r.length; i++) {
    if (!(Math.abs(r[i] - want[i]) <= tolerance * want[i])) {
      throw new FormatError(`GGUF: ${GGUF_ROPE_FREQS}[${i}] = ${r[i]}, but llama3 RoPE (factor ${s.factor}, low ${s.lowFreqFactor}, high ${s.highFreqFactor}, original context ${s.originalMaxPositions}${ours.length ? '' : ': Llama 3\'s published values, as no cdquant.rope.llama3.* keys are present'}) gives ${want[i]}`);
    }
  }
  return s;
}

/**
 * Checks that `file` holds exactly the tensors of the model its metadata describes, with the
 * right dims and decodable types, before any weight byte is read.
 */
function checkTensors(file: GgufFile, g: GgufFamily, config: LlamaConfig, a: Arch, decoders: Partial<Record<GgmlType, GgmlDecoder>>): TensorEntry[] {
  const table = tensorTable(config, a);
  for (const { name, shape } of table) {
    const info = file.byName.get(name);
    if (!info) throw new FormatError(`GGUF: tensor "${name}" is missing`);
    const want = [...shape].reverse();
    if (info.dims.length !== want.length || info.dims.some((d, i) => d !== want[i])) {
      throw new ShapeError(`GGUF: tensor "${name}" has dims [${info.dims.join(', ')}], the metadata implies [${want.join(', ')}]`);
    }
    if (!decoders[info.type]) throw new DtypeError(`GGUF: tensor "${name}" has type ${info.type}, which cannot be decoded here (supported: ${Object.keys(decoders).join(', ')})`);
  }
  // A tensor we would not consume (a lone bias, an extra norm) changes what the model computes.
  const names = new Set(table.map((t) => t.name));
  const extra = file.tensors.find((t) => !names.has(t.name));
  if (extra) throw new FormatError(`GGUF: tensor "${extra.name}" is not part of the ${g.arch} model we can run (not supported)`);
  return table;
}

/** Biases are optional tensors in llama.cpp's llama graph: the file says whether there are any. */
function llamaBiases(file: GgufFile, config: LlamaConfig): void {
  if (config.family !== undefined) return;
  // attention_bias puts a bias on o_proj too; a file with q/k/v biases only is refused by
  // checkTensors (our Llama has all four or none)
  if (file.byName.has(ggufBlockName(0, GGUF_LINEAR.o_proj, 'bias'))) config.attentionBias = true;
  if (file.byName.has(ggufBlockName(0, GGUF_LINEAR.gate_proj, 'bias'))) config.mlpBias = true;
}

interface ReadPlan {
  config: LlamaConfig;
  arch: Arch;
  family: GgufFamily;
  style: RopeStyle;
  table: TensorEntry[];
  decoders: Partial<Record<GgmlType, GgmlDecoder>>;
  /** The file's tokenizer.* entries (empty when it has none). */
  vocabulary: GgufMetadata;
}

/** Everything the header (and the RoPE factor tensors) say, checked before any weight is read. */
function readPlan(file: GgufFile, ropeTensor: (name: string) => Float32Array, options: GgufReadOptions): ReadPlan {
  const { family, config } = llamaConfigFromGguf(file, ropeTensor, options.kernel);
  llamaBiases(file, config);
  const style = options.ropeStyle ?? family.qkRows;
  if (style !== 'interleaved' && style !== 'half') throw new OptionError(`GGUF: ropeStyle must be 'interleaved' or 'half', not ${String(style)}`);
  let arch: Arch;
  try {
    arch = resolveArch(config);
    resolveArch({ ...config, ropeStyle: style });
  } catch (e) {
    if (e instanceof OptionError || e instanceof ShapeError) throw new FormatError(`GGUF: ${e.message}`);
    throw e;
  }
  const decoders = { ...FLOAT_DECODERS, ...options.decoders };
  return { config, arch, family, style, decoders, table: checkTensors(file, family, config, arch, decoders), vocabulary: ggufTokenizerMetadata(file.metadata) };
}

/** The model from its tensors' decoded values (the RoPE factors are part of the config). */
function assemble(p: ReadPlan, valueOf: (name: string) => Float32Array): LlamaModel {
  const c = p.config;
  const model: LlamaModel = {
    config: { ...c, ropeStyle: p.style },
    embedding: new Float32Array(0),
    blocks: Array.from({ length: c.nLayers }, (): LlamaBlock => ({ attnNorm: new Float32Array(0), ffnNorm: new Float32Array(0), linear: {} })),
    finalNorm: new Float32Array(0),
    classifier: new Float32Array(0),
  };
  for (const { name, slot } of p.table) {
    if (slot.kind === 'rope') continue;
    let w = qkRows(valueOf(name), slot, p.arch, p.family.qkRows, p.style);
    if (p.arch.gemmaNorm && isNorm(slot)) w = minusOne(w, name);
    switch (slot.kind) {
      case 'embedding': model.embedding = w; break;
      case 'finalNorm': model.finalNorm = w; break;
      case 'classifier': model.classifier = w; break;
      case 'norm': model.blocks[slot.layer][slot.field] = w; break;
      case 'linear': model.blocks[slot.layer].linear[slot.name] = w; break;
      case 'bias': (model.blocks[slot.layer].bias ??= {})[slot.name] = w; break;
    }
  }
  if (c.tiedEmbeddings) model.classifier = model.embedding;
  if (p.vocabulary.size > 0) model.ggufVocabulary = p.vocabulary;
  checkModelValues(model, 'GGUF');
  return model;
}

const ropeNames = (file: GgufFile) => ROPE_TENSORS.filter((n) => file.byName.has(n));

/** A model of any supported family from a whole GGUF file in memory. */
export function llamaFromGguf(bytes: Uint8Array, options: GgufReadOptions = {}): LlamaModel {
  const file = parseGgufHeader(bytes);
  const decode = (name: string, decoders = { ...FLOAT_DECODERS, ...options.decoders }) => {
    const info = file.byName.get(name)!;
    return decodeTensor(info, tensorData(file, bytes, info), decoders);
  };
  const p = readPlan(file, (name) => decode(name), options);
  return assemble(p, (name) => decode(name, p.decoders));
}

/** A model of any supported family from a GGUF file read at offsets: the header, then one
 * tensor at a time. */
export async function readLlamaGguf(source: ByteSource, options: GgufReadOptions = {}): Promise<LlamaModel> {
  const file = await readGgufHeader(source, options.firstRead === undefined ? {} : { firstRead: options.firstRead });
  const decoders = { ...FLOAT_DECODERS, ...options.decoders };
  const rope = new Map<string, Float32Array>();
  for (const name of ropeNames(file)) {
    const info = file.byName.get(name)!;
    if (info.elements > 1 << 16) throw new FormatError(`GGUF: tensor "${name}" has ${info.elements} values, more than any head has pairs`);
    rope.set(name, decodeTensor(info, await readTensorData(source, info), decoders));
  }
  const kernel = options.kernel ?? (rope.size > 0 ? await defaultKernel() : undefined);
  const p = readPlan(file, (name) => rope.get(name)!, { ...options, ...(kernel ? { kernel } : {}) });
  const values = new Map<string, Float32Array>();
  for (const { name, slot } of p.table) {
    if (slot.kind === 'rope') continue;
    const info = file.byName.get(name)!;
    values.set(name, decodeTensor(info, await readTensorData(source, info), p.decoders));
  }
  return assemble(p, (name) => values.get(name)!);
}
