// The screened OWC group search (assembly/owc.ts: a stop once a certified lower bound shows no
// remaining candidate can win) must choose exactly the grid the unscreened scan chose. The
// reference below is that scan written out in float64 JavaScript from owcBlockScores'
// description, operation for operation (f32 grids through Math.fround; JavaScript has no fused
// multiply-add), scoring all 80 candidates: the same scores to the bit, and so the same first
// minimum. Checked on blocks where the screening is certified (well-conditioned H) and where
// it is not (correlated columns), and on rows built for ties (zeros, constant rows).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel, GRID_SEARCH } from '../src/core/kernel.js';
import { mulberry32, gaussian, gridRange, roundHalfEven } from './reference.js';

const f = Math.fround;
const CANDIDATES = 80;

/** assembly/grid.ts candidateGrid in f32, on gridRange's range (its zero, symmetric and
 * all-zero rules); roundHalfEven is WebAssembly's nearest. */
function candidateGrid(i: number, { xmin, xmax }: { xmin: number; xmax: number }, maxq: number, sym: boolean): [number, number] {
  const p = f(1 - i / 100);
  const lo = f(p * xmin), hi = f(p * xmax);
  const scale = f(f(hi - lo) / maxq);
  return [scale, sym ? (maxq + 1) / 2 : Math.min(roundHalfEven(f(-lo / scale)), maxq)];
}

function code(x: number, s: number, z: number, maxq: number): number {
  return Math.min(Math.max(roundHalfEven(f(x / s)) + z, 0), maxq);
}

/** The unscreened scan of one block (x: len values, hb: len x len), first minimum's index. */
function unscreenedChoice(x: Float32Array, hb: Float64Array, maxq: number, sym: boolean): number {
  const len = x.length;
  const range = gridRange(x, sym);
  const hx = new Float64Array(len), u = new Float64Array(len), vprev = new Float64Array(len);
  for (let j = 0; j < len; j++) if (x[j] !== 0) for (let i = 0; i < len; i++) hx[i] += x[j] * hb[j * len + i];
  let xHx = 0;
  for (let j = 0; j < len; j++) xHx += x[j] * hx[j];
  let [s, z] = candidateGrid(0, range, maxq, sym);
  for (let j = 0; j < len; j++) {
    const v = code(x[j], s, z, maxq) - z;
    vprev[j] = v;
    if (v !== 0) for (let i = 0; i < len; i++) u[i] += v * hb[j * len + i];
  }
  let vHv = 0, vHx = 0;
  for (let j = 0; j < len; j++) { vHv += vprev[j] * u[j]; vHx += vprev[j] * hx[j]; }
  let best = 0, bestScore = 0 + (xHx - 2 * s * vHx + s * s * vHv);
  for (let c = 1; c < CANDIDATES; c++) {
    [s, z] = candidateGrid(c, range, maxq, sym);
    for (let i = 0; i < len; i++) {
      const vi = code(x[i], s, z, maxq) - z;
      if (vi === vprev[i]) continue;
      const d = vi - vprev[i];
      vHx += d * hx[i];
      const change = 2 * d * u[i] + d * d * hb[i * len + i];
      for (let j = 0; j < len; j++) u[j] += d * hb[i * len + j];
      vprev[i] = vi;
      vHv += change;
    }
    const score = 0 + (xHx - 2 * s * vHx + s * s * vHv);
    if (score < bestScore) { bestScore = score; best = c; }
  }
  return best;
}

/** H = X^T X / n (f32, symmetric) from n samples of cols features; `mix` > 0 correlates each
 * column with its neighbour (an ill-conditioned H the screening cannot certify). */
function hessian(cols: number, n: number, seed: number, mix: number): Float32Array {
  const g = gaussian(mulberry32(seed));
  const x = new Float64Array(n * cols).map(() => g());
  if (mix > 0) for (let k = 0; k < n; k++) for (let i = cols - 1; i > 0; i--) x[k * cols + i] = x[k * cols + i] * (1 - mix) + mix * x[k * cols + i - 1];
  const h = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = i; j < cols; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += x[k * cols + i] * x[k * cols + j];
      h[i * cols + j] = h[j * cols + i] = s / n;
    }
  }
  return h;
}

for (const [name, cols, n, mix] of [
  ['well-conditioned H (screened)', 256, 4096, 0],
  ['correlated columns (not screened)', 256, 512, 0.97],
] as [string, number, number, number][]) {
  test(`OWC groups: the screened search chooses the unscreened scan's grid, ${name}`, async () => {
    const k = await Kernel.create();
    const x = k.exports;
    const h = hessian(cols, n, 11, mix);
    const rows = 20;
    const g = gaussian(mulberry32(5));
    const w = new Float32Array(rows * cols).map(() => g());
    // Rows made for ties: all zero (every candidate scores 0), constant, and a few outliers.
    w.fill(0, 0, cols);
    w.fill(0.375, cols, 2 * cols);
    for (let j = 0; j < cols; j += 37) w[2 * cols + j] = 9;
    for (const [bits, group, sym] of [[4, 128, false], [3, 64, true], [2, 128, false]] as [number, number, boolean][]) {
      const maxq = 2 ** bits - 1;
      const groups = cols / group;
      const got = k.scoped((alloc, put) => {
        const scales = alloc(rows * groups * 4), zeros = alloc(rows * groups * 4);
        x.gridParams(put(w), rows, cols, group, maxq, sym, GRID_SEARCH.owc, put(h), scales, zeros, alloc(x.gridParamsScratch(rows, cols, group, GRID_SEARCH.owc)));
        return { scales: k.f32(scales, rows * groups).slice(), zeros: k.f32(zeros, rows * groups).slice() };
      });
      for (let gi = 0; gi < groups; gi++) {
        const c0 = gi * group;
        const hb = new Float64Array(group * group);
        for (let i = 0; i < group; i++) for (let j = 0; j < group; j++) hb[i * group + j] = h[(c0 + i) * cols + c0 + j];
        for (let r = 0; r < rows; r++) {
          const xs = w.slice(r * cols + c0, r * cols + c0 + group);
          const [s, z] = candidateGrid(unscreenedChoice(xs, hb, maxq, sym), gridRange(xs, sym), maxq, sym);
          const at = r * groups + gi;
          assert.equal([got.scales[at], got.zeros[at]], [s, z], `${bits}-bit g${group}${sym ? ' sym' : ''}, row ${r}, group ${gi}`);
        }
      }
    }
  });
}

test.run();
