// The Llama forward pass driven from TypeScript: weights live in wasm memory, every
// floating-point operation runs in cdquant.wasm (assembly/nn.ts); this file only validates,
// allocates and sequences the kernels.
//
// Block structure (llama2.c / Hugging Face Llama):
//   h   = x + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1))),  n1 = rmsnorm(x)
//   out = h + down_proj(silu(gate_proj(n2)) * up_proj(n2)),                          n2 = rmsnorm(h)
// then logits = classifier(rmsnorm(x_L)).
import type { Kernel } from '../core/kernel.js';
import { OptionError, ShapeError, KernelError, assertFinite } from '../core/errors.js';
import { LINEAR_NAMES, linearShape, type LinearName, type LlamaConfig, type LlamaModel } from './types.js';

/** The nn_* exports of cdquant.wasm (see assembly/nn.ts). */
interface NnExports {
  nn_matmul(x: number, w: number, y: number, T: number, nIn: number, nOut: number): void;
  nn_rmsnorm(x: number, weight: number, y: number, T: number, dim: number, eps: number): void;
  nn_rope_table(tab: number, nPos: number, head: number, theta: number): void;
  nn_rope(x: number, tab: number, T: number, nHeads: number, head: number, halfSplit: number): void;
  nn_attention(q: number, k: number, v: number, out: number, T: number, nHeads: number, nKv: number, head: number): void;
  nn_swiglu(g: number, u: number, out: number, n: number): void;
  nn_add(a: number, b: number, n: number): void;
  nn_embed(table: number, tokens: number, out: number, T: number, dim: number): void;
  nn_nll(logits: number, targets: number, T: number, vocab: number, acc: number): number;
  nn_exp(x: number): number;
}

/** Called with the input of a linear layer: `inputs` is a fresh copy, [rows, cols] row-major
 * (rows = tokens, cols = the layer's in-features), that the callee may keep. Layers that share
 * an input get the same Float32Array object: q_proj, k_proj and v_proj are called in that
 * order with one array, and gate_proj, up_proj with another. */
export type CaptureFn = (name: LinearName, inputs: Float32Array, rows: number, cols: number) => void;

export interface RunBlockOptions {
  /** Receives the input of each linear layer of the block (see CaptureFn). */
  capture?: CaptureFn;
  /** Run only until the input of this linear layer has been captured; the state is then left
   * unchanged (e.g. `stopAfter: 'v_proj'` costs one RMSNorm). */
  stopAfter?: LinearName;
  /** Advance the state in place (default true). With false the block runs for its captures
   * only and the state keeps the block's input. */
  update?: boolean;
}

/** The residual stream of one token sequence, [tokens, dim] float32 in wasm memory. Opaque:
 * read it with `LlamaRunner.readState`, release it with `LlamaRunner.freeState` (or
 * `LlamaRunner.free`, which releases every state it made). */
export class HiddenState {
  /** @internal */ ptr: number;
  /** The sequence length. */
  readonly length: number;
  /** The number of blocks this state has been run through (for checks and progress). */
  layersDone = 0;
  /** @internal */ constructor(ptr: number, length: number) {
    this.ptr = ptr;
    this.length = length;
  }
  get freed(): boolean {
    return this.ptr === 0;
  }
}

interface BlockPtrs {
  attnNorm: number;
  ffnNorm: number;
  linear: Record<LinearName, number>;
}

/** Rows of logits computed at once by `nll`, so a large vocabulary needs no [T, vocab] buffer. */
const NLL_CHUNK = 64;

export class LlamaRunner {
  readonly kernel: Kernel;
  readonly config: LlamaConfig;
  private readonly nn: NnExports;
  private readonly head: number;
  private readonly kvDim: number;
  private embedding = 0;
  private classifier = 0;
  private finalNorm = 0;
  private ropeTable = 0;
  private blocks: BlockPtrs[] = [];
  private states = new Set<HiddenState>();
  private freed = false;

