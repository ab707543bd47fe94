// llama2.c "v0" checkpoints (run.c's format): seven int32 header fields, then float32 tensors
// stacked over layers. The format has no room for eps, theta or RoPE layout: those are fixed
// by run.c (1e-5, 10000, adjacent pairs), so a model with other values cannot be written.
import { FormatError, OptionError } from '../../core/errors.js';
import type { LlamaBlock, LlamaConfig, LlamaModel } from '../types.js';
import { checkModelShapes, checkModelValues } from './shapes.js';
import { readF32LE, leBytes } from '../../formats/bytes.js';
import { permuteRopeRows } from './rope.js';
import type { Kernel } from '../../core/kernel.js';

const HEADER_BYTES = 28;
const FIELDS = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'] as const;

interface Layout {
  config: LlamaConfig;
  headSize: number;
  kvDim: number;
  /** Float count of the whole body after the header. */
  floats: number;
}

function layout(h: number[]): Layout {
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = h;
  const vocabSize = Math.abs(rawVocab);
  const vals = [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen];
  for (let i = 0; i < 7; i++) {
    if (!(vals[i] > 0)) throw new FormatError(`llama2.c: header ${FIELDS[i]} = ${h[i]} must be positive`);
  }
  if (dim % nHeads !== 0) throw new FormatError(`llama2.c: dim ${dim} is not divisible by n_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) throw new FormatError(`llama2.c: n_heads ${nHeads} is not divisible by n_kv_heads ${nKvHeads}`);
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) throw new FormatError(`llama2.c: head size ${headSize} is odd; RoPE needs pairs`);
  const kvDim = headSize * nKvHeads;
  const tied = rawVocab > 0;
  // Every product below is of int32 values, so it stays far inside 2^53 before we compare it.
  const perLayer = 2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * dim * hiddenDim;
  const floats = vocabSize * dim + nLayers * perLayer + dim + seqLen * headSize + (tied ? 0 : vocabSize * dim);
  const config: LlamaConfig = {
    dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, maxSeqLen: seqLen,
    normEps: 1e-5, ropeTheta: 10000, ropeStyle: 'interleaved', tiedEmbeddings: tied,
  };
  return { config, headSize, kvDim, floats };
}

/** Reads a llama2.c v0 checkpoint. The file must be exactly as long as its header implies. */
export function readLlama2c(bytes: Uint8Array): LlamaModel {
  if (bytes.length < HEADER_BYTES) throw new FormatError(`llama2.c: file is ${bytes.length} bytes, shorter than the 28-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = Array.from({ length: 7 }, (_, i) => view.getInt32(i * 4, true));
  const { config, headSize, kvDim, floats } = layout(h);
  const expected = HEADER_BYTES + 4 * floats;
  if (!Number.isSafeInteger(expected)) throw new FormatError(`llama2.c: header (${h.join(', ')}) describes an impossibly large model`);
  if (bytes.length !== expected) {
    throw new FormatError(
      `llama2.c: header (${FIELDS.map((f, i) => `${f}=${h[i]}`).join(', ')}) implies ${expected} bytes but the file has ${bytes.length}` +
        (bytes.length < expected ? ' (truncated?)' : ''),
    );
  }
  const { dim, hiddenDim, nLayers, vocabSize, maxSeqLen } = config;
  let p = HEADER_BYTES;
  const take = (n: number) => {
    const a = readF32LE(bytes, p, n);
    p += 4 * n;
    return a;
  };
  const stacked = (n: number) => {
    const all = take(nLayers * n);
    return Array.from({ length: nLayers }, (_, l) => all.slice(l * n, (l + 1) * n));
  };
  const embedding = take(vocabSize * dim);
  const attnNorm = stacked(dim);
  const wq = stacked(dim * dim);
  const wk = stacked(kvDim * dim);
  const wv = stacked(kvDim * dim);
  const wo = stacked(dim * dim);
  const ffnNorm = stacked(dim);
  const w1 = stacked(hiddenDim * dim);
  const w2 = stacked(dim * hiddenDim);
  const w3 = stacked(hiddenDim * dim);
  const finalNorm = take(dim);
  // freq_cis_real + freq_cis_imag, each [seq_len, head_size/2]: unused by the forward pass
  // (it recomputes RoPE in wasm), kept only so writeLlama2c can write the same bytes back.
  const ropeCos = take((maxSeqLen * headSize) / 2);
  const ropeSin = take((maxSeqLen * headSize) / 2);
  const classifier = config.tiedEmbeddings ? embedding : take(vocabSize * dim);
  const blocks: LlamaBlock[] = [];
  for (let l = 0; l < nLayers; l++) {
    blocks.push({
      attnNorm: attnNorm[l],
      ffnNorm: ffnNorm[l],
      linear: { q_proj: wq[l], k_proj: wk[l], v_proj: wv[l], o_proj: wo[l], gate_proj: w1[l], up_proj: w3[l], down_proj: w2[l] },
    });
  }
  const model: LlamaModel = { config, embedding, blocks, finalNorm, classifier, llama2cRope: [ropeCos, ropeSin] };
  checkModelValues(model, 'llama2.c');
  return model;
}

/**
 * Writes a llama2.c v0 checkpoint. A 'half'-RoPE model (from Hugging Face) gets its q/k rows
 * permuted back to adjacent pairs, so the file runs correctly in run.c.
 */
/** A llama2.c file of `model`. Its RoPE tables are the input's own when the model came from a
 * llama2.c file; otherwise they are computed in wasm, so the bytes are the same on every
 * runtime: `kernel` is then required. */
export function writeLlama2c(model: LlamaModel, kernel?: Kernel): Uint8Array {
  const c = model.config;
  if (c.normEps !== 1e-5) throw new OptionError(`llama2.c: the format fixes RMSNorm eps at 1e-5, model has ${c.normEps}`);
  if (c.ropeTheta !== 10000) throw new OptionError(`llama2.c: the format fixes RoPE theta at 10000, model has ${c.ropeTheta}`);
  // the format holds a plain Llama only: anything else would be dropped silently
  const extras = (['headDim', 'ropeScaling', 'partialRotary', 'attentionBias', 'mlpBias', 'slidingWindow', 'layerTypes', 'ropeLocalTheta', 'queryPreAttnScalar', 'attnSoftcap', 'finalSoftcap'] as const)
    .filter((key) => c[key] !== undefined && c[key] !== false && !(key === 'headDim' && c.headDim === c.dim / c.nHeads));
  if ((c.family ?? 'llama') !== 'llama' || extras.length) throw new OptionError(`llama2.c: the format holds a plain Llama, not ${c.family ?? 'llama'}${extras.length ? ` with ${extras.join(', ')}` : ''}`);
  const h = [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.tiedEmbeddings ? c.vocabSize : -c.vocabSize, c.maxSeqLen];
  for (const v of h) {
    if (!Number.isInteger(v) || Math.abs(v) > 0x7fffffff) throw new OptionError(`llama2.c: header value ${v} does not fit an int32`);
  }
  const { headSize, kvDim, floats } = layout(h);
  checkModelShapes(model);
  if (!model.llama2cRope && !kernel) throw new OptionError('writeLlama2c: a model not read from a llama2.c file needs a kernel to compute the file\'s RoPE tables');
  if (c.tiedEmbeddings && model.classifier !== model.embedding) {
    for (let i = 0; i < model.embedding.length; i++) {
      if (model.classifier[i] !== model.embedding[i] && !(Number.isNaN(model.classifier[i]) && Number.isNaN(model.embedding[i]))) {
        throw new OptionError('llama2.c: config says tied embeddings but classifier differs from embedding');
      }
    }
  }
  const out = new Uint8Array(HEADER_BYTES + 4 * floats);
  const view = new DataView(out.buffer);
  h.forEach((v, i) => view.setInt32(4 * i, v, true));
  let p = HEADER_BYTES;
  const put = (a: Float32Array) => {
    out.set(leBytes(a), p);
    p += 4 * a.length;
  };
  const half = c.ropeStyle === 'half';
  const q = (l: number) => (half ? permuteRopeRows(model.blocks[l].linear.q_proj, c.nHeads, c.dim, c.dim, 'toInterleaved') : model.blocks[l].linear.q_proj);
  const k = (l: number) => (half ? permuteRopeRows(model.blocks[l].linear.k_proj, c.nKvHeads, kvDim, c.dim, 'toInterleaved') : model.blocks[l].linear.k_proj);
  put(model.embedding);
  const each = (f: (l: number) => Float32Array) => { for (let l = 0; l < c.nLayers; l++) put(f(l)); };
  each((l) => model.blocks[l].attnNorm);
  each(q);
  each(k);
  each((l) => model.blocks[l].linear.v_proj);
  each((l) => model.blocks[l].linear.o_proj);
  each((l) => model.blocks[l].ffnNorm);
  each((l) => model.blocks[l].linear.gate_proj);
  each((l) => model.blocks[l].linear.down_proj);
  each((l) => model.blocks[l].linear.up_proj);
  put(model.finalNorm);
  const [cos, sin] = model.llama2cRope ?? ropeTables(kernel!, c.maxSeqLen, headSize, c.ropeTheta);
  put(cos);
  put(sin);
  if (!c.tiedEmbeddings) put(model.classifier);
  return out;
}

/** The wasm exports ropeTables uses (assembly/nn.ts). */
interface RopeExports {
  nn_rope_freqs(out: number, rot: number, theta: number, kind: number, factor: number, low: number, high: number, origMax: number, ext: number): void;
  nn_rope_table_freqs(tab: number, nPos: number, half: number, freqs: number, mscale: number): void;
}

/**
 * The freq_cis_real/imag tables llama2.c's export writes: cos/sin(pos * theta^(-2i/head_size)),
 * [seq_len, head_size/2] each, from the forward pass's own RoPE table kernel (wasm, so the same
 * bits on every runtime; JS Math.cos/sin may differ between engines in the last bit). run.c and
 * our reader ignore them; PyTorch forms pos * freq in float32, so its tables differ from these in
 * the last places.
 */
export function ropeTables(kernel: Kernel, seqLen: number, headSize: number, theta: number): [Float32Array, Float32Array] {
  const half = headSize / 2;
  const nn = kernel.exports as unknown as RopeExports;
  // [seqLen, half, 2] (cos, sin) pairs, split into the file's two tables.
  const pairs = kernel.scoped((alloc) => {
    const freqs = alloc(half * 8);
    const tab = alloc(seqLen * half * 8);
    nn.nn_rope_freqs(freqs, headSize, theta, 0, 1, 0, 0, 0, 0);
    nn.nn_rope_table_freqs(tab, seqLen, half, freqs, 1);
    return kernel.f32(tab, seqLen * half * 2).slice();
  });
  const cos = new Float32Array(seqLen * half);
  const sin = new Float32Array(seqLen * half);
  for (let i = 0; i < seqLen * half; i++) {
    cos[i] = pairs[2 * i];
    sin[i] = pairs[2 * i + 1];
  }
  return [cos, sin];
}
