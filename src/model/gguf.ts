// The Llama-family model <-> GGUF, as llama.cpp's convert_hf_to_gguf.py writes it and
// llama.cpp loads it (src/models/llama.cpp):
//   tensors   token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
//             ffn_gate, ffn_up, ffn_down}, output_norm, output (absent when tied: llama.cpp
//             then uses token_embd), all ".weight"; 1-D norms always F32
//   metadata  general.*, then {arch}.* hyperparameters, then anything the caller adds (the
//             tokenizer), in the converter's order
//   q/k rows  the layout of the architecture's RoPE: llama.cpp's `llama` uses "normal" RoPE on
//             adjacent pairs, so Hugging Face's half-split rows are permuted back
//             (LlamaModel.permute in the converter), llama2.c's interleaved rows go as they are
// The per-architecture differences live in GGUF_FAMILIES so Mistral, Qwen2/3, Gemma 3 and
// Phi-3 can be added as rows.
import { FormatError, OptionError, ShapeError, DtypeError } from '../core/errors.js';
import {
  planGguf, writeGguf, readGgufHeader, readTensorData, tensorData, decodeTensor, parseGgufHeader,
  FLOAT_ENCODERS, FLOAT_DECODERS, GGML_TYPES,
  type GgmlType, type GgmlEncoder, type GgmlDecoder, type GgufFile, type GgufPlan, type ByteSource,
} from '../formats/gguf.js';
import type { GgufMetadata, GgufValue } from '../formats/gguf-types.js';
import { LINEAR_NAMES, linearShape, type LinearName, type LlamaConfig, type LlamaModel, type RopeStyle } from './types.js';
import { checkModelShapes, checkModelValues } from './checkpoint/shapes.js';
import { permuteRopeRows } from './checkpoint/rope.js';

/** What a llama.cpp architecture running the Llama block needs from us. */
export interface GgufFamily {
  /** general.architecture, also the prefix of its hyperparameter keys. */
  arch: string;
  /** q/k row layout its RoPE expects: 'interleaved' for llama.cpp's normal RoPE (llama),
   * 'half' for NeoX RoPE (qwen2, qwen3, gemma3, phi3: their converters do not permute). */
  qkRows: RopeStyle;
}

export const GGUF_FAMILIES: Readonly<Record<string, GgufFamily>> = {
  llama: { arch: 'llama', qkRows: 'interleaved' },
};

/** llama.cpp's tensor names (llama-arch.cpp LLM_TENSOR_NAMES, shared by its architectures). */
export const GGUF_LINEAR: Readonly<Record<LinearName, string>> = {
  q_proj: 'attn_q', k_proj: 'attn_k', v_proj: 'attn_v', o_proj: 'attn_output',
  gate_proj: 'ffn_gate', up_proj: 'ffn_up', down_proj: 'ffn_down',
  // Phi-3's fused layers: llama.cpp keeps them fused (gate and up as one ffn_up of 2 x ff rows).
  qkv_proj: 'attn_qkv', gate_up_proj: 'ffn_up',
};
export const GGUF_EMBEDDING = 'token_embd.weight';
export const GGUF_FINAL_NORM = 'output_norm.weight';
export const GGUF_CLASSIFIER = 'output.weight';
export const ggufBlockName = (layer: number, base: string) => `blk.${layer}.${base}.weight`;

/** llama.cpp's LlamaFileType for a file whose 2-D weights are all of one type (general.file_type). */
const FILE_TYPE: Partial<Record<GgmlType, number>> = {
  F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q5_0: 8, Q5_1: 9, Q2_K: 10, Q3_K: 11, Q4_K: 14, Q5_K: 16, Q6_K: 18,
  IQ4_NL: 25, IQ4_XS: 30, BF16: 32, TQ1_0: 36, TQ2_0: 37,
};

/** gguf-py's GGML_QUANT_VERSION, which the converter writes as general.quantization_version. */
const QUANTIZATION_VERSION = 2;

export interface GgufWriteOptions {
  /** A key of GGUF_FAMILIES (default 'llama'). */
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
  /** Entries appended after the architecture's (the tokenizer's tokenizer.ggml.*). */
  metadata?: GgufMetadata;
}

const u32 = (value: number): GgufValue => ({ type: 'u32', value });
const f32 = (value: number): GgufValue => ({ type: 'f32', value });
const str = (value: string): GgufValue => ({ type: 'string', value });

