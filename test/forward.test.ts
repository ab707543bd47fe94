// The wasm Llama forward pass against an independent float64 reference written here from the
// data README (llama2.c v0 checkpoint, interleaved RoPE), on the real stories260K model.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../src/core/kernel.js';
import { LlamaRunner, perplexity, type HiddenState } from '../src/model/forward.js';
import { LINEAR_NAMES, type LinearName, type LlamaModel } from '../src/model/types.js';
import { OptionError, ShapeError, CdquantError } from '../src/core/errors.js';

const DATA = join(process.cwd(), '..', 'shared', 'data');

// ------------------------------------------------------------------ llama2.c reader (test-only)

interface Ckpt {
  dim: number; hidden: number; nLayers: number; nHeads: number; nKv: number; vocab: number; seqLen: number;
  shared: boolean;
  emb: Float32Array; attnNorm: Float32Array[]; wq: Float32Array[]; wk: Float32Array[]; wv: Float32Array[];
  wo: Float32Array[]; ffnNorm: Float32Array[]; w1: Float32Array[]; w2: Float32Array[]; w3: Float32Array[];
  finalNorm: Float32Array; cls: Float32Array;
}

function readCkpt(path: string): Ckpt {
  const buf = readFileSync(path);
  const bytes = new Uint8Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const h = new Int32Array(bytes.buffer, 0, 7);
  const [dim, hidden, nLayers, nHeads, nKv, vocabRaw, seqLen] = Array.from(h);
  const vocab = Math.abs(vocabRaw);
  const shared = vocabRaw > 0;
  const head = dim / nHeads;
  const kvDim = head * nKv;
  const f = new Float32Array(bytes.buffer, 28, (bytes.byteLength - 28) / 4);
  let at = 0;
  const take = (n: number) => { const a = f.slice(at, at + n); at += n; return a; };
  const perLayer = (n: number) => Array.from({ length: nLayers }, () => take(n));
  const emb = take(vocab * dim);
  const attnNorm = perLayer(dim);
  const wq = perLayer(dim * dim);
  const wk = perLayer(kvDim * dim);
  const wv = perLayer(kvDim * dim);
  const wo = perLayer(dim * dim);
  const ffnNorm = perLayer(dim);
  const w1 = perLayer(hidden * dim);
  const w2 = perLayer(dim * hidden);
  const w3 = perLayer(hidden * dim);
  const finalNorm = take(dim);
  at += seqLen * head; // two RoPE tables [seq_len, head/2], unused
  const cls = shared ? emb : take(vocab * dim);
  if (at !== f.length) throw new Error(`checkpoint size mismatch: read ${at} floats of ${f.length}`);
  return { dim, hidden, nLayers, nHeads, nKv, vocab, seqLen, shared, emb, attnNorm, wq, wk, wv, wo, ffnNorm, w1, w2, w3, finalNorm, cls };
}

function toModel(c: Ckpt): LlamaModel {
  return {
    config: {
      dim: c.dim, hiddenDim: c.hidden, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKv, vocabSize: c.vocab,
      maxSeqLen: c.seqLen, normEps: 1e-5, ropeTheta: 10000, ropeStyle: 'interleaved', tiedEmbeddings: c.shared,
    },
    embedding: c.emb,
    blocks: Array.from({ length: c.nLayers }, (_, l) => ({
      attnNorm: c.attnNorm[l], ffnNorm: c.ffnNorm[l],
      linear: { q_proj: c.wq[l], k_proj: c.wk[l], v_proj: c.wv[l], o_proj: c.wo[l], gate_proj: c.w1[l], up_proj: c.w3[l], down_proj: c.w2[l] },
    })),
    finalNorm: c.finalNorm,
    classifier: c.cls,
  };
}

// ------------------------------------------------------------------ float64 reference forward

