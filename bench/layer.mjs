// Layer-solver benchmark: `npm run bench` (= build, then this file).
//   node bench/layer.mjs [--sizes 1024,2048,4096] [--repeat N] [--quick] [--only rtn,gptq,...]
//                        [--inputs random|correlated] [--rows N] [--exact-max N]
// For each square layer size: random W [n x n] and H = 2/n X^T X with X [2n x n] (as
// /work/shared/bench/torch_gptq.py), both generated deterministically here, H accumulated
// streaming by the kernel's own hessianUpdate. 4-bit, group 128 unless said otherwise.
// --inputs correlated: X's rows are 0.3 noise + a rank n/16 component shared by all columns,
// with per-column scales and an outlier column (x20) in 97, as activations are: an H far from
// diagonal, where block-diagonal shortcuts (the fast per-channel OWC screen) are tested hardest.
// --rows N: solve only the first N rows of W (the exact per-channel search at 4096 is slow);
// --exact-max: widest layer the exact per-channel OWC search runs on (default 1024); where it
// runs, "fast/exact loss" compares the two grids (RTN on them) and "CD from them" CD's final
// losses descending from each (CD from per-channel OWC, to convergence).
// Every case runs on one thread (this one) through prepareLayer + LocalBandSolver in
// bands of 128 rows, exactly as quantizeLayer does, with the kernel's exports wrapped to time
// each kernel call, so the table can separate e.g. GPTQ itself from the loss products.
// Times are medians over --repeat runs (default 1; the machine is shared and noisy).
import { performance } from 'node:perf_hooks';
import { Kernel, prepareLayer, LocalBandSolver, mergeBands } from '../build/index.js';
import { normals } from './data.mjs';
import { timeKernelCalls } from './kernel-timing.mjs';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const sizes = arg('sizes', quick ? '1024,2048' : '1024,2048,4096').split(',').map(Number);
const repeat = Number(arg('repeat', '1'));
const only = arg('only', null)?.split(',') ?? null;
const BAND = 128;
const GROUP = 128;

function fill(n, seed) {
  return normals(seed)(new Float32Array(n));
}

const inputs = arg('inputs', 'random');
if (!['random', 'correlated'].includes(inputs)) throw new Error(`--inputs ${inputs}: random or correlated`);

/** --inputs correlated: X = (0.3 noise + 2 z B) diag(colScale), B [cols/16 x cols] fixed. */
function correlate(x, m, cols, fillX) {
  const r = Math.max(4, cols >> 4);
  if (!correlatedBasis.has(cols)) correlatedBasis.set(cols, fillX(new Float32Array(r * cols)));
  const b = correlatedBasis.get(cols);
  const z = fillX(new Float32Array(m * r));
  for (let i = 0; i < m; i++) {
    const row = x.subarray(i * cols, (i + 1) * cols);
    for (let j = 0; j < cols; j++) row[j] *= 0.3;
    for (let t = 0; t < r; t++) {
      const c = 2 * z[i * r + t];
      for (let j = 0; j < cols; j++) row[j] += c * b[t * cols + j];
    }
    for (let j = 0; j < cols; j++) row[j] *= (j % 97 === 3 ? 20 : 1) * (0.2 + (j % 13) / 8);
  }
}
const correlatedBasis = new Map(); // cols -> B, drawn once per width

/** H = 2/n X^T X, X [2*cols x cols], streamed through the kernel in chunks of 512 rows. */
function makeHessian(k, cols) {
  const x = k.exports;
  const n = 2 * cols;
  const chunk = 512;
  const h = k.alloc(cols * cols * 4);
  k.f32(h, cols * cols).fill(0);
  const xp = k.alloc(chunk * cols * 4);
  const scratch = k.alloc((cols * chunk + cols * cols) * 4);
  const fillX = normals(1000 + cols);
  let seen = 0;
  let gemmSeconds = 0;
  for (let r0 = 0; r0 < n; r0 += chunk) {
    const m = Math.min(chunk, n - r0);
    fillX(k.f32(xp, m * cols));
    if (inputs === 'correlated') correlate(k.f32(xp, m * cols), m, cols, fillX);
    const t = performance.now();
    x.hessianUpdate(h, xp, m, cols, seen / (seen + m), 2 / (seen + m), scratch);
    gemmSeconds += (performance.now() - t) / 1000;
    seen += m;
  }
  const out = k.f32(h, cols * cols).slice();
  k.free(h); k.free(xp); k.free(scratch);
  // hessianUpdate computes the full X^T X: 2 * n * cols^2 flops.
  return { h: out, gflops: (2 * n * cols * cols) / gemmSeconds / 1e9 };
}