function familyOf(name: string | undefined): GgufFamily {
  const key = name ?? 'llama';
  const family = Object.prototype.hasOwnProperty.call(GGUF_FAMILIES, key) ? GGUF_FAMILIES[key] : undefined;
  if (!family) throw new OptionError(`GGUF: unknown family "${key}" (known: ${Object.keys(GGUF_FAMILIES).join(', ')})`);
  return family;
}

/** general.* and {arch}.* metadata for `config`, in convert_hf_to_gguf.py's order. */
export function llamaGgufMetadata(config: LlamaConfig, options: GgufWriteOptions = {}): GgufMetadata {
  const family = familyOf(options.family);
  const type = options.type ?? 'F32';
  const fileType = options.fileType ?? FILE_TYPE[type];
  if (fileType === undefined) throw new OptionError(`GGUF: no general.file_type is known for ${type}; pass fileType`);
  const a = family.arch;
  const head = config.dim / config.nHeads;
  const md: GgufMetadata = new Map([
    ['general.architecture', str(a)],
    ['general.type', str('model')],
    ['general.name', str(options.name ?? 'model')],
    [`${a}.block_count`, u32(config.nLayers)],
    [`${a}.context_length`, u32(config.maxSeqLen)],
    [`${a}.embedding_length`, u32(config.dim)],
    [`${a}.feed_forward_length`, u32(config.hiddenDim)],
    [`${a}.attention.head_count`, u32(config.nHeads)],
    [`${a}.attention.head_count_kv`, u32(config.nKvHeads)],
    [`${a}.rope.freq_base`, f32(config.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, f32(config.normEps)],
    ['general.file_type', u32(fileType)],
    [`${a}.vocab_size`, u32(config.vocabSize)],
    [`${a}.rope.dimension_count`, u32(head)],
    ['general.quantization_version', u32(QUANTIZATION_VERSION)],
  ]);
  for (const [k, v] of options.metadata ?? []) {
    if (md.has(k)) throw new OptionError(`GGUF: metadata "${k}" is written from the model config; do not pass it again`);
    md.set(k, v);
  }
  return md;
}

/** Where a GGUF tensor lives in a LlamaModel. */
type Slot =
  | { kind: 'embedding' | 'finalNorm' | 'classifier' }
  | { kind: 'attnNorm' | 'ffnNorm'; layer: number }
  | { kind: 'linear'; layer: number; linear: LinearName };

interface TensorEntry {
  name: string;
  /** PyTorch order ([rows, cols]; 1-D: [n]); GGUF dims are its reverse. */
  shape: number[];
  slot: Slot;
}

/** Every tensor of a model of `config`, in file order, under its GGUF name. Both directions
 * go through this one table. */
function tensorTable(c: LlamaConfig): TensorEntry[] {
  const out: TensorEntry[] = [{ name: GGUF_EMBEDDING, shape: [c.vocabSize, c.dim], slot: { kind: 'embedding' } }];
  for (let layer = 0; layer < c.nLayers; layer++) {
    out.push({ name: ggufBlockName(layer, 'attn_norm'), shape: [c.dim], slot: { kind: 'attnNorm', layer } });
    for (const linear of LINEAR_NAMES) {
      if (linear === 'gate_proj') out.push({ name: ggufBlockName(layer, 'ffn_norm'), shape: [c.dim], slot: { kind: 'ffnNorm', layer } });
      out.push({ name: ggufBlockName(layer, GGUF_LINEAR[linear]), shape: linearShape(c, linear), slot: { kind: 'linear', layer, linear } });
    }
  }
  out.push({ name: GGUF_FINAL_NORM, shape: [c.dim], slot: { kind: 'finalNorm' } });
  // The converter writes output.weight only when the checkpoint has an lm_head; llama.cpp
  // falls back to token_embd without it.
  if (!c.tiedEmbeddings) out.push({ name: GGUF_CLASSIFIER, shape: [c.vocabSize, c.dim], slot: { kind: 'classifier' } });
  return out;
}

/** Moves q/k rows between RoPE layouts (other tensors pass through). */
function qkRows(w: Float32Array, slot: Slot, c: LlamaConfig, from: RopeStyle, to: RopeStyle): Float32Array {
  if (from === to || slot.kind !== 'linear' || (slot.linear !== 'q_proj' && slot.linear !== 'k_proj')) return w;
  const heads = slot.linear === 'q_proj' ? c.nHeads : c.nKvHeads;
  return permuteRopeRows(w, heads, heads * (c.dim / c.nHeads), c.dim, to === 'half' ? 'toHalf' : 'toInterleaved');
}

function tensorOf(model: LlamaModel, slot: Slot): Float32Array {
  switch (slot.kind) {
    case 'embedding': return model.embedding;
    case 'finalNorm': return model.finalNorm;
    case 'classifier': return model.classifier;
    case 'attnNorm': return model.blocks[slot.layer].attnNorm;
    case 'ffnNorm': return model.blocks[slot.layer].ffnNorm;
    case 'linear': return model.blocks[slot.layer].linear[slot.linear];
  }
}

/** A planned GGUF file for `model` and the bytes of each tensor, computed when asked for. */
export interface LlamaGgufPlan {
  plan: GgufPlan;
  /** Bytes of plan.tensors[index] (permuted and encoded now; nothing is kept). */
  tensorBytes(index: number): Uint8Array;
}

/**
 * Lays out `model` as a GGUF file without encoding any tensor: write `plan.header`, then each
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
  const family = familyOf(options.family);
  const type = options.type ?? 'F32';
  if (!Object.prototype.hasOwnProperty.call(GGML_TYPES, type)) throw new DtypeError(`GGUF: unknown ggml type ${String(type)}`);
  const encoders = { ...FLOAT_ENCODERS, ...options.encoders };
  const sources = tensorTable(c);
  const descriptors = sources.map((s) => {
    const dims = [...s.shape].reverse(); // ggml order: row length first
    const t: GgmlType = s.shape.length === 1 ? 'F32' : options.typeOf?.(s.name, dims) ?? type;
    if (!encoders[t]) throw new DtypeError(`GGUF: no encoder for ${t} (tensor "${s.name}"); pass one in options.encoders`);
    return { name: s.name, dims, type: t };
  });
  const plan = planGguf(llamaGgufMetadata(c, options), descriptors);
  return {
    plan,
    tensorBytes(index: number): Uint8Array {
      const s = sources[index];
      const info = plan.tensors[index];
      if (!s || !info) throw new OptionError(`GGUF: no tensor #${index}`);
      const rows = s.shape.length === 1 ? 1 : s.shape[0];
      const values = qkRows(tensorOf(model, s.slot), s.slot, c, c.ropeStyle, family.qkRows);
      const bytes = encoders[info.type]!(values, rows, info.dims[0]);
      if (bytes.length !== info.byteLength) throw new ShapeError(`GGUF: the ${info.type} encoder gave ${bytes.length} bytes for "${info.name}", expected ${info.byteLength}`);
      return bytes;
    },
  };
}

/** Streams `model` as GGUF to `sink`, one tensor in memory at a time. */
export async function writeLlamaGgufStream(model: LlamaModel, sink: (chunk: Uint8Array) => void | Promise<void>, options: GgufWriteOptions = {}): Promise<void> {
  const { plan, tensorBytes } = planLlamaGguf(model, options);
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
  /** q/k row layout of the returned model (default: the file's, so no row moves). */
  ropeStyle?: RopeStyle;
  /** Decoders for types beyond F32/F16/BF16. */
  decoders?: Partial<Record<GgmlType, GgmlDecoder>>;
  /** readLlamaGguf: bytes of the first header read (see readGgufHeader). */
  firstRead?: number;
}

const INTEGER_TYPES = new Set(['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'u64', 'i64']);

function metaInt(md: GgufMetadata, key: string, fallback?: number): number {
  const v = md.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`GGUF: metadata "${key}" is missing`);
  }
  if (!INTEGER_TYPES.has(v.type)) throw new FormatError(`GGUF: metadata "${key}" is ${v.type === 'array' ? 'an array (per-layer values are not supported)' : `a ${v.type}`}, expected an integer`);
  const n = Number(v.value);
  if (!Number.isSafeInteger(n) || n <= 0 || n > 0x7fffffff) throw new FormatError(`GGUF: metadata "${key}" = ${String(v.value)} must be a positive 32-bit integer`);
  return n;
}

function metaFloat(md: GgufMetadata, key: string, fallback?: number): number {
  const v = md.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`GGUF: metadata "${key}" is missing`);
  }
  if (v.type !== 'f32' && v.type !== 'f64') throw new FormatError(`GGUF: metadata "${key}" is a ${v.type}, expected a float`);
  if (!(v.value > 0) || !Number.isFinite(v.value)) throw new FormatError(`GGUF: metadata "${key}" = ${v.value} must be a positive number`);
  return v.value;
}

