// A whole quantization job, runtime-neutral: a model (read lazily) -> calibration windows and
// provenance -> sequential quantization, block by block -> the outputs, streamed into a sink
// (the dequantized model in the input's format, the GPTQ checkpoint, the report).
// `cdquant quantize` (Node: files on disk, a staging folder, resume) and the browser page
// (files from the user or the example, outputs in memory) both run it, so the same options
// give the same bytes.
import { FormatError, OptionError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { groupSizeLabel, resolveSolver, solverOptionsOf, type SolverOptions, type SolverSpec } from '../core/options.js';
import { readLlama2c } from './checkpoint/llama2c.js';
import { sha256Hex } from '../formats/digest.js';
import { bytesSource, type ByteSource } from '../formats/bytes.js';
import type { TextTokenizer, Tokenizer } from '../formats/tokenizer.js';
import { HfTokenizer } from '../formats/hf-tokenizer.js';
import { ggufVocabMetadata } from '../formats/gguf-vocab.js';
import type { GgufTokenizer } from '../formats/gguf-tokenizer.js';
import { llama2cVocabMetadata } from '../formats/gguf-llama2c-vocab.js';
import { GGUF_FAMILIES } from './gguf.js';
import { readGptqCheckpoint } from './export.js';
import { readLlamaGguf } from './gguf.js';
import { blockDecoders } from '../formats/gguf-blocks.js';
import { quantizeModel, quantizedView, calibrationWindows, type ModelQuantizeOptions, type QuantizedLinear } from './pipeline.js';
import { memorySink, writeGgufFile, writeGptqCheckpoint, writeHfCheckpoint, writeLlama2cFile, VERSION, type GgufSummary, type GptqSummary, type OutputFile, type OutputSink, type Provenance } from './outputs.js';
import { ggufMix, type GgufMix } from './gguf-mix.js';
import { GGUF_SOLVERS, type GgufSolver } from '../quantize-gguf.js';
import type { GgufMetadata } from '../formats/gguf-types.js';
import { baseName, memoryModel, openHfModel, type LazyModel, type ModelKind } from './source.js';
import { splitParagraphs, paragraphRange, tokenizeParagraphs } from './text.js';
import type { LlamaConfig } from './types.js';

export type { ModelKind, OutputFile };

function ggufSolverOf(name: string): GgufSolver {
  if (!(GGUF_SOLVERS as readonly string[]).includes(name)) throw new OptionError(`--gguf-solver must be one of ${GGUF_SOLVERS.join(', ')}, got ${name}`);
  return name as GgufSolver;
}

/** One file of a model: its name, and its bytes or a source to read them from lazily. */
export interface ModelFile {
  name: string;
  bytes?: Uint8Array;
  source?: ByteSource;
}

const sourceOf = (f: ModelFile): ByteSource => {
  if (f.source) return f.source;
  if (f.bytes) return bytesSource(f.bytes);
  throw new OptionError(`model file ${f.name} has neither bytes nor a source`);
};
const bytesOf = async (f: ModelFile): Promise<Uint8Array> => f.bytes ?? (await sourceOf(f).read(0, sourceOf(f).size));
const text = async (f: ModelFile) => new TextDecoder().decode(await bytesOf(f));

/**
 * A model from its files: a llama2.c .bin, a .gguf file, or a Hugging Face folder's
 * config.json with its .safetensors files (and model.safetensors.index.json when sharded),
 * which may be a GPTQ checkpoint. Hugging Face checkpoints are opened lazily: headers now,
 * tensors block by block.
 */
export async function modelFromFiles(files: ModelFile[], kernel: Kernel): Promise<LazyModel> {
  const config = files.find((f) => baseName(f.name) === 'config.json');
  if (config) {
    const configText = await text(config);
    let parsed: unknown;
    try {
      parsed = JSON.parse(configText);
    } catch {
      throw new FormatError(`${config.name} is not valid JSON`);
    }
    const shards = files.filter((f) => f.name.endsWith('.safetensors')).sort((a, b) => (baseName(a.name) < baseName(b.name) ? -1 : 1));
    if (shards.length === 0) throw new FormatError(`${config.name}: no .safetensors files next to it`);
    if (parsed !== null && typeof parsed === 'object' && (parsed as Record<string, unknown>).quantization_config) {
      if (shards.length !== 1) throw new FormatError(`${config.name}: a GPTQ checkpoint in ${shards.length} shards is not supported (one model.safetensors)`);
      const bytes = await bytesOf(shards[0]);
      return memoryModel(readGptqCheckpoint(kernel, { config: configText, safetensors: bytes }), 'gptq', 'F16', () => sha256Hex(bytes));
    }
    const index = files.find((f) => baseName(f.name) === 'model.safetensors.index.json');
    return openHfModel({
      config: configText,
      shards: shards.map((f) => ({ name: f.name, source: sourceOf(f) })),
      ...(index ? { index: await text(index) } : {}),
      where: config.name.slice(0, Math.max(0, config.name.lastIndexOf('/'))) || 'the checkpoint',
    });
  }
  if (files.length !== 1) {
    throw new OptionError(`a model is one llama2.c .bin or .gguf file, or a Hugging Face folder's config.json with its .safetensors files; got ${files.map((f) => f.name).join(', ') || 'no files'}`);
  }
  const [file] = files;
  if (file.name.toLowerCase().endsWith('.gguf')) {
    const source = sourceOf(file);
    const model = await readLlamaGguf(source, { decoders: blockDecoders(kernel), kernel });
    return memoryModel(model, 'gguf', 'F32', async () => sha256Hex(await source.read(0, source.size)));
  }
  const bytes = await bytesOf(file);
  return memoryModel(readLlama2c(bytes), 'llama2c', 'F32', () => sha256Hex(bytes));
}

/** The tokenizer.ggml.* metadata of a model's tokenizer, as llama.cpp's converter writes it. */
export async function ggufVocabFor(tokenizer: TextTokenizer, config: LlamaConfig): Promise<GgufMetadata> {
  // A GGUF model's own vocabulary goes into its GGUF outputs unchanged.
  if (tokenizer.kind === 'gguf') return new Map((tokenizer as GgufTokenizer).metadata);
  if (tokenizer instanceof HfTokenizer) return ggufVocabMetadata(tokenizer, { architecture: GGUF_FAMILIES[config.family ?? 'llama'].arch });
  if (tokenizer.kind === 'llama2c') return llama2cVocabMetadata(tokenizer as Tokenizer);
  throw new OptionError(`no GGUF vocabulary for a ${tokenizer.kind} tokenizer`);
}

/** Tokens of paragraphs `range` ("A:B", as --calib-paragraphs / --paragraphs) of `text`. */
export function textTokens(tokenizer: TextTokenizer, text: string, range?: string): Int32Array {
  const paragraphs = splitParagraphs(text);
  if (paragraphs.length === 0) throw new OptionError('the text is empty: it has no paragraphs to tokenize');
  const [a, b] = paragraphRange(range, paragraphs.length);
  return tokenizeParagraphs(tokenizer, paragraphs.slice(a, b));
}

/** Token ids from a file of little-endian int32 (--calib-tokens), checked against the vocabulary. */
export function tokenFile(raw: Uint8Array, vocabSize: number, name = 'token file'): Int32Array {
  if (raw.length % 4 !== 0) throw new FormatError(`${name} has ${raw.length} bytes, not a whole number of int32 token ids`);
  const tokens = new Int32Array(raw.length / 4);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let i = 0; i < tokens.length; i++) {
    tokens[i] = view.getInt32(4 * i, true);
    if (tokens[i] < 0 || tokens[i] >= vocabSize) throw new FormatError(`token ${i} of ${name} is ${tokens[i]}, outside the vocabulary [0, ${vocabSize})`);
  }
  return tokens;
}