function matvec(W: Float32Array, x: Float64Array, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const o = r * cols;
    for (let i = 0; i < cols; i++) s += W[o + i] * x[i];
    y[r] = s;
  }
  return y;
}
function rmsnorm(x: Float64Array, w: Float32Array): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + 1e-5);
  return x.map((v, i) => v * inv * w[i]);
}
function ropeInterleaved(x: Float64Array, nHeads: number, head: number, pos: number): void {
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < head / 2; i++) {
      const ang = pos * Math.pow(10000, -(2 * i) / head);
      const c = Math.cos(ang), s = Math.sin(ang);
      const a = x[h * head + 2 * i], b = x[h * head + 2 * i + 1];
      x[h * head + 2 * i] = a * c - b * s;
      x[h * head + 2 * i + 1] = a * s + b * c;
    }
  }
}

/** Logits [T][vocab] in float64. */
function referenceLogits(c: Ckpt, tokens: ArrayLike<number>): Float64Array[] {
  const { dim, hidden, nHeads, nKv, vocab } = c;
  const head = dim / nHeads;
  const kvDim = head * nKv;
  const T = tokens.length;
  const xs: Float64Array[] = Array.from({ length: T }, (_, t) => Float64Array.from(c.emb.subarray(tokens[t] * dim, (tokens[t] + 1) * dim)));
  for (let l = 0; l < c.nLayers; l++) {
    const qs: Float64Array[] = [], ks: Float64Array[] = [], vs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const xb = rmsnorm(xs[t], c.attnNorm[l]);
      const q = matvec(c.wq[l], xb, dim, dim);
      const k = matvec(c.wk[l], xb, kvDim, dim);
      ropeInterleaved(q, nHeads, head, t);
      ropeInterleaved(k, nKv, head, t);
      qs.push(q); ks.push(k); vs.push(matvec(c.wv[l], xb, kvDim, dim));
    }
    for (let t = 0; t < T; t++) {
      const att = new Float64Array(dim);
      for (let h = 0; h < nHeads; h++) {
        const g = Math.floor(h / (nHeads / nKv));
        const sc = new Float64Array(t + 1);
        let m = -Infinity;
        for (let j = 0; j <= t; j++) {
          let s = 0;
          for (let d = 0; d < head; d++) s += qs[t][h * head + d] * ks[j][g * head + d];
          sc[j] = s / Math.sqrt(head);
          m = Math.max(m, sc[j]);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) { sc[j] = Math.exp(sc[j] - m); sum += sc[j]; }
        for (let j = 0; j <= t; j++) {
          const p = sc[j] / sum;
          for (let d = 0; d < head; d++) att[h * head + d] += p * vs[j][g * head + d];
        }
      }
      const o = matvec(c.wo[l], att, dim, dim);
      for (let i = 0; i < dim; i++) xs[t][i] += o[i];
      const xb = rmsnorm(xs[t], c.ffnNorm[l]);
      const h1 = matvec(c.w1[l], xb, hidden, dim);
      const h3 = matvec(c.w3[l], xb, hidden, dim);
      const hh = h1.map((a, i) => (a / (1 + Math.exp(-a))) * h3[i]);
      const d = matvec(c.w2[l], hh, dim, hidden);
      for (let i = 0; i < dim; i++) xs[t][i] += d[i];
    }
  }
  return xs.map((x) => matvec(c.cls, rmsnorm(x, c.finalNorm), vocab, dim));
}

function referenceNll(logits: Float64Array[], tokens: ArrayLike<number>): number {
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++) {
    const row = logits[t];
    let m = -Infinity;
    for (const v of row) m = Math.max(m, v);
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    sum += m + Math.log(s) - row[tokens[t + 1]];
  }
  return sum;
}

// ------------------------------------------------------------------ llama2.c tokenizer (test-only)

