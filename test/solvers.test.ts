// The WASM layer solvers against the independent float64 reference (test/reference.ts) and
// against the invariants the algorithms promise.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { quantizeLayer, quantizePrepared, prepareLayer, mergeBands, Kernel, HessianAccumulator, CdquantError } from '../src/index.js';
import { LayerSession } from '../src/core/session.js';
import type { LayerResult, QuantizeOptions } from '../src/index.js';
import * as ref from './reference.js';

type Problem = ReturnType<typeof ref.randomProblem>;

function f32(p: Problem) {
  return { W: Float32Array.from(p.W), H: Float32Array.from(p.H) };
}

async function solve(p: Problem, options: QuantizeOptions): Promise<LayerResult> {
  const { W, H } = f32(p);
  // With the RTN baseline (asked for; rtnLoss is null otherwise): several checks compare with it.
  return quantizeLayer({ data: W, rows: p.rows, cols: p.cols }, H, { baseline: true, ...options });
}

/** Loss of the WASM result recomputed in float64 with the caller's W and H. */
function loss64(p: Problem, res: LayerResult): number {
  return ref.layerLoss(Float32Array.from(p.W), res.dequantize(), p.H, p.rows, p.cols);
}

function sameFraction(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/**
 * Codes agree with the reference and its loss within float32 rounding of a few decisions.
 * All-zero rows are compared by value: their grid zero sits exactly on a rounding tie (7.5 for
 * 4 bits), which float32 (as torch computes it) and float64 break differently.
 */
function assertMatches(res: LayerResult, want: ref.QuantResult, p: Problem, msg: string, minSame = 0.99) {
  const codes = Uint8Array.from(res.codes);
  for (let r = 0; r < p.rows; r++) {
    const row = p.W.subarray(r * p.cols, (r + 1) * p.cols);
    if (row.every((v) => v === 0)) {
      for (let c = 0; c < p.cols; c++) {
        assert.is(res.dequantize()[r * p.cols + c], 0, `${msg}: zero row stays zero`);
        codes[r * p.cols + c] = want.codes[r * p.cols + c];
      }
    }
  }
  const frac = sameFraction(codes, want.codes);
  assert.ok(frac >= minSame, `${msg}: only ${(100 * frac).toFixed(2)}% of codes equal the reference`);
  const mine = loss64(p, res);
  const theirs = ref.layerLoss(p.W, want.Q, p.H, p.rows, p.cols);
  assert.ok(Math.abs(mine - theirs) <= 2e-3 * theirs + 1e-9, `${msg}: loss ${mine} vs reference ${theirs}`);
  assert.equal(Array.from(res.gIdx), Array.from(want.gIdx), `${msg}: g_idx`);
}

function assertValid(res: LayerResult, bits: number, msg: string) {
  const maxq = 2 ** bits - 1;
  for (const c of res.codes) assert.ok(c <= maxq, `${msg}: code ${c} > maxq`);
  for (const z of res.zeros) assert.ok(Number.isInteger(z) && z >= 0 && z <= maxq, `${msg}: zero ${z} not an integer in [0, maxq]`);
  const q = res.dequantize();
  for (let r = 0; r < res.rows; r++)
    for (let c = 0; c < res.cols; c++) {
      const g = r * res.groups + res.gIdx[c];
      const want = Math.fround(res.scales[g] * Math.fround(res.codes[r * res.cols + c] - res.zeros[g]));
      assert.is(q[r * res.cols + c], want, `${msg}: value (${r},${c}) is not scale*(code-zero)`);
    }
}

/** Problems whose W and H are float32-representable, so both sides start from the same numbers. */
function problem(...args: Parameters<typeof ref.randomProblem>): Problem {
  const p = ref.randomProblem(...args);
  return { ...p, W: Float64Array.from(Float32Array.from(p.W)), H: Float64Array.from(Float32Array.from(p.H)) };
}

const problems = [
  problem(24, 40, 120, 1),
  problem(17, 70, 200, 2, { correlated: true }),
  problem(12, 48, 150, 3, { outliers: true, deadCols: 3, zeroRow: true }),
  problem(9, 150, 400, 4, { correlated: true }),
];

test('RTN equals the reference (min-max, MSE, OWC; sym and asym; groups)', async () => {
  for (const p of problems)
    for (const bits of [2, 3, 4, 8])
      for (const groupSize of [-1, 16, 33])
        for (const sym of [false, true])
          for (const clip of ['minmax', 'mse', 'owc'] as const) {
            if (clip !== 'minmax' && bits === 8) continue;
            const res = await solve(p, { method: 'rtn', bits, groupSize, sym, clip });
            const want = ref.rtn(clip === 'owc' ? ref.deadFix(p.W, p.H, p.rows, p.cols).Wf : p.W, p.H, p.rows, p.cols, { bits, groupSize, sym, clip });
            const msg = `rtn ${p.rows}x${p.cols} b${bits} g${groupSize} sym=${sym} ${clip}`;
            if (clip === 'minmax') {
              // Every value equals the reference's, except where x/scale sits on a rounding tie
              // that float32 and float64 break differently.
              const q = res.dequantize();
              for (let i = 0; i < q.length; i++) {
                const s = want.scales[Math.floor(i / p.cols) * res.groups + want.gIdx[i % p.cols]];
                if (Math.abs(q[i] - want.Q[i]) <= 1e-5 * s + 1e-6 * Math.abs(want.Q[i])) continue;
                const u = p.W[i] / s;
                assert.ok(Math.abs(Math.abs(u - Math.floor(u)) - 0.5) < 1e-4, `${msg}: value ${i} is ${q[i]}, reference ${want.Q[i]}`);
              }
              for (let i = 0; i < want.scales.length; i++) assert.ok(Math.abs(res.scales[i] - want.scales[i]) <= 1e-6 * want.scales[i], `${msg}: scale ${i}`);
            } else if (clip === 'mse') {
              // float32 errors can reorder nearly tied candidates; the grids are otherwise equal
              assert.ok(sameFraction(res.zeros, want.zeros) >= 0.9, `${msg}: zeros`);
            } else {
              // OWC is judged by its own objective: as good as the exhaustive float64 search up to
              // candidates whose scores float32 ranks differently (symmetric grids put the largest
              // weight exactly on a rounding tie, x/scale = maxq/2), never worse than min-max.
              const mine = loss64(p, res);
              const best = ref.layerLoss(p.W, want.Q, p.H, p.rows, p.cols);
              assert.ok(mine <= best * (1 + 5e-3) + 1e-9, `${msg}: OWC loss ${mine} above exhaustive ${best}`);
              let sameGrid = 0;
              for (let i = 0; i < want.scales.length; i++) if (Math.abs(res.scales[i] - want.scales[i]) <= 1e-6 * want.scales[i]) sameGrid++;
              assert.ok(sameGrid >= 0.9 * want.scales.length, `${msg}: OWC grids: ${sameGrid} of ${want.scales.length} equal`);
              assert.ok(mine <= res.rtnLoss! * (1 + 1e-5) + 1e-9, `${msg}: OWC loss ${mine} above min-max ${res.rtnLoss}`);
            }
            assertValid(res, bits, msg);
          }
});

test('OWC picks the exhaustive float64 search shrink factor (ties aside)', async () => {
  let checked = 0;
  for (const p of problems.slice(0, 3))
    for (const bits of [2, 3, 4])
      for (const groupSize of [-1, 16]) {
        const res = await solve(p, { method: 'rtn', bits, groupSize, clip: 'owc' });
        const wf = ref.deadFix(p.W, p.H, p.rows, p.cols).Wf;
        const gs = groupSize > 0 ? groupSize : p.cols;
        for (let r = 0; r < p.rows; r++)
          for (let g = 0; g < res.groups; g++) {
            const c0 = g * gs, len = Math.min(gs, p.cols - c0);
            const x = wf.subarray(r * p.cols + c0, r * p.cols + c0 + len);
            const hg = new Float64Array(len * len);
            for (let i = 0; i < len; i++) for (let j = 0; j < len; j++) hg[i * len + j] = p.H[(c0 + i) * p.cols + c0 + j];
            const scores = ref.owcScores(x, hg, bits, false);
            const best = Math.min(...scores);
            // Which candidate did WASM pick? The one whose grid reproduces its scale.
            const picked = [...scores.keys()].find((i) => {
              const s = ref.gridParams(Array.from(x, (v) => v * ref.shrinkFactor(i)), bits, false).scale;
              return Math.abs(s - res.scales[r * res.groups + g]) <= 1e-6 * s;
            });
            assert.ok(picked !== undefined, 'picked grid is one of the 80 candidates');
            assert.ok(scores[picked!] <= best * (1 + 1e-5) + 1e-12, `row ${r} group ${g}: picked score ${scores[picked!]} vs best ${best}`);
            checked++;
          }
      }
  assert.ok(checked > 100);
});

const gptqCases: Array<[string, QuantizeOptions]> = [
  ['per-channel', {}],
  ['groups 16', { groupSize: 16 }],
  ['groups 24 (not dividing the block)', { groupSize: 24, gptqBlock: 32 }],
  ['act-order', { actOrder: true }],
  ['act-order groups', { actOrder: true, groupSize: 16 }],
  ['static groups', { staticGroups: true, groupSize: 16 }],
  ['static groups act-order', { staticGroups: true, actOrder: true, groupSize: 16 }],
  ['sym', { sym: true, groupSize: 16 }],
  ['mse', { mse: true }],
  ['owc grids', { clip: 'owc', groupSize: 16 }],
  ['small blocks', { gptqBlock: 8 }],
];

/**
 * A symmetric grid puts a group's largest |w| exactly on a rounding tie (x/scale = maxq/2); when
 * that weight is negative, float32 and float64 round it to different codes and GPTQ's error
 * feedback then diverges. Flipping the sign of such groups keeps the tie on the positive side,
 * where both roundings clamp to the same code.
 */
function positiveExtremes(p: Problem, groupSize: number): Problem {
  const W = p.W.slice();
  for (let r = 0; r < p.rows; r++)
    for (let c0 = 0; c0 < p.cols; c0 += groupSize) {
      const g = W.subarray(r * p.cols + c0, r * p.cols + Math.min(p.cols, c0 + groupSize));
      if (-Math.min(...g) >= Math.max(...g)) for (let i = 0; i < g.length; i++) g[i] = -g[i];
    }
  return { ...p, W };
}

test('GPTQ equals the reference fasterquant (codes, g_idx, loss)', async () => {
  for (const p0 of problems)
    for (const bits of [2, 4])
      for (const [name, o] of gptqCases) {
        if (o.sym && p0.cols > (o.gptqBlock ?? 128)) continue; // later blocks' grids see updated weights
        const p = o.sym ? positiveExtremes(p0, o.groupSize ?? p0.cols) : p0;
        const res = await solve(p, { method: 'gptq', bits, ...o });
        const want = ref.gptq(p.W, p.H, p.rows, p.cols, {
          bits, groupSize: o.groupSize, sym: o.sym, actOrder: o.actOrder, staticGroups: o.staticGroups,
          blockSize: o.gptqBlock ?? 128, clip: o.mse ? 'mse' : o.clip,
        });
        const msg = `gptq ${name} ${p.rows}x${p.cols} b${bits}`;
        assertMatches(res, want, p, msg, 0.97);
        const baseline = await solve(p, { method: 'rtn', bits, groupSize: o.groupSize, sym: o.sym });
        assert.is(res.rtnLoss, baseline.loss, `${msg}: rtnLoss is the RTN min-max baseline's loss`);
        assert.is(res.dampUsed, want.dampUsed, `${msg}: damping`);
        if (o.actOrder) assert.equal(Array.from(res.perm!), Array.from(want.perm), `${msg}: perm`);
        assertValid(res, bits, msg);
      }
});

test('GPTQ equals its unblocked form where the algorithm says so', async () => {
  const p = problems[3];
  for (const o of [{}, { actOrder: true }, { staticGroups: true, groupSize: 25 }] as QuantizeOptions[]) {
    const blocked = await solve(p, { method: 'gptq', bits: 3, ...o, gptqBlock: 16 });
    const whole = await solve(p, { method: 'gptq', bits: 3, ...o, gptqBlock: p.cols });
    assert.ok(sameFraction(blocked.codes, whole.codes) >= 0.99, `blocked vs unblocked ${JSON.stringify(o)}`);
    assert.ok(Math.abs(blocked.loss - whole.loss) <= 1e-3 * whole.loss);
  }
});

test('GPTQ raises damping tenfold while the Cholesky fails and reports it (ALGORITHMS.md step 3)', async () => {
  const n = 6;
  // All ones: rank 1, positive semidefinite, no Cholesky factor without damping.
  const ones = new Float32Array(n * n).fill(1);
  const W = Float32Array.from({ length: 2 * n }, (_, i) => Math.sin(i + 1));
  const res = await quantizeLayer({ data: W, rows: 2, cols: n }, ones, { method: 'gptq', bits: 4, damp: 0 });
  assert.is(res.dampUsed, 0.01, `damp raised from 0 to 1%, got ${res.dampUsed}`);
  const H = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * n + j] = i === j ? 1 : 0.99;
  H[0] = 0.5; // makes H indefinite
  H[1] = H[n] = 1.2;
  // Indefinite: GPTQ factors at a raised damping, but the losses with the H given come out
  // negative, and an output with a negative loss is refused (issue 14), as CD refuses H outright.
  for (const method of ['gptq', 'cd'] as const) {
    try {
      await quantizeLayer({ data: W, rows: 2, cols: n }, H, { method, bits: 4 });
      assert.unreachable(`an indefinite H must be refused by ${method}`);
    } catch (e) {
      assert.ok(e instanceof CdquantError && e.code === 'NOT_POSITIVE_DEFINITE', `${method}: ${String(e)}`);
    }
  }
});

