// cdquant: post-training weight quantization of language models (RTN, GPTQ, CDQuant's CD and
// BCD on OWC grids) in SIMD WebAssembly, with the same bits in every JavaScript runtime.
// The public API, grouped as a user meets it; everything else is internal.

// --- One layer: W [out, in] and H [in, in] (or its inputs) in, codes and grids out.
export { quantizeLayer, quantizePrepared } from './quantize.js';
export type { QuantizeOptions, RunOptions } from './quantize.js';
export { HessianAccumulator } from './core/hessian.js';
export { prepareLayer } from './core/prepare.js';
export { mergeBands, dequantize } from './core/merge.js';
export { resolveSolver, planLayer } from './core/options.js';
export type { SolverOptions, SolverSpec, LayerPlan, Method, Clip, Init } from './core/options.js';
export type { WeightMatrix, QuantizedWeights, PreparedLayer, BandResult, LayerResult } from './core/types.js';

// --- Errors: every deliberate failure is a CdquantError with a stable `code`.
export {
  CdquantError, ShapeError, NonFiniteError, HessianError, OptionError, FormatError, DtypeError,
  AbortError, WorkerError, KernelError,
} from './core/errors.js';
export type { ErrorCode } from './core/errors.js';

// --- Where the rows are solved: this thread, worker threads, or HTTP band workers.
export { WorkerPool, defaultBandTimeoutMs } from './parallel/pool.js';
export type { PoolOptions } from './parallel/pool.js';
export { LocalBandSolver, solveBand } from './parallel/bands.js';
export type { BandSolver, SolveOptions } from './parallel/bands.js';
export { encodePrepared, decodePrepared, encodeBand, decodeBand } from './parallel/frame.js';
export { FanoutPool, FanoutProtocolError, FANOUT_PROTOCOL } from './parallel/fanout.js';
export type { FanoutPoolOptions, FanoutEvent, FanoutStats, FanoutErrorCode } from './parallel/fanout.js';
export { createFanoutWorker } from './parallel/fanout-worker.js';
export type { FanoutWorker, FanoutWorkerOptions } from './parallel/fanout-worker.js';
export { Kernel, setWasmSource, sharedKernelSupported } from './core/kernel.js';
export { runtimeName, hardwareConcurrency, workersAvailable, sharedMemoryAvailable } from './core/runtime.js';
export type { RuntimeName } from './core/runtime.js';

// --- Whole models: read, calibrate, quantize block by block, write, evaluate.
export { quantizeModel, calibrationWindows } from './model/pipeline.js';
export type { QuantizedLinear, QuantizedModel, ModelQuantizeOptions, ModelRunOptions, LayerProgress } from './model/pipeline.js';
export { modelFromFiles, textTokens, tokenFile, planJob, runJob, memoryStore, ggufVocabFor } from './model/job.js';
export type { ModelFile, CalibrationOptions, JobPlan, JobOptions, JobResult, JobReport, LayerReport, QuantizedStore } from './model/job.js';
export { openHfModel, memoryModel, f32Embedding, rawEmbedding } from './model/source.js';
export type { LazyModel, ModelKind, EmbeddingTable, NamedSource } from './model/source.js';
export { quantizedView } from './model/pipeline.js';
export { modelPerplexity } from './model/eval.js';
export type { PerplexityOptions } from './model/eval.js';
export { memorySink, writeHfCheckpoint, writeGptqCheckpoint, writeLlama2cFile, writeSafetensorsShards, gptqFormatOf } from './model/outputs.js';
export type { OutputSink, OutputWriter, OutputFile, GptqSummary } from './model/outputs.js';
export { blobSource, bytesSource } from './formats/bytes.js';
export type { ByteSource } from './formats/bytes.js';
export { LlamaRunner, HiddenState, perplexity } from './model/forward.js';
export type { RunnerOptions, CaptureFn, RunBlockOptions, PerplexityResult } from './model/forward.js';
export { resolveArch, linearShape, linearNames, quantStages } from './model/arch.js';
export { LINEAR_NAMES } from './model/types.js';
export type { Arch, LinearSpec, Stage, StagePoint } from './model/arch.js';
export type { LlamaModel, LlamaConfig, LlamaBlock, LinearName, RopeStyle, Family, RopeScaling, LayerType } from './model/types.js';
export { readLlama2c, writeLlama2c } from './model/checkpoint/llama2c.js';
export { readHfModel, writeHfModel, parseHfConfig, hfConfigJson } from './model/checkpoint/hf.js';
export type { HfDtype } from './model/checkpoint/hf.js';
export { gptqCheckpoint, readGptqCheckpoint, isPackable, VERSION } from './model/export.js';
export type { GptqCheckpoint, Provenance } from './model/export.js';
export { splitParagraphs, paragraphRange } from './model/text.js';

// --- File formats.
export { parseSafetensors, readTensorF32, readTensorRaw, writeSafetensors } from './formats/safetensors.js';
export type { SafetensorsFile, TensorInfo, TensorToWrite } from './formats/safetensors.js';
export { readTokenizer, loadTextTokenizer } from './formats/tokenizer.js';
export type { Tokenizer, TextTokenizer, EncodeOptions, TokenizerFiles } from './formats/tokenizer.js';
export { HfTokenizer, readHfTokenizer } from './formats/hf-tokenizer.js';
export type { HfTokenizerFiles } from './formats/hf-tokenizer.js';
export { readGgufTokenizer, ggufTokenizerMetadata } from './formats/gguf-tokenizer.js';
export type { GgufTokenizer } from './formats/gguf-tokenizer.js';
export { ggufVocabMetadata } from './formats/gguf-vocab.js';
export { packGptq, unpackGptq, quantizeConfig } from './formats/gptq.js';
export type { GptqFormat, GptqLayer, PackedGptq } from './formats/gptq.js';

// --- GGUF: one layer on a GGML block type's own grid.
export { quantizeLayerGguf, quantizeLayerGgufOn, mergeGgufBands, GGUF_SOLVERS } from './quantize-gguf.js';
export type { GgufSolver, GgufLayerResult, GgufLayerOptions, GgufBandSpec, GgufBandResult, GgufBandSolver } from './quantize-gguf.js';
export { prepareResident } from './core/prepare.js';
export { LayerSession } from './core/session.js';
export { quantizeRows as ggufQuantizeRows, dequantizeRows as ggufDequantizeRows, GGUF_BLOCK_TYPES } from './formats/gguf-blocks.js';
export type { GgufBlockTypeName } from './formats/gguf-blocks.js';
// --- GGUF: a whole model to one of llama.cpp's mixes (planJob's gguf, runJob's ggufVocab), and
// the file read back with llama.cpp's block decoders.
export { readLlamaGguf } from './model/gguf.js';
export { blockDecoders } from './formats/gguf-blocks.js';
