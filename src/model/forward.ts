// The forward pass of every family in ./arch.ts driven from TypeScript: weights live in wasm
// memory, every floating-point operation runs in cdquant.wasm (assembly/nn.ts); this file only
// validates, allocates and sequences the kernels.
//
// Block structure (transformers' decoder layers; norm = RMSNorm, Gemma's scales by 1 + w):
//   n1 = norm(x);  q, k, v = q_proj(n1), k_proj(n1), v_proj(n1)   (+ biases; Phi-3: one qkv_proj)
//   q, k = q_norm(q), k_norm(k) per head (Qwen3, Gemma 3);  q, k = rope(q), rope(k)
//   a  = o_proj(attention(q, k, v))  (sliding window on sliding layers; Gemma: scale, softcap)
//   h  = x + a                        (Gemma 3: x + post_attention_norm(a))
//   n2 = norm(h);  m = down_proj(act(gate_proj(n2)) * up_proj(n2))   (Phi-3: one gate_up_proj)
//   out = h + m                       (Gemma 3: h + post_feedforward_norm(m))
// act is SiLU (Gemma 3: gelu-tanh); logits = classifier(norm(x_L)), Gemma: soft-capped; the
// embedding is multiplied by sqrt(dim) in Gemma.
import type { Kernel } from '../core/kernel.js';
import type { KernelCall, ParallelRunner } from '../core/runner.js';
import { OptionError, ShapeError, KernelError, assertFinite } from '../core/errors.js';
import { resolveArch, type Arch, type LinearSpec, type StagePoint } from './arch.js';
import type { LinearName, LlamaBlock, LlamaConfig, LlamaModel } from './types.js';
import { f32Embedding, type EmbeddingTable } from './source.js';

/** The nn_* exports of cdquant.wasm (see assembly/nn.ts). */
interface NnExports {
  nn_matmul(x: number, w: number, y: number, T: number, nIn: number, nOut: number): void;
  nn_matmul_token_block(nIn: number): number;
  nn_attention_scratch(T: number, window: number): number;
  nn_rmsnorm(x: number, weight: number, y: number, T: number, dim: number, eps: number): void;
  nn_rope_freqs(out: number, rot: number, theta: number, kind: number, factor: number, low: number, high: number, origMax: number, ext: number): void;
  nn_rope_table_freqs(tab: number, nPos: number, half: number, freqs: number, mscale: number): void;
  nn_rope_partial(x: number, tab: number, T: number, nHeads: number, head: number, rot: number, halfSplit: number): void;
  nn_attn_scale(scalar: number): number;
  nn_longrope_mscale(factor: number, origMax: number): number;
  nn_attention_ex(q: number, k: number, v: number, out: number, T: number, nHeads: number, nKv: number, head: number, scale: number, window: number, softcap: number): void;
  nn_swiglu(g: number, u: number, out: number, n: number): void;
  nn_geglu(g: number, u: number, out: number, n: number): void;
  nn_softcap(x: number, n: number, cap: number): void;
  nn_add(a: number, b: number, n: number): void;
  nn_add_bias(y: number, bias: number, T: number, n: number): void;
  nn_embed_scale(x: number, n: number, dim: number): void;
  nn_one_plus(w: number, out: number, n: number): void;
  nn_nll(logits: number, targets: number, T: number, vocab: number, acc: number): number;
  nn_exp(x: number): number;
}

/** Called with the input of a linear layer: `inputs` is a fresh copy, [rows, cols] row-major
 * (rows = tokens, cols = the layer's in-features), that the callee may keep. Layers that share
 * an input (a stage of the family, see arch.ts) get the same Float32Array object, in stage
 * order: q_proj, k_proj, v_proj with one array, gate_proj, up_proj with another. */
export type CaptureFn = (name: LinearName, inputs: Float32Array, rows: number, cols: number) => void;

/** Called with the input of one stage of the block where it lies in the kernel: [rows, cols]
 * at `ptr`, valid only during the call (the pipeline adds it to a Hessian in place). */
export type ResidentCaptureFn = (names: readonly LinearName[], ptr: number, rows: number, cols: number) => void;