export interface CalibrationOptions {
  /** Windows drawn at seeded random offsets (0: consecutive windows). Default 128. */
  nsamples?: number;
  /** Tokens per window. Default 256. */
  seqlen?: number;
  seed?: number;
}

/** What a job will do: the calibration windows and the provenance every output records. */
export interface JobPlan {
  samples: Int32Array[];
  seqlen: number;
  provenance: Provenance;
  /** The solver settings, resolved: what every layer is quantized with. */
  solver: SolverSpec;
  /** GGUF output: llama.cpp's mix and the solver of the codes (the integer-grid solver
   * settings then do not apply, but `iters`). */
  gguf: { mix: GgufMix; solver: GgufSolver } | null;
}

/** Draws the calibration windows and resolves the options into the provenance. */
export async function planJob(
  model: { config: LlamaConfig }, tokens: Int32Array, options: SolverOptions, calibration: CalibrationOptions = {},
  gguf: { mix: string; solver?: string } | null = null,
): Promise<JobPlan> {
  const ggufPlan = gguf ? { mix: ggufMix(gguf.mix), solver: ggufSolverOf(gguf.solver ?? 'cd') } : null;
  const nsamples = calibration.nsamples ?? 128;
  const seqlen = calibration.seqlen ?? 256;
  const seed = calibration.seed ?? 0;
  if (seqlen > model.config.maxSeqLen) throw new OptionError(`--seqlen ${seqlen} exceeds the model's context of ${model.config.maxSeqLen}`);
  const samples = calibrationWindows(tokens, seqlen, nsamples, seed);
  const calibBytes = new Uint8Array(samples.length * seqlen * 4);
  samples.forEach((s, i) => calibBytes.set(new Uint8Array(s.buffer, s.byteOffset, s.byteLength), i * seqlen * 4));
  const calibrationSha256 = await sha256Hex(calibBytes);
  // Model outputs store fp16 scales (GPTQ checkpoints): solved on them unless asked otherwise.
  const solver = resolveSolver({ ...options, scales: options.scales ?? 'f16' });
  const provenance: Provenance = {
    method: solver.method,
    bits: solver.bits,
    groupSize: groupSizeLabel(solver),
    sym: solver.sym,
    actOrder: solver.actOrder,
    staticGroups: solver.staticGroups,
    damp: solver.damp,
    clip: solver.clip,
    init: solver.init,
    refit: solver.refit,
    scales: solver.scales,
    calibrationSha256,
    nsamples: samples.length,
    seqlen,
    gguf: ggufPlan ? `${ggufPlan.mix}/${ggufPlan.solver}` : null,
  };
  return { samples, seqlen, provenance, solver, gguf: ggufPlan };
}

