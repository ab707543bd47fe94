// Writing models as files, tensor by tensor. Every writer streams into an OutputSink (files in
// a staging folder for the CLI, memory for the page), reading the model one tensor at a time
// (LazyModel.tensor; the embedding and the classifier a chunk of rows at a time), so the
// memory a write needs is one tensor, whatever the model's size. Large checkpoints are
// sharded as transformers' save_pretrained shards them (model-0000i-of-0000N.safetensors and
// model.safetensors.index.json).
import { OptionError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { dequantize } from '../core/merge.js';
import { groupSizeLabel, type SolverSpec } from '../core/options.js';
import { packGptq, quantizeConfig, type GptqFormat } from '../formats/gptq.js';
import { encodeTensor, planSafetensors, type TensorLayout, type TensorToWrite, type WritableDtype } from '../formats/safetensors.js';
import { leBytes } from '../formats/bytes.js';
import { resolveArch } from './arch.js';
import { hfConfigJson, hfTensors, hfOrientedArray, permuteRopeRows, type HfDtype, type HfSlot, type HfTensor } from './checkpoint/hf.js';
import { writeLlama2c } from './checkpoint/llama2c.js';
import { HEAD_BLOCK, type QuantizedLinear } from './pipeline.js';
import { layoutGguf, type GgufSlot } from './gguf.js';
import { GGUF_MIXES, type GgufMix } from './gguf-mix.js';
import { writeGguf, type GgmlType } from '../formats/gguf.js';
import type { GgufMetadata } from '../formats/gguf-types.js';
import type { LazyModel } from './source.js';
import type { LinearName, LlamaModel } from './types.js';

export const VERSION = '0.1.0';

export interface OutputWriter {
  write(chunk: Uint8Array | string): Promise<void>;
  close(): Promise<void>;
}

/** Where outputs go: `open(path)` gives a writer for the file at `path` (relative, with '/'). */
export interface OutputSink {
  open(path: string): Promise<OutputWriter>;
}

/** One output file: a path relative to the output folder and its bytes. */
export interface OutputFile {
  path: string;
  data: Uint8Array | string;
}

/** A sink that keeps every file in memory (the page, tests, small models). */
export function memorySink(): OutputSink & { files: OutputFile[] } {
  const files: OutputFile[] = [];
  return {
    files,
    async open(path) {
      const chunks: (Uint8Array | string)[] = [];
      return {
        async write(chunk) {
          chunks.push(typeof chunk === 'string' ? chunk : chunk.slice());
        },
        async close() {
          if (chunks.every((c) => typeof c === 'string')) {
            files.push({ path, data: chunks.join('') });
            return;
          }
          const parts = chunks.map((c) => (typeof c === 'string' ? new TextEncoder().encode(c) : c));
          const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
          let at = 0;
          for (const p of parts) {
            data.set(p, at);
            at += p.length;
          }
          files.push({ path, data });
        },
      };
    },
  };
}

async function writeText(sink: OutputSink, path: string, text: string): Promise<void> {
  const w = await sink.open(path);
  await w.write(text);
  await w.close();
}

/** A tensor to write: its layout, and its bytes when their turn comes, whole (`bytes`) or as
 * consecutive chunks (`chunks`: large tensors, never whole in memory). */
export type TensorEntry = TensorLayout & ({ bytes(): Promise<Uint8Array> } | { chunks(): AsyncIterable<Uint8Array> });

/** transformers' default max_shard_size. */
export const DEFAULT_SHARD_BYTES = 5 * 10 ** 9;

/**
 * Writes `entries` under `dir` as one `model.safetensors`, or, past `maxShardBytes`, as shards
 * with an index, as save_pretrained does. Tensors are produced and written one at a time.
 */
export async function writeSafetensorsShards(
  sink: OutputSink, dir: string, entries: readonly TensorEntry[], metadata: Record<string, string>, maxShardBytes = DEFAULT_SHARD_BYTES,
): Promise<string[]> {
  if (!(maxShardBytes > 0)) throw new OptionError(`maxShardBytes must be positive, got ${maxShardBytes}`);
  const size = (e: TensorEntry) => planSafetensors([e]).sizes[0];
  const shards: TensorEntry[][] = [[]];
  let used = 0;
  for (const e of entries) {
    const n = size(e);
    if (used > 0 && used + n > maxShardBytes) {
      shards.push([]);
      used = 0;
    }
    shards[shards.length - 1].push(e);
    used += n;
  }
  const names = shards.length === 1
    ? ['model.safetensors']
    : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < shards.length; i++) {
    const { header, sizes } = planSafetensors(shards[i], metadata);
    const w = await sink.open(`${dir}/${names[i]}`);
    await w.write(header);
    for (let j = 0; j < shards[i].length; j++) {
      const e = shards[i][j];
      let written = 0;
      const put = async (bytes: Uint8Array) => {
        // checked before the bytes go out, so a file never holds more than its header says
        if (written + bytes.length > sizes[j]) throw new OptionError(`tensor "${e.name}" produced more than the ${sizes[j]} bytes its layout says`);
        await w.write(bytes);
        written += bytes.length;
      };
      if ('chunks' in e) for await (const chunk of e.chunks()) await put(chunk);
      else await put(await e.bytes());
      if (written !== sizes[j]) throw new OptionError(`tensor "${e.name}" produced ${written} bytes, its layout says ${sizes[j]}`);
      weightMap[e.name] = names[i];
      total += written;
    }
    await w.close();
  }
  if (shards.length > 1) {
    await writeText(sink, `${dir}/model.safetensors.index.json`, JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  return names;
}

const encodeAs = (name: string, dtype: WritableDtype, shape: number[], data: TensorToWrite['data']) => encodeTensor({ name, dtype, shape, data });

/** The q/k rows of an interleaved (llama2.c) model as the Hugging Face layout stores them. */
function orient(model: LazyModel, slot: HfSlot, values: Float32Array): Float32Array {
  if (slot.kind !== 'linear') return values;
  const stub = { config: model.config, blocks: { [slot.layer]: { linear: { [slot.name]: values } } } } as unknown as LlamaModel;
  return hfOrientedArray(stub, slot);
}

/** Values written a chunk at a time (16 MB of float32). */
const CHUNK_VALUES = 1 << 22;

/** The tensor `t` of `model` in `dtype`: a matrix a chunk of rows at a time (but the q/k rows
 * of an interleaved-RoPE model, permuted whole: small llama2.c models), every other tensor
 * whole. Encoding is value by value, so the chunks are the bytes of the whole tensor. */
function floatEntry(model: LazyModel, t: HfTensor, dtype: WritableDtype): TensorEntry {
  const { name, shape, slot } = t;
  const permuted = slot.kind === 'linear' && model.config.ropeStyle === 'interleaved';
  if (shape.length === 2 && !permuted) {
    const [rows, cols] = shape;
    const step = Math.max(1, Math.floor(CHUNK_VALUES / cols));
    return {
      name, dtype, shape,
      async *chunks() {
        for (let r0 = 0; r0 < rows; r0 += step) {
          const r1 = Math.min(rows, r0 + step);
          yield encodeAs(name, dtype, [r1 - r0, cols], await model.tensor(slot, [r0, r1]));
        }
      },
    };
  }
  return { name, dtype, shape, bytes: async () => encodeAs(name, dtype, shape, orient(model, slot, await model.tensor(slot))) };
}

/**
 * Writes `model` as a Hugging Face checkpoint of its family under `dir`: config.json and its
 * safetensors (sharded past `maxShardBytes`), weights in `dtype`.
 */
export async function writeHfCheckpoint(
  sink: OutputSink, dir: string, model: LazyModel, dtype: HfDtype, metadata: Record<string, string> = {}, maxShardBytes?: number,
): Promise<void> {
  const entries = hfTensors(model.config).map((t) => floatEntry(model, t, dtype));
  await writeText(sink, `${dir}/config.json`, hfConfigJson(model.config, dtype));
  await writeSafetensorsShards(sink, dir, entries, { format: 'pt', ...metadata }, maxShardBytes);
}

/** A llama2.c file (small models: the format is layer-major, so it is assembled whole). */
export async function writeLlama2cFile(sink: OutputSink, path: string, model: LazyModel): Promise<void> {
  const w = await sink.open(path);
  await w.write(writeLlama2c(await model.load()));
  await w.close();
}

// ------------------------------------------------------------------------------------------
// GPTQ checkpoints

/** What produced a checkpoint: written to safetensors __metadata__ and the quantize config. */
export interface Provenance {
  method: string;
  bits: number;
  groupSize: number;
  sym: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  damp: number;
  clip: string;
  init: string | null;
  refit: number;
  /** The grids' scale format ('f16': solved on the fp16 scales the checkpoint stores, so the
   * dequantized model is exactly what a loader rebuilds; 'f32': rounded only when written). */
  scales?: string;
  calibrationSha256: string;
  nsamples: number;
  seqlen: number;
  /** GGUF runs: the llama.cpp mix and the solver of its codes; null otherwise. */
  gguf?: string | null;
}

/** GPTQ kernels in every common loader need in and out features divisible by 32. */
export function isPackable(rows: number, cols: number): boolean {
  return rows % 32 === 0 && cols % 32 === 0;
}

/** The checkpoint format of a solve: GPTQModel loads an asymmetric v1 checkpoint only if it
 * wrote it, and v1 cannot store a zero of 0, so asymmetric grids go to gptq_v2 (zeros as
 * they are); symmetric ones to v1, which every loader reads. */
export function gptqFormatOf(sym: boolean): GptqFormat {
  return sym ? 'gptq' : 'gptq_v2';
}

/** Row order that takes a llama2.c (interleaved RoPE) q/k layer to Hugging Face's layout. */
function ropeRowOrder(nHeads: number, rows: number): Int32Array {
  const index = Float32Array.from({ length: rows }, (_, i) => i);
  return Int32Array.from(permuteRopeRows(index, nHeads, rows, 1, 'toHalf'));
}

function permuteRows<T extends Uint8Array | Float32Array>(m: T, width: number, order: Int32Array): T {
  const out = m.slice() as T;
  for (let i = 0; i < order.length; i++) out.set(m.subarray(order[i] * width, (order[i] + 1) * width), i * width);
  return out;
}

/** A quantized layer with its rows in the Hugging Face layout (q/k of llama2.c models permuted). */
function orientedLayer(model: LazyModel, layer: QuantizedLinear): QuantizedLinear {
  const c = model.config;
  const heads = layer.name === 'q_proj' ? c.nHeads : layer.name === 'k_proj' ? c.nKvHeads : 0;
  if (c.ropeStyle !== 'interleaved' || !heads) return layer;
  const order = ropeRowOrder(heads, layer.rows);
  return {
    ...layer,
    codes: permuteRows(layer.codes, layer.cols, order),
    scales: permuteRows(layer.scales, layer.groups, order),
    zeros: permuteRows(layer.zeros, layer.groups, order),
  };
}

export interface GptqSummary {
  format: GptqFormat;
  /** Layers stored dense (dequantized) because GPTQ kernels cannot pack their shape. */
  dense: string[];
  /** config.json and quantize_config.json as written. */
  config: string;
  quantizeConfig: string;
}

/**
 * Writes the GPTQ checkpoint of a quantized model under `dir`: qweight/qzeros/scales/g_idx per
 * packable linear layer, every other tensor of the family's layout as the source stores it,
 * config.json (torch_dtype float16, which vLLM's GPTQ kernels require; loaders cast the dense
 * tensors to it) and quantize_config.json. Layers whose shape GPTQ kernels cannot take are
 * written as their dequantized weights (float32: exactly the quantized values) and excluded
 * both through
 * `modules_in_block_to_quantize` (vLLM, transformers) and a `dynamic` negative match (GPTQModel,
 * vLLM), so loaders keep them as ordinary linear layers holding exactly the quantized values.
 */
export async function writeGptqCheckpoint(
  sink: OutputSink, dir: string, source: LazyModel, layersOf: (block: number) => Promise<readonly QuantizedLinear[]>,
  provenance: Provenance, kernel: Kernel, maxShardBytes?: number,
): Promise<GptqSummary> {
  const c = source.config;
  const arch = resolveArch(c);
  const format = gptqFormatOf(provenance.sym);
  const layerOf = async (block: number, name: LinearName) => {
    const layer = (await layersOf(block)).find((l) => l.name === name);
    if (!layer) throw new OptionError(`GPTQ checkpoint: layer ${block}.${name} was not quantized`);
    if (layer.codes.length !== layer.rows * layer.cols) throw new OptionError(`GPTQ checkpoint: layer ${block}.${name} has no codes (quantized with keepLayers: false and no store?)`);
    return orientedLayer(source, layer);
  };
  const entries: TensorEntry[] = [];
  const dense: string[] = [];
  const packed = new Set<LinearName>();
  for (const t of hfTensors(c)) {
    const slot = t.slot;
    if (slot.kind === 'linear') {
      const spec = arch.linears.find((l) => l.name === slot.name)!;
      const prefix = t.name.slice(0, -'.weight'.length);
      if (isPackable(spec.rows, spec.cols)) {
        packed.add(slot.name);
        // The four tensors of one layer, packed once when the first is written.
        let pack: Promise<ReturnType<typeof packGptq>> | null = null;
        const packedLayer = () => (pack ??= layerOf(slot.layer, slot.name).then((l) => packGptq(l, format)));
        const groups = Math.ceil(spec.cols / (provenance.groupSize > 0 && provenance.groupSize < spec.cols ? provenance.groupSize : spec.cols));
        const words = (n: number) => Math.ceil(n / 32) * provenance.bits;
        entries.push(
          { name: `${prefix}.qweight`, dtype: 'I32', shape: [words(spec.cols), spec.rows], bytes: async () => leBytes((await packedLayer()).qweight) },
          { name: `${prefix}.qzeros`, dtype: 'I32', shape: [groups, words(spec.rows)], bytes: async () => leBytes((await packedLayer()).qzeros) },
          { name: `${prefix}.scales`, dtype: 'F16', shape: [groups, spec.rows], bytes: async () => leBytes((await packedLayer()).scales) },
          { name: `${prefix}.g_idx`, dtype: 'I32', shape: [spec.cols], bytes: async () => leBytes((await packedLayer()).g_idx) },
        );
        continue;
      }
      dense.push(t.name);
      entries.push({ name: t.name, dtype: 'F32', shape: t.shape, bytes: async () => leBytes(dequantize(kernel, await layerOf(slot.layer, slot.name))) });
      continue;
    }
    entries.push(floatEntry(source, t, source.dtype));
  }
  // Layers kept dense, as module paths ("model.layers.0.mlp.down_proj"), for the exclusions.
  const denseModules = dense.map((n) => n.slice(0, -'.weight'.length));
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const qc = quantizeConfig({
    bits: provenance.bits,
    groupSize: provenance.groupSize,
    descAct: provenance.actOrder,
    sym: provenance.sym,
    trueSequential: true,
    dampPercent: provenance.damp,
    staticGroups: provenance.staticGroups,
    format,
    extra: {
      quantizer: `cdquant ${VERSION}`,
      cdquant_method: provenance.method,
      cdquant_clip: provenance.clip,
      cdquant_init: provenance.init,
      cdquant_refit: provenance.refit,
      cdquant_scales: provenance.scales ?? 'f32',
      ...(dense.length
        ? {
          modules_in_block_to_quantize: [arch.linears.filter((l) => packed.has(l.name)).map((l) => `${l.module}.${l.name}`)],
          // GPTQModel and vLLM: "-:" + a regex of module names that stay unquantized
          dynamic: Object.fromEntries(denseModules.map((m) => [`-:^${escape(m)}$`, {}])),
          dense_modules: denseModules,
        }
        : {}),
    },
  });
  const config = JSON.parse(hfConfigJson(c, 'F16'));
  config.quantization_config = qc;
  const metadata: Record<string, string> = {
    format: 'pt',
    quantizer: `cdquant ${VERSION}`,
    checkpoint_format: format,
    ...Object.fromEntries(Object.entries(provenance).map(([k, v]) => [`cdquant.${k}`, String(v)])),
  };
  const summary: GptqSummary = { format, dense, config: JSON.stringify(config, null, 2), quantizeConfig: JSON.stringify(qc, null, 2) };
  await writeText(sink, `${dir}/config.json`, summary.config);
  await writeText(sink, `${dir}/quantize_config.json`, summary.quantizeConfig);
  await writeSafetensorsShards(sink, dir, entries, metadata, maxShardBytes);
  return summary;
}

/** The solver spec's fields a GPTQ checkpoint's provenance carries. */
export function provenanceFields(spec: SolverSpec): Pick<Provenance, 'method' | 'bits' | 'groupSize' | 'sym' | 'actOrder' | 'staticGroups' | 'damp' | 'clip' | 'init' | 'refit' | 'scales'> {
  return {
    method: spec.method,
    bits: spec.bits,
    groupSize: groupSizeLabel(spec),
    sym: spec.sym,
    actOrder: spec.actOrder,
    staticGroups: spec.staticGroups,
    damp: spec.damp,
    clip: spec.clip,
    init: spec.init,
    refit: spec.refit,
    scales: spec.scales,
  };
}

// ------------------------------------------------------------------------------------------
// GGUF

export interface GgufSummary {
  mix: string;
  /** Tensors by type: how many, and their bytes. */
  types: Record<string, { tensors: number; bytes: number }>;
  fileBytes: number;
}

/**
 * Writes a model quantized in GGUF mode (quantizeModel's `gguf` option) as one GGUF file:
 * llama.cpp's names, metadata and layout for the family (gguf.ts), the quantized tensors'
 * bytes exactly as the solver optimised them (q/k rows moved to the family's layout as whole
 * rows), every other tensor from the source in float32, and the vocabulary (`vocab`:
 * tokenizer.ggml.*). Streams: one tensor in memory at a time.
 */
export async function writeGgufFile(
  sink: OutputSink, path: string, source: LazyModel, layersOf: (block: number) => Promise<readonly QuantizedLinear[]>,
  mix: GgufMix, vocab: GgufMetadata, options: { name?: string; kernel: Kernel },
): Promise<GgufSummary> {
  const { config } = source;
  const head = HEAD_BLOCK(config);
  const quantized = async (slot: GgufSlot): Promise<QuantizedLinear | undefined> => {
    if (slot.kind === 'linear') return (await layersOf(slot.layer)).find((l) => l.name === slot.name);
    if (slot.kind === 'classifier' || (slot.kind === 'embedding' && config.tiedEmbeddings)) return (await layersOf(head)).find((l) => l.name === 'classifier');
    if (slot.kind === 'embedding') return (await layersOf(head)).find((l) => l.name === 'embedding');
    return undefined;
  };
  // Every 2-D tensor's type is the one it was quantized to.
  const typeOf = new Map<string, GgmlType>();
  const probe = layoutGguf(config, () => 'F32', { kernel: options.kernel });
  for (const t of probe.tensors) {
    if (t.shape.length !== 2) continue;
    const l = await quantized(t.slot);
    if (!l?.gguf) throw new OptionError(`GGUF: tensor ${t.name} was not quantized to a GGUF type (run quantizeModel with the gguf option)`);
    typeOf.set(t.name, l.gguf.type);
  }
  const layout = layoutGguf(config, (name) => typeOf.get(name)!, {
    kernel: options.kernel,
    name: options.name ?? 'model',
    fileType: GGUF_MIXES[mix].fileType,
    metadata: vocab,
  });
  const w = await sink.open(path);
  const summary: GgufSummary = { mix, types: {}, fileBytes: layout.plan.fileSize };
  await writeGguf(layout.plan, async (info, i) => {
    const t = layout.tensors[i];
    const slot = t.slot;
    const count = (summary.types[info.type] ??= { tensors: 0, bytes: 0 });
    count.tensors++;
    count.bytes += info.byteLength;
    const q = t.shape.length === 2 ? await quantized(slot) : undefined;
    if (q?.gguf) {
      const order = layout.rowOrder(i);
      if (!order) return q.gguf.bytes;
      const rowBytes = q.gguf.bytes.length / q.rows;
      const out = new Uint8Array(q.gguf.bytes.length);
      order.forEach((from, to) => out.set(q.gguf!.bytes.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes));
      return out;
    }
    if (slot.kind === 'rope') return layout.encode(i);
    if (slot.kind !== 'finalNorm' && slot.kind !== 'norm' && slot.kind !== 'bias') throw new OptionError(`GGUF: no values for tensor ${t.name}`);
    return layout.encode(i, await source.tensor(slot));
  }, (chunk) => w.write(chunk));
  await w.close();
  return summary;
}