export interface RunBlockOptions {
  /** Receives the input of each linear layer of the block (see CaptureFn). */
  capture?: CaptureFn;
  /** Receives each stage's input in the kernel, without a copy (see ResidentCaptureFn). */
  captureResident?: ResidentCaptureFn;
  /** Run only until the input of this linear layer has been captured; the state is then left
   * unchanged (e.g. `stopAfter: 'v_proj'` costs one RMSNorm). */
  stopAfter?: LinearName;
  /** Advance the state in place (default true). With false the block runs for its captures
   * only and the state keeps the block's input. */
  update?: boolean;
  /** Leave the state at the block's midpoint, h = x + attention (Gemma 3: x +
   * post_attention_norm(attention)), for later runs `from: 'mid'`: the block stops there, or
   * after the capture `stopAfter` names in its MLP half. The MLP's inputs do not depend on
   * the attention half's weights once h is known, so GPTQ's sequential stages need not
   * recompute q/k/v, attention and o_proj for the MLP's stages and the block's output. */
  toMid?: boolean;
  /** Where the state is in the block: 'input' (default), or 'mid' (left by a `toMid` run of
   * this block): only the MLP half runs, from h. */
  from?: 'input' | 'mid';
  /** Shares the block's products (by pieces of MATMUL_PIECE_ROWS output rows times one
   * nn_matmul token block) and its attention (by query heads) among threads: a parallel region
   * of a shared-memory pool whose kernel is this runner's. The pieces are fixed by the shapes,
   * never by the threads, and each is computed as in the whole product: the same bits as
   * without. */
  threads?: ParallelRunner;
}

/** Output rows of one piece of a shared product: small enough that a 64-wide layer of a tiny
 * model still splits, large enough that a piece (16 rows x ~1 MiB of token rows) costs far
 * more than handing it to a thread. */
const MATMUL_PIECE_ROWS = 16;
/** Calls handed to the threads at once (AtomicsRunner takes at most 65535 per batch). */
const MAX_BATCH = 8192;

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
  /** Norm weights as the kernel multiplies them: Gemma's already 1 + w. */
  attnNorm: number;
  ffnNorm: number;
  postAttnNorm: number;
  postFfnNorm: number;
  qNorm: number;
  kNorm: number;
  linear: Map<LinearName, number>;
  bias: Map<LinearName, number>;
}

/** A RoPE table grown on demand to the longest sequence seen (rows do not depend on its size). */
interface RopeTable {
  ptr: number;
  positions: number;
  theta: number;
  /** 0 default, 1 linear, 2 llama3, 3 longrope (assembly/nn.ts nn_rope_freqs). */
  kind: number;
  factor: number;
  low: number;
  high: number;
  origMax: number;
  ext: number[] | null;
  mscale: number;
}

export interface RunnerOptions {
  /** 'all' (default): load every block of `model` now. 'none': blocks are loaded one at a time
   * with loadBlock / unloadBlock (bounded memory); `model.blocks` may then be empty. */
  blocks?: 'all' | 'none';
  /** false: no classifier in the kernel (calibration needs no logits; a 128k x 4096 one is
   * 2 GB). logits and nll then refuse to run. Default true. */
  classifier?: boolean;
}

/** What the runner needs of a model: the weights of its blocks may come later (loadBlock),
 * the embedding as a table of rows, the classifier only for logits. */
export interface RunnerModel {
  config: LlamaConfig;
  embedding: Float32Array | EmbeddingTable;
  finalNorm: Float32Array;
  classifier?: Float32Array | null;
  blocks?: LlamaBlock[];
}

/** Rows of logits computed at once by `nll`, so a large vocabulary needs no [T, vocab] buffer. */
const NLL_CHUNK = 64;

export class LlamaRunner {
  readonly kernel: Kernel;
  readonly config: LlamaConfig;
  readonly arch: Arch;
  private readonly nn: NnExports;
  /** The embedding table stays in JS memory: rows are copied in per token. */
  private readonly embedding: EmbeddingTable;
  private classifier = 0;
  private finalNorm = 0;
  private ropeGlobal: RopeTable;
  private ropeLong: RopeTable | null = null;
  private ropeLocal: RopeTable | null = null;
  private blocks: (BlockPtrs | null)[];
  private states = new Set<HiddenState>();
  private freed = false;

