// A whole quantization job, runtime-neutral: model files in memory -> calibration windows and
// provenance -> sequential quantization -> the output files (dequantized model in the input's
// format, GPTQ checkpoint, report). `cdquant quantize` (Node, files on disk, resume) and the
// browser page (web/, files from the user or the example) both run it, so the same options give
// the same bytes.
import { FormatError, OptionError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { groupSizeLabel, resolveSolver, solverOptionsOf, type SolverOptions, type SolverSpec } from '../core/options.js';
import { readLlama2c, writeLlama2c } from './checkpoint/llama2c.js';
import { readHfModel, writeHfModel, type HfDtype } from './checkpoint/hf.js';
import { parseSafetensors } from '../formats/safetensors.js';
import { sha256Hex } from '../formats/digest.js';
import type { Tokenizer } from '../formats/tokenizer.js';
import { LlamaRunner, perplexity, type PerplexityResult } from './forward.js';
import { quantizeModel, calibrationWindows, type ModelQuantizeOptions, type QuantizedModel } from './pipeline.js';
import { gptqCheckpoint, readGptqCheckpoint, VERSION, type GptqCheckpoint, type Provenance } from './export.js';
import { concat, splitParagraphs, paragraphRange, tokenizeParagraphs } from './text.js';
import type { LlamaModel } from './types.js';

export type ModelKind = 'llama2c' | 'hf' | 'gptq';

/** A model read from its files, with what the outputs need to know about them. */
export interface ModelSource {
  model: LlamaModel;
  kind: ModelKind;
  /** Dtype of the Hugging Face tensors (F32 for llama2.c). */
  dtype: HfDtype;
  /** Bytes the model came from (for provenance hashes): the .bin, or the shards concatenated. */
  bytes: Uint8Array;
}

/** A llama2.c checkpoint (.bin). */
export function llama2cSource(bytes: Uint8Array): ModelSource {
  return { model: readLlama2c(bytes), kind: 'llama2c', dtype: 'F32', bytes };
}

/** A Hugging Face Llama directory (config.json text + safetensors shards, in file-name order),
 * or a GPTQ checkpoint (config.json with quantization_config). `where` names the config in errors. */
export function hfSource(config: string, shards: Uint8Array[], kernel: Kernel, where = 'config.json'): ModelSource {
  if (shards.length === 0) throw new FormatError(`${where}: no .safetensors files next to it`);
  const first = parseSafetensors(shards[0]);
  const dtypes = new Set([...first.tensors.values()].map((t) => t.dtype));
  const dtype: HfDtype = dtypes.has('BF16') ? 'BF16' : dtypes.has('F16') ? 'F16' : 'F32';
  const bytes = shards.length === 1 ? shards[0] : concat(shards);
  let parsedConfig: Record<string, unknown>;
  try {
    parsedConfig = JSON.parse(config);
  } catch {
    throw new FormatError(`${where} is not valid JSON`);
  }
  if (parsedConfig.quantization_config) {
    if (shards.length !== 1) throw new FormatError('sharded GPTQ checkpoints are not supported yet');
    return { model: readGptqCheckpoint(kernel, { config, safetensors: shards[0] }), kind: 'gptq', dtype: 'F32', bytes };
  }
  return { model: readHfModel({ config, safetensors: shards }), kind: 'hf', dtype, bytes };
}

/** A model from a list of named files: one llama2.c .bin, or config.json + *.safetensors. */
export function modelFromFiles(files: { name: string; bytes: Uint8Array }[], kernel: Kernel): ModelSource {
  const config = files.find((f) => baseName(f.name) === 'config.json');
  if (config) {
    const shards = files.filter((f) => f.name.endsWith('.safetensors')).sort((a, b) => (baseName(a.name) < baseName(b.name) ? -1 : 1));
    return hfSource(new TextDecoder().decode(config.bytes), shards.map((s) => s.bytes), kernel, config.name);
  }
  if (files.length !== 1) {
    throw new OptionError(`a model is one llama2.c .bin file, or a Hugging Face directory's config.json with its .safetensors files; got ${files.map((f) => f.name).join(', ') || 'no files'}`);
  }
  return llama2cSource(files[0].bytes);
}

const baseName = (name: string) => name.slice(name.lastIndexOf('/') + 1);

/** Tokens of paragraphs `range` ("A:B", as --calib-paragraphs / --paragraphs) of `text`. */
export function textTokens(tokenizer: Tokenizer, text: string, range?: string): Int32Array {
  const paragraphs = splitParagraphs(text);
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
}

/** Draws the calibration windows and resolves the options into the provenance. */
export async function planJob(model: LlamaModel, tokens: Int32Array, options: SolverOptions, calibration: CalibrationOptions = {}): Promise<JobPlan> {
  const nsamples = calibration.nsamples ?? 128;
  const seqlen = calibration.seqlen ?? 256;
  const seed = calibration.seed ?? 0;
  if (seqlen > model.config.maxSeqLen) throw new OptionError(`--seqlen ${seqlen} exceeds the model's context of ${model.config.maxSeqLen}`);
  const samples = calibrationWindows(tokens, seqlen, nsamples, seed);
  const calibBytes = new Uint8Array(samples.length * seqlen * 4);
  samples.forEach((s, i) => calibBytes.set(new Uint8Array(s.buffer, s.byteOffset, s.byteLength), i * seqlen * 4));
  const calibrationSha256 = await sha256Hex(calibBytes);
  const solver = resolveSolver(options);
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
    calibrationSha256,
    nsamples: samples.length,
    seqlen,
  };
  return { samples, seqlen, provenance, solver };
}

