// llama2.c rotates adjacent pairs (x[2i], x[2i+1]) of each head; Hugging Face's rotate_half
// rotates (x[i], x[i + head/2]). The same model works under either convention once the rows
// of q_proj and k_proj are permuted within each head, which is what HF's converter does:
// w.view(n_heads, head/2, 2, cols).transpose(1, 2).reshape(rows, cols).
import { ShapeError } from '../../core/errors.js';

/**
 * Permutes the rows of `w` ([rows, cols], rows = nHeads * headDim) between the interleaved
 * (llama2.c) and half-split (Hugging Face) RoPE layouts. Returns a new array.
 */
export function permuteRopeRows(
  w: Float32Array, nHeads: number, rows: number, cols: number, direction: 'toHalf' | 'toInterleaved',
): Float32Array {
  if (w.length !== rows * cols) throw new ShapeError(`permuteRopeRows: array has ${w.length} values, expected ${rows} x ${cols}`);
  if (!(nHeads > 0) || rows % nHeads !== 0 || (rows / nHeads) % 2 !== 0) {
    throw new ShapeError(`permuteRopeRows: ${rows} rows do not split into ${nHeads} heads of even size`);
  }
  const headDim = rows / nHeads;
  const half = headDim / 2;
  const out = new Float32Array(w.length);
  for (let hd = 0; hd < nHeads; hd++) {
    const base = hd * headDim;
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const interleaved = base + 2 * i + j; // pair i, member j
        const halfSplit = base + j * half + i;
        const [from, to] = direction === 'toHalf' ? [interleaved, halfSplit] : [halfSplit, interleaved];
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}