function makeTokenizer(path: string, vocab: number): (text: string) => number[] {
  const b = readFileSync(path);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 4;
  const pieces: string[] = [];
  const scores: number[] = [];
  for (let i = 0; i < vocab; i++) {
    scores.push(dv.getFloat32(at, true));
    const len = dv.getInt32(at + 4, true);
    at += 8;
    let s = '';
    for (let j = 0; j < len; j++) s += String.fromCharCode(b[at + j]); // bytes as latin1
    at += len;
    pieces.push(s);
  }
  const index = new Map<string, number>();
  pieces.forEach((p, i) => { if (!index.has(p)) index.set(p, i); });
  return (text: string) => {
    const out = [1]; // BOS
    if (text.length > 0) out.push(index.get(' ')!);
    const utf8 = new TextEncoder().encode(text);
    for (let i = 0; i < utf8.length;) {
      let n = 1;
      while (i + n < utf8.length && (utf8[i + n] & 0xc0) === 0x80 && n < 4) n++;
      const s = String.fromCharCode(...utf8.subarray(i, i + n));
      const id = index.get(s);
      if (id !== undefined) out.push(id);
      else for (let j = 0; j < n; j++) out.push(utf8[i + j] + 3);
      i += n;
    }
    for (;;) {
      let best = -Infinity, bestId = -1, bestAt = -1;
      for (let i = 0; i + 1 < out.length; i++) {
        const id = index.get(pieces[out[i]] + pieces[out[i + 1]]);
        if (id !== undefined && scores[id] > best) { best = scores[id]; bestId = id; bestAt = i; }
      }
      if (bestAt < 0) break;
      out.splice(bestAt, 2, bestId);
    }
    return out;
  };
}

// ------------------------------------------------------------------ fixtures

const ckpt = readCkpt(join(DATA, 'stories260K.bin'));
const model = toModel(ckpt);
const encode = makeTokenizer(join(DATA, 'tok512.bin'), ckpt.vocab);

/** The first `n` tokens of the stories, each story BOS + its pieces. */
function textTokens(n: number): Int32Array {
  const stories = readFileSync(join(DATA, 'tinystories-valid-a.txt'), 'utf8').split(/\n\s*\n/).map((s) => s.trim()).filter(Boolean);
  const out: number[] = [];
  for (const s of stories) {
    out.push(...encode(s));
    if (out.length >= n) break;
  }
  return Int32Array.from(out.slice(0, n));
}

const text1024 = textTokens(1024);
const seq256 = text1024.slice(0, 256);
const seqShort = Int32Array.from([1, 403, 407, 261, 1, 0, 511, 300, 299, 2, 42, 17, 88]);
const seqs: [string, Int32Array][] = [
  ['1 token', Int32Array.from([1])],
  ['13 tokens (odd ids incl. 0 and 511)', seqShort],
  ['37 text tokens', seq256.slice(0, 37)],
  ['256 text tokens', seq256],
];

function maxAbsDiff(a: Float32Array, ref: Float64Array[], vocab: number): number {
  let m = 0;
  ref.forEach((row, t) => { for (let i = 0; i < vocab; i++) m = Math.max(m, Math.abs(a[t * vocab + i] - row[i])); });
  return m;
}
function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

let kernel: Kernel;
let runner: LlamaRunner;
test.before(async () => {
  kernel = await Kernel.create();
  runner = new LlamaRunner(kernel, model);
});
test.after(() => runner.free());

// ------------------------------------------------------------------ tests

test('the test tokenizer and reader are consistent with the data README', () => {
  assert.equal(ckpt.dim, 64); assert.equal(ckpt.hidden, 172); assert.equal(ckpt.nLayers, 5);
  assert.equal(ckpt.nHeads, 8); assert.equal(ckpt.nKv, 4); assert.equal(ckpt.vocab, 512); assert.equal(ckpt.shared, true);
  assert.equal(text1024.length, 1024);
  assert.equal(text1024[0], 1);
});

test('wasm logits match the float64 reference', () => {
  for (const [what, tokens] of seqs) {
    const got = runner.logits(tokens);
    assert.equal(got.length, tokens.length * ckpt.vocab);
    const ref = referenceLogits(ckpt, tokens);
    const d = maxAbsDiff(got, ref, ckpt.vocab);
    let scale = 0;
    for (const row of ref) for (const v of row) scale = Math.max(scale, Math.abs(v));
    console.log(`  logits vs f64 reference, ${what}: max |diff| = ${d.toExponential(2)} (max |logit| ${scale.toFixed(1)})`);
    assert.ok(d < 2e-4, `${what}: max diff ${d}`);
    const nll = runner.nll(tokens);
    const refNll = referenceNll(ref, tokens);
    assert.equal(nll.count, tokens.length - 1);
    assert.ok(Math.abs(nll.sum - refNll) <= 1e-5 * Math.max(1, refNll), `${what}: nll ${nll.sum} vs reference ${refNll}`);
  }
});

