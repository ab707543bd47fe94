// Tests of the float64 reference itself (closed forms and invariants), so the WASM solvers
// can be checked against something trustworthy.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TORCH_CASES } from './fixtures/torch-gptq-cases.js';
import {
  roundHalfEven, gridParams, mseGridParams, mseScores, quant, dequant, owcParams, owcScores,
  layerLoss, layerLossPerRow, rtn, gptq, gptqUnblocked, cd, bcd, refit, accumulateHessian,
  hessianOneShot, randomProblem, mulberry32, gaussian, quadForm, actOrderPerm, maxqOf,
  type GptqOptions, type QuantResult,
} from './reference.js';

const close = (a: number, b: number, rel = 1e-12, abs = 1e-12) => Math.abs(a - b) <= abs + rel * Math.max(Math.abs(a), Math.abs(b));
function assertClose(a: number, b: number, msg: string, rel = 1e-12, abs = 1e-12) {
  assert.ok(close(a, b, rel, abs), `${msg}: ${a} vs ${b}`);
}
function assertArrayClose(a: ArrayLike<number>, b: ArrayLike<number>, msg: string, rel = 1e-12, abs = 1e-12) {
  assert.is(a.length, b.length, `${msg}: length`);
  for (let i = 0; i < a.length; i++) assertClose(a[i], b[i], `${msg}[${i}]`, rel, abs);
}
function identity(n: number, d = 1) {
  const H = new Float64Array(n * n);
  for (let i = 0; i < n; i++) H[i * n + i] = d;
  return H;
}
function diagonal(v: ArrayLike<number>) {
  const n = v.length;
  const H = new Float64Array(n * n);
  for (let i = 0; i < n; i++) H[i * n + i] = v[i];
  return H;
}
/** Q must be dequant(codes) on (scales, zeros)[gIdx], codes in [0, maxq], zeros integral. */
function assertConsistent(res: QuantResult, rows: number, cols: number, bits: number, msg: string) {
  const maxq = maxqOf(bits);
  const groups = res.scales.length / rows;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const k = res.codes[r * cols + c];
      assert.ok(Number.isInteger(k) && k >= 0 && k <= maxq, `${msg}: code ${k}`);
      const g = res.gIdx[c];
      assert.is(res.Q[r * cols + c], dequant(k, res.scales[r * groups + g], res.zeros[r * groups + g]), `${msg}: Q`);
    }
  for (const z of res.zeros) assert.ok(Number.isInteger(z) && z >= 0 && z <= maxq, `${msg}: zero ${z}`);
  for (const s of res.scales) assert.ok(s > 0, `${msg}: scale ${s}`);
}
function nonIncreasing(traj: ArrayLike<number>, msg: string) {
  for (let i = 1; i < traj.length; i++)
    assert.ok(traj[i] <= traj[i - 1] + 1e-12 * Math.abs(traj[0]), `${msg}: step ${i}: ${traj[i - 1]} -> ${traj[i]}`);
}
function sum(a: ArrayLike<number>) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

// ---------------------------------------------------------------------------------------
// Rounding and grids

test('roundHalfEven: ties to even, everything else to nearest', () => {
  const cases: [number, number][] = [
    [0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, 0], [-1.5, -2], [-2.5, -2], [7.5, 8], [6.5, 6],
    [2.4999999999, 2], [2.5000000001, 3], [3, 3], [-3.7, -4], [-3.2, -3], [0.49999999999999994, 0],
    [4503599627370497, 4503599627370497], [0, 0],
  ];
  for (const [x, y] of cases) assert.ok(roundHalfEven(x) === y || (y === 0 && roundHalfEven(x) === 0), `round(${x}) = ${roundHalfEven(x)}, want ${y}`);
});

test('gridParams: hand-computed asymmetric grids (incl. a half-even zero)', () => {
  let p = gridParams([-1, 0.5, 2], 2, false);
  assert.equal(p, { scale: 1, zero: 1 });
  p = gridParams([-1, 0.5, 2], 4, false);
  assertClose(p.scale, 0.2, 'scale');
  assert.is(p.zero, 5);
  p = gridParams([-0.25, 1.25], 2, false); // -xmin/scale = 0.5 -> 0
  assert.equal(p, { scale: 0.5, zero: 0 });
  p = gridParams([-0.75, 0.75], 2, false); // 1.5 -> 2
  assert.equal(p, { scale: 0.5, zero: 2 });
  p = gridParams([0.5, 3], 4, false); // min clamped to 0
  assertClose(p.scale, 0.2, 'scale');
  assert.is(p.zero, 0);
  p = gridParams([-3, -0.5], 4, false); // max clamped to 0
  assertClose(p.scale, 0.2, 'scale');
  assert.is(p.zero, 15);
});

