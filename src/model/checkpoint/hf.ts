// Hugging Face checkpoints of every family in ../arch.ts: config.json (./hf-config.ts) + one or
// more safetensors shards, tensors named as transformers names them (model.layers.N.*). HF
// stores q/k rows in the half-split RoPE layout, so models read here carry ropeStyle 'half';
// Llama models with 'interleaved' rows (from llama2.c) are permuted on write.
import { FormatError, OptionError, ShapeError } from '../../core/errors.js';
import type { LinearName, LlamaBlock, LlamaConfig, LlamaModel } from '../types.js';
import { resolveArch } from '../arch.js';
import { checkModelShapes, checkModelValues } from './shapes.js';
import { permuteRopeRows } from './rope.js';
import { parseHfConfig, hfConfigJson, type HfDtype } from './hf-config.js';
import { parseSafetensors, readTensorF32, writeSafetensors, type SafetensorsFile, type TensorToWrite } from '../../formats/safetensors.js';

export { permuteRopeRows, parseHfConfig, hfConfigJson, type HfDtype };

/** Where a tensor of the checkpoint lives in a LlamaModel. */
export type HfSlot =
  | { kind: 'embedding' | 'finalNorm' | 'classifier' }
  | { kind: 'norm'; layer: number; field: 'attnNorm' | 'ffnNorm' | 'postAttnNorm' | 'postFfnNorm' | 'qNorm' | 'kNorm' }
  | { kind: 'linear' | 'bias'; layer: number; name: LinearName };

export interface HfTensor {
  name: string;
  shape: number[];
  slot: HfSlot;
}

/** Name of the weight of a linear layer in the Hugging Face layout of `config`'s family. */
export function hfLinearName(layer: number, name: LinearName, config?: LlamaConfig): string {
  const module = config ? resolveArch(config).linears.find((l) => l.name === name)?.module : undefined;
  const m = module ?? (name.endsWith('proj') && ['q_proj', 'k_proj', 'v_proj', 'qkv_proj', 'o_proj'].includes(name) ? 'self_attn' : 'mlp');
  return `model.layers.${layer}.${m}.${name}.weight`;
}

/** Every tensor of the checkpoint of `config`, in the order they are written. */
export function hfTensors(config: LlamaConfig): HfTensor[] {
  const a = resolveArch(config);
  const out: HfTensor[] = [];
  out.push({ name: 'model.embed_tokens.weight', shape: [a.vocab, a.dim], slot: { kind: 'embedding' } });
  out.push({ name: 'model.norm.weight', shape: [a.dim], slot: { kind: 'finalNorm' } });
  for (let l = 0; l < a.nLayers; l++) {
    const p = `model.layers.${l}`;
    const norm = (suffix: string, field: Extract<HfSlot, { kind: 'norm' }>['field'], n = a.dim) => out.push({ name: `${p}.${suffix}.weight`, shape: [n], slot: { kind: 'norm', layer: l, field } });
    norm('input_layernorm', 'attnNorm');
    if (a.sandwichNorms) {
      // Gemma 3: post_attention_layernorm normalizes the attention output; the MLP's input norm
      // is pre_feedforward_layernorm
      norm('post_attention_layernorm', 'postAttnNorm');
      norm('pre_feedforward_layernorm', 'ffnNorm');
      norm('post_feedforward_layernorm', 'postFfnNorm');
    } else norm('post_attention_layernorm', 'ffnNorm');
    if (a.qkNorm) {
      norm('self_attn.q_norm', 'qNorm', a.head);
      norm('self_attn.k_norm', 'kNorm', a.head);
    }
    for (const spec of a.linears) {
      const base = `${p}.${spec.module}.${spec.name}`;
      out.push({ name: `${base}.weight`, shape: [spec.rows, spec.cols], slot: { kind: 'linear', layer: l, name: spec.name } });
      if (spec.bias) out.push({ name: `${base}.bias`, shape: [spec.rows], slot: { kind: 'bias', layer: l, name: spec.name } });
    }
  }
  if (!config.tiedEmbeddings) out.push({ name: 'lm_head.weight', shape: [a.vocab, a.dim], slot: { kind: 'classifier' } });
  return out;
}

