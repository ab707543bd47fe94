// Small random models for tests that need a whole checkpoint but not a trained one.
import type { LinearName, LlamaModel } from '../../src/model/types.js';
import { mulberry32 } from '../reference.js';

/** A Llama model of the given size with seeded random weights (norms near 1). */
export function tinyModel(seed: number, options: { tied?: boolean; dim?: number; hidden?: number; layers?: number; heads?: number; kv?: number; vocab?: number } = {}): LlamaModel {
  const u = mulberry32(seed);
  const dim = options.dim ?? 8, hidden = options.hidden ?? 12, nLayers = options.layers ?? 2, nHeads = options.heads ?? 2, nKvHeads = options.kv ?? 1, vocab = options.vocab ?? 16;
  const kvDim = (dim / nHeads) * nKvHeads;
  const r = (n: number, s = 0.5) => Float32Array.from({ length: n }, () => (u() * 2 - 1) * s);
  const linear = (rows: number, cols: number) => r(rows * cols, 1 / Math.sqrt(cols));
  const embedding = r(vocab * dim, 1);
  const tied = options.tied ?? true;
  return {
    config: { dim, hiddenDim: hidden, nLayers, nHeads, nKvHeads, vocabSize: vocab, maxSeqLen: 8, normEps: 1e-5, ropeTheta: 10000, ropeStyle: 'interleaved', tiedEmbeddings: tied },
    embedding,
    classifier: tied ? embedding : r(vocab * dim, 1),
    finalNorm: r(dim, 0.1).map((x) => 1 + x),
    blocks: Array.from({ length: nLayers }, () => ({
      attnNorm: r(dim, 0.1).map((x) => 1 + x),
      ffnNorm: r(dim, 0.1).map((x) => 1 + x),
      linear: {
        q_proj: linear(dim, dim), k_proj: linear(kvDim, dim), v_proj: linear(kvDim, dim), o_proj: linear(dim, dim),
        gate_proj: linear(hidden, dim), up_proj: linear(hidden, dim), down_proj: linear(dim, hidden),
      } as Record<LinearName, Float32Array>,
    })),
  };
}
