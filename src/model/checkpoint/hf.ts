// Hugging Face Llama checkpoints: config.json + one or more safetensors shards, weights named
// model.layers.N.*. HF stores q/k rows in the half-split RoPE layout, so models read here
// carry ropeStyle 'half'; models with 'interleaved' rows are permuted on write.
import { FormatError, OptionError, ShapeError } from '../../core/errors.js';
import { LINEAR_NAMES, linearShape, type LinearName, type LlamaBlock, type LlamaConfig, type LlamaModel } from '../types.js';
import { checkModelShapes } from './shapes.js';
import { permuteRopeRows } from './rope.js';
import { parseSafetensors, readTensorF32, writeSafetensors, type SafetensorsFile, type TensorToWrite } from '../../formats/safetensors.js';

export { permuteRopeRows };

const LINEAR_PREFIX: Record<LinearName, string> = {
  q_proj: 'self_attn', k_proj: 'self_attn', v_proj: 'self_attn', o_proj: 'self_attn',
  gate_proj: 'mlp', up_proj: 'mlp', down_proj: 'mlp',
};

export const hfLinearName = (layer: number, name: LinearName) => `model.layers.${layer}.${LINEAR_PREFIX[name]}.${name}.weight`;

function configFromJson(text: string): LlamaConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`config.json is not valid JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new FormatError('config.json must be a JSON object');
  const cfg = raw as Record<string, unknown>;
  const int = (key: string, fallback?: number): number => {
    const v = cfg[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new FormatError(`config.json: ${key} = ${JSON.stringify(cfg[key])} must be a positive integer`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = cfg[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new FormatError(`config.json: ${key} = ${JSON.stringify(cfg[key])} must be a positive number`);
    return v;
  };
  if (cfg.model_type !== undefined && cfg.model_type !== 'llama') {
    throw new FormatError(`config.json: model_type "${String(cfg.model_type)}" is not "llama"`);
  }
  // The in-memory model has no place for these, so a checkpoint using them would silently run wrong.
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') throw new FormatError(`config.json: hidden_act "${String(cfg.hidden_act)}" is not supported (silu only)`);
  if (cfg.rope_scaling != null) throw new FormatError('config.json: rope_scaling is not supported');
  if (cfg.attention_bias === true || cfg.mlp_bias === true) throw new FormatError('config.json: attention/MLP biases are not supported');
  const dim = int('hidden_size');
  const nHeads = int('num_attention_heads');
  const nKvHeads = int('num_key_value_heads', nHeads);
  if (dim % nHeads !== 0) throw new FormatError(`config.json: hidden_size ${dim} is not divisible by num_attention_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) throw new FormatError(`config.json: num_attention_heads ${nHeads} is not divisible by num_key_value_heads ${nKvHeads}`);
  if (cfg.head_dim != null && cfg.head_dim !== dim / nHeads) {
    throw new FormatError(`config.json: head_dim ${String(cfg.head_dim)} differs from hidden_size / num_attention_heads = ${dim / nHeads} (not supported)`);
  }
  if ((dim / nHeads) % 2 !== 0) throw new FormatError(`config.json: head size ${dim / nHeads} is odd; RoPE needs pairs`);
  const tie = cfg.tie_word_embeddings ?? false; // LlamaConfig's default
  if (typeof tie !== 'boolean') throw new FormatError('config.json: tie_word_embeddings must be a boolean');
  return {
    dim,
    hiddenDim: int('intermediate_size'),
    nLayers: int('num_hidden_layers'),
    nHeads,
    nKvHeads,
    vocabSize: int('vocab_size'),
    maxSeqLen: int('max_position_embeddings'),
    normEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    ropeStyle: 'half',
    tiedEmbeddings: tie,
  };
}

