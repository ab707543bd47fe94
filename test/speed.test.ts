// The fast kernels (issue 13): every shortcut they take must give the bits of the plain
// algorithm. References here are JavaScript float32 emulations of the documented operation
// sequences (Math.fround after every IEEE operation, which is exact for +, -, *, / of float32
// values) and float64 recomputations; none is an output of this package.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel } from '../src/core/kernel.js';
import { rng } from './helpers/util.js';
import * as ref from './reference.js';

const f = Math.fround;
const kernel = await Kernel.create();

/** Round half to even, as WebAssembly's `nearest` and torch.round. */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : r;
}

function gaussian(seed: number): () => number {
  const u = rng(seed);
  return () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

/** H = X^T X / n + ridge I in float64, rounded to float32 (symmetric by construction). X's
 * columns get different scales and a shared component, so H is far from diagonal. */
function spdHessian(cols: number, seed: number, ridge = 0.01): Float32Array {
  const g = gaussian(seed);
  const n = 2 * cols;
  const scale = Float64Array.from({ length: cols }, () => 0.3 + 2 * Math.abs(g()));
  const x = new Float64Array(n * cols);
  for (let k = 0; k < n; k++) {
    const shared = g();
    for (let j = 0; j < cols; j++) x[k * cols + j] = scale[j] * (g() + 0.7 * shared);
  }
  const h = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += x[k * cols + i] * x[k * cols + j];
      h[i * cols + j] = h[j * cols + i] = s / n + (i === j ? ridge : 0);
    }
  return h;
}

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) assert.unreachable(`${what}: differs at ${i}: ${a[i]} vs ${b[i]}`);
}

// ---------------------------------------------------------------------------------------
// CD: the skipping pass gives the full pass's moves

interface CdProblem {
  rows: number; cols: number; maxq: number; groups: number; colGroup: Int32Array;
  scales: Float32Array; zeros: Float32Array; h: Float32Array; q: Float32Array; codes: Uint8Array; g: Float32Array;
}

/** A CD start: per-group grids, codes by RTN of random weights, q = s * (code - z) as the
 * kernels dequantize, and g = H (q - w) from float64 (any float32 g serves: both sides get it). */
function cdProblem(rows: number, cols: number, bits: number, groupSize: number, seed: number): CdProblem {
  const g = gaussian(seed);
  const maxq = 2 ** bits - 1;
  const gs = groupSize > 0 ? groupSize : cols;
  const groups = Math.ceil(cols / gs);
  const colGroup = Int32Array.from({ length: cols }, (_, j) => Math.floor(j / gs));
  const h = spdHessian(cols, seed + 1);
  const w = Float32Array.from({ length: rows * cols }, () => g());
  const scales = new Float32Array(rows * groups), zeros = new Float32Array(rows * groups);
  for (let i = 0; i < scales.length; i++) {
    scales[i] = f((4 + g()) / (maxq + 1) * (0.8 + 0.4 * Math.abs(g())));
    zeros[i] = Math.min(maxq, Math.max(0, Math.round((maxq + 1) / 2 + g())));
  }
  const codes = new Uint8Array(rows * cols), q = new Float32Array(rows * cols), grad = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const o = r * groups + colGroup[j];
      const s = scales[o], z = zeros[o];
      const c = Math.min(maxq, Math.max(0, f(roundEven(f(w[r * cols + j] / s)) + z)));
      codes[r * cols + j] = c;
      q[r * cols + j] = f(s * f(c - z));
    }
    for (let i = 0; i < cols; i++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += h[i * cols + j] * (q[r * cols + j] - w[r * cols + j]);
      grad[r * cols + i] = f(s);
    }
  }
  return { rows, cols, maxq, groups, colGroup, scales, zeros, h, q, codes, g: grad };
}

/** ALGORITHMS.md "CD" with cd.ts's documented arithmetic, every coordinate evaluated every pass:
 * target q - g * (1/H_jj), code clamp(nearest(target * (1/s)) + z), gain -((2d) g + (d d) H_jj),
 * first maximum among positive gains; g += delta H[i, :] after each move. */
