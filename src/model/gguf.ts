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
  type GgmlType, type GgmlEncoder, type GgmlDecoder, type GgufFile, type GgufPlan, type GgufTensorInfo, type ByteSource,
} from '../formats/gguf.js';
import type { GgufMetadata, GgufValue } from '../formats/gguf-types.js';
import { LINEAR_NAMES, linearShape, type LinearName, type LlamaBlock, type LlamaConfig, type LlamaModel, type RopeStyle } from './types.js';
import { checkModelShapes } from './checkpoint/shapes.js';
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

interface Source {
  name: string;
  /** PyTorch [rows, cols] (1-D: [n]). */
  shape: number[];
  values: () => Float32Array;
}

/** Every tensor of `model` under its GGUF name, q/k rows already in the family's layout. */
function modelTensors(model: LlamaModel, family: GgufFamily): Source[] {
  const c = model.config;
  const kvDim = (c.dim / c.nHeads) * c.nKvHeads;
  const permute = c.ropeStyle !== family.qkRows;
  const direction = family.qkRows === 'interleaved' ? 'toInterleaved' : 'toHalf';
  const out: Source[] = [{ name: GGUF_EMBEDDING, shape: [c.vocabSize, c.dim], values: () => model.embedding }];
  model.blocks.forEach((b, l) => {
    out.push({ name: ggufBlockName(l, 'attn_norm'), shape: [c.dim], values: () => b.attnNorm });
    for (const n of LINEAR_NAMES) {
      if (n === 'gate_proj') out.push({ name: ggufBlockName(l, 'ffn_norm'), shape: [c.dim], values: () => b.ffnNorm });
      let values = () => b.linear[n];
      if (permute && n === 'q_proj') values = () => permuteRopeRows(b.linear.q_proj, c.nHeads, c.dim, c.dim, direction);
      if (permute && n === 'k_proj') values = () => permuteRopeRows(b.linear.k_proj, c.nKvHeads, kvDim, c.dim, direction);
      out.push({ name: ggufBlockName(l, GGUF_LINEAR[n]), shape: linearShape(c, n), values });
    }
  });
  out.push({ name: GGUF_FINAL_NORM, shape: [c.dim], values: () => model.finalNorm });
  // The converter writes output.weight only when the checkpoint has an lm_head; llama.cpp
  // falls back to token_embd without it.
  if (!c.tiedEmbeddings) out.push({ name: GGUF_CLASSIFIER, shape: [c.vocabSize, c.dim], values: () => model.classifier });
  return out;
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
  const sources = modelTensors(model, family);
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
      const bytes = encoders[info.type]!(s.values(), rows, info.dims[0]);
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
  if (scaling && !(scaling.type === 'string' && scaling.value === 'none')) throw new FormatError(`GGUF: ${a}.rope.scaling.type ${JSON.stringify(scaling.value)} is not supported`);
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

/** Builds the model from a parsed header and a way to get each tensor's values. */
function assemble(file: GgufFile, valuesOf: (info: GgufTensorInfo) => Float32Array, options: GgufReadOptions): LlamaModel {
  const { family, config } = llamaConfigFromGguf(file);
  const c = config;
  const used = new Set<string>();
  const get = (name: string, shape: number[]): Float32Array => {
    const info = file.byName.get(name);
    if (!info) throw new FormatError(`GGUF: tensor "${name}" is missing`);
    const want = [...shape].reverse();
    if (info.dims.length !== want.length || info.dims.some((d, i) => d !== want[i])) {
      throw new ShapeError(`GGUF: tensor "${name}" has dims [${info.dims.join(', ')}], the metadata implies [${want.join(', ')}]`);
    }
    used.add(name);
    return valuesOf(info);
  };
  const kvDim = (c.dim / c.nHeads) * c.nKvHeads;
  const style = options.ropeStyle ?? family.qkRows;
  if (style !== 'interleaved' && style !== 'half') throw new OptionError(`GGUF: ropeStyle must be 'interleaved' or 'half', not ${String(style)}`);
  const direction = style === 'half' ? 'toHalf' : 'toInterleaved';
  const embedding = get(GGUF_EMBEDDING, [c.vocabSize, c.dim]);
  const blocks: LlamaBlock[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const linear = {} as Record<LinearName, Float32Array>;
    for (const n of LINEAR_NAMES) {
      let w = get(ggufBlockName(l, GGUF_LINEAR[n]), linearShape(c, n));
      if (style !== family.qkRows && n === 'q_proj') w = permuteRopeRows(w, c.nHeads, c.dim, c.dim, direction);
      if (style !== family.qkRows && n === 'k_proj') w = permuteRopeRows(w, c.nKvHeads, kvDim, c.dim, direction);
      linear[n] = w;
    }
    blocks.push({ attnNorm: get(ggufBlockName(l, 'attn_norm'), [c.dim]), ffnNorm: get(ggufBlockName(l, 'ffn_norm'), [c.dim]), linear });
  }
  const finalNorm = get(GGUF_FINAL_NORM, [c.dim]);
  const classifier = c.tiedEmbeddings ? embedding : get(GGUF_CLASSIFIER, [c.vocabSize, c.dim]);
  // A tensor we do not consume (biases, rope_freqs, extra norms) changes what the model computes.
  const extra = file.tensors.find((t) => !used.has(t.name));
  if (extra) throw new FormatError(`GGUF: tensor "${extra.name}" is not part of the ${family.arch} model we can run (not supported)`);
  return { config: { ...c, ropeStyle: style }, embedding, blocks, finalNorm, classifier };
}

/** A Llama-family model from a whole GGUF file in memory. */
export function llamaFromGguf(bytes: Uint8Array, options: GgufReadOptions = {}): LlamaModel {
  const file = parseGgufHeader(bytes);
  const decoders = { ...FLOAT_DECODERS, ...options.decoders };
  return assemble(file, (info) => decodeTensor(info, tensorData(file, bytes, info), decoders), options);
}

/** A Llama-family model from a GGUF file read at offsets (the header first, then each tensor). */
export async function readLlamaGguf(source: ByteSource, options: GgufReadOptions = {}): Promise<LlamaModel> {
  const file = await readGgufHeader(source);
  llamaConfigFromGguf(file); // refuse unsupported files before reading any tensor
  const decoders = { ...FLOAT_DECODERS, ...options.decoders };
  // One tensor's raw bytes in memory at a time.
  const values = new Map<string, Float32Array>();
  for (const info of file.tensors) values.set(info.name, decodeTensor(info, await readTensorData(source, info), decoders));
  return assemble(file, (info) => values.get(info.name)!, options);
}
