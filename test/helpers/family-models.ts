// Tiny random checkpoints of the families in ../../src/model/arch.ts, by their Hugging Face
// tensor names (shapes from ../family-reference.ts): shared by families.test.ts (the float64
// transformers reference) and gguf-families.test.ts (llama.cpp as the reader).
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { referenceTensorShapes, type Tensors } from '../family-reference.js';
import { rng } from './util.js';

type Cfg = Record<string, any>;

/** Random tensors for `cfg`: weights U(-1, 1) / sqrt(in), norms near their neutral value
 * (1, or 0 for Gemma's 1 + w), biases U(-0.1, 0.1), embeddings U(-1, 1). */
export function randomTensors(cfg: Cfg, seed: number): Tensors {
  const next = rng(seed);
  const u = () => next() * 2 - 1; // mulberry32 gives [0, 1)
  const w: Tensors = new Map();
  for (const [name, shape] of referenceTensorShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const gemma = cfg.model_type === 'gemma3_text';
    if (name.endsWith('norm.weight') || name.includes('layernorm')) for (let i = 0; i < n; i++) a[i] = (gemma ? 0 : 1) + 0.2 * u();
    else if (name.endsWith('.bias')) for (let i = 0; i < n; i++) a[i] = 0.1 * u();
    else if (name === 'model.embed_tokens.weight') for (let i = 0; i < n; i++) a[i] = u();
    else for (let i = 0; i < n; i++) a[i] = u() / Math.sqrt(shape[1]) * 1.5;
    w.set(name, a);
  }
  return w;
}

/** config.json text and one F32 safetensors shard holding `w`. */
export const checkpoint = (cfg: Cfg, w: Tensors) => ({
  config: JSON.stringify(cfg),
  safetensors: writeSafetensors([...w].map(([name, data]) => ({ name, dtype: 'F32' as const, shape: referenceTensorShapes(cfg).find(([n]) => n === name)![1], data }))),
});

/** n token ids drawn uniformly from [0, vocab). */
export function tokensOf(n: number, vocab: number, seed: number): Int32Array {
  const next = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(next() * vocab));
}
