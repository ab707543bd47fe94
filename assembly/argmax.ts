// The best move of a pass, from SIMD lanes that each kept their own first maximum.

import { gainIndex } from './pairs';

/** The first maximum over four lanes' own first maxima, among gains > 0; across lanes the
 * lowest index wins a tie. gainIndex(gain, index), index -1 when no gain is positive. */
// @ts-ignore: decorator
@inline export function reduceLanes(bestGain: v128, bestIdx: v128): i64 {
  let best: f32 = 0;
  let bi: i32 = -1;
  let g = f32x4.extract_lane(bestGain, 0), i = i32x4.extract_lane(bestIdx, 0);
  if (i >= 0 && (g > best || (g == best && i < bi))) { best = g; bi = i; }
  g = f32x4.extract_lane(bestGain, 1); i = i32x4.extract_lane(bestIdx, 1);
  if (i >= 0 && (g > best || (g == best && i < bi))) { best = g; bi = i; }
  g = f32x4.extract_lane(bestGain, 2); i = i32x4.extract_lane(bestIdx, 2);
  if (i >= 0 && (g > best || (g == best && i < bi))) { best = g; bi = i; }
  g = f32x4.extract_lane(bestGain, 3); i = i32x4.extract_lane(bestIdx, 3);
  if (i >= 0 && (g > best || (g == best && i < bi))) { best = g; bi = i; }
  return gainIndex(best, bi);
}
