export * from './errors.js';
export { Kernel, setWasmSource } from './kernel.js';
export * from './formats/index.js';