/** Reads a Hugging Face Llama checkpoint (one or more shards; F32/F16/BF16/F64 tensors, widened to float32). */
export function readHfLlama(files: { config: string; safetensors: Uint8Array | Uint8Array[] }): LlamaModel {
  const config = configFromJson(files.config);
  const shards = files.safetensors instanceof Uint8Array ? [files.safetensors] : files.safetensors;
  if (!Array.isArray(shards) || shards.length === 0) throw new FormatError('no safetensors shards given');
  const where = new Map<string, { file: SafetensorsFile; bytes: Uint8Array }>();
  shards.forEach((bytes, i) => {
    const file = parseSafetensors(bytes);
    for (const name of file.tensors.keys()) {
      if (where.has(name)) throw new FormatError(`tensor "${name}" appears in more than one shard (second in shard ${i})`);
      where.set(name, { file, bytes });
    }
  });
  const get = (name: string, shape: number[]): Float32Array => {
    const hit = where.get(name);
    if (!hit) throw new FormatError(`missing tensor "${name}"`);
    const got = hit.file.tensors.get(name)!.shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new ShapeError(`tensor "${name}" has shape [${got.join(', ')}], config implies [${shape.join(', ')}]`);
    }
    return readTensorF32(hit.file, hit.bytes, name);
  };
  const { dim, vocabSize, nLayers } = config;
  const embedding = get('model.embed_tokens.weight', [vocabSize, dim]);
  const blocks: LlamaBlock[] = [];
  for (let l = 0; l < nLayers; l++) {
    const linear = {} as Record<LinearName, Float32Array>;
    for (const name of LINEAR_NAMES) linear[name] = get(hfLinearName(l, name), linearShape(config, name));
    blocks.push({
      attnNorm: get(`model.layers.${l}.input_layernorm.weight`, [dim]),
      ffnNorm: get(`model.layers.${l}.post_attention_layernorm.weight`, [dim]),
      linear,
    });
  }
  const finalNorm = get('model.norm.weight', [dim]);
  // With tied embeddings transformers ignores any lm_head.weight in the file, and so do we.
  const classifier = config.tiedEmbeddings ? embedding : get('lm_head.weight', [vocabSize, dim]);
  return { config, embedding, blocks, finalNorm, classifier };
}

export type HfDtype = 'F32' | 'F16' | 'BF16';

/** config.json text for `config` (with the fields transformers needs to build LlamaForCausalLM). */
export function hfConfigJson(config: LlamaConfig, dtype: HfDtype = 'F32'): string {
  return JSON.stringify(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: config.dim,
      intermediate_size: config.hiddenDim,
      num_hidden_layers: config.nLayers,
      num_attention_heads: config.nHeads,
      num_key_value_heads: config.nKvHeads,
      vocab_size: config.vocabSize,
      max_position_embeddings: config.maxSeqLen,
      rms_norm_eps: config.normEps,
      rope_theta: config.ropeTheta,
      hidden_act: 'silu',
      tie_word_embeddings: config.tiedEmbeddings,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype],
    },
    null,
    2,
  );
}

/**
 * Writes `model` as a Hugging Face Llama checkpoint (one shard). `metadata` is merged over
 * {format: 'pt'}, which transformers requires to load the file.
 */
export function writeHfLlama(
  model: LlamaModel, dtype: HfDtype, metadata?: Record<string, string>,
): { config: string; safetensors: Uint8Array } {
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') throw new OptionError(`writeHfLlama: dtype must be F32, F16 or BF16, not ${String(dtype)}`);
  const c = model.config;
  checkModelShapes(model);
  const toHalf = c.ropeStyle === 'interleaved';
  const kvDim = (c.dim / c.nHeads) * c.nKvHeads;
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], data: Float32Array) => tensors.push({ name, dtype, shape, data });
  add('model.embed_tokens.weight', [c.vocabSize, c.dim], model.embedding);
  add('model.norm.weight', [c.dim], model.finalNorm);
  model.blocks.forEach((b, l) => {
    add(`model.layers.${l}.input_layernorm.weight`, [c.dim], b.attnNorm);
    add(`model.layers.${l}.post_attention_layernorm.weight`, [c.dim], b.ffnNorm);
    for (const name of LINEAR_NAMES) {
      let w = b.linear[name];
      if (toHalf && name === 'q_proj') w = permuteRopeRows(w, c.nHeads, c.dim, c.dim, 'toHalf');
      if (toHalf && name === 'k_proj') w = permuteRopeRows(w, c.nKvHeads, kvDim, c.dim, 'toHalf');
      add(hfLinearName(l, name), linearShape(c, name), w);
    }
  });
  if (!c.tiedEmbeddings) add('lm_head.weight', [c.vocabSize, c.dim], model.classifier);
  return {
    config: hfConfigJson(c, dtype),
    safetensors: writeSafetensors(tensors, { format: 'pt', ...metadata }),
  };
}
