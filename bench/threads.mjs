// Worker-pool speed-up: GPTQ and CD on one square layer (4-bit, groups of 128) with 1 and 2
// workers; prints seconds (median of the runs) and the speed-up. Figures only, never asserted.
//   node bench/threads.mjs [size=4096] [--runs N] [--threads 1,2] [--methods gptq,cd]
// Run after `npm run build` (it loads build/index.js).
import { quantizeLayer, prepareLayer, Kernel, hardwareConcurrency } from '../build/index.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const size = Number(args.find((a) => /^\d+$/.test(a)) ?? 4096);
const runs = Number(flag('runs', 1));
const threadCounts = flag('threads', '1,2').split(',').map(Number);
const methods = flag('methods', 'gptq,cd').split(',');
const rows = size, cols = size;

// Deterministic inputs: xorshift32 uniforms; H = (2/m) X^T X from m calibration rows, in wasm.
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}
const u = rng(12345);
const normal = () => u() + u() + u() + u() - 2;
const weights = new Float32Array(rows * cols);
for (let i = 0; i < weights.length; i++) weights[i] = normal() * 0.05;
const m = Math.min(1024, 2 * cols);
const colScale = Float32Array.from({ length: cols }, () => 0.3 + 3 * u());
const x = new Float32Array(m * cols);
for (let k = 0; k < m; k++) for (let j = 0; j < cols; j++) x[k * cols + j] = normal() * colScale[j];
const t0 = performance.now();
const kernel = await Kernel.create();
const hessian = kernel.scoped((alloc, put) => {
  const h = alloc(cols * cols * 4);
  kernel.f32(h, cols * cols).fill(0);
  const xp = put(x);
  const scratch = alloc((cols * m + cols * cols) * 4);
  kernel.exports.hessianUpdate(h, xp, m, cols, 0, 2 / m, scratch);
  return kernel.f32(h, cols * cols).slice();
});
console.log(`threads bench: ${rows}x${cols}, 4-bit g128, H from ${m} rows (${((performance.now() - t0) / 1000).toFixed(1)} s), ${await hardwareConcurrency()} cores, ${runs} run(s) each`);

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
for (const method of methods) {
  const seconds = {};
  let reference;
  for (const threads of threadCounts) {
    const times = [];
    let cpu = 0;
    for (let r = 0; r < runs; r++) {
      const cpu0 = process.cpuUsage();
      const start = performance.now();
      const result = await quantizeLayer({ data: weights, rows, cols }, hessian, { method, bits: 4, groupSize: 128, threads });
      times.push((performance.now() - start) / 1000);
      const used = process.cpuUsage(cpu0);
      cpu += (used.user + used.system) / 1e6 / runs;
      const key = `${result.loss}:${result.codes.reduce((a, c, i) => (a + c * ((i % 251) + 1)) % 1000000007, 0)}`;
      reference ??= key;
      if (key !== reference) console.log(`  ${method}: threads ${threads} gave a different result (${key} vs ${reference})`);
    }
    seconds[threads] = median(times);
    // CPU seconds of all threads of this process: on a busy machine the wall time of several
    // workers says little, their summed CPU time shows what the pool costs on top of the work.
    console.log(`  ${method.padEnd(4)} threads ${threads}: ${seconds[threads].toFixed(2)} s wall, ${cpu.toFixed(2)} s CPU${runs > 1 ? ` (runs: ${times.map((t) => t.toFixed(2)).join(', ')})` : ''}`);
  }
  // The H-side preparation runs once on the calling thread whatever the worker count (the
  // serial part of the speed-up).
  const p0 = performance.now();
  await prepareLayer(hessian, cols, { method, bits: 4, groupSize: 128 });
  console.log(`  ${method.padEnd(4)} of which H preparation on the calling thread: ${((performance.now() - p0) / 1000).toFixed(2)} s`);
  const base = seconds[threadCounts[0]];
  for (const threads of threadCounts.slice(1)) {
    console.log(`  ${method.padEnd(4)} speed-up ${threadCounts[0]} -> ${threads} workers: ${(base / seconds[threads]).toFixed(2)}x`);
  }
}