  /** Validates `model` and copies its weights into the kernel's memory (every block, unless
   * `options.blocks` is 'none'). */
  constructor(kernel: Kernel, model: RunnerModel, options: RunnerOptions = {}) {
    this.kernel = kernel;
    this.config = { ...model.config };
    this.nn = kernel.exports as unknown as NnExports;
    const a = (this.arch = resolveArch(this.config));
    const loadAll = (options.blocks ?? 'all') === 'all';
    if (options.blocks !== undefined && options.blocks !== 'all' && options.blocks !== 'none') throw new OptionError(`options.blocks must be 'all' or 'none', got ${String(options.blocks)}`);
    if (loadAll && model.blocks?.length !== a.nLayers) throw new ShapeError(`model has ${model.blocks?.length ?? 0} blocks, config says ${a.nLayers}`);
    if (model.embedding instanceof Float32Array) {
      check(model.embedding, a.vocab * a.dim, 'embedding');
      this.embedding = f32Embedding(model.embedding, a.vocab, a.dim);
    } else {
      if (model.embedding?.vocab !== a.vocab || model.embedding.dim !== a.dim) throw new ShapeError(`the embedding table is not [${a.vocab}, ${a.dim}]`);
      this.embedding = model.embedding;
    }
    check(model.finalNorm, a.dim, 'finalNorm');
    const withClassifier = options.classifier ?? true;
    if (withClassifier && model.classifier !== model.embedding) check(model.classifier ?? undefined, a.vocab * a.dim, 'classifier');
    this.blocks = Array.from({ length: a.nLayers }, () => null);

    const c = this.config;
    const table = (theta: number): RopeTable => ({ ptr: 0, positions: 0, theta, kind: 0, factor: 1, low: 0, high: 0, origMax: 0, ext: null, mscale: 1 });
    this.ropeGlobal = table(c.ropeTheta);
    const s = a.ropeScaling;
    if (s?.type === 'linear') Object.assign(this.ropeGlobal, { kind: 1, factor: s.factor });
    if (s?.type === 'llama3') Object.assign(this.ropeGlobal, { kind: 2, factor: s.factor, low: s.lowFreqFactor, high: s.highFreqFactor, origMax: s.originalMaxPositions });
    if (s?.type === 'longrope') {
      // transformers picks the factors by sequence length: short up to the original context
      const factor = s.factor ?? a.maxSeq / s.originalMaxPositions;
      const mscale = s.attentionFactor ?? this.nn.nn_longrope_mscale(factor, s.originalMaxPositions);
      Object.assign(this.ropeGlobal, { kind: 3, ext: s.shortFactor, mscale });
      this.ropeLong = { ...table(c.ropeTheta), kind: 3, ext: s.longFactor, mscale };
    }
    if (a.layers.some((l) => l.localRope)) this.ropeLocal = table(c.ropeLocalTheta ?? 10000);

    try {
      if (withClassifier) this.classifier = kernel.put(model.classifier!);
      this.finalNorm = this.putNorm(model.finalNorm);
      if (loadAll) model.blocks!.forEach((b, l) => this.loadBlock(l, b));
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
      for (let l = 0; l < this.arch.nLayers; l++) this.runBlock(l, state);
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
      for (let l = 0; l < this.arch.nLayers; l++) this.runBlock(l, state);
      return this.nllFrom(state, tokens);
    } finally {
      this.freeState(state);
    }
  }

  // ---------------------------------------------------------------- blocks

  /** Copies the weights of block `layer` into the kernel (replacing any loaded ones). With
   * `linears: 'released'`, the linear layers are not given (`block.linear` is ignored): they
   * start released, and setLinear / fillLinear give them one at a time (a block read from a
   * checkpoint tensor by tensor never sits whole in JS). */
  loadBlock(layer: number, block: LlamaBlock | Omit<LlamaBlock, 'linear'>, options: { linears?: 'given' | 'released' } = {}): void {
    const given = (options.linears ?? 'given') === 'given';
    this.live();
    this.checkLayer(layer);
    const a = this.arch;
    const where = `blocks[${layer}]`;
    if (!block || typeof block !== 'object') throw new ShapeError(`${where} is missing`);
    check(block.attnNorm, a.dim, `${where}.attnNorm`);
    check(block.ffnNorm, a.dim, `${where}.ffnNorm`);
    if (a.sandwichNorms) {
      check(block.postAttnNorm, a.dim, `${where}.postAttnNorm`);
      check(block.postFfnNorm, a.dim, `${where}.postFfnNorm`);
    }
    if (a.qkNorm) {
      check(block.qNorm, a.head, `${where}.qNorm`);
      check(block.kNorm, a.head, `${where}.kNorm`);
    }
    for (const spec of a.linears) {
      if (given) check((block as LlamaBlock).linear?.[spec.name], spec.rows * spec.cols, `${where}.${spec.name}`);
      if (spec.bias) check(block.bias?.[spec.name], spec.rows, `${where}.bias.${spec.name}`);
    }
    this.unloadBlock(layer);
    const ptrs: BlockPtrs = { attnNorm: 0, ffnNorm: 0, postAttnNorm: 0, postFfnNorm: 0, qNorm: 0, kNorm: 0, linear: new Map(), bias: new Map() };
    this.blocks[layer] = ptrs;
    try {
      ptrs.attnNorm = this.putNorm(block.attnNorm);
      ptrs.ffnNorm = this.putNorm(block.ffnNorm);
      if (a.sandwichNorms) {
        ptrs.postAttnNorm = this.putNorm(block.postAttnNorm!);
        ptrs.postFfnNorm = this.putNorm(block.postFfnNorm!);
      }
      if (a.qkNorm) {
        ptrs.qNorm = this.putNorm(block.qNorm!);
        ptrs.kNorm = this.putNorm(block.kNorm!);
      }
      for (const spec of a.linears) {
        if (given) ptrs.linear.set(spec.name, this.kernel.put((block as LlamaBlock).linear[spec.name]));
        if (spec.bias) ptrs.bias.set(spec.name, this.kernel.put(block.bias![spec.name]));
      }
    } catch (e) {
      this.unloadBlock(layer);
      throw e;
    }
  }

