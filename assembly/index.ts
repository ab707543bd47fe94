// The exported surface of cdquant.wasm: plain functions over byte offsets and sizes.
// Memory is raw (no managed objects cross the boundary); TypeScript allocates with alloc/free.

export function alloc(bytes: usize): usize {
  return heap.alloc(bytes);
}

export function free(ptr: usize): void {
  heap.free(ptr);
}

export * from './linalg';
export * from './grid';
export * from './gptq';
export * from './cd';
export * from './nn';
export * from './gguf/index';
