// llama.cpp's named quantization mixes (llama-quantize's Q4_K_M, Q3_K_M, Q2_K, ...): which GGML
// type each tensor of a model gets, as src/llama-quant.cpp's llama_tensor_get_type chooses it
// for the dense decoder-only families this package writes (no experts, no IQ types, not 70B),
// including its fallbacks for rows the type's blocks cannot tile.
import { OptionError } from '../core/errors.js';
import type { GgufBlockTypeName } from '../formats/gguf-blocks.js';

/** The mixes (llama_ftype) this package writes, with their default type and their
 * general.file_type id (llama.h's LLAMA_FTYPE_MOSTLY_*). */
export const GGUF_MIXES = {
  F32: { base: 'F32', fileType: 0 },
  F16: { base: 'F16', fileType: 1 },
  BF16: { base: 'BF16', fileType: 32 },
  Q8_0: { base: 'Q8_0', fileType: 7 },
  Q4_0: { base: 'Q4_0', fileType: 2 },
  Q4_1: { base: 'Q4_1', fileType: 3 },
  Q5_0: { base: 'Q5_0', fileType: 8 },
  Q5_1: { base: 'Q5_1', fileType: 9 },
  Q2_K: { base: 'Q2_K', fileType: 10 },
  Q2_K_S: { base: 'Q2_K', fileType: 21 },
  Q3_K_S: { base: 'Q3_K', fileType: 11 },
  Q3_K_M: { base: 'Q3_K', fileType: 12 },
  Q3_K_L: { base: 'Q3_K', fileType: 13 },
  Q4_K_S: { base: 'Q4_K', fileType: 14 },
  Q4_K_M: { base: 'Q4_K', fileType: 15 },
  Q5_K_S: { base: 'Q5_K', fileType: 16 },
  Q5_K_M: { base: 'Q5_K', fileType: 17 },
  Q6_K: { base: 'Q6_K', fileType: 18 },
} as const satisfies Record<string, { base: GgufBlockTypeName; fileType: number }>;

export type GgufMix = keyof typeof GGUF_MIXES;

export function ggufMix(name: string): GgufMix {
  const upper = name.toUpperCase();
  if (!(upper in GGUF_MIXES)) throw new OptionError(`--gguf ${name}: not a llama.cpp type this package writes (${Object.keys(GGUF_MIXES).join(', ')})`);
  return upper as GgufMix;
}

/** A tensor as the mix sees it: llama.cpp's name (token_embd.weight, blk.N.attn_v.weight, ...),
 * its row length ne[0] and its number of dimensions. */
export interface MixTensor {
  name: string;
  rowLength: number;
  dims: number;
}

export interface MixModel {
  /** Layers (n_layer). */
  layers: number;
  /** n_head / n_head_kv. */
  gqa: number;
  /** The output tensor is the token embedding (no output.weight). */
  tiedEmbeddings: boolean;
}

const BLOCK: Record<string, number> = { F32: 1, F16: 1, BF16: 1, Q4_0: 32, Q4_1: 32, Q5_0: 32, Q5_1: 32, Q8_0: 32, Q2_K: 256, Q3_K: 256, Q4_K: 256, Q5_K: 256, Q6_K: 256 };
const QUANTIZED = (t: GgufBlockTypeName) => BLOCK[t] > 1;

type Category = 'output' | 'token_embd' | 'attn_qkv' | 'attn_v' | 'attn_k' | 'attn_q' | 'attn_output' | 'ffn_up' | 'ffn_gate' | 'ffn_down' | 'other';

/** tensor_get_category. */
function categoryOf(name: string): Category {
  if (name === 'output.weight') return 'output';
  if (name === 'token_embd.weight') return 'token_embd';
  for (const c of ['attn_qkv', 'attn_v', 'attn_k', 'attn_q', 'attn_output'] as const) if (name.includes(`${c}.weight`)) return c;
  for (const c of ['ffn_up', 'ffn_gate', 'ffn_down'] as const) if (name.includes(c)) return c;
  return 'other';
}

/** tensor_allows_quantization, for the tensors of the families written here. */
function quantizable(t: MixTensor): boolean {
  return t.dims >= 2 && t.name.endsWith('weight') && !t.name.includes('_norm.weight');
}

/** use_more_bits: the first and last eighth of the layers, and every third in between. */
const useMoreBits = (i: number, n: number) => i < Math.floor(n / 8) || i >= Math.floor((7 * n) / 8) || (i - Math.floor(n / 8)) % 3 === 2;