test('a row does not depend on the sequence length (prefix logits are bit-identical)', () => {
  const full = runner.logits(seq256);
  for (const n of [1, 3, 4, 5, 37, 128]) {
    const part = runner.logits(seq256.slice(0, n));
    assert.ok(sameBits(part, full.subarray(0, n * ckpt.vocab)), `prefix ${n}`);
  }
});

test("'half' RoPE with q/k rows permuted per head gives the interleaved model's logits", async () => {
  const { dim, nHeads, nKv } = ckpt;
  const head = dim / nHeads;
  // HF's converter: w.view(n_heads, head/2, 2, dim).transpose(1, 2).reshape(n_heads*head, dim)
  const permute = (w: Float32Array, heads: number) => {
    const out = new Float32Array(w.length);
    for (let h = 0; h < heads; h++) {
      for (let a = 0; a < 2; a++) {
        for (let b = 0; b < head / 2; b++) {
          const src = (h * head + 2 * b + a) * dim;
          const dst = (h * head + a * (head / 2) + b) * dim;
          out.set(w.subarray(src, src + dim), dst);
        }
      }
    }
    return out;
  };
  const halfModel: LlamaModel = {
    ...model,
    config: { ...model.config, ropeStyle: 'half' },
    blocks: model.blocks.map((b) => ({ ...b, linear: { ...b.linear, q_proj: permute(b.linear.q_proj, nHeads), k_proj: permute(b.linear.k_proj, nKv) } })),
  };
  const halfRunner = new LlamaRunner(kernel, halfModel);
  try {
    for (const [what, tokens] of seqs) {
      const a = runner.logits(tokens);
      const b = halfRunner.logits(tokens);
      let d = 0;
      for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
      console.log(`  half vs interleaved, ${what}: max |diff| = ${d.toExponential(2)}`);
      assert.ok(d < 1e-4, `${what}: ${d}`);
    }
  } finally {
    halfRunner.free();
  }
});

test('the block API reproduces logits bit-exactly and reports every linear input', () => {
  const tokens = seq256.slice(0, 61);
  const want = runner.logits(tokens);
  const state = runner.embed(tokens);
  const seen: { name: LinearName; arr: Float32Array; rows: number; cols: number }[] = [];
  for (let l = 0; l < ckpt.nLayers; l++) {
    seen.length = 0;
    runner.runBlock(l, state, { capture: (name, arr, rows, cols) => seen.push({ name, arr, rows, cols }) });
    assert.equal(seen.map((s) => s.name), [...LINEAR_NAMES]);
    assert.ok(seen[0].arr === seen[1].arr && seen[1].arr === seen[2].arr, 'q/k/v share one input array');
    assert.ok(seen[4].arr === seen[5].arr, 'gate/up share one input array');
    for (const s of seen) {
      assert.equal(s.rows, tokens.length);
      assert.equal(s.cols, s.name === 'down_proj' ? ckpt.hidden : ckpt.dim);
      assert.equal(s.arr.length, s.rows * s.cols);
    }
    assert.equal(state.layersDone, l + 1);
  }
  assert.ok(sameBits(runner.logitsFrom(state), want));
  const nll = runner.nllFrom(state, tokens);
  const direct = runner.nll(tokens);
  assert.ok(Object.is(nll.sum, direct.sum));
  runner.freeState(state);
  assert.ok(state.freed);
});

