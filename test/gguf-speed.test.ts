// The fast GGUF grid search (assembly/gguf/owc.ts) against the search it replaced, kept frozen
// in test/assembly/gguf-owc-reference.ts and compiled into its own wasm (helpers/owc-reference.ts):
// the same stored grids, bit for bit, for every block type on random and adversarial blocks.
// The reference carries one fix (see its header); the k-quant tests also show what the unfixed
// search did, and check the fixed one against an independent float64 loss.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel } from '../src/core/kernel.js';
import { GGUF_BLOCK_TYPES, candidateGrid, decodeGrid, groupAffine, gridValues, quantizeRows, rtnCodes, type GgufTypeInfo } from '../src/formats/gguf-blocks.js';
import { owcReference, type OwcReference } from './helpers/owc-reference.js';
import { mulberry32 } from './reference.js';

const kernel = await Kernel.create();
const reference = await owcReference();
const BLOCK_TYPES = Object.values(GGUF_BLOCK_TYPES).filter((t) => t.groupSize > 0) as GgufTypeInfo[];

interface Problem { name: string; W: Float32Array; H: Float32Array; rows: number; cols: number }
interface Grid { halves: Uint8Array; sc: Uint8Array; mn: Uint8Array }

function gaussian(rand: () => number) {
  return () => Math.sqrt(-2 * Math.log(rand() + 1e-300)) * Math.cos(2 * Math.PI * rand());
}

/** H = 2/n X^T X (f64, rounded to f32, symmetric bit for bit) of X with uneven column scales;
 * `correlated` mixes a few latent factors in (strong off-diagonal terms). */
function hessian(cols: number, seed: number, correlated = false): Float32Array {
  const rand = mulberry32(seed), g = gaussian(rand);
  const n = 2 * cols;
  const scale = Float64Array.from({ length: cols }, () => Math.exp(g()));
  const f = 4;
  const mix = Float64Array.from({ length: f * cols }, () => g());
  const H64 = new Float64Array(cols * cols);
  const x = new Float64Array(cols);
  for (let k = 0; k < n; k++) {
    const lat = Array.from({ length: f }, () => g());
    for (let j = 0; j < cols; j++) {
      let v = g();
      if (correlated) for (let a = 0; a < f; a++) v += 2 * lat[a] * mix[a * cols + j];
      x[j] = v * scale[j];
    }
    for (let i = 0; i < cols; i++) for (let j = 0; j <= i; j++) H64[i * cols + j] += (2 / n) * x[i] * x[j];
  }
  const H = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j <= i; j++) H[i * cols + j] = H[j * cols + i] = H64[i * cols + j];
  return H;
}

/** Weights of the kinds a search can trip on, row by row. */
function weights(rows: number, cols: number, seed: number, kind: string): Float32Array {
  const rand = mulberry32(seed), g = gaussian(rand);
  const W = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = W.subarray(r * cols, (r + 1) * cols);
    const k = kind === 'mixed' ? ['gauss', 'outliers', 'ties', 'zeros', 'subnormal', 'tiny', 'constant', 'huge', 'positive', 'signs', 'offset', 'halfway'][r % 12] : kind;
    for (let i = 0; i < cols; i++) {
      let v = 0.02 * g();
      switch (k) {
        case 'outliers': if (rand() < 0.03) v *= 20 + 50 * rand(); break;
        // values on a coarse lattice: many exact ties between neighbouring grid values
        case 'ties': v = Math.round(v * 400) / 400 + (rand() < 0.5 ? 1 / 800 : 0); break;
        // whole groups (and whole super-blocks) of zeros, and zeros scattered
        case 'zeros': v = (Math.floor(i / 32) % 3 === 0 || i >= 256 && i < 512) ? 0 : rand() < 0.3 ? 0 : v; break;
        case 'subnormal': v *= 1e-36; break; // ranges whose scales are float32 subnormals
        case 'tiny': v *= 1e-26; break; // fp16 super-scales underflow
        case 'constant': v = Math.floor(i / 16) % 2 ? 0.013 : -0.007; break;
        case 'huge': v *= 1e4; break;
        case 'positive': v = Math.abs(v) + 0.01; break;
        // every group's extreme has the same magnitude, alternating in sign: the super-block
        // step's "first of the largest magnitude" decides the sign of the super-scale
        case 'signs': v = i % 16 === 3 ? (Math.floor(i / 16) % 2 ? -0.05 : 0.05) : 0.049 * (2 * rand() - 1); break;
        // a large common offset: the estimate's terms cancel to a small score
        case 'offset': v = 1000 + 0.01 * g(); break;
        // values halfway between the p = 1 grid's points (d = 1/64 from the extreme -1/8)
        case 'halfway': v = i % 32 === 0 ? -0.125 : (Math.floor(rand() * 14) - 7 + 0.5) / 64; break;
      }
      row[i] = v;
    }
  }
  return W;
}

