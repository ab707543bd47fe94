// The in-memory Llama-family model every reader produces and every pipeline stage consumes.
// Weights are float32, row-major, PyTorch's [out, in].

/** How RoPE pairs the dimensions of a head: llama2.c rotates (x[2i], x[2i+1]); Hugging Face's
 * `rotate_half` rotates (x[i], x[i + head/2]). */
export type RopeStyle = 'interleaved' | 'half';

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
}

/** The seven linear layers of a block, in the order sequential quantization visits them. */
export const LINEAR_NAMES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LinearName = (typeof LINEAR_NAMES)[number];

export interface LlamaBlock {
  attnNorm: Float32Array; // [dim]
  ffnNorm: Float32Array; // [dim]
  linear: Record<LinearName, Float32Array>;
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
}

/** [rows, cols] of each linear layer under `config`. */
export function linearShape(config: LlamaConfig, name: LinearName): [number, number] {
  const head = config.dim / config.nHeads;
  const kv = head * config.nKvHeads;
  switch (name) {
    case 'q_proj': case 'o_proj': return [config.dim, config.dim];
    case 'k_proj': case 'v_proj': return [kv, config.dim];
    case 'gate_proj': case 'up_proj': return [config.hiddenDim, config.dim];
    case 'down_proj': return [config.dim, config.hiddenDim];
  }
}