function cdEmulated(p: CdProblem, iters: number): { q: Float32Array; codes: Uint8Array; g: Float32Array; moves: Int32Array } {
  const { rows, cols, maxq, h } = p;
  const q = p.q.slice(), codes = p.codes.slice(), g = p.g.slice(), moves = new Int32Array(rows);
  const rhd = Float32Array.from({ length: cols }, (_, j) => f(1 / h[j * cols + j]));
  for (let r = 0; r < rows; r++) {
    const s = Float32Array.from({ length: cols }, (_, j) => p.scales[r * p.groups + p.colGroup[j]]);
    const z = Float32Array.from({ length: cols }, (_, j) => p.zeros[r * p.groups + p.colGroup[j]]);
    const rs = Float32Array.from(s, (v) => f(1 / v));
    const o = r * cols;
    const codeOf = (j: number) => {
      const target = f(q[o + j] - f(g[o + j] * rhd[j]));
      return Math.min(maxq, Math.max(0, f(roundEven(f(target * rs[j])) + z[j])));
    };
    const pass = () => {
      let best = 0, bi = -1;
      for (let j = 0; j < cols; j++) {
        const d = f(f(s[j] * f(codeOf(j) - z[j])) - q[o + j]);
        const gain = -f(f(f(2 * d) * g[o + j]) + f(f(d * d) * h[j * cols + j]));
        if (gain > best) { best = gain; bi = j; }
      }
      return bi;
    };
    let count = 0;
    let i = pass();
    while (count < iters && i >= 0) {
      const code = codeOf(i);
      const value = f(s[i] * f(code - z[i]));
      const delta = f(value - q[o + i]);
      q[o + i] = value;
      codes[o + i] = code;
      count++;
      for (let j = 0; j < cols; j++) g[o + j] = f(g[o + j] + f(delta * h[i * cols + j]));
      if (count >= iters) break;
      i = pass();
    }
    moves[r] = count;
  }
  return { q, codes, g, moves };
}

function cdKernel(p: CdProblem, iters: number) {
  const { rows, cols } = p;
  const x = kernel.exports;
  return kernel.scoped((alloc, put) => {
    const q = put(p.q), codes = put(p.codes), g = put(p.g), h = put(p.h);
    const hdiag = put(Float32Array.from({ length: cols }, (_, j) => p.h[j * cols + j]));
    const moves = alloc(rows * 4);
    x.cdBand(q, codes, g, rows, cols, h, hdiag, p.maxq, p.groups, put(p.colGroup), put(p.scales), put(p.zeros), 0, iters, moves, alloc(x.cdBandScratch(cols)));
    return { q: kernel.f32(q, rows * cols).slice(), codes: kernel.u8(codes, rows * cols).slice(), g: kernel.f32(g, rows * cols).slice(), moves: kernel.i32(moves, rows).slice() };
  });
}

test('CD: the skipping pass moves exactly as evaluating every coordinate (float32 emulation)', () => {
  let moves = 0;
  for (const [rows, cols, bits, groupSize, seed] of [[5, 103, 4, 32, 1], [4, 130, 2, -1, 2], [3, 96, 3, 16, 3], [4, 67, 8, 32, 4]]) {
    const p = cdProblem(rows, cols, bits, groupSize, seed);
    // Row 1 starts off its grid (q nudged by an ulp): the kernel must take its full pass there.
    const nudged = { ...p, q: p.q.slice() };
    nudged.q[cols + 5] = f(nudged.q[cols + 5] * (1 + 2 ** -20));
    for (const problem of [p, nudged])
      for (const iters of [3, 100_000]) {
        const want = cdEmulated(problem, iters);
        const got = cdKernel(problem, iters);
        const what = `${rows}x${cols} b${bits} g${groupSize} iters ${iters}`;
        sameBits(got.moves, want.moves, `${what} moves`);
        sameBits(got.codes, want.codes, `${what} codes`);
        sameBits(got.q, want.q, `${what} q`);
        sameBits(got.g, want.g, `${what} g`);
        moves += want.moves.reduce((a, b) => a + b, 0);
      }
  }
  assert.ok(moves > 500, `the problems exercise the descent (${moves} moves)`);
});