/** H whose diagonal blocks are not symmetric bit for bit (one entry per 32 off by an ulp):
 * the search must then score every candidate in full, as the reference does. */
function asymmetric(H: Float32Array, cols: number): Float32Array {
  const out = H.slice();
  for (let i = 1; i < cols; i += 32) out[i * cols + i - 1] = Math.fround(out[i * cols + i - 1] * (1 + 2 ** -20));
  return out;
}

let cached: Problem[] | null = null;
function problems(): Problem[] {
  if (cached) return cached;
  const rows = 12, cols = 512;
  const correlated = hessian(cols, 12, true), diagonal = hessian(cols, 14);
  cached = [
    { name: 'mixed rows, correlated H', W: weights(rows, cols, 11, 'mixed'), H: correlated, rows, cols },
    { name: 'mixed rows, diagonal-heavy H', W: weights(rows, cols, 13, 'mixed'), H: diagonal, rows, cols },
    { name: 'mixed rows, H not symmetric', W: weights(4, 256, 15, 'mixed'), H: asymmetric(hessian(256, 16, true), 256), rows: 4, cols: 256 },
  ];
  return cached;
}

/** ggufOwc (and then ggufKeepBetter against llama.cpp's importance-weighted grid, as the
 * solver runs them) in `m`: the main kernel or the reference. */
function runSearch(m: Pick<OwcReference, 'memory' | 'alloc' | 'free' | 'ggufOwc' | 'ggufOwcScratch' | 'ggufKeepBetter'>, info: GgufTypeInfo, p: Problem, other: Grid | null, owc: 'ggufOwc' | 'ggufOwcAsOfD3544aa' = 'ggufOwc'): Grid {
  const { rows, cols } = p;
  const blocks = (rows * cols) / info.blockElems, groups = (rows * cols) / info.groupSize;
  const ptrs: number[] = [];
  const put = (a: ArrayBufferView) => {
    const ptr = m.alloc(Math.max(16, a.byteLength));
    ptrs.push(ptr);
    new Uint8Array(m.memory.buffer, ptr, a.byteLength).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    return ptr;
  };
  try {
    const w = put(p.W), h = put(p.H);
    const hv = put(new Uint8Array(blocks * 4)), sc = put(new Uint8Array(groups)), mn = put(new Uint8Array(groups));
    const scratch = put(new Uint8Array(m.ggufOwcScratch()));
    (m as any)[owc](info.id, w, rows, cols, h, hv, sc, mn, scratch);
    if (other) m.ggufKeepBetter(info.id, w, rows, cols, h, hv, sc, mn, put(other.halves), put(other.sc), put(other.mn), scratch);
    const get = (ptr: number, n: number) => new Uint8Array(m.memory.buffer, ptr, n).slice();
    return { halves: get(hv, blocks * 4), sc: get(sc, groups), mn: get(mn, groups) };
  } finally {
    for (const ptr of ptrs) m.free(ptr);
  }
}