test('gridParams: hand-computed symmetric grids', () => {
  let p = gridParams([-1, 0.5, 2], 4, true);
  assertClose(p.scale, 4 / 15, 'scale');
  assert.is(p.zero, 8);
  p = gridParams([-2, 0.5, 1], 3, true);
  assertClose(p.scale, 4 / 7, 'scale');
  assert.is(p.zero, 4);
  p = gridParams([0.5, 3], 4, true); // xmin stays 0: no negative value
  assertClose(p.scale, 0.2, 'scale');
  assert.is(p.zero, 8);
});

test('gridParams: all-zero input uses (-1, +1)', () => {
  assert.equal(gridParams([0, 0, 0], 2, false), { scale: 2 / 3, zero: 2 }); // round(1.5) = 2
  const a = gridParams([0, 0], 4, false);
  assertClose(a.scale, 2 / 15, 'scale');
  assert.is(a.zero, 8); // round(7.5) = 8
  const s = gridParams([0, 0], 4, true);
  assertClose(s.scale, 2 / 15, 'scale');
  assert.is(s.zero, 8);
  assert.equal(gridParams([], 3, false), { scale: 2 / 7, zero: 4 }); // round(3.5) = 4
});

test('quant / dequant: clamping and grid points round-trip', () => {
  assert.is(quant(100, 0.5, 3, 15), 15);
  assert.is(quant(-100, 0.5, 3, 15), 0);
  assert.is(quant(0.25, 0.5, 3, 15), 3); // 0.5 -> 0 (half-even) + 3
  assert.is(quant(0.75, 0.5, 3, 15), 5); // 1.5 -> 2
  for (let c = 0; c <= 15; c++) assert.is(quant(dequant(c, 0.37, 6), 0.37, 6, 15), c);
  // min-max grid reproduces both ends exactly (asymmetric, zero inside)
  const x = [-1.3, 0.2, 2.6];
  const { scale, zero } = gridParams(x, 4, false);
  assert.is(quant(-1.3, scale, zero, 15), 0);
  assert.is(quant(2.6, scale, zero, 15), 15);
});

test('mseGridParams: candidate 0 is min-max; chosen = first minimum of the 80 scores', () => {
  const g = gaussian(mulberry32(7));
  for (let t = 0; t < 20; t++) {
    const x = Array.from({ length: 32 }, () => g() * (t % 3 === 0 ? 1 : 0.3));
    if (t % 4 === 1) x[5] = 6; // an outlier
    for (const sym of [false, true]) {
      const scores = mseScores(x, 3, sym);
      assert.is(scores.length, 80);
      const mm = gridParams(x, 3, sym);
      let s0 = 0;
      for (const v of x) s0 += Math.abs(dequant(quant(v, mm.scale, mm.zero, 7), mm.scale, mm.zero) - v) ** 2.4;
      assertClose(scores[0], s0, 'score of p=1');
      const p = mseGridParams(x, 3, sym);
      const min = Math.min(...scores);
      assert.is(scores[p.shrinkIndex], min);
      assert.is(scores.indexOf(min), p.shrinkIndex);
      if (sym) assert.is(p.zero, 4);
      const pp = 1 - p.shrinkIndex / 100;
      assertClose(p.scale, mm.scale * pp, 'scale = p * minmax scale', 1e-12);
    }
  }
});

test('owcParams: score <= min-max score, equals the minimum of the exhaustive 80, first minimum kept', () => {
  const P = randomProblem(6, 24, 64, 11, { outliers: true, correlated: true });
  for (let r = 0; r < P.rows; r++)
    for (const sym of [false, true])
      for (const bits of [2, 3, 4]) {
        const x = P.W.slice(r * 24, r * 24 + 24);
        const scores = owcScores(x, P.H, bits, sym);
        const o = owcParams(x, P.H, bits, sym);
        const mm = gridParams(x, bits, sym);
        const maxq = maxqOf(bits);
        const e = Array.from(x, (v) => dequant(quant(v, mm.scale, mm.zero, maxq), mm.scale, mm.zero) - v);
        assertClose(scores[0], quadForm(P.H, e, 24), 'candidate 0 = min-max');
        assert.ok(o.score <= scores[0]);
        assert.is(o.score, Math.min(...scores));
        assert.is(scores.indexOf(o.score), o.shrinkIndex);
        // the returned grid reproduces the score
        const e2 = Array.from(x, (v) => dequant(quant(v, o.scale, o.zero, maxq), o.scale, o.zero) - v);
        assertClose(quadForm(P.H, e2, 24), o.score, 'score of returned grid');
      }
});