// ---------------------------------------------------------------------------------------
// BCD (blocks of 2): the skipping pass gives the full pass's moves

/** ALGORITHMS.md "BCD" with bcd.ts's documented arithmetic (bestBlockMove), every block
 * evaluated every iteration: Newton target t = q - H_BB^-1 g, the grid points below and above
 * it, all combinations scored by 2 d.g + d^T H_BB d (accumulators from 0, in index order), the
 * first minimum; the block with the largest positive gain (first on ties) moves and g += d H. */
function bcdEmulated(p: CdProblem, hbb: Float32Array, hinv: Float32Array, iters: number) {
  const { rows, cols, maxq, h } = p;
  const k = 2, nb = Math.ceil(cols / k);
  const q = p.q.slice(), codes = p.codes.slice(), g = p.g.slice(), moves = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const s = Float32Array.from({ length: cols }, (_, j) => p.scales[r * p.groups + p.colGroup[j]]);
    const z = Float32Array.from({ length: cols }, (_, j) => p.zeros[r * p.groups + p.colGroup[j]]);
    const o = r * cols;
    const blockMove = (b: number) => {
      const c0 = b * k, len = Math.min(k, cols - c0);
      const lo: number[] = [], hi: number[] = [];
      for (let i = 0; i < len; i++) {
        let step = 0;
        for (let j = 0; j < len; j++) step = f(step + f(hinv[b * 4 + i * k + j] * g[o + c0 + j]));
        const t = f(q[o + c0 + i] - step);
        const below = Math.min(Math.max(f(Math.floor(f(t / s[c0 + i])) + z[c0 + i]), 0), maxq);
        lo.push(below);
        hi.push(Math.min(f(below + 1), maxq));
      }
      let bestScore = Infinity, bestCodes: number[] = [];
      for (let m = 0; m < 1 << len; m++) {
        const c = Array.from({ length: len }, (_, i) => ((m >> i) & 1 ? hi[i] : lo[i]));
        const d = c.map((ci, i) => f(f(s[c0 + i] * f(ci - z[c0 + i])) - q[o + c0 + i]));
        let score = 0;
        for (let i = 0; i < len; i++) {
          let hd = 0;
          for (let j = 0; j < len; j++) hd = f(hd + f(hbb[b * 4 + i * k + j] * d[j]));
          score = f(score + f(d[i] * f(f(2 * g[o + c0 + i]) + hd)));
        }
        if (score < bestScore) { bestScore = score; bestCodes = c; }
      }
      return { gain: -bestScore, codes: bestCodes };
    };
    let count = 0;
    while (count < iters) {
      let best = 0, bestBlock = -1;
      for (let b = 0; b < nb; b++) {
        const gain = blockMove(b).gain;
        if (gain > best) { best = gain; bestBlock = b; }
      }
      if (bestBlock < 0) break;
      const move = blockMove(bestBlock);
      move.codes.forEach((c, i) => {
        const col = bestBlock * k + i;
        const value = f(s[col] * f(c - z[col]));
        const delta = f(value - q[o + col]);
        q[o + col] = value;
        codes[o + col] = c;
        if (delta !== 0) for (let j = 0; j < cols; j++) g[o + j] = f(g[o + j] + f(delta * h[col * cols + j]));
      });
      count++;
    }
    moves[r] = count;
  }
  return { q, codes, g, moves };
}

