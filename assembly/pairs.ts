// Two results from one function without module state: a pair of 32-bit values in an i64
// (a grid's (scale, zero), a range's (min, max), an argmax's (gain, index)). Module globals
// would do it too, but results passed through globals are easy to read stale.

// @ts-ignore: decorator
@inline export function f32Pair(first: f32, second: f32): i64 {
  return <i64>reinterpret<u32>(first) | (<i64>reinterpret<u32>(second) << 32);
}
// @ts-ignore: decorator
@inline export function pairFirst(p: i64): f32 {
  return reinterpret<f32>(<u32>p);
}
// @ts-ignore: decorator
@inline export function pairSecond(p: i64): f32 {
  return reinterpret<f32>(<u32>(p >>> 32));
}

/** (gain, index): the best move of a pass; index -1 when none lowers the loss. */
// @ts-ignore: decorator
@inline export function gainIndex(gain: f32, index: i32): i64 {
  return <i64>reinterpret<u32>(gain) | (<i64>index << 32);
}
// @ts-ignore: decorator
@inline export function gainOf(p: i64): f32 {
  return reinterpret<f32>(<u32>p);
}
// @ts-ignore: decorator
@inline export function indexOf(p: i64): i32 {
  return <i32>(p >> 32);
}