test('owcParams with Hg = I scores the plain squared error', () => {
  const x = [0.1, -0.4, 0.35, 2.2, -0.05, 0.3];
  const scores = owcScores(x, identity(6), 3, false);
  for (let i = 0; i < 80; i++) {
    const p = 1 - i / 100;
    const scale = (p * 2.2 - p * -0.4) / 7;
    const zero = roundHalfEven(-(p * -0.4) / scale);
    let s = 0;
    for (const v of x) s += (dequant(quant(v, scale, zero, 7), scale, zero) - v) ** 2;
    assertClose(scores[i], s, `candidate ${i}`);
  }
});

// ---------------------------------------------------------------------------------------
// Loss, Hessian, RTN

test('layerLoss: H = I is the squared error; per-row sums to total; closed 2x2 form', () => {
  const W = Float64Array.from([1, 2, 3, 4]);
  const Q = Float64Array.from([1.5, 2, 2, 4]);
  assert.is(layerLoss(W, Q, identity(2), 2, 2), 0.25 + 1);
  const H = Float64Array.from([2, 1, 1, 3]);
  // row 0: e = (0.5, 0) -> 2*0.25 = 0.5; row 1: e = (-1, 0) -> 2
  assert.equal(Array.from(layerLossPerRow(W, Q, H, 2, 2)), [0.5, 2]);
  const P = randomProblem(5, 12, 30, 3);
  const R = rtn(P.W, undefined, 5, 12, { bits: 3 });
  assertClose(sum(layerLossPerRow(P.W, R.Q, P.H, 5, 12)), layerLoss(P.W, R.Q, P.H, 5, 12), 'total');
});

test('accumulateHessian: streaming over uneven chunks equals one-shot 2/n X^T X', () => {
  const cols = 9;
  const g = gaussian(mulberry32(5));
  const sizes = [3, 5, 1, 0, 7, 2];
  const n = sum(sizes);
  const X = Float64Array.from({ length: n * cols }, () => g());
  const chunks: Float64Array[] = [];
  let off = 0;
  for (const m of sizes) {
    chunks.push(X.slice(off * cols, (off + m) * cols));
    off += m;
  }
  const { H, n: count } = accumulateHessian(chunks, cols);
  assert.is(count, n);
  assertArrayClose(H, hessianOneShot(X, n, cols), 'H', 1e-13, 1e-14);
  // one chunk = one-shot (same formula)
  assertArrayClose(accumulateHessian([X], cols).H, hessianOneShot(X, n, cols), 'H1', 1e-15, 0);
  // symmetric
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) assert.is(H[i * cols + j], H[j * cols + i]);
});