test('BCD: the skipping, fused pass moves exactly as evaluating every block (float32 emulation)', () => {
  const x = kernel.exports;
  let moves = 0;
  for (const [rows, cols, bits, groupSize, seed] of [[4, 104, 4, 32, 5], [3, 70, 3, -1, 6], [3, 99, 2, 16, 7]]) {
    const p = cdProblem(rows, cols, bits, groupSize, seed);
    const nudged = { ...p, q: p.q.slice() };
    nudged.q[cols + 3] = f(nudged.q[cols + 3] * (1 + 2 ** -20));
    for (const problem of [p, nudged])
      for (const iters of [2, 100_000]) {
        const got = kernel.scoped((alloc, put) => {
          const blocks = Math.ceil(cols / 2) * 4;
          const h = put(problem.h), order = put(Int32Array.from({ length: cols }, (_, i) => i));
          const hbb = alloc(blocks * 4), hinv = alloc(blocks * 4);
          x.bcdPrepare(h, cols, 2, order, hbb, hinv, alloc(x.bcdPrepareScratch(2)));
          const q = put(problem.q), codes = put(problem.codes), g = put(problem.g), mv = alloc(rows * 4);
          x.bcdBand(q, codes, g, rows, cols, h, 2, order, hbb, hinv, problem.maxq, problem.groups, put(problem.colGroup), put(problem.scales), put(problem.zeros), iters, mv, alloc(x.bcdBandScratch(cols, 2)));
          return {
            hbb: kernel.f32(hbb, blocks).slice(), hinv: kernel.f32(hinv, blocks).slice(),
            q: kernel.f32(q, rows * cols).slice(), codes: kernel.u8(codes, rows * cols).slice(), g: kernel.f32(g, rows * cols).slice(), moves: kernel.i32(mv, rows).slice(),
          };
        });
        const want = bcdEmulated(problem, got.hbb, got.hinv, iters);
        const what = `bcd ${rows}x${cols} b${bits} g${groupSize} iters ${iters}`;
        sameBits(got.moves, want.moves, `${what} moves`);
        sameBits(got.codes, want.codes, `${what} codes`);
        sameBits(got.q, want.q, `${what} q`);
        sameBits(got.g, want.g, `${what} g`);
        moves += want.moves.reduce((a, b) => a + b, 0);
      }
  }
  assert.ok(moves > 200, `the problems exercise the descent (${moves} moves)`);
});

// ---------------------------------------------------------------------------------------
// Dense kernels: the documented operation order, whatever the tiles

/** linalg.ts's gemmSub contract: per k slice of 128, acc = ((0 + a0 b0) + a1 b1) + ... in k
 * order, then c - acc. */
function gemmSubEmulated(c: Float32Array, a: Float32Array, b: Float32Array, m: number, n: number, k: number): Float32Array {
  const out = c.slice();
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++)
      for (let p0 = 0; p0 < k; p0 += 128) {
        let acc = 0;
        for (let p = p0; p < Math.min(k, p0 + 128); p++) acc = f(acc + f(a[i * k + p] * b[p * n + j]));
        out[i * n + j] = f(out[i * n + j] - acc);
      }
  return out;
}

test('gemmSub: every element in the documented order, whatever the rows, tiles and tails', () => {
  const g = gaussian(11);
  const [m, n, k] = [13, 83, 300]; // row tiles of 4 and 1, 8-wide panels and 4/1 column tails, 3 k slices
  const a = Float32Array.from({ length: m * k }, g), b = Float32Array.from({ length: k * n }, g), c = Float32Array.from({ length: m * n }, g);
  const want = gemmSubEmulated(c, a, b, m, n, k);
  const run = (rowsPerCall: number, colsPerCall: number) => kernel.scoped((alloc, put) => {
    const pa = put(a), pb = put(b), pc = put(c);
    for (let i0 = 0; i0 < m; i0 += rowsPerCall)
      for (let j0 = 0; j0 < n; j0 += colsPerCall)
        kernel.exports.gemmSub(pc + (i0 * n + j0) * 4, n, pa + i0 * k * 4, k, pb + j0 * 4, n, Math.min(rowsPerCall, m - i0), Math.min(colsPerCall, n - j0), k);
    return kernel.f32(pc, m * n).slice();
  });
  for (const [rows, cols] of [[m, n], [1, n], [5, 7], [3, 64]]) sameBits(run(rows, cols), want, `gemmSub in ${rows} x ${cols} pieces`);
});

