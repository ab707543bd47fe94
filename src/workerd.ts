// Entry for workerd (Cloudflare Workers; the `workerd` export condition): those runtimes may
// not compile wasm from bytes at run time, so the binary is imported as a WebAssembly.Module
// (build/cdquant.wasm, a module the platform compiles at deploy time) and handed to the loader.
// Everything else is the runtime-neutral build/index.js.
import wasm from './cdquant.wasm';
import { setWasmSource } from './index.js';

setWasmSource(wasm);

export * from './index.js';