/** The family and LlamaConfig a GGUF header describes; FormatError for what we cannot run. */
export function llamaConfigFromGguf(file: GgufFile): { family: GgufFamily; config: LlamaConfig } {
  const md = file.metadata;
  const archValue = md.get('general.architecture');
  if (!archValue || archValue.type !== 'string') throw new FormatError('GGUF: general.architecture is missing or not a string');
  const family = Object.values(GGUF_FAMILIES).find((f) => f.arch === archValue.value);
  if (!family) throw new FormatError(`GGUF: architecture "${archValue.value}" is not supported (${Object.keys(GGUF_FAMILIES).join(', ')})`);
  const a = family.arch;
  const dim = metaInt(md, `${a}.embedding_length`);
  const nHeads = metaInt(md, `${a}.attention.head_count`);
  const nKvHeads = metaInt(md, `${a}.attention.head_count_kv`, nHeads);
  if (dim % nHeads !== 0) throw new FormatError(`GGUF: ${a}.embedding_length ${dim} is not divisible by head_count ${nHeads}`);
  if (nHeads % nKvHeads !== 0) throw new FormatError(`GGUF: head_count ${nHeads} is not divisible by head_count_kv ${nKvHeads}`);
  const head = dim / nHeads;
  if (head % 2 !== 0) throw new FormatError(`GGUF: head size ${head} is odd; RoPE needs pairs`);
  // The in-memory model has no place for these, so a file using them would silently run wrong.
  for (const key of [`${a}.rope.dimension_count`, `${a}.attention.key_length`, `${a}.attention.value_length`]) {
    if (md.has(key) && metaInt(md, key) !== head) throw new FormatError(`GGUF: ${key} = ${metaInt(md, key)} differs from the head size ${head} (not supported)`);
  }
  const scaling = md.get(`${a}.rope.scaling.type`);
  if (scaling && !(scaling.type === 'string' && scaling.value === 'none')) {
    // String() rather than JSON.stringify: the value may be a bigint (a u64 where a string belongs).
    const shown = scaling.type === 'string' ? JSON.stringify(scaling.value) : `${scaling.type} ${String(scaling.value)}`;
    throw new FormatError(`GGUF: ${a}.rope.scaling.type ${shown} is not supported`);
  }
  const experts = md.get(`${a}.expert_count`);
  if (experts && Number(experts.value) !== 0) throw new FormatError(`GGUF: ${a}.expert_count ${String(experts.value)}: mixture-of-experts models are not supported`);
  const embedding = file.byName.get(GGUF_EMBEDDING);
  if (!embedding) throw new FormatError(`GGUF: tensor "${GGUF_EMBEDDING}" is missing`);
  const vocabSize = metaInt(md, `${a}.vocab_size`, embedding.dims.length === 2 ? embedding.dims[1] : 0);
  const config: LlamaConfig = {
    dim,
    hiddenDim: metaInt(md, `${a}.feed_forward_length`),
    nLayers: metaInt(md, `${a}.block_count`),
    nHeads,
    nKvHeads,
    vocabSize,
    maxSeqLen: metaInt(md, `${a}.context_length`),
    normEps: metaFloat(md, `${a}.attention.layer_norm_rms_epsilon`),
    ropeTheta: metaFloat(md, `${a}.rope.freq_base`, 10000), // llama.cpp's default
    ropeStyle: family.qkRows,
    tiedEmbeddings: !file.byName.has(GGUF_CLASSIFIER),
  };
  return { family, config };
}