test('rtn: per-channel / groups (short last group) match gridParams + quant; groupSize 0 == -1', () => {
  const P = randomProblem(4, 10, 20, 9);
  for (const sym of [false, true]) {
    const pc = rtn(P.W, undefined, 4, 10, { bits: 3, sym });
    const pc0 = rtn(P.W, undefined, 4, 10, { bits: 3, sym, groupSize: 0 });
    assert.equal(Array.from(pc.codes), Array.from(pc0.codes));
    assertConsistent(pc, 4, 10, 3, 'rtn pc');
    for (let r = 0; r < 4; r++) {
      const p = gridParams(P.W.slice(r * 10, r * 10 + 10), 3, sym);
      assert.is(pc.scales[r], p.scale);
      for (let c = 0; c < 10; c++) assert.is(pc.codes[r * 10 + c], quant(P.W[r * 10 + c], p.scale, p.zero, 7));
    }
    const gr = rtn(P.W, undefined, 4, 10, { bits: 3, sym, groupSize: 4 });
    assert.is(gr.scales.length, 12);
    assert.equal(Array.from(gr.gIdx), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
    assertConsistent(gr, 4, 10, 3, 'rtn groups');
    for (let r = 0; r < 4; r++) {
      const p = gridParams([P.W[r * 10 + 8], P.W[r * 10 + 9]], 3, sym);
      assert.is(gr.scales[r * 3 + 2], p.scale);
      assert.is(gr.zeros[r * 3 + 2], p.zero);
    }
  }
  // rtn with OWC per channel: each row's loss is its OWC score, and <= min-max's
  const Q = randomProblem(6, 16, 40, 10, { outliers: true });
  const mm = layerLossPerRow(Q.W, rtn(Q.W, Q.H, 6, 16, { bits: 3 }).Q, Q.H, 6, 16);
  const ow = rtn(Q.W, Q.H, 6, 16, { bits: 3, clip: 'owc' });
  const owl = layerLossPerRow(Q.W, ow.Q, Q.H, 6, 16);
  for (let r = 0; r < 6; r++) {
    assertClose(owl[r], owcParams(Q.W.slice(r * 16, r * 16 + 16), Q.H, 3, false).score, 'owc row loss');
    assert.ok(owl[r] <= mm[r]);
  }
});

// ---------------------------------------------------------------------------------------
// GPTQ

test('gptq: 2-column closed form (OBS update w1 += (w0 - q0) H01 / H11)', () => {
  const H = Float64Array.from([2, 0.7, 0.7, 1.5]);
  const W = Float64Array.from([0.33, -0.8, 1.1, 0.05]);
  const res = gptq(W, H, 2, 2, { bits: 2, percdamp: 0 });
  for (let r = 0; r < 2; r++) {
    const w0 = W[r * 2], w1 = W[r * 2 + 1];
    const { scale, zero } = gridParams([w0, w1], 2, false);
    const q0 = dequant(quant(w0, scale, zero, 3), scale, zero);
    const w1u = w1 + ((w0 - q0) * 0.7) / 1.5;
    const q1 = dequant(quant(w1u, scale, zero, 3), scale, zero);
    assertClose(res.Q[r * 2], q0, 'q0');
    assertClose(res.Q[r * 2 + 1], q1, 'q1');
  }
  assert.is(res.dampUsed, 0);
});

test('gptq reproduces a float64 PyTorch fasterquant port (fixture: 33 cases, codes and g_idx equal)', () => {
  const fx = JSON.parse(readFileSync(join(process.cwd(), 'test/fixtures/torch-gptq.json'), 'utf8'));
  assert.is(fx.cases.length, TORCH_CASES.length);
  TORCH_CASES.forEach((c, k) => {
    const t = fx.cases[k];
    assert.equal(t.opt, c.opt);
    const P = randomProblem(c.rows, c.cols, c.n, c.seed, c.problem);
    const res = gptq(P.W, P.H, c.rows, c.cols, c.opt);
    assert.equal(Array.from(res.codes), t.codes, `case ${k} ${JSON.stringify(c.opt)}`);
    assert.equal(Array.from(res.gIdx), t.gIdx, `case ${k} g_idx`);
  });
});

test('gptq with H = identity or diagonal H equals RTN (per-channel, groups, act-order per-channel, mse)', () => {
  const rows = 8, cols = 40;
  const P = randomProblem(rows, cols, 50, 21, { outliers: true });
  const g = gaussian(mulberry32(99));
  const D = diagonal(Array.from({ length: cols }, () => Math.exp(g())));
  for (const H of [identity(cols), D])
    for (const sym of [false, true])
      for (const bits of [2, 4]) {
        const cases: [GptqOptions, Parameters<typeof rtn>[4]][] = [
          [{ bits, sym }, { bits, sym }],
          [{ bits, sym, actOrder: true }, { bits, sym }],
          [{ bits, sym, clip: 'mse' }, { bits, sym, clip: 'mse' }],
          [{ bits, sym, groupSize: 8 }, { bits, sym, groupSize: 8 }],
          [{ bits, sym, groupSize: 16, blockSize: 12 }, { bits, sym, groupSize: 16 }],
          [{ bits, sym, groupSize: 8, staticGroups: true, actOrder: true }, { bits, sym, groupSize: 8 }],
          [{ bits, sym, groupSize: 6, clip: 'mse' }, { bits, sym, groupSize: 6, clip: 'mse' }],
        ];
        for (const [go, ro] of cases) {
          const a = gptq(P.W, H, rows, cols, go);
          const b = rtn(P.W, H, rows, cols, ro);
          assert.equal(Array.from(a.codes), Array.from(b.codes), JSON.stringify(go));
          assert.equal(Array.from(a.Q), Array.from(b.Q), JSON.stringify(go));
        }
      }
});

test('gptq blocked == unblocked: per-channel, act-order, mse, static groups, OWC (codes equal)', () => {
  const rows = 12, cols = 64;
  for (const seed of [1, 2, 3]) {
    const P = randomProblem(rows, cols, 96, seed, { correlated: seed === 2, deadCols: seed === 3 ? 3 : 0, outliers: seed === 1 });
    const configs: GptqOptions[] = [
      { bits: 3 },
      { bits: 4, sym: true, actOrder: true },
      { bits: 3, clip: 'mse' },
      { bits: 3, groupSize: 16, staticGroups: true },
      { bits: 2, groupSize: 12, staticGroups: true, actOrder: true },
      { bits: 3, groupSize: 16, clip: 'owc', actOrder: true },
      { bits: 3, clip: 'owc' },
    ];
    for (const o of configs)
      for (const B of [16, 7]) {
        const a = gptq(P.W, P.H, rows, cols, { ...o, blockSize: B });
        const b = gptqUnblocked(P.W, P.H, rows, cols, o);
        assert.equal(Array.from(a.codes), Array.from(b.codes), `seed ${seed} B ${B} ${JSON.stringify(o)}`);
        assertArrayClose(a.Q, b.Q, 'Q', 0, 0);
        assertConsistent(a, rows, cols, o.bits, JSON.stringify(o));
      }
  }
  // default block 128 on a layer wider than one block
  const P = randomProblem(4, 160, 200, 8, { correlated: true });
  const a = gptq(P.W, P.H, 4, 160, { bits: 3, actOrder: true });
  const b = gptqUnblocked(P.W, P.H, 4, 160, { bits: 3, actOrder: true });
  assert.equal(Array.from(a.codes), Array.from(b.codes));
});

test('gptq dynamic groups: block-start params matter; blockSize | groupSize equals unblocked "current"', () => {
  const rows = 16, cols = 64;
  let differ = 0;
  for (const seed of [4, 5]) {
    const P = randomProblem(rows, cols, 96, seed, { correlated: true });
    for (const actOrder of [false, true]) {
      const o: GptqOptions = { bits: 3, groupSize: 16, actOrder };
      // blockSize 8 and 16 divide groupSize 16: every group starts at a block start
      const cur = gptqUnblocked(P.W, P.H, rows, cols, { ...o, dynamicFrom: 'current' });
      for (const B of [8, 16]) {
        const a = gptq(P.W, P.H, rows, cols, { ...o, blockSize: B });
        assert.equal(Array.from(a.codes), Array.from(cur.codes), `B ${B}`);
        assertArrayClose(a.scales, cur.scales, 'scales', 1e-12, 1e-15);
      }
      // the unblocked reference form takes every group's grid from the initial W: differs
      const stale = gptqUnblocked(P.W, P.H, rows, cols, o);
      for (let i = 0; i < stale.scales.length; i++) if (stale.scales[i] !== cur.scales[i]) differ++;
      // group 0 is read before any update: same in both
      for (let r = 0; r < rows; r++) assert.is(stale.scales[r * 4], cur.scales[r * 4]);
      // cols <= blockSize: blocked == unblocked, trivially
      const one = gptq(P.W, P.H, rows, cols, { ...o, blockSize: 128 });
      assert.equal(Array.from(one.codes), Array.from(stale.codes));
    }
  }
  assert.ok(differ > 0, 'block-start vs current group params never differed');
});

test('gptq g_idx, perm and un-permutation', () => {
  const rows = 5, cols = 30;
  const P = randomProblem(rows, cols, 60, 12);
  const perm = actOrderPerm(P.H, cols);
  for (let k = 1; k < cols; k++) assert.ok(P.H[perm[k - 1] * cols + perm[k - 1]] >= P.H[perm[k] * cols + perm[k]]);
  const dyn = gptq(P.W, P.H, rows, cols, { bits: 3, groupSize: 8, actOrder: true });
  assert.equal(Array.from(dyn.perm), Array.from(perm));
  for (let k = 0; k < cols; k++) assert.is(dyn.gIdx[perm[k]], Math.floor(k / 8));
  assert.is(dyn.scales.length, rows * 4);
  assertConsistent(dyn, rows, cols, 3, 'dyn');
  const st = gptq(P.W, P.H, rows, cols, { bits: 3, groupSize: 8, actOrder: true, staticGroups: true });
  for (let c = 0; c < cols; c++) assert.is(st.gIdx[c], Math.floor(c / 8));
  assertConsistent(st, rows, cols, 3, 'static');
  // static grids are RTN's grids (from the unpermuted W)
  const r = rtn(P.W, undefined, rows, cols, { bits: 3, groupSize: 8 });
  assert.equal(Array.from(st.scales), Array.from(r.scales));
  // stable act-order on ties: equal diagonals keep index order
  assert.equal(Array.from(actOrderPerm(diagonal([1, 3, 1, 3, 2]), 5)), [1, 3, 4, 0, 2]);
});

test('gptq OWC: grids = RTN-OWC grids of the dead-zeroed W, fixed, static layout even with act-order', () => {
  const rows = 6, cols = 32;
  const P = randomProblem(rows, cols, 64, 17, { outliers: true, correlated: true, deadCols: 2 });
  const Wz = Float64Array.from(P.W);
  for (const c of P.dead) for (let r = 0; r < rows; r++) Wz[r * cols + c] = 0;
  for (const o of [{ bits: 3, clip: 'owc' }, { bits: 3, clip: 'owc', groupSize: 8, actOrder: true }, { bits: 4, sym: true, clip: 'owc', groupSize: 8 }] as GptqOptions[]) {
    const G = gptq(P.W, P.H, rows, cols, o);
    const R = rtn(Wz, P.H, rows, cols, { bits: o.bits, sym: o.sym, groupSize: o.groupSize, clip: 'owc' });
    assert.equal(Array.from(G.scales), Array.from(R.scales));
    assert.equal(Array.from(G.zeros), Array.from(R.zeros));
    assert.equal(Array.from(G.gIdx), Array.from(R.gIdx));
    assertConsistent(G, rows, cols, o.bits, 'gptq owc');
  }
});

test('gptq dead columns and an all-zero row: Q = 0 there; per-channel grid source option', () => {
  const rows = 6, cols = 24;
  const P = randomProblem(rows, cols, 48, 13, { deadCols: 3, zeroRow: true });
  for (const o of [{ bits: 3 }, { bits: 3, actOrder: true, groupSize: 8 }, { bits: 4, sym: true, clip: 'owc' as const }]) {
    const res = gptq(P.W, P.H, rows, cols, o);
    for (const c of P.dead) {
      assert.is(res.dead[c], 1);
      for (let r = 0; r < rows; r++) assert.is(res.Q[r * cols + c], 0);
    }
    const zr = Math.floor(rows / 2);
    for (let c = 0; c < cols; c++) assert.is(res.Q[zr * cols + c], 0);
    assertConsistent(res, rows, cols, o.bits, JSON.stringify(o));
  }
  // make a dead column hold the row's largest weight: 'original' vs 'deadZeroed' grids differ
  const W = Float64Array.from(P.W);
  for (let r = 0; r < rows; r++) W[r * cols + P.dead[0]] = 50;
  const a = gptq(W, P.H, rows, cols, { bits: 3 });
  const b = gptq(W, P.H, rows, cols, { bits: 3, perChannelFrom: 'deadZeroed' });
  assert.equal(Array.from(a.scales), Array.from(rtn(W, undefined, rows, cols, { bits: 3 }).scales));
  const Wz = Float64Array.from(W);
  for (const c of P.dead) for (let r = 0; r < rows; r++) Wz[r * cols + c] = 0;
  assert.equal(Array.from(b.scales), Array.from(rtn(Wz, undefined, rows, cols, { bits: 3 }).scales));
  assert.ok(a.scales[0] !== b.scales[0]);
});

test('gptq damping: retry x10 on Cholesky failure and report it; throw when out of attempts', () => {
  // indefinite H (eigenvalues -2, 4; mean diag 1): damp 0.01, 0.1, 1 leave it indefinite; 10 works
  const H = Float64Array.from([1, 3, 3, 1]);
  const W = Float64Array.from([0.3, -0.2]);
  const res = gptq(W, H, 1, 2, { bits: 4 });
  assertClose(res.dampUsed, 10, 'dampUsed', 1e-12);
  assertClose(res.dampAbs, 10, 'dampAbs', 1e-12);
  assert.throws(() => gptq(W, H, 1, 2, { bits: 4, maxAttempts: 3 }));
  const P = randomProblem(3, 10, 40, 1);
  assert.is(gptq(P.W, P.H, 3, 10, { bits: 4 }).dampUsed, 0.01);
});

test('gptq rows are independent (a row does not depend on its batch)', () => {
  const rows = 9, cols = 32;
  const P = randomProblem(rows, cols, 64, 31, { correlated: true });
  for (const o of [{ bits: 3, groupSize: 8, actOrder: true }, { bits: 2, clip: 'mse' as const }]) {
    const all = gptq(P.W, P.H, rows, cols, { ...o, blockSize: 8 });
    const part = gptq(P.W.slice(3 * cols, 6 * cols), P.H, 3, cols, { ...o, blockSize: 8 });
    assert.equal(Array.from(part.codes), Array.from(all.codes.slice(3 * cols, 6 * cols)));
  }
});

test('gptq loss <= rtn loss in total over typical random problems (sanity, not a theorem)', () => {
  const rows = 16, cols = 48;
  const configs: [GptqOptions, Parameters<typeof rtn>[4]][] = [
    [{ bits: 3 }, { bits: 3 }],
    [{ bits: 4, sym: true, actOrder: true }, { bits: 4, sym: true }],
    [{ bits: 3, groupSize: 16 }, { bits: 3, groupSize: 16 }],
    [{ bits: 2, groupSize: 16, staticGroups: true, actOrder: true }, { bits: 2, groupSize: 16 }],
  ];
  for (const [go, ro] of configs) {
    let lg = 0, lr = 0, wins = 0;
    for (let seed = 40; seed < 46; seed++) {
      const P = randomProblem(rows, cols, 96, seed, { correlated: seed % 2 === 0, outliers: seed % 3 === 0, deadCols: seed === 45 ? 2 : 0 });
      const a = layerLoss(P.W, gptq(P.W, P.H, rows, cols, { ...go, blockSize: 16 }).Q, P.H, rows, cols);
      const b = layerLoss(P.W, rtn(P.W, P.H, rows, cols, ro).Q, P.H, rows, cols);
      lg += a;
      lr += b;
      if (a < b) wins++;
    }
    assert.ok(lg < lr, `${JSON.stringify(go)}: gptq ${lg} rtn ${lr}`);
    assert.ok(wins >= 5, `${JSON.stringify(go)}: gptq won ${wins}/6`);
  }
});

// ---------------------------------------------------------------------------------------
// CD, BCD, refit

/** No single-coordinate grid move improves the caller's objective (brute force, all levels). */
function assertCoordinateOptimal(W: Float64Array, H: Float64Array, rows: number, cols: number, res: QuantResult, bits: number) {
  const maxq = maxqOf(bits);
  const groups = res.scales.length / rows;
  for (let r = 0; r < rows; r++) {
    const w = W.slice(r * cols, (r + 1) * cols);
    const q = res.Q.slice(r * cols, (r + 1) * cols);
    const g = new Float64Array(cols);
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) g[i] += H[i * cols + j] * (q[j] - w[j]);
    for (let i = 0; i < cols; i++) {
      const hii = H[i * cols + i];
      if (hii === 0) continue;
      const s = res.scales[r * groups + res.gIdx[i]], z = res.zeros[r * groups + res.gIdx[i]];
      for (let c = 0; c <= maxq; c++) {
        const d = dequant(c, s, z) - q[i];
        assert.ok(2 * d * g[i] + d * d * hii >= -1e-9 * (1 + Math.abs(hii)), `row ${r} col ${i} code ${c} improves`);
      }
    }
  }
}