// ---- timing of kernel exports ----
const kernelTime = new Map();
const kernelCalls = new Map();
function instrument(k) {
  return timeKernelCalls(k, (name, ms) => {
    kernelTime.set(name, (kernelTime.get(name) ?? 0) + ms);
    if (!kernelCalls.has(name)) kernelCalls.set(name, []);
    kernelCalls.get(name).push(ms);
  });
}

let peakWasm = 0;
function notePeak(k) {
  peakWasm = Math.max(peakWasm, k.exports.memory.buffer.byteLength);
}

/** quantizeLayer on one thread, timed per phase. Returns { seconds, kernels, result }. */
async function run(k, W, H, cols, options) {
  kernelTime.clear();
  kernelCalls.clear();
  const t0 = performance.now();
  const prepared = await prepareLayer(H, cols, options, k);
  const tPrep = performance.now();
  const bands = await new LocalBandSolver(k).solveBands(prepared, W, { bandRows: BAND });
  notePeak(k); // wasm memory never shrinks: its size now is the peak
  const result = await mergeBands(prepared, W.rows, bands, k);
  const t1 = performance.now();
  // First-round CD (every other cdBand call when refit: 1 runs CD, refit, CD per band).
  const cd = kernelCalls.get('cdBand') ?? [];
  const firstCd = cd.filter((_, i) => options.refit ? i % 2 === 0 : true).reduce((a, b) => a + b, 0) / 1000;
  return { seconds: (t1 - t0) / 1000, prepare: (tPrep - t0) / 1000, kernels: new Map([...kernelTime].map(([n, ms]) => [n, ms / 1000])), firstCd, result };
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

async function repeated(k, W, H, cols, options) {
  const runs = [];
  for (let i = 0; i < repeat; i++) runs.push(await run(k, W, H, cols, options));
  const pick = (f) => median(runs.map(f));
  return {
    seconds: pick((r) => r.seconds),
    prepare: pick((r) => r.prepare),
    kernel: (...names) => pick((r) => names.reduce((s, n) => s + (r.kernels.get(n) ?? 0), 0)),
    firstCd: pick((r) => r.firstCd),
    result: runs[0].result,
  };
}

/** GEMM GFLOP/s of gemmSub on an m x k by k x n product (C -= A B). */
function gemmRate(k, m, n, kk, reps = 3) {
  const x = k.exports;
  const a = k.put(fill(m * kk, 7)), b = k.put(fill(kk * n, 8)), c = k.alloc(m * n * 4);
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    x.gemmSub(c, n, a, kk, b, n, m, n, kk);
    times.push((performance.now() - t) / 1000);
  }
  k.free(a); k.free(b); k.free(c);
  return (2 * m * n * kk) / median(times) / 1e9;
}

const fmt = (s) => (s === undefined || s === null ? '-' : s < 10 ? s.toFixed(3) : s.toFixed(1));
const want = (name) => !only || only.includes(name);