/**
 * Checks that `file` holds exactly the tensors of the model its metadata describes, with the
 * right dims and decodable types, before any tensor byte is read.
 */
function checkTensors(file: GgufFile, family: GgufFamily, config: LlamaConfig, decoders: Partial<Record<GgmlType, GgmlDecoder>>): TensorEntry[] {
  // The table of expected tensors grows with the block count: a count the file's tensor infos
  // cannot match (every block has tensors) is refused before the table is built from it.
  if (config.nLayers > file.tensors.length) {
    throw new FormatError(`GGUF: ${family.arch}.block_count ${config.nLayers} exceeds the ${file.tensors.length} tensors the file holds`);
  }
  const table = tensorTable(config);
  for (const { name, shape } of table) {
    const info = file.byName.get(name);
    if (!info) throw new FormatError(`GGUF: tensor "${name}" is missing`);
    const want = [...shape].reverse();
    if (info.dims.length !== want.length || info.dims.some((d, i) => d !== want[i])) {
      throw new ShapeError(`GGUF: tensor "${name}" has dims [${info.dims.join(', ')}], the metadata implies [${want.join(', ')}]`);
    }
    if (!decoders[info.type]) throw new DtypeError(`GGUF: tensor "${name}" has type ${info.type}, which cannot be decoded here (supported: ${Object.keys(decoders).join(', ')})`);
  }
  // A tensor we would not consume (biases, rope_freqs, extra norms) changes what the model computes.
  const names = new Set(table.map((t) => t.name));
  const extra = file.tensors.find((t) => !names.has(t.name));
  if (extra) throw new FormatError(`GGUF: tensor "${extra.name}" is not part of the ${family.arch} model we can run (not supported)`);
  return table;
}

