// Kernel micro-benchmark: GFLOP/s of the dense kernels at the shapes the solvers and the
// forward pass use. Figures only, never asserted.
//   node bench/gemm.mjs [--runs 5] [--only gptq-block,band,...] [--wasm a.wasm,b.wasm] [--quick]
// With several --wasm files every case runs on each in turn, rep by rep (paired runs on the
// same data in the same process), and the table prints each build's median and the ratio to
// the first one: the way to compare an old kernel with a new one on a busy machine.
// Rates are flops / CPU seconds of this (single) thread, so time lost to other processes on
// the shared cores is not counted; wall-clock rates are printed too.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Kernel } from '../build/index.js';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const runs = Number(arg('runs', quick ? '3' : '5'));
const only = arg('only', null)?.split(',') ?? null;
const wasmFiles = arg('wasm', null)?.split(',') ?? [null];

const kernels = [];
for (const file of wasmFiles) {
  kernels.push({ name: file ?? 'build', k: await Kernel.create(file ? await WebAssembly.compile(readFileSync(file)) : undefined) });
}

// Deterministic uniforms in [-0.5, 0.5) (LCG): the bench needs data, not quality randomness.
function fill(n, seed) {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

/** An SPD matrix n x n: A A^T / n + I, built in float64 here (bench input only). */
function spd(n, seed) {
  const a = fill(n * n, seed);
  const h = new Float32Array(n * n);
  const row = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    row.fill(0);
    for (let p = 0; p < n; p++) {
      const aip = a[i * n + p];
      for (let j = 0; j <= i; j++) row[j] += aip * a[j * n + p];
    }
    for (let j = 0; j <= i; j++) h[i * n + j] = h[j * n + i] = row[j] / n + (i === j ? 1 : 0);
  }
  return h;
}

const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

// Each case: setup(k) -> { run(), free() }, flops per run.
const cases = [];
const add = (name, flops, setup) => cases.push({ name, flops, setup });

// GPTQ's lazy-block update of a band: W[:, i2:] -= Err[128 x 128] U[i1:i2, i2:] (ldb = cols).
for (const n of quick ? [1024] : [4096]) {
  add(`gptq-block 128x${n - 128}x128`, 2 * 128 * (n - 128) * 128, (k) => {
    const a = k.put(fill(128 * 128, 1)), b = k.put(fill(128 * n, 2)), c = k.put(fill(128 * n, 3));
    return { run: () => k.exports.gemmSub(c + 128 * 4, n, a, 128, b + 128 * 4, n, 128, n - 128, 128), free: () => [a, b, c].forEach((p) => k.free(p)) };
  });
  // The gradient of a band for CD: 128 x n x n.
  add(`band 128x${n}x${n}`, 2 * 128 * n * n, (k) => {
    const a = k.put(fill(128 * n, 4)), b = k.put(fill(n * n, 5)), c = k.put(fill(128 * n, 6));
    return { run: () => k.exports.gemmSub(c, n, a, n, b, n, 128, n, n), free: () => [a, b, c].forEach((p) => k.free(p)) };
  });
  // A k = 128 slice over a whole square: Cholesky's trailing update, one X^T X slice.
  add(`slice ${n}x${n}x128`, 2 * n * n * 128, (k) => {
    const a = k.put(fill(n * 128, 7)), b = k.put(fill(128 * n, 8)), c = k.put(fill(n * n, 9));
    return { run: () => k.exports.gemmSub(c, n, a, 128, b, n, n, n, 128), free: () => [a, b, c].forEach((p) => k.free(p)) };
  });
  // A band's loss e^T H e per row (rowLosses: the symmetric product, rows * n^2 multiply-adds).
  add(`rowLosses 128x${n}`, 2 * 128 * n * n / 2, (k) => {
    const x = k.exports;
    const w = k.put(fill(128 * n, 10)), q = k.put(fill(128 * n, 11)), h = k.put(fill(n * n, 12));
    const out = k.alloc(128 * 8), scratch = k.alloc(x.rowLossesScratch(128, n));
    return { run: () => x.rowLosses(w, q, 128, n, h, out, scratch), free: () => [w, q, h, out, scratch].forEach((p) => k.free(p)) };
  });
  // The streaming Hessian: one chunk of 512 calibration rows (gemmSub computes the full X^T X).
  add(`hessianUpdate 512x${n}`, 2 * 512 * n * n, (k) => {
    const x = k.exports;
    const h = k.alloc(n * n * 4), xp = k.put(fill(512 * n, 13)), scratch = k.alloc(x.hessianUpdateScratch(n));
    k.f32(h, n * n).fill(0);
    return { run: () => x.hessianUpdate(h, xp, 512, n, 0.5, 0.001, scratch), free: () => [h, xp, scratch].forEach((p) => k.free(p)) };
  });
}
// GPTQ's factor U = chol(H^-1): Cholesky (n^3/3 flops) + triangular inverse (n^3/3).
for (const n of quick ? [1024] : [2048]) {
  const h = spd(n, 14);
  add(`chol(H^-1) ${n}`, (2 * n * n * n) / 3, (k) => {
    const x = k.exports;
    const hp = k.put(h), u = k.alloc(n * n * 4), work = k.alloc(x.upperCholeskyOfInverseScratch(n));
    return {
      run: () => { if (x.upperCholeskyOfInverse(u, hp, n, work) !== 0) throw new Error('not SPD'); },
      free: () => [hp, u, work].forEach((p) => k.free(p)),
    };
  });
}
// The forward pass: T tokens through a TinyLlama-sized MLP (2048 -> 5632 -> 2048).
for (const [T, nIn, nOut] of quick ? [[64, 2048, 5632]] : [[256, 2048, 5632], [256, 5632, 2048]]) {
  add(`nn_matmul ${T}x${nIn}x${nOut}`, 2 * T * nIn * nOut, (k) => {
    const xp = k.put(fill(T * nIn, 15)), w = k.put(fill(nOut * nIn, 16)), y = k.alloc(T * nOut * 4);
    return { run: () => k.exports.nn_matmul(xp, w, y, T, nIn, nOut), free: () => [xp, w, y].forEach((p) => k.free(p)) };
  });
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const lines = [];
for (const c of cases) {
  if (only && !only.some((o) => c.name.startsWith(o))) continue;
  const inst = kernels.map(({ k }) => c.setup(k));
  for (const i of inst) i.run(); // warm-up: tier-up and first touch of memory
  const cpu = kernels.map(() => []), wall = kernels.map(() => []);
  for (let r = 0; r < runs; r++) {
    inst.forEach((i, v) => {
      const c0 = cpuNow(), w0 = performance.now();
      i.run();
      wall[v].push((performance.now() - w0) / 1000);
      cpu[v].push(cpuNow() - c0);
    });
  }
  inst.forEach((i) => i.free());
  const rates = cpu.map((t) => c.flops / median(t) / 1e9);
  const wallRates = wall.map((t) => c.flops / median(t) / 1e9);
  const parts = rates.map((r, v) => `${r.toFixed(1)} (wall ${wallRates[v].toFixed(1)})${v > 0 ? ` x${(r / rates[0]).toFixed(2)}` : ''}`);
  const line = `${c.name.padEnd(28)} ${parts.join('   ')}`;
  lines.push(line);
  console.log(line);
}
if (kernels.length > 1) console.log(`builds: ${kernels.map((k) => k.name).join(' | ')}; xN = rate / first build's rate`);
console.log(`GFLOP/s per CPU second, median of ${runs} runs each, one thread`);