export interface LayerReport {
  block: number;
  layer: string;
  rows: number;
  cols: number;
  /** The baseline's loss (RTN on min-max grids; llama.cpp's rounding for GGUF), null unless asked for. */
  loss_rtn: number | null;
  loss: number;
  /** Losses of the compareMethods solves (reporting only), when asked for. */
  compare?: Partial<Record<string, number>>;
  seconds: number;
  moves_per_row: number | null;
  damp_used: number | null;
}

export interface JobReport extends Provenance {
  version: string;
  model: string;
  /** Integer-grid runs: the GPTQ checkpoint's format and the layers it stores dense. */
  gptq_format?: string;
  gptq_dense_layers?: string[];
  /** GGUF runs: tensors and bytes by type, and the file's size. */
  gguf_types?: Record<string, { tensors: number; bytes: number }>;
  gguf_bytes?: number;
  totals: { loss: number; loss_rtn: number | null; seconds: number };
  layers: LayerReport[];
}

/** Where a job keeps each finished block's quantized layers (codes and grids) until the
 * outputs are written: memory for small models, a folder on disk for large ones (the CLI's,
 * which is also what an interrupted run resumes from). */
export interface QuantizedStore {
  put(block: number, layers: QuantizedLinear[]): Promise<void>;
  /** The layers of a finished block, or undefined. */
  get(block: number): Promise<QuantizedLinear[] | undefined>;
}

export function memoryStore(): QuantizedStore {
  const blocks = new Map<number, QuantizedLinear[]>();
  return {
    put: async (block, layers) => void blocks.set(block, layers),
    get: async (block) => blocks.get(block),
  };
}

export interface JobResult {
  /** Every layer's report (the codes are in the store). */
  layers: QuantizedLinear[];
  /** The quantized model, read lazily: the source with each linear layer dequantized. */
  quantized: LazyModel;
  /** The GPTQ checkpoint written (integer-grid runs), or null. */
  gptq: GptqSummary | null;
  /** The GGUF file written (GGUF runs), or null. */
  gguf: GgufSummary | null;
  /** The files written, when the sink kept them in memory (the default). */
  files: OutputFile[];
  report: JobReport;
}

export type JobOptions = Partial<Pick<ModelQuantizeOptions, 'onProgress' | 'onBlockDone' | 'compareMethods' | 'signal' | 'pool' | 'threads' | 'maxStateBytes'>> & {
  kernel: Kernel;
  /** Names the model in the report (a path, or a file name). */
  modelName: string;
  /** Where finished blocks are kept, and found again when resuming. Default: memory. */
  store?: QuantizedStore;
  /** Where the outputs go. Default: memory (JobResult.files). */
  sink?: OutputSink;
  /** Largest safetensors shard written (default 5 GB, as transformers). */
  maxShardBytes?: number;
  /** GGUF runs: the vocabulary metadata (tokenizer.ggml.*) of the model's tokenizer. */
  ggufVocab?: GgufMetadata;
};

