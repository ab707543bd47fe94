// Resolved at build time by scripts/build.mjs to the base64 of build/cdquant.wasm.
declare module 'virtual:cdquant-wasm' {
  export const wasmBase64: string;
}