  /** Releases the weights of block `layer` (no-op when it is not loaded). */
  unloadBlock(layer: number): void {
    this.checkLayer(layer);
    const b = this.blocks[layer];
    if (!b) return;
    const k = this.kernel;
    for (const p of [b.attnNorm, b.ffnNorm, b.postAttnNorm, b.postFfnNorm, b.qNorm, b.kNorm]) if (p) k.free(p);
    for (const p of b.linear.values()) k.free(p);
    for (const p of b.bias.values()) k.free(p);
    this.blocks[layer] = null;
  }

  isBlockLoaded(layer: number): boolean {
    this.checkLayer(layer);
    return this.blocks[layer] !== null;
  }

  // ---------------------------------------------------------------- block API

  /** Embeds a sequence (positions 0..T-1) into a new hidden state. */
  embed(tokens: Int32Array): HiddenState {
    this.live();
    this.checkTokens(tokens);
    const T = tokens.length;
    const dim = this.arch.dim;
    const state = this.newState(T);
    // a row copy is no arithmetic: JS may do it, and the table need not be in wasm memory
    const view = this.kernel.f32(state.ptr, T * dim);
    for (let t = 0; t < T; t++) this.embedding.row(tokens[t], view.subarray(t * dim, (t + 1) * dim));
    if (this.arch.embedScale) this.nn.nn_embed_scale(state.ptr, T * dim, dim);
    return state;
  }

  /** A new hidden state holding `values` ([T, dim], e.g. from readState of another runner). */
  stateFrom(values: Float32Array, layersDone = 0): HiddenState {
    this.live();
    const dim = this.arch.dim;
    if (!(values instanceof Float32Array)) throw new ShapeError('state values must be a Float32Array');
    if (values.length === 0 || values.length % dim !== 0) throw new ShapeError(`state values: ${values.length} is not a positive multiple of dim ${dim}`);
    const T = values.length / dim;
    if (T > this.arch.maxSeq) throw new ShapeError(`state of ${T} tokens exceeds maxSeqLen ${this.arch.maxSeq}`);
    if (!Number.isInteger(layersDone) || layersDone < 0 || layersDone > this.arch.nLayers) throw new OptionError(`layersDone must be an integer in [0, ${this.arch.nLayers}], got ${layersDone}`);
    assertFinite(values, 'state values');
    const state = this.newState(T);
    this.kernel.f32(state.ptr, T * dim).set(values);
    state.layersDone = layersDone;
    return state;
  }

