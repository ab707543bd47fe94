// The GGUF block codecs' exported surface: llama.cpp's quantizers and dequantizers over rows,
// and the exact grids (grid.ts). Callers (src/formats/gguf-blocks.ts) validate types, shapes
// and finiteness before calling; these functions trust their arguments. Solvers inside the
// module use grid.ts's gridValue / rtnCode directly.

import {
  GGML_BF16, GGML_F16, GGML_F32, fp16ToFp32, fp32ToBf16, fp32ToFp16, ggufBlockBytes, ggufBlockElems,
} from './common';
import {
  LEGACY_SCRATCH, dequantizeLegacyBlock, quantizeLegacyRowImpl, quantizeQ4_0Block, quantizeQ4_1Block,
  quantizeQ5_0Block, quantizeQ5_1Block, quantizeQ8_0Block,
} from './legacy';
import { KQUANT_SCRATCH, dequantizeKBlock, quantizeKRow } from './kquants';

export { ggufBlockBytes, ggufBlockElems } from './common';
export {
  ggufGroupSize, ggufMaxq, ggufZero, ggufGroupAffine, ggufGridValues, ggufDecodeGrid, ggufEncodeGrid, ggufRtnCodes,
  ggufGridFromRanges, ggufCandidateGrid,
} from './grid';
export { ggufOwc, ggufOwcScratch, ggufKeepBetter, ggufRtnGroup, ggufOwcProbe } from './owc';

/**
 * ggml_quantize_chunk(type, src, dst, 0, rows, cols, imatrix): rows x cols f32 at src ->
 * rows * (cols / blockElems * blockBytes) bytes at dst. imatrix (0 = none) holds cols f32
 * importance weights shared by every row; types whose quantizer ignores it (Q8_0, the float
 * types) ignore it here too.
 */
export function ggufQuantize(type: i32, src: usize, rows: i32, cols: i32, imatrix: usize, dst: usize): void {
  const rowBytes = <usize>(cols / ggufBlockElems(type) * ggufBlockBytes(type));
  const n = <usize>rows * <usize>cols;
  if (type == GGML_F32) {
    memory.copy(dst, src, n << 2);
    return;
  }
  if (type == GGML_F16 || type == GGML_BF16) {
    for (let i: usize = 0; i < n; i++) {
      const v = load<f32>(src + (i << 2));
      store<u16>(dst + (i << 1), <u16>(type == GGML_F16 ? fp32ToFp16(v) : fp32ToBf16(v)));
    }
    return;
  }
  const scratch = heap.alloc(<usize>max(LEGACY_SCRATCH, KQUANT_SCRATCH));
  for (let r = 0; r < rows; r++) {
    const x = src + ((<usize>r * <usize>cols) << 2);
    const y = dst + <usize>r * rowBytes;
    if (type >= 10) {
      quantizeKRow(type, x, y, cols, imatrix, scratch);
    } else if (imatrix && type != 8) {
      quantizeLegacyRowImpl(type, x, y, cols, imatrix, scratch);
    } else {
      const bb = <usize>ggufBlockBytes(type);
      for (let b = 0; b < cols / 32; b++) {
        const xb = x + (<usize>b << 7), yb = y + <usize>b * bb;
        if (type == 2) quantizeQ4_0Block(xb, yb);
        else if (type == 3) quantizeQ4_1Block(xb, yb);
        else if (type == 6) quantizeQ5_0Block(xb, yb, scratch);
        else if (type == 7) quantizeQ5_1Block(xb, yb, scratch);
        else quantizeQ8_0Block(xb, yb);
      }
    }
  }
  heap.free(scratch);
}

/** The dequantize_row_* of `type` (to_float): rows * rowBytes bytes at src -> rows x cols f32. */
export function ggufDequantize(type: i32, src: usize, rows: i32, cols: i32, dst: usize): void {
  const n = <usize>rows * <usize>cols;
  if (type == GGML_F32) {
    memory.copy(dst, src, n << 2);
    return;
  }
  if (type == GGML_F16) {
    for (let i: usize = 0; i < n; i++) store<f32>(dst + (i << 2), fp16ToFp32(<u32>load<u16>(src + (i << 1))));
    return;
  }
  if (type == GGML_BF16) {
    for (let i: usize = 0; i < n; i++) store<u32>(dst + (i << 2), <u32>load<u16>(src + (i << 1)) << 16);
    return;
  }
  const elems = <usize>ggufBlockElems(type), bytes = <usize>ggufBlockBytes(type);
  const blocks = n / elems;
  const L = heap.alloc(256);
  for (let b: usize = 0; b < blocks; b++) {
    const x = src + b * bytes, y = dst + ((b * elems) << 2);
    if (elems == 32) dequantizeLegacyBlock(type, x, y);
    else dequantizeKBlock(type, x, y, L);
  }
  heap.free(L);
}