/** tensor_type_fallback: a type whose blocks do not tile the rows falls back to a 32-block
 * type, or to F16 when even that does not fit. */
function fallback(type: GgufBlockTypeName, rowLength: number): GgufBlockTypeName {
  if (rowLength % BLOCK[type] === 0) return type;
  const next: Partial<Record<GgufBlockTypeName, GgufBlockTypeName>> = { Q2_K: 'Q4_0', Q3_K: 'Q4_0', Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };
  const t = next[type] ?? type;
  return rowLength % BLOCK[t] === 0 ? t : 'F16';
}

/**
 * The type of every tensor of `tensors` (in file order, as llama-quantize walks them) under
 * mix `mix`. Tensors it does not quantize keep `keep` (F32 for norms and biases). `imatrix`:
 * whether an importance matrix is used (it changes Q4_0/Q5_0's first ffn_down layers).
 */
export function mixTypes(mix: GgufMix, tensors: readonly MixTensor[], model: MixModel, imatrix: boolean): Map<string, GgufBlockTypeName> {
  const base = GGUF_MIXES[mix].base as GgufBlockTypeName;
  const out = new Map<string, GgufBlockTypeName>();
  const nAttnV = tensors.filter((t) => quantizable(t) && ['attn_v', 'attn_qkv'].includes(categoryOf(t.name))).length;
  const n = model.layers;
  let iAttnV = 0;
  let iFfnDown = 0;
  for (const t of tensors) {
    if (!quantizable(t)) {
      out.set(t.name, 'F32');
      continue;
    }
    let type = base;
    if (QUANTIZED(base)) {
      const c = categoryOf(t.name);
      if (c === 'output' || (model.tiedEmbeddings && c === 'token_embd')) {
        if (t.rowLength % BLOCK[type] !== 0) type = 'Q8_0';
        else if (type !== 'Q8_0') type = 'Q6_K';
      } else if (c === 'token_embd') {
        // the mixes of this package keep the default type
      } else if (c === 'attn_v' || c === 'attn_qkv') {
        // category_is_attn_v: Phi-3's fused attn_qkv takes attn_v's rules (llama.cpp tests this
        // branch before its own attn_qkv branch, which is never reached)
        if (mix === 'Q2_K') type = model.gqa >= 4 ? 'Q4_K' : 'Q3_K';
        else if (mix === 'Q2_K_S' && model.gqa >= 4) type = 'Q4_K';
        else if (mix === 'Q3_K_M') type = iAttnV < 2 ? 'Q5_K' : 'Q4_K';
        else if (mix === 'Q3_K_L') type = 'Q5_K';
        else if ((mix === 'Q4_K_M' || mix === 'Q5_K_M') && useMoreBits(iAttnV, nAttnV)) type = 'Q6_K';
        else if (mix === 'Q4_K_S' && iAttnV < 4) type = 'Q5_K';
        iAttnV++;
      } else if (c === 'ffn_down') {
        const i = iFfnDown;
        if (mix === 'Q2_K') type = 'Q3_K';
        else if (mix === 'Q2_K_S') { if (i < Math.floor(n / 8)) type = 'Q4_K'; }
        else if (mix === 'Q3_K_M') type = i < Math.floor(n / 16) ? 'Q5_K' : 'Q4_K';
        else if (mix === 'Q3_K_L') type = 'Q5_K';
        else if (mix === 'Q4_K_M') { if (useMoreBits(i, n)) type = 'Q6_K'; }
        else if (mix === 'Q5_K_M' && useMoreBits(i, n)) type = 'Q6_K';
        else if (mix === 'Q4_K_S' && i < Math.floor(n / 8)) type = 'Q5_K';
        else if ((mix === 'Q4_0' || mix === 'Q5_0') && imatrix && i < Math.floor(n / 8)) type = mix === 'Q4_0' ? 'Q4_1' : 'Q5_1';
        iFfnDown++;
      } else if (c === 'attn_output') {
        if (mix === 'Q2_K') type = 'Q3_K';
        else if (mix === 'Q3_K_M') type = 'Q4_K';
        else if (mix === 'Q3_K_L') type = 'Q5_K';
      }
      type = fallback(type, t.rowLength);
    }
    out.set(t.name, type);
  }
  return out;
}