test('CD: the loss never increases along the moves, and from GPTQ is never worse than GPTQ', async () => {
  for (const p of problems)
    for (const bits of [2, 3, 4])
      for (const groupSize of [-1, 16]) {
        const gptqRes = await solve(p, { method: 'gptq', bits, groupSize });
        let previous = loss64(p, gptqRes);
        for (const iters of [1, 2, 3, 5, 8, 13, 200]) {
          const res = await solve(p, { method: 'cd', init: 'gptq', bits, groupSize, iters });
          const l = loss64(p, res);
          assert.ok(l <= previous * (1 + 1e-6) + 1e-9, `cd b${bits} g${groupSize} iters ${iters}: ${l} > ${previous}`);
          previous = l;
          assertValid(res, bits, 'cd');
        }
        const owc = await solve(p, { method: 'rtn', bits, groupSize, clip: 'owc' });
        const cdOwc = await solve(p, { method: 'cd', bits, groupSize });
        assert.ok(loss64(p, cdOwc) <= loss64(p, owc) * (1 + 1e-6) + 1e-9, 'CD from OWC <= RTN on the OWC grid');
      }
});

test('CD converges to a point no single-coordinate grid move improves (float64 check)', async () => {
  const p = problems[1];
  const bits = 3;
  const res = await solve(p, { method: 'cd', init: 'rtn', bits, groupSize: 16, iters: 10_000 });
  const { Hf, Wf } = ref.deadFix(p.W, p.H, p.rows, p.cols);
  const q = Float64Array.from(res.dequantize());
  const maxq = 2 ** bits - 1;
  for (let r = 0; r < p.rows; r++) {
    const e = Array.from({ length: p.cols }, (_, j) => q[r * p.cols + j] - Wf[r * p.cols + j]);
    for (let i = 0; i < p.cols; i++) {
      let gi = 0;
      for (let j = 0; j < p.cols; j++) gi += Hf[i * p.cols + j] * e[j];
      const g = r * res.groups + res.gIdx[i];
      for (let c = 0; c <= maxq; c++) {
        const d = res.scales[g] * (c - res.zeros[g]) - q[r * p.cols + i];
        const change = 2 * d * gi + d * d * Hf[i * p.cols + i];
        const tolerance = 1e-5 * (Math.abs(gi * d) + d * d * Hf[i * p.cols + i]) + 1e-7;
        assert.ok(change >= -tolerance, `row ${r} col ${i} code ${c} would lower the loss by ${-change}`);
      }
    }
  }
});