/** The array of `model` a slot names (undefined when the model lacks it). */
export function slotArray(model: LlamaModel, slot: HfSlot): Float32Array | undefined {
  switch (slot.kind) {
    case 'embedding': return model.embedding;
    case 'finalNorm': return model.finalNorm;
    case 'classifier': return model.classifier;
    case 'norm': return model.blocks[slot.layer]?.[slot.field];
    case 'linear': return model.blocks[slot.layer]?.linear[slot.name];
    case 'bias': return model.blocks[slot.layer]?.bias?.[slot.name];
  }
}

/** Reads a Hugging Face checkpoint of a supported family (one or more shards; F32/F16/BF16/F64
 * tensors, widened to float32). */
export function readHfModel(files: { config: string; safetensors: Uint8Array | Uint8Array[] }): LlamaModel {
  const config = parseHfConfig(files.config);
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
    if (!hit) throw new FormatError(`missing tensor "${name}" (${config.family ?? 'llama'} checkpoint)`);
    const got = hit.file.tensors.get(name)!.shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new ShapeError(`tensor "${name}" has shape [${got.join(', ')}], config implies [${shape.join(', ')}]`);
    }
    return readTensorF32(hit.file, hit.bytes, name);
  };
  const blocks: LlamaBlock[] = Array.from({ length: config.nLayers }, () => ({ attnNorm: new Float32Array(0), ffnNorm: new Float32Array(0), linear: {} }));
  const model: LlamaModel = { config, embedding: new Float32Array(0), blocks, finalNorm: new Float32Array(0), classifier: new Float32Array(0) };
  for (const t of hfTensors(config)) {
    const data = get(t.name, t.shape);
    const s = t.slot;
    if (s.kind === 'embedding') model.embedding = data;
    else if (s.kind === 'finalNorm') model.finalNorm = data;
    else if (s.kind === 'classifier') model.classifier = data;
    else if (s.kind === 'norm') blocks[s.layer][s.field] = data;
    else if (s.kind === 'linear') blocks[s.layer].linear[s.name] = data;
    else if (s.kind === 'bias') (blocks[s.layer].bias ??= {})[s.name] = data;
  }
  // With tied embeddings transformers ignores any lm_head.weight in the file, and so do we.
  if (config.tiedEmbeddings) model.classifier = model.embedding;
  checkModelValues(model, 'safetensors');
  return model;
}

/** The Llama reader's former name: reads every supported family. */
export const readHfLlama = readHfModel;

/**
 * Writes `model` as a Hugging Face checkpoint of its family (one shard). `metadata` is merged
 * over {format: 'pt'}, which transformers requires to load the file.
 */
export function writeHfModel(
  model: LlamaModel, dtype: HfDtype, metadata?: Record<string, string>,
): { config: string; safetensors: Uint8Array } {
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') throw new OptionError(`writeHfModel: dtype must be F32, F16 or BF16, not ${String(dtype)}`);
  checkModelShapes(model);
  const tensors: TensorToWrite[] = hfTensors(model.config).map((t) => ({ name: t.name, dtype, shape: t.shape, data: hfOrientedArray(model, t.slot) }));
  return {
    config: hfConfigJson(model.config, dtype),
    safetensors: writeSafetensors(tensors, { format: 'pt', ...metadata }),
  };
}

/** The former name of writeHfModel. */
export const writeHfLlama = writeHfModel;

/** The array of a slot as the HF file stores it: q/k rows of interleaved (llama2.c) models are
 * permuted to the half-split layout. */
export function hfOrientedArray(model: LlamaModel, slot: HfSlot): Float32Array {
  const c = model.config;
  const w = slotArray(model, slot)!;
  if (c.ropeStyle !== 'interleaved' || slot.kind !== 'linear') return w;
  const a = resolveArch(c);
  if (slot.name === 'q_proj') return permuteRopeRows(w, c.nHeads, a.qDim, c.dim, 'toHalf');
  if (slot.name === 'k_proj') return permuteRopeRows(w, c.nKvHeads, a.kvDim, c.dim, 'toHalf');
  return w;
}