interface ReadPlan {
  config: LlamaConfig;
  family: GgufFamily;
  style: RopeStyle;
  table: TensorEntry[];
  decoders: Partial<Record<GgmlType, GgmlDecoder>>;
}

/** Everything the header says, checked before any tensor byte is read. */
function readPlan(file: GgufFile, options: GgufReadOptions): ReadPlan {
  const { family, config } = llamaConfigFromGguf(file);
  const style = options.ropeStyle ?? family.qkRows;
  if (style !== 'interleaved' && style !== 'half') throw new OptionError(`GGUF: ropeStyle must be 'interleaved' or 'half', not ${String(style)}`);
  const decoders = { ...FLOAT_DECODERS, ...options.decoders };
  return { config, family, style, decoders, table: checkTensors(file, family, config, decoders) };
}

/** The model from its tensors' decoded values (in the file's q/k row layout). */
function assemble(p: ReadPlan, valueOf: (name: string) => Float32Array): LlamaModel {
  const c = p.config;
  const model: LlamaModel = {
    config: { ...c, ropeStyle: p.style },
    embedding: new Float32Array(0),
    blocks: Array.from({ length: c.nLayers }, () => ({ attnNorm: new Float32Array(0), ffnNorm: new Float32Array(0), linear: {} as Record<LinearName, Float32Array> })),
    finalNorm: new Float32Array(0),
    classifier: new Float32Array(0),
  };
  for (const { name, slot } of p.table) {
    const w = qkRows(valueOf(name), slot, c, p.family.qkRows, p.style);
    switch (slot.kind) {
      case 'embedding': model.embedding = w; break;
      case 'finalNorm': model.finalNorm = w; break;
      case 'classifier': model.classifier = w; break;
      case 'attnNorm': model.blocks[slot.layer].attnNorm = w; break;
      case 'ffnNorm': model.blocks[slot.layer].ffnNorm = w; break;
      case 'linear': model.blocks[slot.layer].linear[slot.linear] = w; break;
    }
  }
  if (c.tiedEmbeddings) model.classifier = model.embedding;
  checkModelValues(model, 'GGUF');
  return model;
}

/** A Llama-family model from a whole GGUF file in memory. */
export function llamaFromGguf(bytes: Uint8Array, options: GgufReadOptions = {}): LlamaModel {
  const file = parseGgufHeader(bytes);
  const p = readPlan(file, options);
  return assemble(p, (name) => {
    const info = file.byName.get(name)!;
    return decodeTensor(info, tensorData(file, bytes, info), p.decoders);
  });
}

/** A Llama-family model from a GGUF file read at offsets: the header, then one tensor at a time. */
export async function readLlamaGguf(source: ByteSource, options: GgufReadOptions = {}): Promise<LlamaModel> {
  const file = await readGgufHeader(source, options.firstRead === undefined ? {} : { firstRead: options.firstRead });
  const p = readPlan(file, options);
  const values = new Map<string, Float32Array>();
  for (const { name } of p.table) {
    const info = file.byName.get(name)!;
    values.set(name, decodeTensor(info, await readTensorData(source, info), p.decoders));
  }
  return assemble(p, (name) => values.get(name)!);
}