test('CD agrees with the float64 reference CD from the same start', async () => {
  for (const p of problems.slice(0, 3)) {
    const start = await solve(p, { method: 'rtn', bits: 3, groupSize: 16 });
    const res = await solve(p, { method: 'cd', init: 'rtn', bits: 3, groupSize: 16 });
    const want = ref.cd(p.W, p.H, p.rows, p.cols, { bits: 3, groupSize: 16, init: { codes: start.codes, scales: start.scales, zeros: start.zeros } });
    assertMatches(res, want, p, `cd ${p.rows}x${p.cols}`, 0.97);
  }
});

test('BCD: never worse than its start, monotone in iterations, equals the reference', async () => {
  for (const p of problems.slice(0, 3))
    for (const blockSize of [2, 3]) {
      const gptqRes = await solve(p, { method: 'gptq', bits: 3 });
      let previous = loss64(p, gptqRes);
      for (const iters of [1, 4, 16, 500]) {
        const res = await solve(p, { method: 'bcd', init: 'gptq', bits: 3, blockSize, iters });
        const l = loss64(p, res);
        assert.ok(l <= previous * (1 + 1e-6) + 1e-9, `bcd k${blockSize} iters ${iters}: ${l} > ${previous}`);
        previous = l;
      }
      const start = await solve(p, { method: 'rtn', bits: 3, groupSize: 16 });
      const res = await solve(p, { method: 'bcd', init: 'rtn', bits: 3, groupSize: 16, blockSize });
      const want = ref.bcd(p.W, p.H, p.rows, p.cols, { bits: 3, groupSize: 16, block: blockSize, init: { codes: start.codes, scales: start.scales, zeros: start.zeros } });
      assertMatches(res, want, p, `bcd k${blockSize}`, 0.95);
      const act = await solve(p, { method: 'bcd', init: 'gptq', actOrder: true, bits: 3, blockSize });
      const actStart = await solve(p, { method: 'gptq', actOrder: true, bits: 3 });
      assert.ok(loss64(p, act) <= loss64(p, actStart) * (1 + 1e-6) + 1e-9, 'bcd act-order <= its gptq start');
    }
});