const mainKernel = {
  get memory() { return kernel.exports.memory; },
  alloc: (n: number) => kernel.alloc(n),
  free: (p: number) => kernel.free(p),
  ggufOwc: (...a: number[]) => (kernel.exports.ggufOwc as any)(...a),
  ggufOwcScratch: () => kernel.exports.ggufOwcScratch(),
  ggufKeepBetter: (...a: number[]) => (kernel.exports.ggufKeepBetter as any)(...a),
} as unknown as OwcReference;

/** llama.cpp's importance-weighted grid (imatrix = diag H), as the solver takes it. */
function imatrixGrid(info: GgufTypeInfo, p: Problem): Grid {
  const diag = Float32Array.from({ length: p.cols }, (_, j) => p.H[j * p.cols + j]);
  const g = decodeGrid(kernel, info.name, quantizeRows(kernel, info.name, p.W, p.rows, p.cols, diag), p.rows, p.cols);
  return { halves: new Uint8Array(g.halves.buffer, g.halves.byteOffset, g.halves.byteLength), sc: g.subScales, mn: g.subMins };
}

function firstDiff(a: Grid, b: Grid, info: GgufTypeInfo): string | null {
  const blockOf = (i: number, per: number) => Math.floor(i / per);
  for (let i = 0; i < a.halves.length; i++) if (a.halves[i] !== b.halves[i]) return `halves of block ${blockOf(i, 4)}`;
  if (info.blockElems === 256) {
    for (let i = 0; i < a.sc.length; i++) if (a.sc[i] !== b.sc[i] || a.mn[i] !== b.mn[i]) return `sub-block ${i} (block ${blockOf(i, a.sc.length / (a.halves.length / 4))})`;
  }
  return null;
}

for (const info of BLOCK_TYPES) {
  test(`${info.name}: the fast search chooses the reference's grids bit for bit (then keeps llama.cpp's where lower, as the reference does)`, () => {
    for (const p of problems()) {
      const fast = runSearch(mainKernel, info, p, null);
      const ref = runSearch(reference, info, p, null);
      const diff = firstDiff(fast, ref, info);
      assert.is(diff, null, `${p.name}: ggufOwc differs at ${diff}`);
      const other = imatrixGrid(info, p);
      const diff2 = firstDiff(runSearch(mainKernel, info, p, other), runSearch(reference, info, p, other), info);
      assert.is(diff2, null, `${p.name}: ggufKeepBetter differs at ${diff2}`);
    }
  });
}

/** Per block, the float64 loss (q - w)^T H_bb (q - w) of round to nearest on stored grid g:
 * values decoded in wasm as ggml does (groupAffine, rtnCodes, gridValues), the quadratic form
 * written here from its definition. */
function blockLosses(info: GgufTypeInfo, p: Problem, g: Grid): Float64Array {
  const params = { halves: new Uint16Array(g.halves.buffer, g.halves.byteOffset, g.halves.byteLength / 2), subScales: g.sc, subMins: g.mn };
  const { a, b } = groupAffine(kernel, info.name, params, p.rows, p.cols);
  const codes = rtnCodes(kernel, info.name, p.W, a, b, p.rows, p.cols);
  const q = gridValues(kernel, { type: info.name, rows: p.rows, cols: p.cols, codes, a, b });
  const be = info.blockElems, per = p.cols / be;
  const out = new Float64Array(p.rows * per);
  for (let r = 0; r < p.rows; r++) {
    for (let bi = 0; bi < per; bi++) {
      const c0 = bi * be;
      let s = 0;
      for (let i = 0; i < be; i++) {
        const ei = q[r * p.cols + c0 + i] - p.W[r * p.cols + c0 + i];
        let t = 0;
        for (let j = 0; j < be; j++) t += p.H[(c0 + i) * p.cols + c0 + j] * (q[r * p.cols + c0 + j] - p.W[r * p.cols + c0 + j]);
        s += ei * t;
      }
      out[r * per + bi] = s;
    }
  }
  return out;
}