test('captured q_proj input of layer 0 is RMSNorm of the embeddings (vs f64)', () => {
  const tokens = seqShort;
  const state = runner.embed(tokens);
  let got: Float32Array | undefined;
  runner.runBlock(0, state, { capture: (name, arr) => { if (name === 'q_proj') got = arr; }, stopAfter: 'q_proj' });
  runner.freeState(state);
  let d = 0;
  for (let t = 0; t < tokens.length; t++) {
    const x = Float64Array.from(ckpt.emb.subarray(tokens[t] * ckpt.dim, (tokens[t] + 1) * ckpt.dim));
    const ref = rmsnorm(x, ckpt.attnNorm[0]);
    for (let i = 0; i < ckpt.dim; i++) d = Math.max(d, Math.abs(got![t * ckpt.dim + i] - ref[i]));
  }
  assert.ok(d < 1e-5, `${d}`);
});

test('update:false and stopAfter leave the state unchanged; cloneState copies', () => {
  const tokens = seq256.slice(0, 20);
  const state = runner.embed(tokens);
  const before = runner.readState(state);
  let calls = 0;
  runner.runBlock(0, state, { update: false, capture: () => calls++ });
  assert.equal(calls, 7);
  assert.ok(sameBits(runner.readState(state), before));
  calls = 0;
  runner.runBlock(0, state, { stopAfter: 'gate_proj', capture: () => calls++ });
  assert.equal(calls, 6); // q, k, v, o, gate, up (gate and up share the input)
  assert.ok(sameBits(runner.readState(state), before));
  assert.equal(state.layersDone, 0);
  const copy = runner.cloneState(state);
  runner.runBlock(0, copy);
  assert.ok(sameBits(runner.readState(state), before));
  assert.not.ok(sameBits(runner.readState(copy), before));
  runner.freeState(copy);
  runner.freeState(state);
});

test('setLinear swaps weights; getLinear reads them back; restoring restores the bits', () => {
  const tokens = seq256.slice(0, 50);
  const want = runner.logits(tokens);
  const orig = runner.getLinear(2, 'down_proj');
  assert.ok(sameBits(orig, model.blocks[2].linear.down_proj));
  const halved = orig.map((v) => v * 0.5);
  runner.setLinear(2, 'down_proj', halved);
  assert.ok(sameBits(runner.getLinear(2, 'down_proj'), halved));
  const changed = runner.logits(tokens);
  assert.not.ok(sameBits(changed, want));
  // the change matches the f64 reference run on the same modified weights
  const mod: Ckpt = { ...ckpt, w2: ckpt.w2.map((w, l) => (l === 2 ? halved : w)) };
  const d = maxAbsDiff(changed, referenceLogits(mod, tokens), ckpt.vocab);
  assert.ok(d < 2e-4, `${d}`);
  runner.setLinear(2, 'down_proj', orig);
  assert.ok(sameBits(runner.logits(tokens), want));
});

test('perplexity over 256-token windows: sane, matches f64 reference, same bits on another Kernel', async () => {
  const r = perplexity(runner, text1024, 256);
  assert.equal(r.windows, 4);
  assert.equal(r.count, 4 * 255);
  // f64 reference on the same windows
  let refSum = 0;
  for (let w = 0; w < 4; w++) {
    const win = text1024.subarray(w * 256, (w + 1) * 256);
    refSum += referenceNll(referenceLogits(ckpt, win), win);
  }
  const refPpl = Math.exp(refSum / r.count);
  console.log(`  perplexity (test tokenizer, 4 x 256 tokens): wasm ${r.ppl.toFixed(5)}, f64 reference ${refPpl.toFixed(5)}`);
  assert.ok(r.ppl > 1.2 && r.ppl < 20, `ppl ${r.ppl}`);
  assert.ok(Math.abs(r.nll - refSum) < 1e-5 * refSum, `${r.nll} vs ${refSum}`);
  // drops the final partial window
  const partial = perplexity(runner, text1024.subarray(0, 256 * 2 + 100), 256);
  assert.equal(partial.windows, 2);
  assert.equal(partial.count, 2 * 255);
  // another Kernel instance, the same bits
  const k2 = await Kernel.create();
  const r2runner = new LlamaRunner(k2, model);
  const r2 = perplexity(r2runner, text1024, 256);
  r2runner.free();
  assert.ok(Object.is(r2.nll, r.nll) && Object.is(r2.ppl, r.ppl), `${r2.nll} vs ${r.nll}`);
});