test('refit: every round never increases the loss; codes and zeros stay valid', async () => {
  for (const p of problems)
    for (const [bits, groupSize, sym] of [[2, -1, false], [3, 16, false], [4, 16, true], [3, -1, true]] as const) {
      let previous = Infinity;
      for (const refit of [0, 1, 2, 3]) {
        const res = await solve(p, { method: 'cd', bits, groupSize, sym, refit });
        const l = loss64(p, res);
        assert.ok(l <= previous * (1 + 1e-6) + 1e-9, `refit ${refit} b${bits} g${groupSize} sym=${sym}: ${l} > ${previous}`);
        previous = l;
        assertValid(res, bits, `refit ${refit}`);
        if (sym) for (const z of res.zeros) assert.is(z, (2 ** bits) / 2, 'symmetric zero kept');
      }
    }
  // act-order with dynamic GPTQ groups: groups are not consecutive columns
  const p = problems[1];
  const a = await solve(p, { method: 'cd', init: 'gptq', actOrder: true, groupSize: 16, bits: 3, refit: 0 });
  const b = await solve(p, { method: 'cd', init: 'gptq', actOrder: true, groupSize: 16, bits: 3, refit: 2 });
  assert.ok(loss64(p, b) <= loss64(p, a) * (1 + 1e-6));
  assertValid(b, 3, 'refit act-order');
});