  /** Runs block `layer` on `state` (in place unless `update: false` or `stopAfter`),
   * reporting the input of each linear layer to `capture`. */
  runBlock(layer: number, state: HiddenState, options: RunBlockOptions = {}): void {
    this.live();
    this.checkLayer(layer);
    this.checkState(state);
    const w = this.blocks[layer];
    if (!w) throw new OptionError(`block ${layer} is not loaded (loadBlock first)`);
    const a = this.arch;
    const released = a.linears.find((l) => !w.linear.has(l.name));
    if (released) throw new OptionError(`block ${layer}'s ${released.name} was released (releaseLinear): setLinear gives it back before the block runs`);
    const { capture, captureResident, stopAfter, threads } = options;
    let stopAt: StagePoint | null = null;
    if (stopAfter !== undefined) {
      const stage = a.stages.find((s) => s.names.includes(stopAfter));
      if (!stage) throw new OptionError(`stopAfter must be one of ${a.stages.flatMap((s) => s.names).join(', ')}, got ${String(stopAfter)}`);
      stopAt = stage.point;
    }
    const fromMid = options.from === 'mid';
    const toMid = options.toMid === true;
    if (options.from !== undefined && options.from !== 'input' && !fromMid) throw new OptionError(`from must be 'input' or 'mid', got ${String(options.from)}`);
    const inAttention = stopAt === 'attn_in' || stopAt === 'o_in';
    if (fromMid && (toMid || inAttention)) throw new OptionError(`a state at the block's midpoint runs the MLP half only: no ${toMid ? 'toMid' : `stopAfter ${String(stopAfter)}`}`);
    if (toMid && (inAttention || options.update === false)) throw new OptionError(`toMid advances the state to the midpoint: not with ${inAttention ? `stopAfter ${String(stopAfter)}` : 'update: false'}`);
    // stopAfter leaves the state unchanged however `update` is set, unless it is to be left
    // at the midpoint (toMid)
    const update = toMid || (stopAt === null && (options.update ?? true));
    const { dim, hidden, nHeads, nKv, head, qDim, kvDim, eps } = a;
    const T = state.length;
    const nn = this.nn;
    const k = this.kernel;
    const report = (point: StagePoint, ptr: number, cols: number): boolean => {
      const names = a.stages.find((s) => s.point === point)!.names;
      if (capture) {
        const copy = k.f32(ptr, T * cols).slice();
        for (const name of names) capture(name, copy, T, cols);
      }
      captureResident?.(names, ptr, T, cols);
      return stopAt === point;
    };
    const rowsOf = (name: LinearName) => a.linears.find((l) => l.name === name)!;
    // y = x W^T (+ b) for a stored layer, or for `rows` rows of it starting at row `from`
    const linear = (x: number, y: number, spec: LinearSpec, from = 0, rows = spec.rows) => {
      const wp = w.linear.get(spec.name)! + from * spec.cols * 4;
      if (threads) this.sharedMatmul(threads, x, wp, y, T, spec.cols, rows);
      else nn.nn_matmul(x, wp, y, T, spec.cols, rows);
      const b = w.bias.get(spec.name);
      if (b) nn.nn_add_bias(y, b + from * 4, T, rows);
    };
    // Projections that one layer computes as consecutive row blocks where the family fuses
    // them (Phi-3's qkv_proj: q, k, v; gate_up_proj: gate, up) and as separate layers elsewhere.
    const project = (x: number, outs: Array<[y: number, rows: number]>, fused: LinearName, split: LinearName[]) => {
      if (a.fused) {
        const spec = rowsOf(fused);
        let from = 0;
        for (const [y, rows] of outs) {
          linear(x, y, spec, from, rows);
          from += rows;
        }
      } else {
        outs.forEach(([y], i) => linear(x, y, rowsOf(split[i])));
      }
    };

    k.scoped((alloc) => {
      const xb = alloc(T * dim * 4);
      const tmp = alloc(T * dim * 4);
      // the residual stream: the state itself, or a scratch copy when it must stay unchanged
      const residual = () => {
        if (update) return state.ptr;
        const x = alloc(T * dim * 4);
        k.u8(x, T * dim * 4).set(k.u8(state.ptr, T * dim * 4));
        return x;
      };
      let x: number;
      if (fromMid) {
        // read only: the MLP half writes the residual after its last capture, and only when
        // the block is to advance
        x = state.ptr;
      } else {
        nn.nn_rmsnorm(state.ptr, w.attnNorm, xb, T, dim, eps);
        if (report('attn_in', xb, dim)) return;
        const q = alloc(T * qDim * 4);
        const kk = alloc(T * kvDim * 4);
        const v = alloc(T * kvDim * 4);
        project(xb, [[q, qDim], [kk, kvDim], [v, kvDim]], 'qkv_proj', ['q_proj', 'k_proj', 'v_proj']);
        if (a.qkNorm) {
          // RMSNorm over each head's head_dim values: rows of `head` in [T * heads, head]
          nn.nn_rmsnorm(q, w.qNorm, q, T * nHeads, head, eps);
          nn.nn_rmsnorm(kk, w.kNorm, kk, T * nKv, head, eps);
        }
        const rope = this.ropeTableFor(layer, T);
        const halfSplit = this.config.ropeStyle === 'half' ? 1 : 0;
        nn.nn_rope_partial(q, rope, T, nHeads, head, a.rot, halfSplit);
        nn.nn_rope_partial(kk, rope, T, nKv, head, a.rot, halfSplit);
        const att = alloc(T * qDim * 4);
        const scale = nn.nn_attn_scale(a.attnScalar);
        const window = a.layers[layer].window;
        if (threads) {
          // one call per query head; `scores` (argument 13) is each thread's own scratch
          const calls: KernelCall[] = [];
          for (let h = 0; h < nHeads; h++) {
            calls.push({ fn: 'nn_attention_heads', args: [q, kk, v, att, T, nHeads, nKv, head, scale, window, a.attnSoftcap, h, h + 1, 0], scratchArg: 13 });
          }
          threads.run(calls, nn.nn_attention_scratch(T, window));
        } else {
          nn.nn_attention_ex(q, kk, v, att, T, nHeads, nKv, head, scale, window, a.attnSoftcap);
        }
        if (report('o_in', att, qDim)) return;
        x = residual();
        linear(att, tmp, rowsOf('o_proj'));
        if (a.sandwichNorms) nn.nn_rmsnorm(tmp, w.postAttnNorm, tmp, T, dim, eps);
        nn.nn_add(x, tmp, T * dim);
        // the midpoint h: where a toMid run leaves the state
        if (toMid && stopAt === null) return;
      }
      nn.nn_rmsnorm(x, w.ffnNorm, xb, T, dim, eps);
      if (report('mlp_in', xb, dim)) return;
      const g = alloc(T * hidden * 4);
      const u = alloc(T * hidden * 4);
      // transformers' Phi-3: gate, up = gate_up_proj(x).chunk(2)
      project(xb, [[g, hidden], [u, hidden]], 'gate_up_proj', ['gate_proj', 'up_proj']);
      if (a.act === 'gelu_tanh') nn.nn_geglu(g, u, g, T * hidden);
      else nn.nn_swiglu(g, u, g, T * hidden);
      if (report('down_in', g, hidden)) return;
      if (!update) return;
      linear(g, tmp, rowsOf('down_proj'));
      if (a.sandwichNorms) nn.nn_rmsnorm(tmp, w.postFfnNorm, tmp, T, dim, eps);
      nn.nn_add(x, tmp, T * dim);
    });
    if (update && !toMid) state.layersDone = layer + 1;
  }