/** Quantizes `source` as `plan` says (blocks already in `job.store` are resumed, not redone)
 * and writes every output into the sink: the dequantized model in the input's own format
 * (dequantized/), the GPTQ checkpoint (gptq/) and report.json. */
export async function runJob(source: LazyModel, plan: JobPlan, job: JobOptions): Promise<JobResult> {
  const { kernel, modelName, store = memoryStore(), sink = memorySink(), maxShardBytes, onBlockDone, ggufVocab, ...hooks } = job;
  const { provenance } = plan;
  if (plan.gguf && !ggufVocab) throw new OptionError('a GGUF file needs the vocabulary of the model\'s tokenizer (ggufVocab): llama.cpp cannot load a model without one');
  const t0 = performance.now();
  const result = await quantizeModel(source, plan.samples, {
    ...solverOptionsOf(plan.solver),
    ...hooks,
    ...(plan.gguf ? { gguf: plan.gguf } : {}),
    kernel,
    keepLayers: false,
    resume: (block) => store.get(block),
    onBlockDone: async (block, layers) => {
      await store.put(block, layers);
      await onBlockDone?.(block, layers);
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  // The writers go block by block, tensor by tensor: the current block's layers are read from
  // the store once (a 7B block's codes are 0.2 GB), not once per tensor.
  let current: { block: number; layers: Promise<QuantizedLinear[]> } | null = null;
  const layersOf = (block: number): Promise<QuantizedLinear[]> => {
    if (current?.block !== block) {
      current = {
        block,
        layers: store.get(block).then((layers) => {
          if (!layers) throw new OptionError(`block ${block} is missing from the job's store`);
          return layers;
        }),
      };
    }
    return current.layers;
  };
  const quantized = quantizedView(source, layersOf, kernel);

  // Outputs: GGUF runs write the GGUF file; integer-grid runs the dequantized model in the
  // input's own format and the GPTQ checkpoint.
  let gptq: GptqSummary | null = null;
  let gguf: GgufSummary | null = null;
  if (plan.gguf) {
    gguf = await writeGgufFile(sink, 'model.gguf', source, layersOf, plan.gguf.mix, ggufVocab!, { name: modelName.slice(modelName.lastIndexOf('/') + 1) || 'model', kernel });
  } else {
    const metadata = Object.fromEntries(Object.entries(provenance).map(([k, v]) => [`cdquant.${k}`, String(v)]));
    if (source.kind === 'llama2c') await writeLlama2cFile(sink, 'dequantized/model.bin', quantized);
    else await writeHfCheckpoint(sink, 'dequantized', quantized, source.dtype === 'F16' && source.kind === 'gptq' ? 'F32' : source.dtype, { quantizer: `cdquant ${VERSION}`, ...metadata }, maxShardBytes);
    gptq = await writeGptqCheckpoint(sink, 'gptq', source, layersOf, provenance, kernel, maxShardBytes);
  }
  const layers: LayerReport[] = result.layers.map((l) => ({
    block: l.block, layer: l.name, rows: l.rows, cols: l.cols, loss_rtn: l.rtnLoss, loss: l.loss,
    ...(l.compare ? { compare: l.compare } : {}),
    seconds: round(l.seconds, 4), moves_per_row: l.movesPerRow === null ? null : round(l.movesPerRow, 2), damp_used: l.dampUsed,
  }));
  const baselines = layers.map((l) => l.loss_rtn);
  const totals = { loss: sum(layers.map((l) => l.loss)), loss_rtn: baselines.every((b) => b !== null) ? sum(baselines as number[]) : null, seconds: round(seconds, 3) };
  const report: JobReport = {
    version: VERSION, model: modelName, ...provenance,
    ...(gptq ? { gptq_format: gptq.format, gptq_dense_layers: gptq.dense } : {}),
    ...(gguf ? { gguf_types: gguf.types, gguf_bytes: gguf.fileBytes } : {}),
    totals, layers,
  };
  const w = await sink.open('report.json');
  await w.write(JSON.stringify(report, null, 2));
  await w.close();
  return { layers: result.layers, quantized, gptq, gguf, files: 'files' in sink ? (sink as { files: OutputFile[] }).files : [], report };
}

export const round = (x: number, digits: number) => Number(x.toFixed(digits));
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
