// `npm run bench` (issue 13): one square layer, 4-bit, groups of 128, every figure a median of
// --runs runs (default 3) with its min and max, and the speed targets printed as ratios.
//   node bench/run.mjs [--quick] [--size N] [--runs N] [--workers 1,2] [--only gptq,cd,owc,bcd,torch]
// --quick: 1024 x 1024 (a minute or two); default 4096 x 4096 (about 10-15 minutes here).
// Methods (each the whole quantizeLayer call as a user makes it: the method and its loss, no RTN baseline):
//   GPTQ; CD from OWC (OWC g128 grid, RTN on it, CD to convergence); per-channel OWC (the fast
//   search, RTN on it); BCD from OWC (blocks of 2, to convergence). With 1 worker the layer is
//   solved on this thread through an instrumented kernel, which also gives each algorithm's own
//   time (its kernels, without validation, preparation and the loss); with 2 workers through
//   one WorkerPool kept across runs (as a model's layers share it).
// The PyTorch reference (../shared/bench/torch_gptq.py, gptq_fast) runs on 1 and 2 threads when
// `python3 -c 'import torch'` works; otherwise a note says why it was skipped.
// Data: W ~ N(0, 1) [n x n], H = 2/m X^T X with X ~ N(0, 1) [2n x n] (the reference's own
// problem up to the scale of H and the random numbers), deterministic.
// Seconds are wall-clock; CPU seconds (all threads of the process) are printed beside them,
// since other jobs share this machine's two cores.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Kernel, WorkerPool, quantizeLayer } from '../build/index.js';
import { normals } from './data.mjs';
import { timeKernelCalls } from './kernel-timing.mjs';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const n = Number(arg('size', quick ? '1024' : '4096'));
const runs = Number(arg('runs', '3'));
const workerCounts = arg('workers', '1,2').split(',').map(Number);
const only = arg('only', 'gptq,cd,owc,bcd,torch').split(',');
const here = dirname(fileURLToPath(import.meta.url));
const torchScript = join(here, '..', '..', 'shared', 'bench', 'torch_gptq.py');

const t0 = performance.now();
const weights = { data: normals(42)(new Float32Array(n * n)), rows: n, cols: n };
const dataKernel = await Kernel.create();
const hessian = dataKernel.scoped((alloc) => {
  const x = dataKernel.exports;
  const m = 2 * n, chunk = 512;
  const h = alloc(n * n * 4), xp = alloc(chunk * n * 4), scratch = alloc(x.hessianUpdateScratch(n));
  dataKernel.f32(h, n * n).fill(0);
  const fill = normals(7);
  for (let seen = 0; seen < m; seen += chunk) {
    fill(dataKernel.f32(xp, chunk * n));
    x.hessianUpdate(h, xp, chunk, n, seen / (seen + chunk), 2 / (seen + chunk), scratch);
  }
  return dataKernel.f32(h, n * n).slice();
});
const load0 = loadavg();
console.log(`cdquant bench: ${n} x ${n}, 4-bit, groups of 128; ${runs} runs each; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${load0.map((l) => l.toFixed(1)).join(' ')}; node ${process.version}`);
console.log(`data: W ~ N(0,1), H = 2/m X^T X, X ~ N(0,1) [${2 * n} x ${n}] (${((performance.now() - t0) / 1000).toFixed(1)} s)`);

// ---- the solver runs ----
const iters = 100 * n; // far above any row's moves: descent runs to convergence
const methods = [
  { key: 'gptq', name: 'GPTQ', options: { method: 'gptq', bits: 4, groupSize: 128 }, own: ['gptqBand'], prepare: true },
  { key: 'cd', name: 'CD from OWC', options: { method: 'cd', init: 'owc', bits: 4, groupSize: 128, iters }, own: ['gridParams', 'gradientBand', 'cdBand'] },
  { key: 'owc', name: 'per-channel OWC', options: { method: 'rtn', clip: 'owc', bits: 4, groupSize: -1 }, own: ['gridParams'] },
  { key: 'bcd', name: 'BCD from OWC (k=2)', options: { method: 'bcd', init: 'owc', blockSize: 2, bits: 4, groupSize: 128, iters }, own: ['gridParams', 'gradientBand', 'bcdBand'] },
].filter((m) => only.includes(m.key));

