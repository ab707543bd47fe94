// A model as the pipeline reads it: its architecture at once, its weights when they are
// needed, one block at a time. A Hugging Face checkpoint of 8B parameters never sits in memory
// whole: its shards are read at file offsets (Node) or by Blob.slice (browsers), tensor by
// tensor. Small models (llama2.c files, checkpoints already in memory) go through the same
// interface.
import { FormatError, ShapeError, assertFinite } from '../core/errors.js';
import { sha256Hex } from '../formats/digest.js';
import type { GgufMetadata } from '../formats/gguf-types.js';
import { bytesSource, type ByteSource } from '../formats/bytes.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../formats/half.js';
import { readU16LE } from '../formats/bytes.js';
import { readSafetensorsHeader, readTensorBytesFrom, readTensorF32From, type SafetensorsFile } from '../formats/safetensors.js';
import { parseHfConfig, type HfDtype } from './checkpoint/hf-config.js';
import { hfTensors, slotArray, type HfSlot } from './checkpoint/hf.js';
import { linearShape } from './arch.js';
import type { LlamaBlock, LlamaConfig, LlamaModel } from './types.js';

/** Rows of the token embedding on demand: a vocabulary of 128k x 4096 need not be float32 in
 * memory (rows are widened from the checkpoint's dtype when asked: bit manipulation only). */
export interface EmbeddingTable {
  readonly vocab: number;
  readonly dim: number;
  /** Writes row `id` (float32) into `out` (length dim). */
  row(id: number, out: Float32Array): void;
}

export type ModelKind = 'llama2c' | 'hf' | 'gptq' | 'gguf';

export interface LazyModel {
  readonly config: LlamaConfig;
  readonly kind: ModelKind;
  /** The dtype the checkpoint stores its weights in (F32 for llama2.c). */
  readonly dtype: HfDtype;
  /** A digest of the checkpoint (config, headers and sizes; the bytes for small files), for
   * provenance and resume keys. */
  fingerprint(): Promise<string>;
  embedding(): Promise<EmbeddingTable>;
  finalNorm(): Promise<Float32Array>;
  /** The classifier [vocab, dim] (the embedding's values when tied): only evaluation needs it. */
  classifier(): Promise<Float32Array>;
  /** Block `layer`'s weights (float32), read now. */
  block(layer: number): Promise<LlamaBlock>;
  /** One tensor of the Hugging Face layout (float32, in the model's own row order), read now;
   * with `rows` [r0, r1), only those rows of a 2-D tensor. Writers go tensor by tensor, and
   * through the embedding and the classifier by rows, so a write holds one tensor or a chunk
   * of rows, never a whole block. */
  tensor(slot: HfSlot, rows?: RowRange): Promise<Float32Array>;
  /** The whole model in memory (small models, writers of small formats). */
  load(): Promise<LlamaModel>;
  /** llama2.c's stored RoPE tables, written back unchanged. */
  readonly llama2cRope?: [Float32Array, Float32Array];
  /** A GGUF file's tokenizer.* entries: its tokenizer, carried into GGUF outputs. */
  readonly ggufVocabulary?: GgufMetadata;
}

/** Rows [r0, r1) of a 2-D tensor. */
export type RowRange = readonly [number, number];

/** Checks `rows` against a tensor of `count` rows; [0, count) when absent. */
export function checkRows(rows: RowRange | undefined, count: number, what: string): RowRange {
  if (!rows) return [0, count];
  const [r0, r1] = rows;
  if (!Number.isSafeInteger(r0) || !Number.isSafeInteger(r1) || r0 < 0 || r1 < r0 || r1 > count) {
    throw new ShapeError(`${what}: rows [${r0}, ${r1}) are not within its ${count} rows`);
  }
  return rows;
}

/** Rows [r0, r1) of `values`, a [count, values.length / count] array (a view, no copy). */
export function rowsOf(values: Float32Array, count: number, rows: RowRange | undefined, what: string): Float32Array {
  if (!rows) return values;
  const [r0, r1] = checkRows(rows, count, what);
  const width = values.length / count;
  return values.subarray(r0 * width, r1 * width);
}

/** Rows of a tensor: the first dimension of a 2-D one (a 1-D one is one row). */
const rowCount = (config: LlamaConfig, slot: HfSlot): number =>
  slot.kind === 'embedding' || slot.kind === 'classifier' ? config.vocabSize : slot.kind === 'linear' ? linearShape(config, slot.name)[0] : 1;

/** Whether two slots name the same tensor. */
export function sameSlot(a: HfSlot, b: HfSlot): boolean {
  if (a.kind !== b.kind) return false;
  if ('layer' in a && 'layer' in b && a.layer !== b.layer) return false;
  if (a.kind === 'norm' && b.kind === 'norm') return a.field === b.field;
  if ((a.kind === 'linear' || a.kind === 'bias') && (b.kind === 'linear' || b.kind === 'bias')) return a.name === b.name;
  return true;
}