test('cd: loss trajectory non-increasing, ends at the exact loss, improves GPTQ and RTN, coordinate-optimal', () => {
  const rows = 10, cols = 40;
  for (const seed of [51, 52, 53]) {
    const P = randomProblem(rows, cols, 80, seed, { correlated: seed !== 51, outliers: seed === 52, deadCols: seed === 53 ? 2 : 0, zeroRow: seed === 53 });
    for (const o of [{ bits: 3 }, { bits: 2, groupSize: 8, actOrder: true }, { bits: 4, sym: true, groupSize: 16, staticGroups: true }] as GptqOptions[]) {
      const G = gptq(P.W, P.H, rows, cols, o);
      const lG = layerLossPerRow(P.W, G.Q, P.H, rows, cols);
      const C = cd(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, sym: o.sym, iters: 4 * cols, init: G });
      const lC = layerLossPerRow(P.W, C.Q, P.H, rows, cols);
      assertConsistent(C, rows, cols, o.bits, 'cd');
      for (let r = 0; r < rows; r++) {
        const tr = C.loss[r];
        nonIncreasing(tr, `cd row ${r}`);
        assert.is(tr.length, C.moves[r] + 1);
        assertClose(tr[0], lG[r], 'start = gptq loss', 1e-10, 1e-12);
        assertClose(tr[tr.length - 1], lC[r], 'end = exact loss', 1e-9, 1e-10);
        assert.ok(lC[r] <= lG[r] + 1e-12);
        assert.ok(C.moves[r] < 4 * cols, 'converged');
      }
      assert.ok(sum(lC) < sum(lG), 'cd improved gptq somewhere');
      assertCoordinateOptimal(P.W, P.H, rows, cols, C, o.bits);
      // from RTN
      const R = rtn(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, sym: o.sym });
      const CR = cd(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, sym: o.sym, init: R });
      for (let r = 0; r < rows; r++) nonIncreasing(CR.loss[r], 'cd from rtn');
      assert.ok(layerLoss(P.W, CR.Q, P.H, rows, cols) <= layerLoss(P.W, R.Q, P.H, rows, cols));
    }
  }
});