const k = instrument(await Kernel.create());
const rowsOut = [];
for (const n of sizes) {
  const tGen = performance.now();
  const rows = Math.min(n, Number(arg('rows', String(n))));
  const W = { data: fill(n * n, 42 + n).slice(0, rows * n), rows, cols: n };
  const { h: H, gflops: hGflops } = makeHessian(k, n);
  notePeak(k);
  console.error(`[bench] ${n}x${n}: data + H in ${((performance.now() - tGen) / 1000).toFixed(1)}s`);
  const row = { n, hGflops };
  const base = { bits: 4, groupSize: GROUP };
  const log = (what, r) => console.error(`[bench] ${n} ${what}: ${fmt(r.seconds)}s`);

  if (want('gemm')) {
    row.gemm = gemmRate(k, 128, n, n); // the shape of one band's loss / gradient product
    row.gemmGptq = gemmRate(k, 128, n - 128, 128); // one GPTQ lazy-block update of a band
  }
  if (want('rtn')) {
    const r = await repeated(k, W, H, n, { ...base, method: 'rtn' });
    row.rtn = r.seconds;
    row.loss = r.kernel('rowLosses');
    row.rtnLoss = r.result.rtnLoss;
    log('rtn', r);
  }
  if (want('gptq')) {
    const r = await repeated(k, W, H, n, { ...base, method: 'gptq' });
    row.gptqFull = r.seconds;
    // GPTQ itself: H-side factor (prepareLayer) + the column sweep, without the loss products.
    row.gptq = r.prepare + r.kernel('gptqBand');
    row.gptqPrep = r.prepare;
    row.lossProducts = r.kernel('rowLosses');
    row.gptqLoss = r.result.loss;
    log('gptq', r);
  }
  if (want('cd')) {
    const r = await repeated(k, W, H, n, { ...base, method: 'cd', init: 'gptq', iters: n });
    row.cd = r.kernel('gradientBand', 'cdBand');
    row.cdFull = r.seconds;
    row.cdMoves = meanMoves(r.result);
    row.cdLoss = r.result.loss;
    log('cd from gptq', r);
  }
  if (want('bcd')) {
    const iters = n >= 4096 ? 512 : n;
    const r = await repeated(k, W, H, n, { ...base, method: 'bcd', init: 'gptq', iters });
    row.bcd = r.kernel('gradientBand', 'bcdBand');
    row.bcdIters = iters;
    row.bcdMoves = meanMoves(r.result);
    log(`bcd (iters ${iters})`, r);
  }
  if (want('owc')) {
    let r = await repeated(k, W, H, n, { bits: 4, groupSize: -1, method: 'rtn', clip: 'owc' });
    row.owcChannel = r.kernel('gridParams');
    row.owcChannelLoss = r.result.loss;
    log('owc per-channel (fast)', r);
    if (n <= Number(arg("exact-max", "1024"))) {
      r = await repeated(k, W, H, n, { bits: 4, groupSize: -1, method: 'rtn', clip: 'owc', owcExact: true });
      row.owcExact = r.kernel('gridParams');
      row.owcExactLoss = r.result.loss;
      log('owc per-channel (exact)', r);
      // CD descends from that grid: its final loss from the fast grid against from the exact one.
      const cd = { bits: 4, groupSize: -1, method: 'cd', init: 'owc', iters: 100 * n };
      const fromFast = await repeated(k, W, H, n, { ...cd, owcExact: false });
      const fromExact = await repeated(k, W, H, n, { ...cd, owcExact: true });
      row.cdChannelRatio = fromFast.result.loss / fromExact.result.loss;
      log('cd from per-channel owc (fast, exact grids)', { seconds: fromFast.seconds + fromExact.seconds });
    }
    r = await repeated(k, W, H, n, { ...base, method: 'rtn', clip: 'owc' });
    row.owcGroup = r.kernel('gridParams');
    log('owc g128', r);
  }
  if (want('cdowc') || want('refit')) {
    // One run: OWC g128 grid, CD to convergence, one refit round, CD again. CD(OWC) is the
    // grid + gradient + first CD round; refit is the refit kernel alone.
    const r = await repeated(k, W, H, n, { ...base, method: 'cd', init: 'owc', iters: 100 * n, refit: 1 });
    row.cdOwc = r.kernel('gridParams', 'gradientBand') + r.firstCd;
    row.cdOwcMoves = null;
    row.refit = r.kernel('refitBand');
    row.refitLoss = r.result.loss;
    log('cd from owc + refit', r);
    const r1 = await repeated(k, W, H, n, { ...base, method: 'cd', init: 'owc', iters: 100 * n, refit: 0 });
    row.cdOwcMoves = meanMoves(r1.result);
    row.cdOwcLoss = r1.result.loss;
    row.cdOwc = Math.min(row.cdOwc, r1.kernel('gridParams', 'gradientBand', 'cdBand'));
    log('cd from owc', r1);
  }
  rowsOut.push(row);
}