/** An EmbeddingTable over a float32 [vocab, dim] array. */
export function f32Embedding(values: Float32Array, vocab: number, dim: number): EmbeddingTable {
  if (values.length !== vocab * dim) throw new ShapeError(`embedding has ${values.length} values, expected ${vocab} x ${dim}`);
  return { vocab, dim, row: (id, out) => out.set(values.subarray(id * dim, (id + 1) * dim)) };
}

/** An EmbeddingTable over raw little-endian F32/F16/BF16 bytes, widened a row at a time. */
export function rawEmbedding(bytes: Uint8Array, dtype: string, vocab: number, dim: number): EmbeddingTable {
  const size = dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 0;
  if (!size) throw new FormatError(`the embedding's dtype ${dtype} is not F32, F16 or BF16`);
  if (bytes.length !== vocab * dim * size) throw new ShapeError(`embedding holds ${bytes.length} bytes, expected ${vocab} x ${dim} x ${size}`);
  const rowBytes = dim * size;
  return {
    vocab,
    dim,
    row(id, out) {
      const b = bytes.subarray(id * rowBytes, (id + 1) * rowBytes);
      if (dtype === 'F32') out.set(new Float32Array(b.slice().buffer));
      else {
        const bits = readU16LE(b, 0, dim);
        out.set(dtype === 'F16' ? f16ArrayToF32(bits) : bf16ArrayToF32(bits));
      }
    },
  };
}

/** A model already in memory (a llama2.c file, a GPTQ checkpoint read back, tests). */
export function memoryModel(model: LlamaModel, kind: ModelKind, dtype: HfDtype, digest: () => Promise<string>): LazyModel {
  const { config } = model;
  return {
    config,
    kind,
    dtype,
    fingerprint: digest,
    embedding: async () => f32Embedding(model.embedding, config.vocabSize, config.dim),
    finalNorm: async () => model.finalNorm,
    classifier: async () => model.classifier,
    block: async (layer) => {
      const b = model.blocks[layer];
      if (!b) throw new ShapeError(`the model has no block ${layer}`);
      return b;
    },
    load: async () => model,
    tensor: async (slot, rows) => {
      const values = slotArray(model, slot);
      if (!values) throw new ShapeError(`the model has no tensor for ${JSON.stringify(slot)}`);
      return rowsOf(values, rowCount(config, slot), rows, JSON.stringify(slot));
    },
    ...(model.llama2cRope ? { llama2cRope: model.llama2cRope } : {}),
    ...(model.ggufVocabulary ? { ggufVocabulary: model.ggufVocabulary } : {}),
  };
}

/** One file of a checkpoint: its name (for messages and index.json) and its bytes. */
export interface NamedSource {
  name: string;
  source: ByteSource;
}

/** Where each tensor of a sharded checkpoint lives. */
interface Located {
  shard: NamedSource;
  file: SafetensorsFile;
}

/** Float dtypes the readers widen to float32. */
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/**
 * A Hugging Face checkpoint read lazily: config.json, its safetensors shards (one file, or the
 * shards `model.safetensors.index.json` lists), tokenizer files elsewhere. Every header is read
 * and checked against the config now (names, shapes, dtypes, shards of the index), so a broken
 * checkpoint is refused before any work; tensor data is read block by block.
 */