  /** Validates `model` and copies its weights into the kernel's memory once. */
  constructor(kernel: Kernel, model: LlamaModel) {
    this.kernel = kernel;
    this.config = { ...model.config };
    this.nn = kernel.exports as unknown as NnExports;
    const c = this.config;
    for (const key of ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'maxSeqLen'] as const) {
      if (!Number.isInteger(c[key]) || c[key] <= 0) throw new OptionError(`config.${key} must be a positive integer, got ${c[key]}`);
    }
    if (c.dim % c.nHeads !== 0) throw new ShapeError(`dim ${c.dim} is not a multiple of nHeads ${c.nHeads}`);
    if (c.nHeads % c.nKvHeads !== 0) throw new ShapeError(`nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`);
    this.head = c.dim / c.nHeads;
    if (this.head % 2 !== 0) throw new ShapeError(`head size ${this.head} must be even for RoPE`);
    this.kvDim = this.head * c.nKvHeads;
    if (!(c.normEps > 0)) throw new OptionError(`config.normEps must be positive, got ${c.normEps}`);
    if (!(c.ropeTheta > 0)) throw new OptionError(`config.ropeTheta must be positive, got ${c.ropeTheta}`);
    if (c.ropeStyle !== 'interleaved' && c.ropeStyle !== 'half') throw new OptionError(`config.ropeStyle must be 'interleaved' or 'half', got ${String(c.ropeStyle)}`);
    if (model.blocks.length !== c.nLayers) throw new ShapeError(`model has ${model.blocks.length} blocks, config says ${c.nLayers}`);

    const check = (a: Float32Array, n: number, what: string) => {
      if (!(a instanceof Float32Array)) throw new ShapeError(`${what} must be a Float32Array`);
      if (a.length !== n) throw new ShapeError(`${what} has ${a.length} values, expected ${n}`);
      assertFinite(a, what);
    };
    check(model.embedding, c.vocabSize * c.dim, 'embedding');
    check(model.finalNorm, c.dim, 'finalNorm');
    const tied = model.classifier === model.embedding;
    if (!tied) check(model.classifier, c.vocabSize * c.dim, 'classifier');
    model.blocks.forEach((b, l) => {
      check(b.attnNorm, c.dim, `blocks[${l}].attnNorm`);
      check(b.ffnNorm, c.dim, `blocks[${l}].ffnNorm`);
      for (const name of LINEAR_NAMES) {
        const [r, k] = linearShape(c, name);
        check(b.linear[name], r * k, `blocks[${l}].${name}`);
      }
    });

