// The exported surface of cdquant.wasm: plain functions over byte offsets and sizes, one file
// per algorithm. Memory is raw (no managed objects cross the boundary); TypeScript allocates
// with alloc/free and gives every kernel its scratch (sized by the kernel's *Scratch function),
// so kernels never allocate.

export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}

export function free(ptr: usize): void {
  heap.free(ptr);
}

export * from './linalg';
export { dequantizeCodes, quantizeWith, setHalfScales, roundScaleToHalf } from './grid';
export * from './clip';
export { quadForms, quadFormsScratch, rowLosses, rowLossesScratch, gradientBand, gradientScratch } from './loss';
export * from './gptq';
export * from './cd';
export * from './bcd';
export * from './refit';
export * from './check';
export * from './permute';
export * from './nn';
export * from './gguf/index';