export async function openHfModel(files: { config: string; shards: NamedSource[]; index?: string; where?: string }): Promise<LazyModel> {
  const where = files.where ?? 'the checkpoint';
  const config = parseHfConfig(files.config);
  if (files.shards.length === 0) throw new FormatError(`${where}: no .safetensors files`);
  const located = new Map<string, Located>();
  const headers: string[] = [];
  for (const shard of files.shards) {
    const file = await readSafetensorsHeader(shard.source, shard.name);
    headers.push(`${shard.name}:${shard.source.size}:${JSON.stringify([...file.tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.byteOffset]))}`);
    for (const name of file.tensors.keys()) {
      const seen = located.get(name);
      if (seen) throw new FormatError(`${where}: tensor "${name}" is in both ${seen.shard.name} and ${shard.name}`);
      located.set(name, { shard, file });
    }
  }
  if (files.index !== undefined) checkIndex(files.index, located, where);
  const tensors = hfTensors(config);
  const dtypes = new Set<string>();
  for (const t of tensors) {
    const hit = located.get(t.name);
    // With tied embeddings transformers ignores any lm_head.weight in the file, and so do we.
    if (!hit) throw new FormatError(`${where}: missing tensor "${t.name}" (${config.family ?? 'llama'} checkpoint with ${config.nLayers} layers)`);
    const info = hit.file.tensors.get(t.name)!;
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
      throw new ShapeError(`${where}: tensor "${t.name}" in ${hit.shard.name} has shape [${info.shape.join(', ')}], config.json implies [${t.shape.join(', ')}]`);
    }
    if (!FLOAT_DTYPES.has(info.dtype)) throw new FormatError(`${where}: tensor "${t.name}" in ${hit.shard.name} has dtype ${info.dtype}; weights must be F32, F16 or BF16`);
    if (t.slot.kind === 'linear') dtypes.add(info.dtype);
  }
  const dtype: HfDtype = dtypes.has('BF16') ? 'BF16' : dtypes.has('F16') ? 'F16' : 'F32';
  // Read at offsets, each tensor is checked as readHfModel checks the whole model: a NaN or
  // infinite weight is refused here, naming it, not met later as a NaN perplexity.
  const read = async (name: string) => {
    const hit = located.get(name)!;
    const values = await readTensorF32From(hit.file, hit.shard.source, name);
    assertFinite(values, `${where}: tensor "${name}"`);
    return values;
  };
  const bySlot = (test: (s: HfSlot) => boolean) => tensors.filter((t) => test(t.slot));
  const embeddingName = bySlot((s) => s.kind === 'embedding')[0].name;
  const model: LazyModel = {
    config,
    kind: 'hf',
    dtype,
    fingerprint: () => sha256Hex(new TextEncoder().encode([files.config, ...headers].join('\n'))),
    async embedding() {
      const hit = located.get(embeddingName)!;
      const info = hit.file.tensors.get(embeddingName)!;
      const raw = await readTensorBytesFrom(hit.file, hit.shard.source, embeddingName);
      if (info.dtype === 'F64') return f32Embedding(await read(embeddingName), config.vocabSize, config.dim);
      const table = rawEmbedding(raw, info.dtype, config.vocabSize, config.dim);
      const row = new Float32Array(config.dim);
      for (let id = 0; id < config.vocabSize; id++) {
        table.row(id, row);
        assertFinite(row, `${where}: tensor "${embeddingName}" row ${id}`);
      }
      return table;
    },
    finalNorm: () => read(bySlot((s) => s.kind === 'finalNorm')[0].name),
    classifier: () => read(config.tiedEmbeddings ? embeddingName : bySlot((s) => s.kind === 'classifier')[0].name),
    async block(layer) {
      if (!Number.isInteger(layer) || layer < 0 || layer >= config.nLayers) throw new ShapeError(`the model has no block ${layer}`);
      const block: LlamaBlock = { attnNorm: new Float32Array(0), ffnNorm: new Float32Array(0), linear: {} };
      for (const t of bySlot((s) => 'layer' in s && s.layer === layer)) {
        const data = await read(t.name);
        const s = t.slot;
        if (s.kind === 'norm') block[s.field] = data;
        else if (s.kind === 'linear') block.linear[s.name] = data;
        else if (s.kind === 'bias') (block.bias ??= {})[s.name] = data;
      }
      return block;
    },
    async tensor(slot, rows) {
      const t = tensors.find((x) => sameSlot(x.slot, slot.kind === 'classifier' && config.tiedEmbeddings ? { kind: 'embedding' } : slot));
      if (!t) throw new ShapeError(`${where}: the checkpoint has no tensor for ${JSON.stringify(slot)}`);
      if (!rows) return read(t.name);
      const [r0, r1] = checkRows(rows, t.shape[0], `${where}: tensor "${t.name}"`);
      const hit = located.get(t.name)!;
      const info = hit.file.tensors.get(t.name)!;
      // The rows' bytes alone, read as a tensor of their own (rows are contiguous).
      const rowBytes = info.byteLength / info.shape[0];
      const part = { ...info, shape: [r1 - r0, ...info.shape.slice(1)], byteOffset: info.byteOffset + r0 * rowBytes, byteLength: (r1 - r0) * rowBytes };
      const values = await readTensorF32From({ ...hit.file, tensors: new Map([[t.name, part]]) }, hit.shard.source, t.name);
      assertFinite(values, `${where}: tensor "${t.name}" rows [${r0}, ${r1})`);
      return values;
    },
    async load() {
      const blocks: LlamaBlock[] = [];
      for (let l = 0; l < config.nLayers; l++) blocks.push(await model.block(l));
      const embedding = await read(embeddingName);
      return {
        config,
        embedding,
        blocks,
        finalNorm: await model.finalNorm(),
        classifier: config.tiedEmbeddings ? embedding : await model.classifier(),
      };
    },
  };
  return model;
}

/** model.safetensors.index.json: every tensor it maps must be in the shard it names. */
function checkIndex(text: string, located: Map<string, Located>, where: string): void {
  let index: unknown;
  try {
    index = JSON.parse(text);
  } catch {
    throw new FormatError(`${where}: model.safetensors.index.json is not valid JSON`);
  }
  const map = (index as { weight_map?: unknown })?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new FormatError(`${where}: model.safetensors.index.json has no weight_map object`);
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    const hit = located.get(name);
    if (!hit) throw new FormatError(`${where}: model.safetensors.index.json maps "${name}" to ${String(shard)}, which is missing or does not hold it`);
    if (typeof shard !== 'string' || baseName(hit.shard.name) !== shard) {
      throw new FormatError(`${where}: model.safetensors.index.json maps "${name}" to ${String(shard)}, but it is in ${baseName(hit.shard.name)}`);
    }
  }
}

export const baseName = (name: string) => name.slice(name.lastIndexOf('/') + 1);

/** A checkpoint held in memory as bytes, opened like a lazy one (the page, tests). */
export function memorySources(files: { name: string; bytes: Uint8Array }[]): NamedSource[] {
  return files.map((f) => ({ name: f.name, source: bytesSource(f.bytes) }));
}