  /** Final norm, classifier (and Gemma's soft-capping) on a state: logits [T, vocab]. */
  logitsFrom(state: HiddenState): Float32Array {
    this.live();
    this.checkState(state);
    this.needClassifier();
    const { dim, vocab, eps, finalSoftcap } = this.arch;
    const T = state.length;
    return this.kernel.scoped((alloc) => {
      const xb = alloc(T * dim * 4);
      const out = alloc(T * vocab * 4);
      this.nn.nn_rmsnorm(state.ptr, this.finalNorm, xb, T, dim, eps);
      this.nn.nn_matmul(xb, this.classifier, out, T, dim, vocab);
      if (finalSoftcap) this.nn.nn_softcap(out, T * vocab, finalSoftcap);
      return this.kernel.f32(out, T * vocab).slice();
    });
  }

  /** The classifier's input for a state, norm(x_L) [T, dim], handed to `use` where it lies in
   * the kernel (valid during the call): the calibration of the classifier's Hessian. */
  finalNormed(state: HiddenState, use: (ptr: number, rows: number, cols: number) => void): void {
    this.live();
    this.checkState(state);
    const { dim, eps } = this.arch;
    const T = state.length;
    this.kernel.scoped((alloc) => {
      const xb = alloc(T * dim * 4);
      this.nn.nn_rmsnorm(state.ptr, this.finalNorm, xb, T, dim, eps);
      use(xb, T, dim);
    });
  }

  /** Final norm, classifier and next-token NLL against `tokens` (the state's own tokens):
   * rows 0..T-2 are scored against tokens 1..T-1. */
  nllFrom(state: HiddenState, tokens: Int32Array): { sum: number; count: number } {
    this.live();
    this.checkState(state);
    this.checkTokens(tokens);
    this.needClassifier();
    const T = state.length;
    if (tokens.length !== T) throw new ShapeError(`state has ${T} tokens, targets sequence has ${tokens.length}`);
    const { dim, vocab, eps, finalSoftcap } = this.arch;
    const rows = T - 1;
    if (rows === 0) return { sum: 0, count: 0 };
    const chunk = Math.min(NLL_CHUNK, rows);
    return this.kernel.scoped((alloc, put) => {
      const xb = alloc(T * dim * 4);
      const out = alloc(chunk * vocab * 4);
      const targets = put(tokens.subarray(1));
      this.nn.nn_rmsnorm(state.ptr, this.finalNorm, xb, T, dim, eps);
      let sum = 0;
      for (let t0 = 0; t0 < rows; t0 += chunk) {
        const n = Math.min(chunk, rows - t0);
        this.nn.nn_matmul(xb + t0 * dim * 4, this.classifier, out, n, dim, vocab);
        if (finalSoftcap) this.nn.nn_softcap(out, n * vocab, finalSoftcap);
        sum = this.nn.nn_nll(out, targets + t0 * 4, n, vocab, sum);
      }
      return { sum, count: rows };
    });
  }

  /** The state's values, [T, dim]: a new array, or copied into `into` (same length). */
  readState(state: HiddenState, into?: Float32Array): Float32Array {
    this.checkState(state);
    const values = this.kernel.f32(state.ptr, state.length * this.arch.dim);
    if (!into) return values.slice();
    if (into.length !== values.length) throw new ShapeError(`readState: ${into.length} values given for a state of ${values.length}`);
    into.set(values);
    return into;
  }

  /** A new state with the same values (e.g. to keep a block's input while advancing a copy). */
  cloneState(state: HiddenState): HiddenState {
    this.live();
    this.checkState(state);
    const bytes = state.length * this.arch.dim * 4;
    const copy = this.newState(state.length);
    this.kernel.u8(copy.ptr, bytes).set(this.kernel.u8(state.ptr, bytes));
    copy.layersDone = state.layersDone;
    return copy;
  }

  freeState(state: HiddenState): void {
    if (!this.states.has(state)) return;
    this.kernel.free(state.ptr);
    state.ptr = 0;
    this.states.delete(state);
  }

  // ---------------------------------------------------------------- weights