test('the result does not depend on how rows are banded', async () => {
  const p = problems[1];
  const { W, H } = f32(p);
  const weights = { data: W, rows: p.rows, cols: p.cols };
  for (const options of [
    { method: 'gptq', bits: 3, actOrder: true, groupSize: 16 },
    { method: 'cd', bits: 3, groupSize: 16, refit: 1 },
    { method: 'bcd', bits: 2, blockSize: 3 },
    { method: 'rtn', bits: 4, clip: 'mse' },
  ] as QuantizeOptions[]) {
    const kernel = await Kernel.create();
    const prepared = await prepareLayer(H, p.cols, options, kernel);
    const session = LayerSession.fromPrepared(kernel, prepared);
    const whole = await mergeBands(prepared, p.rows, [session.solveBand(weights, 0, p.rows)], kernel);
    const split = await mergeBands(prepared, p.rows, [session.solveBand(weights, 5, 11), session.solveBand(weights, 0, 5), session.solveBand(weights, 11, p.rows)], kernel);
    session.free();
    assert.equal(split.codes, whole.codes, `${options.method} codes`);
    assert.equal(split.scales, whole.scales, `${options.method} scales`);
    assert.equal(split.dequantize(), whole.dequantize(), `${options.method} values`);
    assert.is(split.loss, whole.loss, `${options.method} loss`);
  }
});