for (const info of BLOCK_TYPES.filter((t) => t.blockElems === 256)) {
  test(`${info.name}: the search as of d3544aa (nearly) always kept the min-max grid; the fixed one is never worse than it in a float64 loss, and better on some blocks`, () => {
    // Gaussian rows (the degenerate rows of problems() leave little to choose).
    const p: Problem = { ...problems()[0], name: 'gaussian rows, correlated H', W: weights(16, 512, 21, 'gauss'), rows: 16 };
    const minmax = candidateGrid(kernel, info.name, p.W, p.rows, p.cols, 1);
    const base: Grid = { halves: new Uint8Array(minmax.halves.buffer, minmax.halves.byteOffset, minmax.halves.byteLength), sc: minmax.subScales, mn: minmax.subMins };
    // The record of the bug (see test/assembly/gguf-owc-reference.ts): its sub-block choices
    // were overwritten by errors, so its joint grid (shrink factors that were error values)
    // almost never won and it kept the min-max grid; the fixed search moves off it often.
    const old = runSearch(reference, info, p, null, 'ggufOwcAsOfD3544aa');
    const fast = runSearch(mainKernel, info, p, null);
    const blocks = base.halves.length / 4, gpb = base.sc.length / blocks;
    const sameBlock = (a: Grid, b: Grid, i: number) => a.halves.slice(4 * i, 4 * i + 4).every((v, k) => v === b.halves[4 * i + k])
      && a.sc.slice(gpb * i, gpb * (i + 1)).every((v, k) => v === b.sc[gpb * i + k]) && a.mn.slice(gpb * i, gpb * (i + 1)).every((v, k) => v === b.mn[gpb * i + k]);
    let oldMoved = 0, fastMoved = 0;
    for (let i = 0; i < blocks; i++) {
      if (!sameBlock(old, base, i)) oldMoved++;
      if (!sameBlock(fast, base, i)) fastMoved++;
    }
    assert.ok(oldMoved <= blocks / 10 && fastMoved >= blocks / 2, `off the min-max grid: as of d3544aa ${oldMoved}, fixed ${fastMoved} of ${blocks} blocks`);
    const lossFast = blockLosses(info, p, fast), lossBase = blockLosses(info, p, base);
    let better = 0;
    for (let i = 0; i < lossFast.length; i++) {
      // Equal up to the rounding of two f64 sums (the search scores in f64 too, in another order).
      assert.ok(lossFast[i] <= lossBase[i] * (1 + 1e-9) + 1e-300, `block ${i}: ${lossFast[i]} above the min-max grid's ${lossBase[i]}`);
      if (lossFast[i] < lossBase[i] * (1 - 1e-6)) better++;
    }
    assert.ok(better >= lossFast.length / 4, `better than min-max on only ${better} of ${lossFast.length} blocks`);
  });
}

// ---- the estimates' bounds -------------------------------------------------------------------

test('every estimate the search prunes with lies within its bounds of the exact score (random and adversarial blocks, every type)', () => {
  const rowsMax = 200000;
  let checked = 0, worst = 0;
  const loose: number[] = [];
  for (const info of BLOCK_TYPES) {
    for (const p of problems().slice(0, 2)) {
      const rec = kernel.scoped((alloc, put) => {
        const out = alloc(rowsMax * 32);
        (kernel.exports as any).ggufOwcProbe(out, rowsMax);
        try {
          runSearch(mainKernel, info, p, null);
        } finally {
          const left = (kernel.exports as any).ggufOwcProbe(0, 0);
          return kernel.f64(out, (rowsMax - left) * 4).slice();
        }
      });
      for (let i = 0; i < rec.length; i += 4) {
        const [est, passOne, precise, exact] = [rec[i], rec[i + 1], rec[i + 2], rec[i + 3]];
        const miss = Math.abs(exact - est);
        if (!(miss <= precise && precise <= passOne * 1.0001 + 1e-300)) {
          assert.unreachable(`${info.name} ${p.name}: estimate ${est}, exact ${exact} (off by ${miss}), bounds ${precise} / ${passOne}`);
        }
        if (precise > 0) worst = Math.max(worst, miss / precise);
        if (exact > 0) loose.push(passOne / exact);
      }
      checked += rec.length / 4;
    }
  }
  assert.ok(checked > 50000, `${checked} estimates checked`);
  // The bounds are not vacuous: the estimates do use part of them, and the pass-1 bound is a
  // small fraction of the score for most candidates (else nothing would be pruned).
  loose.sort((a, b) => a - b);
  console.log(`estimate error / bound: at most ${worst}; median pass-1 bound / score ${loose[loose.length >> 1]}`);
  assert.ok(worst > 1e-9, `largest estimate error / bound ${worst}`);
  assert.ok(loose[loose.length >> 1] < 1e-2, `median pass-1 bound / score ${loose[loose.length >> 1]}`);
});