  /** Replaces the weights of one linear layer ([out, in] row-major, e.g. dequantized); a
   * released layer gets its kernel memory back. */
  setLinear(layer: number, name: LinearName, weights: Float32Array): void {
    this.live();
    this.checkLayer(layer);
    const { ptr, spec } = this.linearPtr(layer, name, true);
    const n = spec.rows * spec.cols;
    if (!(weights instanceof Float32Array)) throw new ShapeError(`weights for ${name} must be a Float32Array`);
    if (weights.length !== n) throw new ShapeError(`${name} of layer ${layer} takes ${spec.rows}x${spec.cols} = ${n} values, got ${weights.length}`);
    assertFinite(weights, `weights for layer ${layer} ${name}`);
    if (ptr) this.kernel.f32(ptr, n).set(weights);
    else this.blocks[layer]!.linear.set(name, this.kernel.put(weights));
  }

  /** Writes rows [r0, r0 + rows) of one linear layer (`values`: whole rows, [out, in] row-major);
   * a released layer gets its memory back first, its other rows unset until written. Loading a
   * layer a chunk of rows at a time keeps only the chunk in JS. */
  setLinearRows(layer: number, name: LinearName, r0: number, values: Float32Array): void {
    this.live();
    this.checkLayer(layer);
    const { ptr, spec } = this.linearPtr(layer, name, true);
    if (!(values instanceof Float32Array)) throw new ShapeError(`weights for ${name} must be a Float32Array`);
    const rows = values.length / spec.cols;
    if (!Number.isInteger(rows) || !Number.isSafeInteger(r0) || r0 < 0 || r0 + rows > spec.rows) {
      throw new ShapeError(`${name} of layer ${layer} has ${spec.rows} rows of ${spec.cols}: ${values.length} values at row ${r0} are not whole rows within it`);
    }
    assertFinite(values, `weights for layer ${layer} ${name} rows [${r0}, ${r0 + rows})`);
    const at = ptr || this.kernel.alloc(spec.rows * spec.cols * 4);
    this.blocks[layer]!.linear.set(name, at);
    this.kernel.f32(at + r0 * spec.cols * 4, values.length).set(values);
  }

  /** Writes one linear layer's weights in place: `fill` writes rows x cols float32 at the
   * kernel address it is given (a released layer gets its memory back first). Weights computed
   * in the kernel (dequantized codes) then never pass through JS. If `fill` throws, the layer
   * is left released (the block refuses to run) rather than half written. */
  fillLinear(layer: number, name: LinearName, fill: (ptr: number) => void): void {
    this.live();
    this.checkLayer(layer);
    const { ptr, spec } = this.linearPtr(layer, name, true);
    const at = ptr || this.kernel.alloc(spec.rows * spec.cols * 4);
    this.blocks[layer]!.linear.set(name, at);
    try {
      fill(at);
    } catch (e) {
      this.releaseLinear(layer, name);
      throw e;
    }
  }

  /**
   * Frees the kernel memory of one linear layer of a loaded block until setLinear gives it
   * weights again; the block cannot run meanwhile. The pipeline releases a block's quantized
   * layers while a later stage's H is factored and solved (their values are rebuilt exactly
   * from the codes), so that the factor reuses their memory instead of growing the kernel's.
   */
  releaseLinear(layer: number, name: LinearName): void {
    this.live();
    this.checkLayer(layer);
    const { ptr } = this.linearPtr(layer, name, true);
    if (!ptr) return;
    this.blocks[layer]!.linear.delete(name);
    this.kernel.free(ptr);
  }

  /** A copy of the current weights of one linear layer. */
  getLinear(layer: number, name: LinearName): Float32Array {
    this.live();
    this.checkLayer(layer);
    const { ptr, spec } = this.linearPtr(layer, name);
    return this.kernel.f32(ptr, spec.rows * spec.cols).slice();
  }

  /** Releases the weights and every live state. The runner is unusable afterwards. */
  free(): void {
    for (const s of [...this.states]) this.freeState(s);
    const k = this.kernel;
    if (!this.freed) for (let l = 0; l < this.blocks.length; l++) this.unloadBlock(l);
    for (const t of [this.ropeGlobal, this.ropeLong, this.ropeLocal]) {
      if (t?.ptr) k.free(t.ptr);
      if (t) t.ptr = t.positions = 0;
    }
    if (this.classifier) k.free(this.classifier);
    if (this.finalNorm) k.free(this.finalNorm);
    this.classifier = this.finalNorm = 0;
    this.freed = true;
  }

  /** exp computed by the wasm module (for reports). */
  exp(x: number): number {
    return this.nn.nn_exp(x);
  }

  // ---------------------------------------------------------------- internals

