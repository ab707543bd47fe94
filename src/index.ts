export * from './errors.js';
export { Kernel, setWasmSource } from './kernel.js';
export { LlamaRunner, HiddenState, perplexity } from './model/forward.js';
export type { CaptureFn, RunBlockOptions, PerplexityResult } from './model/forward.js';
