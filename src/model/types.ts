// The in-memory model every reader produces and every pipeline stage consumes: a decoder-only
// transformer of one of the families in ./arch.ts (Llama and relatives). Weights are float32,
// row-major, PyTorch's [out, in].
import type { GgufMetadata } from '../formats/gguf-types.js';

/** How RoPE pairs the dimensions of a head: llama2.c rotates (x[2i], x[2i+1]); Hugging Face's
 * `rotate_half` rotates (x[i], x[i + rot/2]). */
export type RopeStyle = 'interleaved' | 'half';

/** The model families the forward pass runs, by transformers' model_type. */
export type Family = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma3' | 'phi3';

/** RoPE frequency scaling (transformers' rope_scaling / rope_parameters, by rope_type). */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  /** LongRoPE (Phi-3): per-pair divisors, `short` for sequences up to originalMaxPositions,
   * `long` beyond; cos and sin are multiplied by attentionFactor, by default
   * sqrt(1 + ln(factor) / ln(originalMaxPositions)) (1 when factor <= 1), factor defaulting to
   * maxSeqLen / originalMaxPositions (transformers' _compute_longrope_parameters). */
  | { type: 'longrope'; shortFactor: number[]; longFactor: number[]; originalMaxPositions: number; factor?: number; attentionFactor?: number };

/** Kind of attention of one layer: all keys up to the query, or the last `slidingWindow` only. */
export type LayerType = 'full' | 'sliding';

export interface LlamaConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  maxSeqLen: number;
  normEps: number;
  ropeTheta: number;
  ropeStyle: RopeStyle;
  tiedEmbeddings: boolean;
  // ---- family fields; absent means a plain Llama (every reader before the families)
  /** Default 'llama'. */
  family?: Family;
  /** Size of one attention head; default dim / nHeads. */
  headDim?: number;
  /** Frequency scaling of RoPE (of the global layers, for Gemma 3). */
  ropeScaling?: RopeScaling;
  /** Fraction of each head that RoPE rotates (Phi-3's partial_rotary_factor); default 1. */
  partialRotary?: number;
  /** Llama / Qwen3 / Gemma 3 attention_bias: q, k, v and o have biases. (Qwen2 always has
   * q, k, v biases and never an o bias, whatever this says.) */
  attentionBias?: boolean;
  /** Llama mlp_bias: gate, up and down have biases. */
  mlpBias?: boolean;
  /** Keys a sliding layer sees (the query's own position included). */
  slidingWindow?: number;
  /** Per layer; default every layer 'full', or every layer 'sliding' when slidingWindow is set
   * (Mistral, Phi-3). */
  layerTypes?: LayerType[];
  /** Gemma 3: RoPE base of the sliding layers (rope_local_base_freq); global layers use ropeTheta. */
  ropeLocalTheta?: number;
  /** Gemma 3: scores are scaled by queryPreAttnScalar^-0.5 instead of headDim^-0.5. */
  queryPreAttnScalar?: number;
  /** Gemma: tanh soft-capping of attention scores / final logits (absent: none). */
  attnSoftcap?: number;
  finalSoftcap?: number;
}

/** Linear layers by their Hugging Face module names. Which ones a model has depends on its
 * family (see arch.ts): Phi-3 has the fused qkv_proj and gate_up_proj instead of the four. */
export const ALL_LINEAR_NAMES = ['q_proj', 'k_proj', 'v_proj', 'qkv_proj', 'o_proj', 'gate_proj', 'up_proj', 'gate_up_proj', 'down_proj'] as const;
export type LinearName = (typeof ALL_LINEAR_NAMES)[number];

/** The seven linear layers of a Llama block, in the order sequential quantization visits them
 * (other families: `linearNames(config)` in arch.ts). */
export const LINEAR_NAMES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const satisfies readonly LinearName[];

export interface LlamaBlock {
  /** Norm before attention (input_layernorm). */
  attnNorm: Float32Array; // [dim]
  /** Norm before the MLP (post_attention_layernorm; Gemma 3's pre_feedforward_layernorm). */
  ffnNorm: Float32Array; // [dim]
  /** Gemma 3 only: norms of the attention output and of the MLP output, before each residual
   * add (its post_attention_layernorm and post_feedforward_layernorm). */
  postAttnNorm?: Float32Array;
  postFfnNorm?: Float32Array;
  /** Qwen3 / Gemma 3: per-head RMSNorm of q and k before RoPE, [headDim]. */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  /** Weights of the family's linear layers by name ([out, in]). */
  linear: Record<string, Float32Array>;
  /** Biases ([out]) of the linear layers that have one in this family and config. */
  bias?: Record<string, Float32Array>;
}

export interface LlamaModel {
  config: LlamaConfig;
  embedding: Float32Array; // [vocab, dim]
  blocks: LlamaBlock[];
  finalNorm: Float32Array; // [dim]
  /** [vocab, dim]; the same array as `embedding` when tied. */
  classifier: Float32Array;
  /** The RoPE cos/sin tables stored in a llama2.c file ([maxSeqLen, head/2] each), when the
   * model was read from one: unused by the forward pass, written back unchanged. */
  llama2cRope?: [Float32Array, Float32Array];
  /** The tokenizer.* entries of the GGUF file the model was read from: the model's tokenizer
   * (formats/gguf-tokenizer.ts), and the vocabulary a GGUF written from it carries unchanged. */
  ggufVocabulary?: GgufMetadata;
}