test('odd shapes (dims, heads, hidden not multiples of 4; MHA and MQA) match the f64 reference', () => {
  let seed = 12345;
  const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed / 2 ** 32 - 0.5) * 0.6; };
  const arr = (n: number, base = 0) => Float32Array.from({ length: n }, () => base + rnd());
  for (const [dim, nHeads, nKv, hidden, vocab] of [[24, 2, 1, 30, 37], [30, 3, 3, 22, 19], [36, 3, 1, 41, 11]]) {
    const head = dim / nHeads, kvDim = head * nKv, L = 2;
    const per = (n: number, base = 0) => Array.from({ length: L }, () => arr(n, base));
    const emb = arr(vocab * dim);
    const c: Ckpt = {
      dim, hidden, nLayers: L, nHeads, nKv, vocab, seqLen: 64, shared: false, emb,
      attnNorm: per(dim, 1), wq: per(dim * dim), wk: per(kvDim * dim), wv: per(kvDim * dim), wo: per(dim * dim),
      ffnNorm: per(dim, 1), w1: per(hidden * dim), w2: per(dim * hidden), w3: per(hidden * dim), finalNorm: arr(dim, 1), cls: arr(vocab * dim),
    };
    const r = new LlamaRunner(kernel, toModel(c));
    try {
      const tokens = Int32Array.from({ length: 23 }, (_, i) => (i * 7 + 3) % vocab);
      const d = maxAbsDiff(r.logits(tokens), referenceLogits(c, tokens), vocab);
      assert.ok(d < 1e-4, `dim ${dim} heads ${nHeads}/${nKv} hidden ${hidden}: ${d}`);
    } finally {
      r.free();
    }
  }
});

test('nn_matmul follows the documented summation order bit-exactly across tiles and tails', () => {
  // the canonical order emulated in float32 with Math.fround (exact for + and *)
  const f = Math.fround;
  const canonical = (x: Float32Array, w: Float32Array, n: number) => {
    const n4 = n & ~3;
    const lane = [0, 0, 0, 0];
    for (let i = 0; i < n4; i += 4) for (let l = 0; l < 4; l++) lane[l] = f(lane[l] + f(x[i + l] * w[i + l]));
    let s = f(f(lane[0] + lane[1]) + f(lane[2] + lane[3]));
    for (let i = n4; i < n; i++) s = f(s + f(x[i] * w[i]));
    return s;
  };
  let seed = 7;
  const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 - 0.5; };
  for (const [T, nIn, nOut] of [[9, 8195, 5], [7, 13, 9], [1, 3, 1], [5, 64, 3]]) {
    const x = Float32Array.from({ length: T * nIn }, rnd);
    const w = Float32Array.from({ length: nOut * nIn }, rnd);
    const got = kernel.scoped((alloc, put) => {
      const px = put(x), pw = put(w), py = alloc(T * nOut * 4);
      kernel.exports.nn_matmul(px, pw, py, T, nIn, nOut);
      return kernel.f32(py, T * nOut).slice();
    });
    const want = new Float32Array(T * nOut);
    for (let t = 0; t < T; t++) for (let o = 0; o < nOut; o++) want[t * nOut + o] = canonical(x.subarray(t * nIn, (t + 1) * nIn), w.subarray(o * nIn, (o + 1) * nIn), nIn);
    assert.ok(sameBits(got, want), `T ${T} in ${nIn} out ${nOut}`);
  }
});