test('one preparation serves every layer that shares H, with the same bits as quantizeLayer', async () => {
  const p = problems[1];
  const { W, H } = f32(p);
  const options: QuantizeOptions = { method: 'cd', init: 'gptq', bits: 3, groupSize: 16, actOrder: true };
  const prepared = await prepareLayer(H, p.cols, options);
  for (const rows of [p.rows, 5]) {
    const weights = { data: W.subarray(0, rows * p.cols), rows, cols: p.cols };
    const shared = await quantizePrepared(weights, prepared);
    const alone = await quantizeLayer(weights, H, options);
    assert.equal(shared.codes, alone.codes);
    assert.is(shared.loss, alone.loss);
  }
  try {
    await quantizePrepared({ data: W.subarray(0, 2 * 10), rows: 2, cols: 10 }, prepared);
    assert.unreachable('no error');
  } catch (e) {
    assert.is((e as CdquantError).code, 'SHAPE_MISMATCH');
  }
});

test('HessianAccumulator streams chunks exactly as the reference formula', async () => {
  const cols = 20;
  const rand = ref.mulberry32(9);
  const gauss = ref.gaussian(rand);
  const sizes = [7, 0, 130, 1, 33];
  const chunks = sizes.map((m) => Float64Array.from({ length: m * cols }, () => Math.fround(gauss())));
  const acc = new HessianAccumulator(cols);
  for (const c of chunks) await acc.add(Float32Array.from(c));
  assert.is(acc.count, sizes.reduce((a, b) => a + b));
  const want = ref.accumulateHessian(chunks, cols).H;
  const got = acc.hessian();
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5 * (1 + Math.abs(want[i])), `H[${i}] ${got[i]} vs ${want[i]}`);
  // H lives in one kernel between chunks; free() releases it and starts over.
  try {
    acc.addWith(await Kernel.create(), Float32Array.from(chunks[0]));
    assert.unreachable('another kernel was accepted');
  } catch (e) {
    assert.is((e as CdquantError).code, 'BAD_OPTION');
  }
  acc.free();
  assert.is(acc.count, 0);
  assert.ok(acc.hessian().every((v) => v === 0));
  await acc.add(Float32Array.from(chunks[2]));
  const fresh = new HessianAccumulator(cols);
  await fresh.add(Float32Array.from(chunks[2]));
  assert.equal(acc.hessian(), fresh.hessian(), 'after free() the accumulator starts over');
  acc.free();
  fresh.free();
});

test('bad input gets typed errors', async () => {
  const W = new Float32Array(12).fill(0.5);
  const H = new Float32Array(16);
  for (let i = 0; i < 4; i++) H[i * 4 + i] = 1;
  const cases: Array<[string, () => Promise<unknown>, string]> = [
    ['shape', () => quantizeLayer({ data: W, rows: 3, cols: 5 }, H), 'SHAPE_MISMATCH'],
    ['H shape', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, new Float32Array(15)), 'SHAPE_MISMATCH'],
    ['NaN W', () => quantizeLayer({ data: Float32Array.from(W, (v, i) => (i === 3 ? NaN : v)), rows: 3, cols: 4 }, H), 'NON_FINITE'],
    ['Inf H', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, Float32Array.from(H, (v, i) => (i === 5 ? Infinity : v))), 'NON_FINITE'],
    ['asymmetric H', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, Float32Array.from(H, (v, i) => (i === 1 ? 0.5 : v))), 'NOT_POSITIVE_DEFINITE'],
    ['negative diagonal', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, Float32Array.from(H, (v, i) => (i === 0 ? -1 : v))), 'NOT_POSITIVE_DEFINITE'],
    ['bits', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, H, { bits: 5 }), 'BAD_OPTION'],
    ['group', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, H, { groupSize: 2.5 }), 'BAD_OPTION'],
    ['method', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, H, { method: 'nope' as never }), 'BAD_OPTION'],
    ['init/clip clash', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, H, { method: 'cd', init: 'owc', clip: 'mse' }), 'BAD_OPTION'],
    ['aborted', () => quantizeLayer({ data: W, rows: 3, cols: 4 }, H, { signal: AbortSignal.abort() }), 'ABORTED'],
  ];
  for (const [name, run, code] of cases) {
    try {
      await run();
      assert.unreachable(`${name}: no error`);
    } catch (e) {
      assert.ok(e instanceof CdquantError, `${name}: ${String(e)}`);
      assert.is((e as CdquantError).code, code, `${name}: ${(e as Error).message}`);
    }
  }
  // inputs are never modified
  const before = W.slice();
  await quantizeLayer({ data: W, rows: 3, cols: 4 }, H, { method: 'cd' });
  assert.equal(W, before);
});

test.run();