test('hessianUpdate: the lower triangle computed, the upper mirrored, every element in gemmSub order', () => {
  const g = gaussian(12);
  const [m, n] = [300, 37];
  const x = Float32Array.from({ length: m * n }, g);
  const h0 = Float32Array.from({ length: n * n }, (_, i) => f(0.01 * (i % 13)));
  const [keep, add] = [f(0.75), f(2 / 400)];
  // gemmSub(prod, X_s^T, X_s) slice by slice: prod_ij -= ((0 + x_0i x_0j) + x_1i x_1j) + ...
  const prod = new Float32Array(n * n);
  for (let r0 = 0; r0 < m; r0 += 128)
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = r0; p < Math.min(m, r0 + 128); p++) acc = f(acc + f(x[p * n + i] * x[p * n + j]));
        prod[i * n + j] = f(prod[i * n + j] - acc);
      }
  const want = Float32Array.from(h0, (v, i) => f(f(v * keep) - f(prod[i] * add)));
  const got = kernel.scoped((alloc, put) => {
    const h = put(h0);
    kernel.exports.hessianUpdate(h, put(x), m, n, keep, add, alloc(kernel.exports.hessianUpdateScratch(n)));
    return kernel.f32(h, n * n).slice();
  });
  sameBits(got, want, 'hessianUpdate');
});

test('upperCholeskyOfInverse: U upper triangular with U^T U H = I (float64 check), n across blocks', () => {
  for (const n of [131, 300]) {
    const h = spdHessian(n, 13, 0.05);
    const u = kernel.scoped((alloc, put) => {
      const pu = alloc(n * n * 4);
      assert.is(kernel.exports.upperCholeskyOfInverse(pu, put(h), n, alloc(kernel.exports.upperCholeskyOfInverseScratch(n))), 0);
      return kernel.f32(pu, n * n).slice();
    });
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.is(u[i * n + j], 0, `U[${i},${j}] below the diagonal`);
    // (U^T U H)_ij in float64
    const uh = new Float64Array(n * n); // U H
    for (let i = 0; i < n; i++) for (let p = i; p < n; p++) { const v = u[i * n + p]; for (let j = 0; j < n; j++) uh[i * n + j] += v * h[p * n + j]; }
    let worst = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p <= Math.min(i, n - 1); p++) s += u[p * n + i] * uh[p * n + j];
        worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
      }
    // float32 factors of a matrix of condition ~1e3-1e4: a few 1e-4 at most
    assert.ok(worst < 2e-3, `n ${n}: max |U^T U H - I| = ${worst}`);
  }
});

test('gptqBand: rows swept eight at a time give the bits of rows swept alone', () => {
  const g = gaussian(14);
  const [rows, cols, bs] = [19, 300, 128]; // two 8-row passes and 3 single rows; a partial block
  const h = spdHessian(cols, 15, 0.05);
  const u = kernel.scoped((alloc, put) => {
    const pu = alloc(cols * cols * 4);
    kernel.exports.upperCholeskyOfInverse(pu, put(h), cols, alloc(kernel.exports.upperCholeskyOfInverseScratch(cols)));
    return kernel.f32(pu, cols * cols).slice();
  });
  const w = Float32Array.from({ length: rows * cols }, g);
  for (const [groupWidth, dynamic] of [[32, true], [50, false], [cols, true]] as const) {
    const groups = Math.ceil(cols / groupWidth);
    const colGroup = Int32Array.from({ length: cols }, (_, j) => Math.floor(j / groupWidth));
    const fixedScales = Float32Array.from({ length: rows * groups }, (_, i) => f(0.3 + 0.01 * (i % 7)));
    const fixedZeros = Float32Array.from({ length: rows * groups }, (_, i) => 7 + (i % 3));
    const sweep = (r0: number, n: number) => kernel.scoped((alloc, put) => {
      const x = kernel.exports;
      const pw = put(w.subarray(r0 * cols, (r0 + n) * cols)), scales = put(fixedScales.subarray(r0 * groups, (r0 + n) * groups)), zeros = put(fixedZeros.subarray(r0 * groups, (r0 + n) * groups));
      const codes = alloc(n * cols), q = alloc(n * cols * 4);
      x.gptqBand(pw, n, cols, put(u), 15, false, 0, groupWidth, dynamic, bs, groups, put(colGroup), scales, zeros, codes, q, alloc(x.gptqBandScratch(n, bs)));
      return { codes: kernel.u8(codes, n * cols).slice(), q: kernel.f32(q, n * cols).slice(), scales: kernel.f32(scales, n * groups).slice() };
    });
    const all = sweep(0, rows);
    for (let r = 0; r < rows; r++) {
      const one = sweep(r, 1);
      sameBits(all.codes.subarray(r * cols, (r + 1) * cols), one.codes, `g${groupWidth} row ${r} codes`);
      sameBits(all.q.subarray(r * cols, (r + 1) * cols), one.q, `g${groupWidth} row ${r} values`);
      sameBits(all.scales.subarray(r * groups, (r + 1) * groups), one.scales, `g${groupWidth} row ${r} scales`);
    }
  }
});