test('wasm exp is accurate; SiLU gives the same bits in vector lanes and scalar tails', () => {
  const e = kernel.exports;
  let worst = 0;
  for (let x = -87; x <= 88; x += 0.0137) {
    const got = e.nn_exp_f32(x) as number;
    const want = Math.exp(Math.fround(x));
    worst = Math.max(worst, Math.abs(got - want) / want);
  }
  console.log(`  wasm exp (f32) max relative error on [-87, 88]: ${worst.toExponential(2)}`);
  assert.ok(worst < 4e-7, `relative error ${worst}`);
  assert.equal(e.nn_exp_f32(0), 1);
  const g = Float32Array.from({ length: 12 }, (_, i) => (i - 6) * 1.37);
  const u = Float32Array.from({ length: 12 }, (_, i) => 0.5 + i * 0.01);
  const run = (from: number) => kernel.scoped((alloc, put) => {
    const n = 12 - from;
    const pg = put(g.subarray(from)), pu = put(u.subarray(from)), po = alloc(n * 4);
    e.nn_swiglu(pg, pu, po, n);
    return kernel.f32(po, n).slice();
  });
  const all = run(0);
  for (const from of [1, 2, 3]) assert.ok(sameBits(run(from), all.subarray(from)), `offset ${from}`);
});

test('bad inputs give typed errors', () => {
  const throwsCode = (fn: () => unknown, Ctor: abstract new (...a: never[]) => CdquantError, code: string) => {
    try { fn(); } catch (e) {
      assert.instance(e, Ctor);
      assert.equal((e as CdquantError).code, code);
      return;
    }
    assert.unreachable('did not throw');
  };
  throwsCode(() => runner.logits(Int32Array.from([1, 512])), OptionError, 'BAD_OPTION');
  throwsCode(() => runner.logits(Int32Array.from([-1])), OptionError, 'BAD_OPTION');
  throwsCode(() => runner.nll(new Int32Array(ckpt.seqLen + 1).fill(1)), ShapeError, 'SHAPE_MISMATCH');
  throwsCode(() => runner.logits(new Int32Array(0)), ShapeError, 'SHAPE_MISMATCH');
  throwsCode(() => runner.setLinear(0, 'q_proj', new Float32Array(10)), ShapeError, 'SHAPE_MISMATCH');
  throwsCode(() => runner.setLinear(0, 'k_proj', new Float32Array(64 * 64)), ShapeError, 'SHAPE_MISMATCH');
  throwsCode(() => runner.setLinear(5, 'q_proj', new Float32Array(64 * 64)), OptionError, 'BAD_OPTION');
  const nan = new Float32Array(32 * 64); nan[7] = NaN;
  throwsCode(() => runner.setLinear(0, 'k_proj', nan), CdquantError, 'NON_FINITE');
  throwsCode(() => perplexity(runner, text1024, ckpt.seqLen + 1), ShapeError, 'SHAPE_MISMATCH');
  throwsCode(() => perplexity(runner, text1024.subarray(0, 100), 256), ShapeError, 'SHAPE_MISMATCH');
  throwsCode(() => perplexity(runner, text1024, 1), OptionError, 'BAD_OPTION');
  throwsCode(() => new LlamaRunner(kernel, { ...model, finalNorm: new Float32Array(3) }), ShapeError, 'SHAPE_MISMATCH');
  const other = runner.embed(Int32Array.from([1, 2]));
  runner.freeState(other);
  throwsCode(() => runner.runBlock(0, other as HiddenState), OptionError, 'BAD_OPTION');
});

test('timing (printed, not asserted)', () => {
  const median = (f: () => unknown, reps = 15) => {
    f(); // warm up
    const ts: number[] = [];
    for (let i = 0; i < reps; i++) { const t0 = performance.now(); f(); ts.push(performance.now() - t0); }
    return ts.sort((a, b) => a - b)[reps >> 1];
  };
  const logitsMs = median(() => runner.logits(seq256));
  const nllMs = median(() => runner.nll(seq256));
  console.log(`  stories260K, 256-token window (median of 15): logits ${logitsMs.toFixed(2)} ms (${(256 / logitsMs * 1000).toFixed(0)} tokens/s), nll ${nllMs.toFixed(2)} ms (${(256 / nllMs * 1000).toFixed(0)} tokens/s)`);
});

test.run();