function meanMoves(result) {
  if (!result.moves) return null;
  let s = 0;
  for (const m of result.moves) s += m;
  return s / result.moves.length;
}

const rss = process.resourceUsage().maxRSS / 1024; // kB -> MB
const table = [
  ['size', (r) => `${r.n}`],
  ['RTN s', (r) => fmt(r.rtn)],
  ['GPTQ s', (r) => fmt(r.gptq)],
  ['(prep)', (r) => fmt(r.gptqPrep)],
  ['GPTQ+loss s', (r) => fmt(r.gptqFull)],
  ['loss prod s', (r) => fmt(r.lossProducts)],
  ['CD s', (r) => fmt(r.cd)],
  ['CD moves', (r) => (r.cdMoves == null ? '-' : r.cdMoves.toFixed(0))],
  ['BCD s', (r) => (r.bcd == null ? '-' : `${fmt(r.bcd)}${r.bcdIters < r.n ? `*${r.bcdIters}it` : ''}`)],
  ['OWC ch s', (r) => fmt(r.owcChannel)],
  ['OWC exact s', (r) => fmt(r.owcExact)],
  ['fast/exact loss', (r) => (r.owcExactLoss ? (r.owcChannelLoss / r.owcExactLoss).toFixed(5) : '-')],
  ['CD from them', (r) => (r.cdChannelRatio ? r.cdChannelRatio.toFixed(5) : '-')],
  ['OWC g128 s', (r) => fmt(r.owcGroup)],
  ['CD(OWC) s', (r) => fmt(r.cdOwc)],
  ['CD(OWC) moves', (r) => (r.cdOwcMoves == null ? '-' : r.cdOwcMoves.toFixed(0))],
  ['refit s', (r) => fmt(r.refit)],
  ['GEMM GF/s', (r) => (r.gemm ? `${r.gemm.toFixed(1)}/${r.gemmGptq.toFixed(1)}/${r.hGflops.toFixed(1)}` : '-')],
];
const cells = [table.map(([h]) => h), ...rowsOut.map((r) => table.map(([, f]) => f(r)))];
const widths = table.map((_, c) => Math.max(...cells.map((row) => row[c].length)));
console.log(`cdquant layer bench: 4-bit, group 128 (OWC ch: per-channel), one thread, median of ${repeat}`);
for (const row of cells) console.log(row.map((c, i) => c.padStart(widths[i])).join('  '));
console.log('GPTQ s = prepareLayer (damping, chol(H^-1)) + gptqBand; GPTQ+loss s = the whole quantizeLayer call incl. RTN baseline and loss products.');
console.log('CD s = gradient + descent after the GPTQ init (iters = cols); CD(OWC) s = OWC g128 grid + descent to convergence.');
console.log('GEMM GF/s: band product 128 x n x n / GPTQ block update 128 x (n-128) x 128 / H = X^T X generation.');
if (rowsOut.some((r) => r.bcdIters < r.n)) console.log('BCD marked *Nit ran with iters capped at N (too slow at full cols).');
for (const r of rowsOut) {
  const parts = [`loss ${r.n}: rtn ${r.rtnLoss?.toExponential(4)}`, `gptq ${r.gptqLoss?.toExponential(4)}`, `cd ${r.cdLoss?.toExponential(4)}`, `cd(owc) ${r.cdOwcLoss?.toExponential(4)}`, `refit ${r.refitLoss?.toExponential(4)}`];
  console.log(parts.join(', '));
}
console.log(`peak wasm memory ${(peakWasm / 2 ** 20).toFixed(0)} MB, peak process RSS ${rss.toFixed(0)} MB`);
