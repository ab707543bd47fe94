// Messages between the page (main.ts) and its job worker (job-worker.ts).
import type { CalibrationOptions, JobReport, LayerProgress, ModelKind, OutputFile, PerplexityResult, QuantizeOptions } from '../src/index.js';

export interface JobRequest {
  type: 'run';
  /** One llama2.c .bin or .gguf, or config.json + *.safetensors (+ index) of a Hugging Face
   * folder. A user's files travel as Blobs (File objects), read a tensor at a time. */
  model: { name: string; bytes?: Uint8Array; blob?: Blob }[];
  modelName: string;
  /** A llama2.c tokenizer.bin, or tokenizer.json (+ tokenizer_config.json); none when the model
   * files include tokenizer.json. */
  tokenizer: { name: string; bytes: Uint8Array }[];
  text: string;
  /** Paragraph ranges "A:B", as cdquant quantize --calib-paragraphs and eval --paragraphs. */
  calibParagraphs: string;
  evalParagraphs: string;
  evalSeqlen: number;
  maxWindows?: number;
  calibration: CalibrationOptions;
  options: QuantizeOptions;
  /** Also solve each layer with GPTQ, for the chart (reporting only; GPTQ-checkpoint runs). */
  compareGptq: boolean;
  /** GGUF output (`cdquant quantize --gguf MIX --gguf-solver SOLVER`): model.gguf and
   * report.json in place of the GPTQ checkpoint and the dequantized model. */
  gguf: { mix: string; solver: string } | null;
}

export interface ModelInfo {
  kind: ModelKind;
  dtype: string;
  blocks: number;
  dim: number;
  hiddenDim: number;
  vocab: number;
  calibrationTokens: number;
  evalTokens: number;
  nsamples: number;
  seqlen: number;
  calibrationSha256: string;
  threads: string;
  /** Layers the job solves: every block's linears, and for GGUF output the classifier (and an
   * untied embedding). */
  layers: number;
  /** [rows, cols] of each linear layer. */
  shapes: Record<string, [number, number]>;
  /** GGUF runs: the mix and the solver of the codes. */
  gguf: { mix: string; solver: string } | null;
}

/** The original model, the job's quantized view, and the output read back: the GPTQ
 * checkpoint, or model.gguf. */
export type PplStage = 'before' | 'after' | 'gptq' | 'gguf';

/** A finished layer the job reports outside its per-layer progress: a GGUF run's classifier
 * (and an untied embedding), solved after the blocks. */
export interface HeadLayer {
  block: number;
  name: string;
  rows: number;
  cols: number;
  loss: number;
  baseLoss: number | null;
  seconds: number;
}

export type JobMessage =
  | { type: 'status'; text: string }
  | { type: 'model'; info: ModelInfo }
  | { type: 'progress'; progress: LayerProgress }
  | { type: 'head'; layers: HeadLayer[] }
  | { type: 'eval'; stage: PplStage; done: number; total: number }
  | { type: 'ppl'; stage: PplStage; result: PerplexityResult; seqlen: number }
  | { type: 'done'; report: JobReport; files: OutputFile[]; seconds: number }
  | { type: 'error'; code: string; message: string };