// ---- the search's round to nearest ----------------------------------------------------------

const f32 = Math.fround;
/** The next float32 above / below v. */
function nextUp(v: number, dir: 1 | -1): number {
  const b = new Float32Array([v]), u = new Int32Array(b.buffer);
  if (v === 0) return dir * 2 ** -149;
  u[0] += (v > 0) === (dir > 0) ? 1 : -1;
  return b[0];
}

test('the search\'s four-at-a-time round to nearest gives rtnCode\'s codes on every grid and value tried', () => {
  const rand = mulberry32(77);
  let tried = 0;
  for (const info of BLOCK_TYPES) {
    const { zero: z, maxq, groupSize: gs } = info;
    const grids: Array<[number, number]> = [];
    for (let i = 0; i < 40; i++) {
      const scale = [1e-3, 0.02, 1, 3e4, 1e-30, 1e-38, 6e-8][i % 7];
      const a = f32((rand() < 0.2 && (info.name === 'Q3_K' || info.name === 'Q6_K') ? -1 : 1) * scale * (0.5 + rand()));
      const b = i % 5 === 0 ? -0 : i % 5 === 1 ? f32(-a * (rand() * maxq)) : i % 5 === 2 ? f32(1e6 * a) : f32((rand() - 0.5) * a * 4);
      grids.push([a, b]);
    }
    grids.push([0, -0], [f32(2 ** -126), 0], [f32(1e-45), f32(3e-45)], [f32(65504 * 63), -0], [f32(1 / 64), -0], [f32(1 / 64), f32(-7 / 64)]);
    for (const [a, b] of grids) {
      // The grid's values, the midpoints between neighbours and the floats next to those, and
      // values far outside, tiny, signed zeros.
      const vals: number[] = [];
      for (let c = 0; c <= maxq; c++) vals.push(f32(f32(a * (c - z)) + b));
      const xs: number[] = [0, -0, 2 ** -149, -(2 ** -149), 3e38, -3e38, f32(b), f32(1e-40)];
      for (let c = 0; c < maxq; c++) {
        const mid = f32((vals[c] + vals[c + 1]) / 2);
        xs.push(vals[c], mid, nextUp(mid, 1), nextUp(mid, -1));
      }
      for (let i = 0; i < 16; i++) xs.push(f32(b + a * ((rand() - 0.5) * 2 * (maxq + 4) - z)));
      while (xs.length % gs) xs.push(f32(rand() * a));
      const x = Float32Array.from(xs);
      const n = x.length, groups = n / gs;
      const want = kernel.scoped((alloc, put) => {
        const codes = alloc(n);
        kernel.exports.ggufRtnCodes(info.id, put(x), put(new Float32Array(groups).fill(a)), put(new Float32Array(groups).fill(b)), 1, n, codes);
        return kernel.u8(codes, n).slice();
      });
      const got = kernel.scoped((alloc, put) => {
        const codes = alloc(n);
        (kernel.exports as any).ggufRtnGroup(put(x), n, a, b, z, maxq, codes, alloc(n * 4));
        return kernel.u8(codes, n).slice();
      });
      for (let i = 0; i < n; i++) {
        if (got[i] !== want[i]) assert.unreachable(`${info.name} a=${a} b=${b}: x=${x[i]} gets code ${got[i]}, rtnCode ${want[i]}`);
      }
      tried += n;
    }
  }
  assert.ok(tried > 10000);
});

test.run();