    try {
      this.embedding = kernel.put(model.embedding);
      this.classifier = tied ? this.embedding : kernel.put(model.classifier);
      this.finalNorm = kernel.put(model.finalNorm);
      for (const b of model.blocks) {
        const ptrs: BlockPtrs = { attnNorm: 0, ffnNorm: 0, linear: {} as Record<LinearName, number> };
        this.blocks.push(ptrs);
        ptrs.attnNorm = kernel.put(b.attnNorm);
        ptrs.ffnNorm = kernel.put(b.ffnNorm);
        for (const name of LINEAR_NAMES) ptrs.linear[name] = kernel.put(b.linear[name]);
      }
      this.ropeTable = kernel.alloc(c.maxSeqLen * this.head * 4);
      this.nn.nn_rope_table(this.ropeTable, c.maxSeqLen, this.head, c.ropeTheta);
    } catch (e) {
      this.free();
      throw e;
    }
  }

  // ---------------------------------------------------------------- whole-sequence API

  /** Full causal forward of one sequence: logits [T, vocab], row t predicting token t+1. */
  logits(tokens: Int32Array): Float32Array {
    const state = this.embed(tokens);
    try {
      for (let l = 0; l < this.config.nLayers; l++) this.runBlock(l, state);
      return this.logitsFrom(state);
    } finally {
      this.freeState(state);
    }
  }

  /** Next-token negative log-likelihood summed over the sequence (in f64, in wasm):
   * predictions of tokens[1..T-1], so count = T - 1. */
  nll(tokens: Int32Array): { sum: number; count: number } {
    const state = this.embed(tokens);
    try {
      for (let l = 0; l < this.config.nLayers; l++) this.runBlock(l, state);
      return this.nllFrom(state, tokens);
    } finally {
      this.freeState(state);
    }
  }

  // ---------------------------------------------------------------- block API

  /** Embeds a sequence (positions 0..T-1) into a new hidden state. */
  embed(tokens: Int32Array): HiddenState {
    this.live();
    this.checkTokens(tokens);
    const T = tokens.length;
    const ptr = this.kernel.alloc(T * this.config.dim * 4);
    const state = new HiddenState(ptr, T);
    this.states.add(state);
    try {
      this.kernel.scoped((_alloc, put) => this.nn.nn_embed(this.embedding, put(tokens), ptr, T, this.config.dim));
    } catch (e) {
      this.freeState(state);
      throw e;
    }
    return state;
  }

  /** Runs block `layer` on `state` (in place unless `update: false` or `stopAfter`),
   * reporting the input of each linear layer to `capture`. */
  runBlock(layer: number, state: HiddenState, options: RunBlockOptions = {}): void {
    this.live();
    this.checkLayer(layer);
    this.checkState(state);
    const { capture, stopAfter } = options;
    if (stopAfter !== undefined && !LINEAR_NAMES.includes(stopAfter)) throw new OptionError(`stopAfter must be one of ${LINEAR_NAMES.join(', ')}, got ${String(stopAfter)}`);
    // stopAfter leaves the state unchanged however `update` is set
    const update = stopAfter === undefined && (options.update ?? true);
    const { dim, hiddenDim, nHeads, nKvHeads, normEps } = this.config;
    const head = this.head;
    const kv = this.kvDim;
    const T = state.length;
    const w = this.blocks[layer];
    const nn = this.nn;
    const k = this.kernel;
    const report = (names: readonly LinearName[], ptr: number, cols: number): boolean => {
      if (capture) {
        const copy = k.f32(ptr, T * cols).slice();
        for (const name of names) capture(name, copy, T, cols);
      }
      return stopAfter !== undefined && names.includes(stopAfter);
    };

    k.scoped((alloc) => {
      const xb = alloc(T * dim * 4);
      nn.nn_rmsnorm(state.ptr, w.attnNorm, xb, T, dim, normEps);
      if (report(['q_proj', 'k_proj', 'v_proj'], xb, dim)) return;
      const q = alloc(T * dim * 4);
      const kk = alloc(T * kv * 4);
      const v = alloc(T * kv * 4);
      nn.nn_matmul(xb, w.linear.q_proj, q, T, dim, dim);
      nn.nn_matmul(xb, w.linear.k_proj, kk, T, dim, kv);
      nn.nn_matmul(xb, w.linear.v_proj, v, T, dim, kv);
      const halfSplit = this.config.ropeStyle === 'half' ? 1 : 0;
      nn.nn_rope(q, this.ropeTable, T, nHeads, head, halfSplit);
      nn.nn_rope(kk, this.ropeTable, T, nKvHeads, head, halfSplit);
      const att = alloc(T * dim * 4);
      nn.nn_attention(q, kk, v, att, T, nHeads, nKvHeads, head);
      if (report(['o_proj'], att, dim)) return;
      // the residual stream: the state itself, or a scratch copy when it must stay unchanged
      let x = state.ptr;
      if (!update) {
        x = alloc(T * dim * 4);
        k.u8(x, T * dim * 4).set(k.u8(state.ptr, T * dim * 4));
      }
      const tmp = q; // q is dead after attention: [T, dim]
      nn.nn_matmul(att, w.linear.o_proj, tmp, T, dim, dim);
      nn.nn_add(x, tmp, T * dim);
      nn.nn_rmsnorm(x, w.ffnNorm, xb, T, dim, normEps);
      if (report(['gate_proj', 'up_proj'], xb, dim)) return;
      const g = alloc(T * hiddenDim * 4);
      const u = alloc(T * hiddenDim * 4);
      nn.nn_matmul(xb, w.linear.gate_proj, g, T, dim, hiddenDim);
      nn.nn_matmul(xb, w.linear.up_proj, u, T, dim, hiddenDim);
      nn.nn_swiglu(g, u, g, T * hiddenDim);
      if (report(['down_proj'], g, hiddenDim)) return;
      if (!update) return;
      nn.nn_matmul(g, w.linear.down_proj, tmp, T, hiddenDim, dim);
      nn.nn_add(x, tmp, T * dim);
    });
    if (update) state.layersDone = layer + 1;
  }

  /** Final RMSNorm and classifier on a state: logits [T, vocab]. */
  logitsFrom(state: HiddenState): Float32Array {
    this.live();
    this.checkState(state);
    const { dim, vocabSize, normEps } = this.config;
    const T = state.length;
    return this.kernel.scoped((alloc) => {
      const xb = alloc(T * dim * 4);
      const out = alloc(T * vocabSize * 4);
      this.nn.nn_rmsnorm(state.ptr, this.finalNorm, xb, T, dim, normEps);
      this.nn.nn_matmul(xb, this.classifier, out, T, dim, vocabSize);
      return this.kernel.f32(out, T * vocabSize).slice();
    });
  }

  /** Final RMSNorm, classifier and next-token NLL against `tokens` (the state's own tokens):
   * rows 0..T-2 are scored against tokens 1..T-1. */
  nllFrom(state: HiddenState, tokens: Int32Array): { sum: number; count: number } {
    this.live();
    this.checkState(state);
    this.checkTokens(tokens);
    const T = state.length;
    if (tokens.length !== T) throw new ShapeError(`state has ${T} tokens, targets sequence has ${tokens.length}`);
    const { dim, vocabSize, normEps } = this.config;
    const rows = T - 1;
    if (rows === 0) return { sum: 0, count: 0 };
    const chunk = Math.min(NLL_CHUNK, rows);
    return this.kernel.scoped((alloc, put) => {
      const xb = alloc(T * dim * 4);
      const out = alloc(chunk * vocabSize * 4);
      const targets = put(tokens.subarray(1));
      this.nn.nn_rmsnorm(state.ptr, this.finalNorm, xb, T, dim, normEps);
      let sum = 0;
      for (let t0 = 0; t0 < rows; t0 += chunk) {
        const n = Math.min(chunk, rows - t0);
        this.nn.nn_matmul(xb + t0 * dim * 4, this.classifier, out, n, dim, vocabSize);
        sum = this.nn.nn_nll(out, targets + t0 * 4, n, vocabSize, sum);
      }
      return { sum, count: rows };
    });
  }

  /** A copy of the state's values, [T, dim]. */
  readState(state: HiddenState): Float32Array {
    this.checkState(state);
    return this.kernel.f32(state.ptr, state.length * this.config.dim).slice();
  }

  /** A new state with the same values (e.g. to keep a block's input while advancing a copy). */
  cloneState(state: HiddenState): HiddenState {
    this.live();
    this.checkState(state);
    const bytes = state.length * this.config.dim * 4;
    const ptr = this.kernel.alloc(bytes);
    this.kernel.u8(ptr, bytes).set(this.kernel.u8(state.ptr, bytes));
    const copy = new HiddenState(ptr, state.length);
    copy.layersDone = state.layersDone;
    this.states.add(copy);
    return copy;
  }

  freeState(state: HiddenState): void {
    if (!this.states.has(state)) return;
    this.kernel.free(state.ptr);
    state.ptr = 0;
    this.states.delete(state);
  }

  // ---------------------------------------------------------------- weights

  /** Replaces the weights of one linear layer ([out, in] row-major, e.g. dequantized). */
  setLinear(layer: number, name: LinearName, weights: Float32Array): void {
    this.live();
    this.checkLayer(layer);
    const ptr = this.linearPtr(layer, name);
    const [r, c] = linearShape(this.config, name);
    if (!(weights instanceof Float32Array)) throw new ShapeError(`weights for ${name} must be a Float32Array`);
    if (weights.length !== r * c) throw new ShapeError(`${name} of layer ${layer} takes ${r}x${c} = ${r * c} values, got ${weights.length}`);
    assertFinite(weights, `weights for layer ${layer} ${name}`);
    this.kernel.f32(ptr, r * c).set(weights);
  }

  /** A copy of the current weights of one linear layer. */
  getLinear(layer: number, name: LinearName): Float32Array {
    this.live();
    this.checkLayer(layer);
    const [r, c] = linearShape(this.config, name);
    return this.kernel.f32(this.linearPtr(layer, name), r * c).slice();
  }

  /** Releases the weights and every live state. The runner is unusable afterwards. */
  free(): void {
    for (const s of [...this.states]) this.freeState(s);
    const k = this.kernel;
    for (const b of this.blocks) {
      k.free(b.attnNorm);
      k.free(b.ffnNorm);
      for (const name of LINEAR_NAMES) k.free(b.linear[name]);
    }
    this.blocks = [];
    if (this.classifier !== this.embedding) k.free(this.classifier);
    k.free(this.embedding);
    k.free(this.finalNorm);
    k.free(this.ropeTable);
    this.embedding = this.classifier = this.finalNorm = this.ropeTable = 0;
    this.freed = true;
  }

  /** exp computed by the wasm module (for reports). */
  exp(x: number): number {
    return this.nn.nn_exp(x);
  }

  // ---------------------------------------------------------------- checks

  private live(): void {
    if (this.freed) throw new KernelError('this LlamaRunner has been freed');
  }
  private linearPtr(layer: number, name: LinearName): number {
    if (!LINEAR_NAMES.includes(name)) throw new OptionError(`unknown linear layer ${String(name)}; expected one of ${LINEAR_NAMES.join(', ')}`);
    return this.blocks[layer].linear[name];
  }
  private checkLayer(layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.config.nLayers) throw new OptionError(`layer must be an integer in [0, ${this.config.nLayers}), got ${layer}`);
  }
  private checkState(state: HiddenState): void {
    if (!(state instanceof HiddenState) || !this.states.has(state)) throw new OptionError('state was not made by this runner or has been freed');
  }
  private checkTokens(tokens: Int32Array): void {
    if (!(tokens instanceof Int32Array)) throw new ShapeError('tokens must be an Int32Array');
    const T = tokens.length;
    if (T === 0) throw new ShapeError('tokens is empty');
    if (T > this.config.maxSeqLen) throw new ShapeError(`sequence of ${T} tokens exceeds maxSeqLen ${this.config.maxSeqLen}`);
    const V = this.config.vocabSize;
    for (let i = 0; i < T; i++) {
      const id = tokens[i];
      if (id < 0 || id >= V) throw new OptionError(`token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    }
  }
}

export interface PerplexityResult {
  /** exp(nll / count), computed by the wasm module. */
  ppl: number;
  /** Summed next-token NLL over all windows (nats). */
  nll: number;
  /** Number of predictions scored: windows * (seqLen - 1). */
  count: number;
  windows: number;
}

/** Perplexity as in the usual WikiText-2 evaluation: `tokens` is cut into non-overlapping
 * windows of `seqLen` tokens (the final partial window is dropped); each window is scored on
 * its own from position 0, and all its seqLen - 1 next-token predictions count.
 * Window sums are added in order as float64 (IEEE addition, identical in every runtime). */
export function perplexity(
  runner: LlamaRunner,
  tokens: Int32Array,
  seqLen: number,
  options: { maxWindows?: number; onWindow?: (done: number, total: number) => void } = {},
): PerplexityResult {
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new OptionError(`seqLen must be an integer >= 2, got ${seqLen}`);
  if (seqLen > runner.config.maxSeqLen) throw new ShapeError(`seqLen ${seqLen} exceeds maxSeqLen ${runner.config.maxSeqLen}`);
  if (!(tokens instanceof Int32Array)) throw new ShapeError('tokens must be an Int32Array');
  let windows = Math.floor(tokens.length / seqLen);
  if (options.maxWindows !== undefined) {
    if (!Number.isInteger(options.maxWindows) || options.maxWindows < 1) throw new OptionError(`maxWindows must be a positive integer, got ${options.maxWindows}`);
    windows = Math.min(windows, options.maxWindows);
  }
  if (windows === 0) throw new ShapeError(`${tokens.length} tokens do not fill one window of ${seqLen}`);
  let nll = 0;
  let count = 0;
  for (let w = 0; w < windows; w++) {
    const r = runner.nll(tokens.subarray(w * seqLen, (w + 1) * seqLen));
    nll += r.sum;
    count += r.count;
    options.onWindow?.(w + 1, windows);
  }
  return { ppl: runner.exp(nll / count), nll, count, windows };
}