/** A kernel whose exports add their seconds to `kernelSeconds` (the 1-worker runs). */
const kernelSeconds = new Map();
const kernel = timeKernelCalls(await Kernel.create(), (name, ms) => kernelSeconds.set(name, (kernelSeconds.get(name) ?? 0) + ms / 1000));
// Minimal grids (the RTN baseline's) are computed by gridParams too: time them apart.
const MINMAX = 0;
{
  const g = kernel.exports.gridParams;
  kernel.exports.gridParams = (...a) => {
    const t = performance.now();
    try { return g(...a); } finally { if (a[6] === MINMAX) kernelSeconds.set('gridParams', (kernelSeconds.get('gridParams') ?? 0) - (performance.now() - t) / 1000); }
  };
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const cpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const results = {}; // results[key][workers] = { wall: [], cpu: [], own: [], loss, moves }

for (const workers of workerCounts) {
  const pool = workers > 1 ? new WorkerPool({ threads: workers }) : null;
  try {
    for (const m of methods) {
      const r = (results[m.key] ??= {})[workers] = { wall: [], cpu: [], own: [] };
      for (let i = 0; i < runs; i++) {
        kernelSeconds.clear();
        const c0 = cpuSeconds();
        const w0 = performance.now();
        let prepare = 0;
        let res;
        if (pool) {
          res = await quantizeLayer(weights, hessian, { ...m.options, pool });
        } else {
          res = await quantizeLayer(weights, hessian, { ...m.options, threads: 1, kernel });
          // GPTQ's own time includes its H-side factor (prepareLayer: damping, chol(H^-1)).
          if (m.prepare) prepare = kernelSeconds.get('upperCholeskyOfInverse') ?? 0;
          r.own.push(prepare + m.own.reduce((s, name) => s + (kernelSeconds.get(name) ?? 0), 0));
          (r.kernels ??= []).push(new Map(kernelSeconds));
        }
        r.wall.push((performance.now() - w0) / 1000);
        r.cpu.push(cpuSeconds() - c0);
        r.loss = res.loss;
        r.moves = res.moves ? res.moves.reduce((a, b) => a + b, 0) / res.moves.length : null;
        console.error(`[bench] ${m.name}, ${workers} worker${workers > 1 ? 's' : ''}, run ${i + 1}: ${r.wall.at(-1).toFixed(2)} s`);
      }
    }
  } finally {
    pool?.terminate();
  }
}

// ---- the PyTorch reference ----
let torchNote = '';
let python = '';
const torchRuns = {};
if (only.includes('torch')) {
  // Debian's python3-torch lives in /usr/bin/python3; a python3 earlier on PATH (pyenv) may
  // lack it. CDQUANT_PYTHON overrides both.
  const candidates = process.env.CDQUANT_PYTHON ? [process.env.CDQUANT_PYTHON] : ['/usr/bin/python3', 'python3'];
  let why = '';
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ['-c', 'import torch'], { encoding: 'utf8' });
    if (!probe.error && probe.status === 0) { python = candidate; break; }
    why += `${why ? '; ' : ''}${candidate}: ${probe.error?.message ?? probe.stderr.trim().split('\n').at(-1)}`;
  }
  if (!python) torchNote = `PyTorch reference skipped: \`python3 -c 'import torch'\` failed (${why})`;
  else if (!existsSync(torchScript)) torchNote = `PyTorch reference skipped: ${torchScript} not found`;
  else {
    for (const threads of [1, 2]) {
      console.error(`[bench] PyTorch reference, ${threads} thread${threads > 1 ? 's' : ''} (${runs} runs)...`);
      const out = spawnSync(python, [join(here, 'torch_ref.py'), torchScript, String(n), String(n), String(threads), String(runs)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (out.status !== 0) { torchNote = `PyTorch reference failed: ${out.stderr.trim().split('\n').at(-1)}`; break; }
      torchRuns[threads] = JSON.parse(out.stdout.trim().split('\n').at(-1));
    }
  }
}

// ---- report ----
const fmt = (s) => (s == null ? '-' : s < 10 ? s.toFixed(2) : s.toFixed(1));
const stat = (v) => (v.length ? `${fmt(median(v))} (${fmt(Math.min(...v))}-${fmt(Math.max(...v))})` : '-');
const rows = [['method', 'workers', 'seconds: median (min-max)', 'CPU s', 'own s (1 worker)', 'moves/row', 'loss']];
for (const m of methods) {
  for (const workers of workerCounts) {
    const r = results[m.key][workers];
    rows.push([m.name, String(workers), stat(r.wall), fmt(median(r.cpu)), r.own.length ? stat(r.own) : '-', r.moves == null ? '-' : r.moves.toFixed(0), r.loss.toExponential(4)]);
  }
}
for (const [threads, t] of Object.entries(torchRuns)) {
  rows.push([`PyTorch ${t.torch} gptq_fast`, `${threads} thr`, stat(t.wall), fmt(median(t.cpu)), '-', '-', '-']);
}
const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
console.log('');
for (const row of rows) console.log(row.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
// Where a 1-worker call spends its time: each kernel's median seconds over the runs.
for (const m of methods) {
  const runsK = results[m.key][1]?.kernels;
  if (!runsK) continue;
  const names = [...new Set(runsK.flatMap((k) => [...k.keys()]))];
  const parts = names.map((name) => [name, median(runsK.map((k) => k.get(name) ?? 0))]).filter(([, t]) => t >= 0.01).sort((a, b) => b[1] - a[1]);
  console.log(`  ${m.name}, 1 worker, kernels: ${parts.map(([name, t]) => `${name} ${fmt(t)}`).join(', ')}`);
}
console.log('seconds: the whole quantizeLayer call (validation, preparation, the method, its loss); own s: the method\'s kernels alone, on this thread (GPTQ: chol(H^-1) + sweep; CD/BCD: OWC grid + gradient + descent; OWC: the grid search).');
if (torchNote) console.log(torchNote);

const ratio = (a, b) => (a == null || b == null ? null : a / b);
const med = (key, workers, field = 'wall') => { const v = results[key]?.[workers]?.[field]; return v?.length ? median(v) : null; };
const lines = [];
const target = (label, value, limit) => {
  if (value == null) return;
  const verdict = limit === '-' ? '' : `   target <= ${limit}  ${value <= limit ? 'met' : 'NOT met'}`;
  lines.push(`  ${label.padEnd(62)} ${value.toFixed(2).padStart(6)}${verdict}`);
};
for (const workers of workerCounts) {
  const tw = torchRuns[workers] ? median(torchRuns[workers].wall) : null;
  target(`GPTQ / PyTorch, ${workers} worker(s) / ${workers} thread(s)`, ratio(med('gptq', workers), tw), workers === 2 ? 0.5 : '-');
  if (workers === 1) target('GPTQ own time / PyTorch, 1 thread', ratio(med('gptq', 1, 'own'), tw), '-');
  target(`CD from OWC / GPTQ, ${workers} worker(s)`, ratio(med('cd', workers), med('gptq', workers)), 1.5);
  target(`per-channel OWC / GPTQ, ${workers} worker(s)`, ratio(med('owc', workers), med('gptq', workers)), 1);
  target(`BCD / CD, ${workers} worker(s)`, ratio(med('bcd', workers), med('cd', workers)), 2);
}
target('CD from OWC / GPTQ, own times, 1 worker', ratio(med('cd', 1, 'own'), med('gptq', 1, 'own')), 1.5);
target('per-channel OWC / GPTQ, own times, 1 worker', ratio(med('owc', 1, 'own'), med('gptq', 1, 'own')), 1);
target('BCD / CD, own times, 1 worker', ratio(med('bcd', 1, 'own'), med('cd', 1, 'own')), 2);
for (const workers of workerCounts.filter((w) => w > 1)) {
  for (const m of methods) {
    const s = ratio(med(m.key, 1), med(m.key, workers));
    if (s != null) lines.push(`  ${`${m.name}: speed-up 1 -> ${workers} workers`.padEnd(62)} ${s.toFixed(2).padStart(6)}`);
  }
}
console.log('\nratios of medians (whole calls unless said):');
for (const line of lines) console.log(line);
console.log(`load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
