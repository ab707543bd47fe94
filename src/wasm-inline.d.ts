// Resolved at build time by scripts/build.mjs to the base64 of build/cdquant.wasm and of
// build/cdquant-shared.wasm (the same kernels over an imported shared memory).
declare module 'virtual:cdquant-wasm' {
  export const wasmBase64: string;
  export const sharedWasmBase64: string;
}

// workerd (and bundlers such as wrangler) import a .wasm file as a compiled module.
declare module '*.wasm' {
  const module: WebAssembly.Module;
  export default module;
}