test('cd: H = I from RTN makes no move; iters caps moves; rows independent', () => {
  const P = randomProblem(6, 20, 40, 61);
  const R = rtn(P.W, undefined, 6, 20, { bits: 3, groupSize: 5 });
  const C = cd(P.W, identity(20), 6, 20, { bits: 3, groupSize: 5, init: R });
  assert.equal(Array.from(C.moves), [0, 0, 0, 0, 0, 0]);
  assert.equal(Array.from(C.codes), Array.from(R.codes));
  const C2 = cd(P.W, P.H, 6, 20, { bits: 3, groupSize: 5, iters: 2, init: R });
  for (const m of C2.moves) assert.ok(m <= 2);
  const full = cd(P.W, P.H, 6, 20, { bits: 3, groupSize: 5, init: R });
  const part = cd(P.W.slice(40, 80), P.H, 2, 20, {
    bits: 3, groupSize: 5,
    init: { codes: R.codes.slice(40, 80), scales: R.scales.slice(8, 16), zeros: R.zeros.slice(8, 16) },
  });
  assert.equal(Array.from(part.codes), Array.from(full.codes.slice(40, 80)));
});

test('bcd: trajectory non-increasing, exact end loss, improves GPTQ; block 1 equals CD', () => {
  const rows = 8, cols = 36;
  for (const seed of [71, 72]) {
    const P = randomProblem(rows, cols, 72, seed, { correlated: true, deadCols: seed === 72 ? 2 : 0 });
    for (const o of [{ bits: 3 }, { bits: 2, groupSize: 12, actOrder: true }] as GptqOptions[]) {
      const G = gptq(P.W, P.H, rows, cols, o);
      const lG = layerLossPerRow(P.W, G.Q, P.H, rows, cols);
      for (const k of [2, 3]) {
        const B = bcd(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, iters: 4 * cols, block: k, actOrder: o.actOrder, init: G });
        const lB = layerLossPerRow(P.W, B.Q, P.H, rows, cols);
        assertConsistent(B, rows, cols, o.bits, 'bcd');
        for (let r = 0; r < rows; r++) {
          nonIncreasing(B.loss[r], `bcd k ${k} row ${r}`);
          assertClose(B.loss[r][B.loss[r].length - 1], lB[r], 'end = exact', 1e-9, 1e-10);
          assert.ok(lB[r] <= lG[r] + 1e-12);
        }
        assert.ok(sum(lB) < sum(lG));
      }
      const B1 = bcd(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, block: 1, init: G });
      const C = cd(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, init: G });
      assert.equal(Array.from(B1.codes), Array.from(C.codes));
      assert.equal(Array.from(B1.moves), Array.from(C.moves));
    }
  }
});