/** One output file: a path relative to the output folder (`gptq/model.safetensors`) and its bytes. */
export interface OutputFile {
  path: string;
  data: Uint8Array | string;
}

export interface LayerReport {
  block: number;
  layer: string;
  rows: number;
  cols: number;
  loss_rtn: number;
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
  gptq_format: string;
  gptq_dense_layers: string[];
  totals: { loss: number; loss_rtn: number; seconds: number };
  layers: LayerReport[];
}

export interface JobResult {
  result: QuantizedModel;
  gptq: GptqCheckpoint;
  /** dequantized/... (the input's format) and gptq/{config.json, quantize_config.json, model.safetensors}. */
  files: OutputFile[];
  report: JobReport;
}

export type JobOptions = Partial<Pick<ModelQuantizeOptions, 'onProgress' | 'onBlockDone' | 'resume' | 'compareMethods' | 'signal' | 'pool' | 'threads'>> & {
  kernel: Kernel;
  /** Names the model in the report (a path, or a file name). */
  modelName: string;
};

/** Quantizes `source.model` as `plan` says and assembles every output in memory. */
export async function runJob(source: ModelSource, plan: JobPlan, job: JobOptions): Promise<JobResult> {
  const { kernel, modelName, ...hooks } = job;
  const { provenance } = plan;
  const t0 = performance.now();
  const result = await quantizeModel(source.model, plan.samples, { ...solverOptionsOf(plan.solver), ...hooks, kernel });
  const seconds = (performance.now() - t0) / 1000;

  // Outputs: the dequantized model in the input's own format, and the GPTQ checkpoint.
  const files: OutputFile[] = [];
  const metadata = Object.fromEntries(Object.entries(provenance).map(([k, v]) => [`cdquant.${k}`, String(v)]));
  if (source.kind === 'llama2c') {
    files.push({ path: 'dequantized/model.bin', data: writeLlama2c(result.model) });
  } else {
    const hf = writeHfModel(result.model, source.dtype, { quantizer: `cdquant ${VERSION}`, ...metadata });
    files.push({ path: 'dequantized/config.json', data: hf.config }, { path: 'dequantized/model.safetensors', data: hf.safetensors });
  }
  const gptq = gptqCheckpoint(kernel, source.model, result.layers, provenance, source.kind === 'llama2c' ? 'F32' : source.dtype);
  files.push(
    { path: 'gptq/config.json', data: gptq.config },
    { path: 'gptq/quantize_config.json', data: gptq.quantizeConfig },
    { path: 'gptq/model.safetensors', data: gptq.safetensors },
  );
  const layers: LayerReport[] = result.layers.map((l) => ({
    block: l.block, layer: l.name, rows: l.rows, cols: l.cols, loss_rtn: l.rtnLoss, loss: l.loss,
    ...(l.compare ? { compare: l.compare } : {}),
    seconds: round(l.seconds, 4), moves_per_row: l.movesPerRow === null ? null : round(l.movesPerRow, 2), damp_used: l.dampUsed,
  }));
  const totals = { loss: sum(layers.map((l) => l.loss)), loss_rtn: sum(layers.map((l) => l.loss_rtn)), seconds: round(seconds, 3) };
  const report: JobReport = { version: VERSION, model: modelName, ...provenance, gptq_format: gptq.format, gptq_dense_layers: gptq.dense, totals, layers };
  return { result, gptq, files, report };
}

/** Perplexity of `model` on `tokens` in windows of `seqlen` (the runner is freed afterwards). */
export function modelPerplexity(kernel: Kernel, model: LlamaModel, tokens: Int32Array, seqlen: number, options: Parameters<typeof perplexity>[3] = {}): PerplexityResult {
  const runner = new LlamaRunner(kernel, model);
  try {
    return perplexity(runner, tokens, seqlen, options);
  } finally {
    runner.free();
  }
}

export const round = (x: number, digits: number) => Number(x.toFixed(digits));
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
