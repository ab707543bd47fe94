export * from './errors.js';
export { Kernel, setWasmSource } from './kernel.js';
export { quantizeLayer, prepareLayer, LayerSession, mergeBands } from './layer.js';
export type { WeightMatrix, PreparedLayer, BandResult, LayerResult } from './layer.js';
export type { QuantizeOptions, Method, Clip, Init } from './options.js';
export { LlamaRunner, HiddenState, perplexity } from './model/forward.js';
export type { CaptureFn, RunBlockOptions, PerplexityResult } from './model/forward.js';
export * from './formats/index.js';
export { HessianAccumulator } from './hessian.js';
