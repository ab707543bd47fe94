// Resolved at build time by scripts/build.mjs to the base64 of build/cdquant.wasm.
declare module 'virtual:cdquant-wasm' {
  export const wasmBase64: string;
}

// workerd (and bundlers such as wrangler) import a .wasm file as a compiled module.
declare module '*.wasm' {
  const module: WebAssembly.Module;
  export default module;
}
