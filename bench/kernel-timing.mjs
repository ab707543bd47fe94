// Per-export timing of a kernel for the benches: wraps every exported function of `kernel`
// so each call reports its name and milliseconds to `onCall`. Returns the kernel.
import { performance } from 'node:perf_hooks';

export function timeKernelCalls(kernel, onCall) {
  const raw = kernel.exports;
  const wrapped = { memory: raw.memory };
  for (const [name, fn] of Object.entries(raw)) {
    if (typeof fn !== 'function') { wrapped[name] = fn; continue; }
    wrapped[name] = (...a) => {
      const t = performance.now();
      try { return fn(...a); } finally { onCall(name, performance.now() - t); }
    };
  }
  Object.defineProperty(kernel, 'exports', { value: wrapped });
  return kernel;
}