test('refit: never increases loss, codes valid, zeros integral, sym zeros kept', () => {
  const rows = 10, cols = 32;
  for (const seed of [81, 82, 83]) {
    const P = randomProblem(rows, cols, 64, seed, { correlated: seed !== 81, outliers: seed === 82, deadCols: seed === 83 ? 2 : 0, zeroRow: seed === 83 });
    for (const o of [{ bits: 3 }, { bits: 2, groupSize: 8 }, { bits: 4, sym: true, groupSize: 16 }, { bits: 3, groupSize: 8, actOrder: true }] as GptqOptions[]) {
      const G = gptq(P.W, P.H, rows, cols, o);
      const C = cd(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, sym: o.sym, init: G });
      let init: QuantResult = C;
      let accepted = 0;
      for (let round = 0; round < 2; round++) {
        const F = refit(P.W, P.H, rows, cols, { bits: o.bits, groupSize: o.groupSize, sym: o.sym, init });
        assertConsistent(F, rows, cols, o.bits, `refit ${JSON.stringify(o)}`);
        for (let r = 0; r < rows; r++) {
          assert.ok(F.lossAfterRefit[r] <= F.lossBefore[r] * (1 + 1e-12) + 1e-12, `refit pass row ${r}`);
          assert.ok(F.lossAfterCd[r] <= F.lossAfterRefit[r] * (1 + 1e-12) + 1e-12, `cd after refit row ${r}`);
          nonIncreasing(F.loss[r], 'cd trajectory after refit');
        }
        if (o.sym) assert.ok(F.zeros.every((z) => z === 2 ** (o.bits - 1)));
        accepted += sum(F.accepted);
        init = F;
      }
      assert.ok(accepted > 0, `refit accepted nothing for ${JSON.stringify(o)}`);
      assert.ok(layerLoss(P.W, init.Q, P.H, rows, cols) <= layerLoss(P.W, C.Q, P.H, rows, cols));
    }
  }
});

