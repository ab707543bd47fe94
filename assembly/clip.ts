// Choosing the grid of every row and group of a band: min-max (the reference GPTQ), the MSE
// clip search, or optimal weight clipping (owc.ts). The search codes are exported constants,
// so the TypeScript side names them instead of repeating numbers.

import { gridMinMax, gridMse } from './grid';
import { gridOwcChannelFast, gridOwcChannelFastScratch, gridOwcGroup, gridOwcScratch, OWC_SCREEN_BLOCK } from './owc';
import { pairFirst, pairSecond } from './pairs';

export const GRID_MINMAX: i32 = 0;
export const GRID_MSE: i32 = 1;
/** OWC; per-channel rows wider than the screening block use the fast search. */
export const GRID_OWC: i32 = 2;
/** OWC with the exact search per channel too. */
export const GRID_OWC_EXACT: i32 = 3;

// @ts-ignore: decorator
@inline function fastChannel(search: i32, groups: i32, cols: i32): bool {
  return search == GRID_OWC && groups == 1 && cols > OWC_SCREEN_BLOCK;
}

/** Bytes of gridParams' scratch for a band of rows x cols in groups of groupWidth. */
export function gridParamsScratch(rows: i32, cols: i32, groupWidth: i32, search: i32): f64 {
  const groups = (cols + groupWidth - 1) / groupWidth;
  if (fastChannel(search, groups, cols)) return gridOwcChannelFastScratch(rows, cols);
  if (search == GRID_OWC || search == GRID_OWC_EXACT) return gridOwcScratch(min(groupWidth, cols));
  return 0;
}

/**
 * Grids for every row and group of W [rows x cols] (groups of groupWidth consecutive columns,
 * the last one possibly shorter) into scales/zeros [rows x groups]. search: GRID_*; the OWC
 * searches need h [cols x cols]. scratch: gridParamsScratch(rows, cols, groupWidth, search).
 */
export function gridParams(
  w: usize, rows: i32, cols: i32, groupWidth: i32, maxq: f32, sym: bool, search: i32,
  h: usize, scales: usize, zeros: usize, scratch: usize,
): void {
  const gs = groupWidth;
  const groups = (cols + gs - 1) / gs;
  if (fastChannel(search, groups, cols)) {
    gridOwcChannelFast(w, rows, cols, h, maxq, sym, scales, zeros, scratch);
    return;
  }
  // Groups outer, rows inner: each group's H block is reused by all the band's rows while it
  // is in cache (every (row, group) grid is computed on its own, so the order changes nothing).
  for (let g = 0; g < groups; g++) {
    const c0 = g * gs;
    const len = min(gs, cols - c0);
    if (search == GRID_OWC || search == GRID_OWC_EXACT) {
      gridOwcGroup(w, rows, cols, c0, len, g, groups, h, maxq, sym, scales, zeros, scratch);
      continue;
    }
    for (let r = 0; r < rows; r++) {
      const x = w + ((<usize>r * <usize>cols + <usize>c0) << 2);
      let grid: i64;
      if (search == GRID_MINMAX) grid = gridMinMax(x, len, maxq, sym);
      else grid = gridMse(x, len, maxq, sym);
      const o = (<usize>r * <usize>groups + <usize>g) << 2;
      store<f32>(scales + o, pairFirst(grid));
      store<f32>(zeros + o, pairSecond(grid));
    }
  }
}
