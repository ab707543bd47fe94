export * from './errors.js';
export { Kernel, setWasmSource } from './kernel.js';