test('nn_matmul across token and weight tiles: the canonical dot order (float32 emulation)', () => {
  // Rows of 65539 floats make tiles of 4 tokens and 2 weight rows, so 9 x 5 outputs cross both.
  const [T, nIn, nOut] = [9, 65539, 5];
  const u = rng(16);
  const x = Float32Array.from({ length: T * nIn }, () => u() - 0.5), w = Float32Array.from({ length: nOut * nIn }, () => u() - 0.5);
  const got = kernel.scoped((alloc, put) => {
    const y = alloc(T * nOut * 4);
    kernel.exports.nn_matmul(put(x), put(w), y, T, nIn, nOut);
    return kernel.f32(y, T * nOut).slice();
  });
  const n4 = nIn & ~3;
  const want = new Float32Array(T * nOut);
  for (let t = 0; t < T; t++)
    for (let o = 0; o < nOut; o++) {
      const lane = [0, 0, 0, 0];
      for (let i = 0; i < n4; i += 4) for (let l = 0; l < 4; l++) lane[l] = f(lane[l] + f(x[t * nIn + i + l] * w[o * nIn + i + l]));
      let s = f(f(lane[0] + lane[1]) + f(lane[2] + lane[3]));
      for (let i = n4; i < nIn; i++) s = f(s + f(x[t * nIn + i] * w[o * nIn + i]));
      want[t * nOut + o] = s;
    }
  sameBits(got, want, 'nn_matmul');
});

// ---------------------------------------------------------------------------------------
// OWC: the exact search on a group too wide to widen (H read in place)

test('OWC exact per channel, 520 columns (H in place): the float64 exhaustive minimum, ties aside', () => {
  const [rows, cols, bits] = [3, 520, 3];
  const h = spdHessian(cols, 17, 0.05);
  const g = gaussian(18);
  const w = Float32Array.from({ length: rows * cols }, g);
  const x = kernel.exports;
  const got = kernel.scoped((alloc, put) => {
    const scales = alloc(rows * 4), zeros = alloc(rows * 4);
    x.gridParams(put(w), rows, cols, cols, 2 ** bits - 1, false, x.GRID_OWC_EXACT.value, put(h), scales, zeros, alloc(x.gridParamsScratch(rows, cols, cols, x.GRID_OWC_EXACT.value)));
    return kernel.f32(scales, rows).slice();
  });
  for (let r = 0; r < rows; r++) {
    const row = Float64Array.from(w.subarray(r * cols, (r + 1) * cols));
    const scores = ref.owcScores(row, Float64Array.from(h), bits, false);
    const best = Math.min(...scores);
    const picked = [...scores.keys()].find((i) => Math.abs(ref.gridParams(Array.from(row, (v) => v * ref.shrinkFactor(i)), bits, false).scale - got[r]) <= 1e-6 * got[r]);
    assert.ok(picked !== undefined, `row ${r}: the grid is one of the candidates`);
    assert.ok(scores[picked!] <= best * (1 + 1e-5), `row ${r}: picked ${scores[picked!]} vs best ${best}`);
  }
});

test.run();