  /** nn_matmul(x, w, y, T, nIn, nOut) by pieces shared among `threads`: token blocks of
   * nn_matmul's own size (the calls of one block come together, so the threads working on it
   * share its rows in cache) times MATMUL_PIECE_ROWS output rows. */
  private sharedMatmul(threads: ParallelRunner, x: number, w: number, y: number, T: number, nIn: number, nOut: number): void {
    const tokens = this.nn.nn_matmul_token_block(nIn);
    let calls: KernelCall[] = [];
    for (let t0 = 0; t0 < T; t0 += tokens) {
      for (let o0 = 0; o0 < nOut; o0 += MATMUL_PIECE_ROWS) {
        calls.push({ fn: 'nn_matmul_part', args: [x, w, y, T, nIn, nOut, t0, Math.min(t0 + tokens, T), o0, Math.min(o0 + MATMUL_PIECE_ROWS, nOut)] });
        if (calls.length === MAX_BATCH) {
          threads.run(calls);
          calls = [];
        }
      }
    }
    threads.run(calls);
  }

  /** A norm weight as the kernel uses it: Gemma's RMSNorm multiplies by 1 + w (in f32, as
   * transformers' `output * (1.0 + self.weight.float())`). */
  private putNorm(w: Float32Array): number {
    const p = this.kernel.put(w);
    if (this.arch.gemmaNorm) this.nn.nn_one_plus(p, p, w.length);
    return p;
  }

  /** The RoPE table of `layer` for a sequence of T tokens, grown to T positions if needed. */
  private ropeTableFor(layer: number, T: number): number {
    let t = this.arch.layers[layer].localRope ? this.ropeLocal! : this.ropeGlobal;
    const s = this.arch.ropeScaling;
    if (s?.type === 'longrope' && T > s.originalMaxPositions) t = this.ropeLong!;
    if (t.positions < T) {
      const half = this.arch.rot / 2;
      const positions = Math.min(this.arch.maxSeq, Math.max(T, 2 * t.positions));
      const ptr = this.kernel.alloc(positions * half * 8);
      try {
        this.kernel.scoped((alloc, put) => {
          const freqs = alloc(half * 8);
          const ext = t.ext ? put(Float64Array.from(t.ext)) : 0;
          this.nn.nn_rope_freqs(freqs, this.arch.rot, t.theta, t.kind, t.factor, t.low, t.high, t.origMax, ext);
          this.nn.nn_rope_table_freqs(ptr, positions, half, freqs, t.mscale);
        });
      } catch (e) {
        this.kernel.free(ptr);
        throw e;
      }
      if (t.ptr) this.kernel.free(t.ptr);
      t.ptr = ptr;
      t.positions = positions;
    }
    return t.ptr;
  }

  private newState(T: number): HiddenState {
    const ptr = this.kernel.alloc(T * this.arch.dim * 4);
    const state = new HiddenState(ptr, T);
    this.states.add(state);
    return state;
  }

  private live(): void {
    if (this.freed) throw new KernelError('this LlamaRunner has been freed');
  }
  private needClassifier(): void {
    if (!this.classifier) throw new OptionError('this runner was made without a classifier (options.classifier: false): no logits');
  }
  /** The kernel address of a loaded linear layer (0 for a released one, with `released`). */
  private linearPtr(layer: number, name: LinearName, released = false): { ptr: number; spec: LinearSpec } {
    const spec = this.arch.linears.find((l) => l.name === name);
    if (!spec) throw new OptionError(`unknown linear layer ${String(name)}; expected one of ${this.arch.linears.map((l) => l.name).join(', ')}`);
    const b = this.blocks[layer];
    if (!b) throw new OptionError(`block ${layer} is not loaded (loadBlock first)`);
    const ptr = b.linear.get(name) ?? 0;
    if (!ptr && !released) throw new OptionError(`block ${layer}'s ${name} was released (releaseLinear): setLinear gives it back first`);
    return { ptr, spec };
  }
  private checkLayer(layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.arch.nLayers) throw new OptionError(`layer must be an integer in [0, ${this.arch.nLayers}), got ${layer}`);
  }
  private checkState(state: HiddenState): void {
    if (!(state instanceof HiddenState) || !this.states.has(state)) throw new OptionError('state was not made by this runner or has been freed');
  }
  private checkTokens(tokens: Int32Array): void {
    if (!(tokens instanceof Int32Array)) throw new ShapeError('tokens must be an Int32Array');
    const T = tokens.length;
    if (T === 0) throw new ShapeError('tokens is empty');
    if (T > this.arch.maxSeq) throw new ShapeError(`sequence of ${T} tokens exceeds maxSeqLen ${this.arch.maxSeq}`);
    const V = this.arch.vocab;
    for (let i = 0; i < T; i++) {
      const id = tokens[i];
      if (id < 0 || id >= V) throw new OptionError(`token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    }
  }
}

function check(a: Float32Array | null | undefined, n: number, what: string): void {
  if (!(a instanceof Float32Array)) throw new ShapeError(`${what} must be a Float32Array`);
  if (a.length !== n) throw new ShapeError(`${what} has ${a.length} values, expected ${n}`);
  assertFinite(a, what);
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