test('refit: recovers an exactly representable row from a wrong scale (closed form)', () => {
  const cols = 12;
  const P = randomProblem(1, cols, 40, 91, { correlated: true });
  const codes = Int32Array.from([0, 3, 7, 1, 5, 2, 6, 4, 7, 0, 2, 5]);
  const sTrue = 0.37, zTrue = 3;
  const W = Float64Array.from(codes, (c) => sTrue * (c - zTrue));
  const F = refit(W, P.H, 1, cols, { bits: 3, iters: 0, init: { codes, scales: [sTrue * 1.4], zeros: [1] } });
  assert.is(F.accepted[0], 1);
  assert.is(F.zeros[0], zTrue);
  assertClose(F.scales[0], sTrue, 'scale', 1e-10);
  assert.ok(F.lossAfterRefit[0] < 1e-18 + 1e-12 * F.lossBefore[0]);
  // symmetric: zero kept, scale-only least squares: codes (c - 4) * a fits W = 0.37 * (c - 4)
  const Ws = Float64Array.from(codes, (c) => sTrue * (c - 4));
  const S = refit(Ws, P.H, 1, cols, { bits: 3, sym: true, iters: 0, init: { codes, scales: [0.2], zeros: [4] } });
  assert.is(S.zeros[0], 4);
  assertClose(S.scales[0], sTrue, 'sym scale', 1e-10);
});

test.run();
