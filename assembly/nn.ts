// Transformer forward ops (Llama family) for calibration and evaluation.
//
// Plain functions over byte offsets; all buffers are float32, row-major. Every function fixes
// its summation order so the bits do not depend on blocking, on T, or on the runtime:
//
// * A dot product of n floats accumulates four lanes (lane l takes elements i = l mod 4 of the
//   first n & ~3), reduces them as (l0 + l1) + (l2 + l3), then adds the tail elements in
//   order. The matmul micro-kernels compute each output element in exactly this order, so a
//   row of Y is the same whichever tile or micro-kernel produced it.
// * No fused multiply-add (plain SIMD has none; relaxed-SIMD is off).
// * exp in attention and SiLU is a fixed polynomial in plain f32 operations (exp4 / exp1);
//   softmax denominators are summed in f64; cross-entropy is f64 with AssemblyScript's own
//   Math (compiled into this module, hence deterministic).
//
// Names carry an `nn_` prefix so they cannot collide with the other kernel files.

// ---------------------------------------------------------------------------------------
// helpers

@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) +
    (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Adds a[i] * b[i] for i in [from, n) to s, in order. */
@inline function dotTail(s: f32, a: usize, b: usize, from: i32, n: i32): f32 {
  for (let i = from; i < n; i++) {
    const o = <usize>i << 2;
    s += load<f32>(a + o) * load<f32>(b + o);
  }
  return s;
}

/** The canonical dot product (see the header). */
@inline function dot(a: usize, b: usize, n: i32): f32 {
  const n4 = n & ~3;
  let acc = f32x4.splat(0);
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    acc = f32x4.add(acc, f32x4.mul(v128.load(a + o), v128.load(b + o)));
  }
  return dotTail(hsum(acc), a, b, n4, n);
}

export function nn_dot(a: usize, b: usize, n: i32): f32 {
  return dot(a, b, n);
}

// ---------------------------------------------------------------------------------------
// matmul: Y[t, o] = sum_i X[t, i] * W[o, i];  X [T, nIn], W [nOut, nIn], Y [T, nOut]

/** 4 tokens x 2 output rows, each element in the canonical dot order. */
@inline function micro4x2(x: usize, w: usize, y: usize, rowX: usize, rowY: usize, nIn: i32, n4: i32): void {
  const x0 = x, x1 = x + rowX, x2 = x1 + rowX, x3 = x2 + rowX;
  const w0 = w, w1 = w + rowX;
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0);
  let a10 = f32x4.splat(0), a11 = f32x4.splat(0);
  let a20 = f32x4.splat(0), a21 = f32x4.splat(0);
  let a30 = f32x4.splat(0), a31 = f32x4.splat(0);
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    const b0 = v128.load(w0 + o);
    const b1 = v128.load(w1 + o);
    const v0 = v128.load(x0 + o);
    a00 = f32x4.add(a00, f32x4.mul(v0, b0));
    a01 = f32x4.add(a01, f32x4.mul(v0, b1));
    const v1 = v128.load(x1 + o);
    a10 = f32x4.add(a10, f32x4.mul(v1, b0));
    a11 = f32x4.add(a11, f32x4.mul(v1, b1));
    const v2 = v128.load(x2 + o);
    a20 = f32x4.add(a20, f32x4.mul(v2, b0));
    a21 = f32x4.add(a21, f32x4.mul(v2, b1));
    const v3 = v128.load(x3 + o);
    a30 = f32x4.add(a30, f32x4.mul(v3, b0));
    a31 = f32x4.add(a31, f32x4.mul(v3, b1));
  }
  store<f32>(y, dotTail(hsum(a00), x0, w0, n4, nIn));
  store<f32>(y + 4, dotTail(hsum(a01), x0, w1, n4, nIn));
  const y1 = y + rowY;
  store<f32>(y1, dotTail(hsum(a10), x1, w0, n4, nIn));
  store<f32>(y1 + 4, dotTail(hsum(a11), x1, w1, n4, nIn));
  const y2 = y1 + rowY;
  store<f32>(y2, dotTail(hsum(a20), x2, w0, n4, nIn));
  store<f32>(y2 + 4, dotTail(hsum(a21), x2, w1, n4, nIn));
  const y3 = y2 + rowY;
  store<f32>(y3, dotTail(hsum(a30), x3, w0, n4, nIn));
  store<f32>(y3 + 4, dotTail(hsum(a31), x3, w1, n4, nIn));
}

/** 4 tokens x 1 output row. */
@inline function micro4x1(x: usize, w: usize, y: usize, rowX: usize, rowY: usize, nIn: i32, n4: i32): void {
  const x0 = x, x1 = x + rowX, x2 = x1 + rowX, x3 = x2 + rowX;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    const b = v128.load(w + o);
    a0 = f32x4.add(a0, f32x4.mul(v128.load(x0 + o), b));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(x1 + o), b));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(x2 + o), b));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(x3 + o), b));
  }
  store<f32>(y, dotTail(hsum(a0), x0, w, n4, nIn));
  store<f32>(y + rowY, dotTail(hsum(a1), x1, w, n4, nIn));
  store<f32>(y + 2 * rowY, dotTail(hsum(a2), x2, w, n4, nIn));
  store<f32>(y + 3 * rowY, dotTail(hsum(a3), x3, w, n4, nIn));
}

/** Y = X W^T for X [T, nIn], W [nOut, nIn] (PyTorch's [out, in]), Y [T, nOut]. Y must not
 * overlap X or W. Tiled so a block of tokens (about 1 MiB) and a block of weight rows (about
 * 512 KiB) share L2: the weights stream from memory once per token block, and the micro-
 * kernels' six row streams come from L2. (Tiles sized for L1 instead made wide layers, e.g.
 * 5632 inputs, stream all weights once per 8 tokens: 1.4x slower. L2 keeps up with the
 * micro-kernels' 6 loads per 16 flops.) The tiling never changes an element's operations. */
export function nn_matmul(x: usize, w: usize, y: usize, T: i32, nIn: i32, nOut: i32): void {
  nn_matmul_part(x, w, y, T, nIn, nOut, 0, T, 0, nOut);
}

/** Tokens per token block of nn_matmul (about 1 MiB of X rows; a multiple of 4). Threads share
 * a product by pieces of this many tokens (src/model/forward.ts). */
export function nn_matmul_token_block(nIn: i32): i32 {
  return max<i32>(4, ((1024 * 1024) / max<i32>(nIn << 2, 16)) & ~3);
}

/** The part Y[t0:t1, o0:o1] of nn_matmul's product (same arguments, plus the ranges): each
 * element is computed by the same operations as in the whole product, so pieces that cover Y
 * give Y's bits whichever thread computes which. Writes nothing outside its part. t0 must be a
 * multiple of 4 for the micro-kernels' token quads to be the whole product's (bits do not
 * depend on it, speed does). */
export function nn_matmul_part(x: usize, w: usize, y: usize, T: i32, nIn: i32, nOut: i32, t0: i32, t1: i32, o0: i32, o1: i32): void {
  const rowX = <usize>nIn << 2;
  const rowY = <usize>nOut << 2;
  const n4 = nIn & ~3;
  const rowBytes = max<i32>(nIn << 2, 16);
  const tileT = nn_matmul_token_block(nIn);
  const tileO = max<i32>(2, ((512 * 1024) / rowBytes) & ~1);
  t1 = min<i32>(t1, T);
  o1 = min<i32>(o1, nOut);
  for (let ta = t0; ta < t1; ta += tileT) {
    const tb = min<i32>(ta + tileT, t1);
    for (let oa = o0; oa < o1; oa += tileO) {
      const ob = min<i32>(oa + tileO, o1);
      let t = ta;
      for (; t + 4 <= tb; t += 4) {
        const xt = x + <usize>t * rowX;
        const yt = y + <usize>t * rowY;
        let o = oa;
        for (; o + 2 <= ob; o += 2) micro4x2(xt, w + <usize>o * rowX, yt + (<usize>o << 2), rowX, rowY, nIn, n4);
        for (; o < ob; o++) micro4x1(xt, w + <usize>o * rowX, yt + (<usize>o << 2), rowX, rowY, nIn, n4);
      }
      for (; t < tb; t++) {
        const xt = x + <usize>t * rowX;
        const yt = y + <usize>t * rowY;
        for (let o = oa; o < ob; o++) store<f32>(yt + (<usize>o << 2), dot(xt, w + <usize>o * rowX, nIn));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// RMSNorm: y = x * (1 / sqrt(mean(x^2) + eps)) * weight, row by row. y may equal x.

export function nn_rmsnorm(x: usize, weight: usize, y: usize, T: i32, dim: i32, eps: f32): void {
  const row = <usize>dim << 2;
  const n4 = dim & ~3;
  for (let t = 0; t < T; t++) {
    const xr = x + <usize>t * row;
    const yr = y + <usize>t * row;
    const ss = dot(xr, xr, dim);
    const inv: f32 = <f32>1.0 / Mathf.sqrt(ss / <f32>dim + eps);
    const vinv = f32x4.splat(inv);
    let i = 0;
    for (; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(yr + o, f32x4.mul(f32x4.mul(v128.load(xr + o), vinv), v128.load(weight + o)));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(yr + o, (load<f32>(xr + o) * inv) * load<f32>(weight + o));
    }
  }
}

// ---------------------------------------------------------------------------------------
// RoPE

/** Fills tab [nPos, head/2, 2] with (cos, sin) of p * theta^(-2i/head) for positions
 * p = 0..nPos-1 and pair index i; computed in f64 and rounded to f32 once. */
export function nn_rope_table(tab: usize, nPos: i32, head: i32, theta: f64): void {
  const half = head >> 1;
  const freqs = heap.alloc(<usize>half << 3);
  nn_rope_freqs(freqs, head, theta, 0, 1, 0, 0, 0, 0);
  nn_rope_table_freqs(tab, nPos, half, freqs, 1);
  heap.free(freqs);
}

// @ts-ignore: decorator
@inline const ROPE_DEFAULT: i32 = 0;
// @ts-ignore: decorator
@inline const ROPE_LINEAR: i32 = 1;
// @ts-ignore: decorator
@inline const ROPE_LLAMA3: i32 = 2;
// @ts-ignore: decorator
@inline const ROPE_LONGROPE: i32 = 3;

/**
 * Inverse frequencies of the rot/2 rotated pairs, in f64, as transformers' modeling_rope_utils
 * defines them (its `dim` is our `rot`, the rotated part of a head):
 * - 0 default:  f_i = theta^(-2i/rot)
 * - 1 linear:   f_i / factor
 * - 2 llama3:   wavelength w = 2 pi / f_i against the original context L = origMax:
 *               w < L / high: f_i; w > L / low: f_i / factor; otherwise
 *               (1 - s) f_i / factor + s f_i with s = (L / w - low) / (high - low)
 * - 3 longrope: f_i / ext[i] (ext: rot/2 f64 factors, short or long as chosen by the caller)
 * transformers computes these in float32; f64 here keeps them within 1e-16 of the exact values.
 */
export function nn_rope_freqs(
  out: usize, rot: i32, theta: f64, kind: i32, factor: f64, low: f64, high: f64, origMax: f64, ext: usize,
): void {
  const half = rot >> 1;
  for (let i = 0; i < half; i++) {
    let f = Math.pow(theta, -<f64>(2 * i) / <f64>rot);
    if (kind == ROPE_LINEAR) {
      f = f / factor;
    } else if (kind == ROPE_LLAMA3) {
      const wavelen = 2 * Math.PI / f;
      const lowWavelen = origMax / low;
      const highWavelen = origMax / high;
      if (wavelen > lowWavelen) {
        f = f / factor;
      } else if (!(wavelen < highWavelen)) {
        const s = (origMax / wavelen - low) / (high - low);
        f = (1 - s) * f / factor + s * f;
      }
    } else if (kind == ROPE_LONGROPE) {
      f = f / load<f64>(ext + (<usize>i << 3));
    }
    store<f64>(out + (<usize>i << 3), f);
  }
}

/** Fills tab [nPos, half, 2] with (cos, sin) of p * freqs[i], times mscale (longrope's
 * attention factor; 1 otherwise), computed in f64 and rounded to f32 once. */
export function nn_rope_table_freqs(tab: usize, nPos: i32, half: i32, freqs: usize, mscale: f64): void {
  for (let i = 0; i < half; i++) {
    const freq = load<f64>(freqs + (<usize>i << 3));
    for (let p = 0; p < nPos; p++) {
      const ang = <f64>p * freq;
      const at = tab + ((<usize>p * <usize>half + <usize>i) << 3);
      store<f32>(at, <f32>(Math.cos(ang) * mscale));
      store<f32>(at + 4, <f32>(Math.sin(ang) * mscale));
    }
  }
}

/** LongRoPE's default attention factor (transformers): 1 for factor <= 1, else
 * sqrt(1 + ln(factor) / ln(origMax)). */
export function nn_longrope_mscale(factor: f64, origMax: f64): f64 {
  return factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(origMax));
}

/** Rotates x [T, nHeads * head] in place; row t uses tab row t (pass tab + pos0 * head * 4
 * for a window starting at pos0). halfSplit = 0: pairs (2i, 2i+1) (llama2.c / Meta);
 * halfSplit = 1: pairs (i, i + head/2) (Hugging Face `rotate_half`). Both rotate a pair
 * (a, b) to (a c - b s, a s + b c). */
export function nn_rope(x: usize, tab: usize, T: i32, nHeads: i32, head: i32, halfSplit: i32): void {
  nn_rope_partial(x, tab, T, nHeads, head, head, halfSplit);
}

/** nn_rope on the first `rot` dimensions of each head only (partial rotary, Phi-3's
 * partial_rotary_factor: q_rot = q[..., :rot] is rotated, q[..., rot:] passes through); tab
 * rows hold rot/2 pairs. */
export function nn_rope_partial(x: usize, tab: usize, T: i32, nHeads: i32, head: i32, rot: i32, halfSplit: i32): void {
  const half = rot >> 1;
  const row = <usize>(nHeads * head) << 2;
  const headBytes = <usize>head << 2;
  const strideA: usize = halfSplit ? 4 : 8; // distance between successive pairs' first elements
  const offB: usize = halfSplit ? (<usize>half << 2) : 4; // offset of the second element of a pair
  for (let t = 0; t < T; t++) {
    const tr = tab + ((<usize>t * <usize>half) << 3);
    const xr = x + <usize>t * row;
    for (let h = 0; h < nHeads; h++) {
      const xh = xr + <usize>h * headBytes;
      for (let i = 0; i < half; i++) {
        const c = load<f32>(tr + (<usize>i << 3));
        const s = load<f32>(tr + (<usize>i << 3) + 4);
        const pa = xh + <usize>i * strideA;
        const pb = pa + offB;
        const a = load<f32>(pa);
        const b = load<f32>(pb);
        store<f32>(pa, a * c - b * s);
        store<f32>(pb, a * s + b * c);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// exp: Cephes' expf (range reduction by ln 2 in two parts, degree-6 polynomial, 2^n by
// exponent bits), in plain f32 operations so the vector and scalar forms give the same bits
// in every engine. Inputs are clamped to [-87, 88] (exp(-87) ~ 1.6e-38, exp(88) ~ 1.7e38),
// which is all softmax and SiLU need. Within ~2 ulp of the true value.

// @ts-ignore: decorator
@inline const EXP_LO: f32 = -87.0;
// @ts-ignore: decorator
@inline const EXP_HI: f32 = 88.0;
// @ts-ignore: decorator
@inline const LOG2E: f32 = 1.44269504088896341;
// @ts-ignore: decorator
@inline const EXP_C1: f32 = 0.693359375;
// @ts-ignore: decorator
@inline const EXP_C2: f32 = -2.12194440e-4;
// @ts-ignore: decorator
@inline const EXP_P0: f32 = 1.9875691500e-4;
// @ts-ignore: decorator
@inline const EXP_P1: f32 = 1.3981999507e-3;
// @ts-ignore: decorator
@inline const EXP_P2: f32 = 8.3334519073e-3;
// @ts-ignore: decorator
@inline const EXP_P3: f32 = 4.1665795894e-2;
// @ts-ignore: decorator
@inline const EXP_P4: f32 = 1.6666665459e-1;
// @ts-ignore: decorator
@inline const EXP_P5: f32 = 5.0000001201e-1;

@inline function exp4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(EXP_LO)), f32x4.splat(EXP_HI));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(LOG2E)));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(EXP_C1)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(EXP_C2)));
  let y = f32x4.splat(EXP_P0);
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P1));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P2));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P3));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P4));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(EXP_P5));
  y = f32x4.add(f32x4.add(f32x4.mul(y, f32x4.mul(r, r)), r), f32x4.splat(1));
  const e = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(y, e);
}

/** exp4 on one lane: the same operations in the same order. */
@inline function exp1(x: f32): f32 {
  x = min<f32>(max<f32>(x, EXP_LO), EXP_HI);
  const n = nearest<f32>(x * LOG2E);
  let r = x - n * EXP_C1;
  r = r - n * EXP_C2;
  let y = EXP_P0;
  y = y * r + EXP_P1;
  y = y * r + EXP_P2;
  y = y * r + EXP_P3;
  y = y * r + EXP_P4;
  y = y * r + EXP_P5;
  y = (y * (r * r) + r) + <f32>1;
  return y * reinterpret<f32>((<i32>n + 127) << 23);
}

export function nn_exp_f32(x: f32): f32 {
  return exp1(x);
}

// tanh from the exp above: tanh(y) = sign(y) (1 - e) / (1 + e), e = exp(-2|y|) in (0, 1], so
// nothing overflows; absolute error a few 1e-8 (the cancellation in 1 - e near 0 costs
// relative, not absolute, accuracy). Used by gelu-tanh and by soft-capping, both of which
// multiply it by a bounded or the original value.

@inline function tanh4(y: v128): v128 {
  const e = exp4(f32x4.mul(f32x4.abs(y), f32x4.splat(-2)));
  const one = f32x4.splat(1);
  const t = f32x4.div(f32x4.sub(one, e), f32x4.add(one, e));
  // copy the sign of y onto t (t >= 0)
  return v128.or(t, v128.and(y, f32x4.splat(-0.0)));
}

/** tanh4 on one lane: the same operations in the same order. */
@inline function tanh1(y: f32): f32 {
  const e = exp1(abs<f32>(y) * <f32>-2);
  const t = (<f32>1 - e) / (<f32>1 + e);
  return reinterpret<f32>(reinterpret<u32>(t) | (reinterpret<u32>(y) & 0x80000000));
}

export function nn_tanh_f32(x: f32): f32 {
  return tanh1(x);
}

/** Four canonical horizontal sums at once: lane k = (a_k.0 + a_k.1) + (a_k.2 + a_k.3). */
@inline function hsum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const u = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 2, 4, 6), v128.shuffle<f32>(a0, a1, 1, 3, 5, 7));
  const w = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 2, 4, 6), v128.shuffle<f32>(a2, a3, 1, 3, 5, 7));
  return f32x4.add(v128.shuffle<f32>(u, w, 0, 2, 4, 6), v128.shuffle<f32>(u, w, 1, 3, 5, 7));
}

// ---------------------------------------------------------------------------------------
// Causal grouped-query attention over one sequence.
// q [T, nHeads*head], k, v [T, nKv*head] (RoPE already applied), out [T, nHeads*head].
// Query head h reads KV head h / (nHeads / nKv). Score s_j = dot(q, k_j) * (1/sqrt(head))
// with the canonical dot order; softmax with max subtraction: e_j = exp(s_j - max) (exp4
// above), sum of e_j in f64 (two f64x2 accumulators, see below), p_j = e_j * f32(1/sum);
// out = (sum over even j of p_j v_j) + (sum over odd j), each accumulated in order of j.
// Every row's result depends only on its own q row and keys 0..t, never on T.

export function nn_attention(q: usize, k: usize, v: usize, out: usize, T: i32, nHeads: i32, nKv: i32, head: i32): void {
  nn_attention_ex(q, k, v, out, T, nHeads, nKv, head, nn_attn_scale(<f64>head), 0, 0);
}

/** The attention scale 1/sqrt(scalar) in f32: the head size, or Gemma's query_pre_attn_scalar. */
export function nn_attn_scale(scalar: f64): f32 {
  return <f32>1.0 / Mathf.sqrt(<f32>scalar);
}

/** Causal attention as above, generalized: scores are dot(q, k_j) * scale; with softcap > 0
 * they are then capped as tanh(s / softcap) * softcap (Gemma's attn_logit_softcapping); with
 * window > 0 query t sees keys j with t - window < j <= t (transformers' sliding_window_overlay:
 * kv_idx > q_idx - sliding_window), otherwise keys 0..t. Summation orders are those of
 * nn_attention, taken over the visible keys j0..t in order, so a row still depends only on its
 * own q row and its visible keys. */
export function nn_attention_ex(
  q: usize, k: usize, v: usize, out: usize, T: i32, nHeads: i32, nKv: i32, head: i32,
  scale: f32, window: i32, softcap: f32,
): void {
  const scores = heap.alloc(<usize>nn_attention_scratch(T, window));
  nn_attention_heads(q, k, v, out, T, nHeads, nKv, head, scale, window, softcap, 0, nHeads, scores);
  heap.free(scores);
}

/** Bytes of nn_attention_heads' scratch: one row of scores. */
export function nn_attention_scratch(T: i32, window: i32): f64 {
  const nMax = window > 0 ? min<i32>(T, window) : T;
  return <f64>(nMax + 8) * 4;
}

/** nn_attention_ex for query heads h0..h1-1 only (their columns of out; nothing else is
 * written but `scores`, nn_attention_scratch bytes of the caller's): a head's rows are the same
 * bits whichever call computes them, so threads may share the heads of one attention. Never
 * allocates (a worker's instance over shared memory must not). */
export function nn_attention_heads(
  q: usize, k: usize, v: usize, out: usize, T: i32, nHeads: i32, nKv: i32, head: i32,
  scale: f32, window: i32, softcap: f32, h0: i32, h1: i32, scores: usize,
): void {
  const group = nHeads / nKv;
  const vscale = f32x4.splat(scale);
  const capped = softcap > 0;
  const invCap: f32 = capped ? <f32>1.0 / softcap : 0;
  const qRow = <usize>(nHeads * head) << 2;
  const kRow = <usize>(nKv * head) << 2;
  const headBytes = <usize>head << 2;
  const h4 = head & ~3;
  const h8 = head & ~7;
  for (let h = h0; h < min<i32>(h1, nHeads); h++) {
    const kvOff = <usize>(h / group) * headBytes;
    const qOff = <usize>h * headBytes;
    for (let t = 0; t < T; t++) {
      const j0 = window > 0 ? max<i32>(0, t - window + 1) : 0;
      const n = t + 1 - j0; // visible keys j0..t; local index jj = j - j0
      const qp = q + <usize>t * qRow + qOff;
      const kb = k + <usize>j0 * kRow + kvOff;
      // scores, four keys at a time
      let vm = f32x4.splat(-Infinity);
      let j = 0;
      for (; j + 4 <= n; j += 4) {
        const k0 = kb + <usize>j * kRow, k1 = k0 + kRow, k2 = k1 + kRow, k3 = k2 + kRow;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        for (let d = 0; d < h4; d += 4) {
          const o = <usize>d << 2;
          const qv = v128.load(qp + o);
          a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
          a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
          a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
          a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
        }
        let s = hsum4(a0, a1, a2, a3);
        if (h4 < head) {
          s = f32x4.replace_lane(s, 0, dotTail(f32x4.extract_lane(s, 0), qp, k0, h4, head));
          s = f32x4.replace_lane(s, 1, dotTail(f32x4.extract_lane(s, 1), qp, k1, h4, head));
          s = f32x4.replace_lane(s, 2, dotTail(f32x4.extract_lane(s, 2), qp, k2, h4, head));
          s = f32x4.replace_lane(s, 3, dotTail(f32x4.extract_lane(s, 3), qp, k3, h4, head));
        }
        s = f32x4.mul(s, vscale);
        if (capped) s = f32x4.mul(tanh4(f32x4.mul(s, f32x4.splat(invCap))), f32x4.splat(softcap));
        v128.store(scores + (<usize>j << 2), s);
        vm = f32x4.max(vm, s);
      }
      let m: f32 = max<f32>(max<f32>(f32x4.extract_lane(vm, 0), f32x4.extract_lane(vm, 1)),
        max<f32>(f32x4.extract_lane(vm, 2), f32x4.extract_lane(vm, 3)));
      for (; j < n; j++) {
        let s = dot(qp, kb + <usize>j * kRow, head) * scale;
        if (capped) s = tanh1(s * invCap) * softcap;
        store<f32>(scores + (<usize>j << 2), s);
        m = max<f32>(m, s);
      }
      // exponentials (lanes past n are computed from stale values and never read)
      const mv = f32x4.splat(m);
      for (j = 0; j < n; j += 4) {
        const at = scores + (<usize>j << 2);
        v128.store(at, exp4(f32x4.sub(v128.load(at), mv)));
      }
      // zero the lanes past n, then sum in f64: s01 takes lanes 0-1 of every block of four,
      // s23 lanes 2-3; sum = (s01.0 + s01.1) + (s23.0 + s23.1)
      const n4up = (n + 3) & ~3;
      for (j = n; j < n4up; j++) store<f32>(scores + (<usize>j << 2), 0);
      let s01 = f64x2.splat(0), s23 = f64x2.splat(0);
      for (j = 0; j < n; j += 4) {
        const e = v128.load(scores + (<usize>j << 2));
        s01 = f64x2.add(s01, f64x2.promote_low_f32x4(e));
        s23 = f64x2.add(s23, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 2, 3)));
      }
      const sum = (f64x2.extract_lane(s01, 0) + f64x2.extract_lane(s01, 1)) +
        (f64x2.extract_lane(s23, 0) + f64x2.extract_lane(s23, 1));
      const inv = f32x4.splat(<f32>(1.0 / sum));
      for (j = 0; j < n; j += 4) {
        const at = scores + (<usize>j << 2);
        v128.store(at, f32x4.mul(v128.load(at), inv));
      }
      // out = sum_j p_j v_j as (sum over even jj) + (sum over odd jj), each in order of j;
      // eight, then four dims at a time, then single dims
      const op = out + <usize>t * qRow + qOff;
      const vb = v + <usize>j0 * kRow + kvOff;
      const nEven = n & ~1;
      let d = 0;
      for (; d < h8; d += 8) {
        const o = <usize>d << 2;
        let c0 = f32x4.splat(0), c1 = f32x4.splat(0), e0 = f32x4.splat(0), e1 = f32x4.splat(0);
        for (j = 0; j < nEven; j += 2) {
          const pv = v128.load32_splat(scores + (<usize>j << 2));
          const pw = v128.load32_splat(scores + (<usize>j << 2) + 4);
          const vp = vb + <usize>j * kRow + o;
          c0 = f32x4.add(c0, f32x4.mul(pv, v128.load(vp)));
          c1 = f32x4.add(c1, f32x4.mul(pv, v128.load(vp + 16)));
          e0 = f32x4.add(e0, f32x4.mul(pw, v128.load(vp + kRow)));
          e1 = f32x4.add(e1, f32x4.mul(pw, v128.load(vp + kRow + 16)));
        }
        if (nEven < n) {
          const pv = v128.load32_splat(scores + (<usize>j << 2));
          const vp = vb + <usize>j * kRow + o;
          c0 = f32x4.add(c0, f32x4.mul(pv, v128.load(vp)));
          c1 = f32x4.add(c1, f32x4.mul(pv, v128.load(vp + 16)));
        }
        v128.store(op + o, f32x4.add(c0, e0));
        v128.store(op + o + 16, f32x4.add(c1, e1));
      }
      for (; d < h4; d += 4) {
        const o = <usize>d << 2;
        let c0 = f32x4.splat(0), e0 = f32x4.splat(0);
        for (j = 0; j < nEven; j += 2) {
          const vp = vb + <usize>j * kRow + o;
          c0 = f32x4.add(c0, f32x4.mul(v128.load32_splat(scores + (<usize>j << 2)), v128.load(vp)));
          e0 = f32x4.add(e0, f32x4.mul(v128.load32_splat(scores + (<usize>j << 2) + 4), v128.load(vp + kRow)));
        }
        if (nEven < n) c0 = f32x4.add(c0, f32x4.mul(v128.load32_splat(scores + (<usize>j << 2)), v128.load(vb + <usize>j * kRow + o)));
        v128.store(op + o, f32x4.add(c0, e0));
      }
      for (; d < head; d++) {
        const o = <usize>d << 2;
        let c: f32 = 0, e: f32 = 0;
        for (j = 0; j < nEven; j += 2) {
          c += load<f32>(scores + (<usize>j << 2)) * load<f32>(vb + <usize>j * kRow + o);
          e += load<f32>(scores + (<usize>j << 2) + 4) * load<f32>(vb + <usize>(j + 1) * kRow + o);
        }
        if (nEven < n) c += load<f32>(scores + (<usize>j << 2)) * load<f32>(vb + <usize>j * kRow + o);
        store<f32>(op + o, c + e);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// elementwise

/** out[i] = silu(g[i]) * u[i], silu(x) = x / (1 + exp(-x)) with exp4/exp1 above. out may
 * equal g or u. */
export function nn_swiglu(g: usize, u: usize, out: usize, n: i32): void {
  const n4 = n & ~3;
  const one = f32x4.splat(1);
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    const a = v128.load(g + o);
    v128.store(out + o, f32x4.mul(f32x4.div(a, f32x4.add(one, exp4(f32x4.neg(a)))), v128.load(u + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const a = load<f32>(g + o);
    store<f32>(out + o, (a / (<f32>1.0 + exp1(-a))) * load<f32>(u + o));
  }
}

/** out[i] = gelu_tanh(g[i]) * u[i] (Gemma's GeGLU, hidden_activation gelu_pytorch_tanh), with
 * gelu_tanh(x) = 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi), in PyTorch's
 * operation order (x^3 = x*x*x; inner = k * (x + c * x^3); 0.5 * x * (1 + tanh(inner))).
 * out may equal g or u. */
export function nn_geglu(g: usize, u: usize, out: usize, n: i32): void {
  const k: f32 = <f32>0.7978845608028654; // sqrt(2 / pi)
  const c: f32 = <f32>0.044715;
  const n4 = n & ~3;
  const vk = f32x4.splat(k), vc = f32x4.splat(c), half = f32x4.splat(0.5), one = f32x4.splat(1);
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    const x = v128.load(g + o);
    const x3 = f32x4.mul(f32x4.mul(x, x), x);
    const inner = f32x4.mul(vk, f32x4.add(x, f32x4.mul(vc, x3)));
    const y = f32x4.mul(f32x4.mul(half, x), f32x4.add(one, tanh4(inner)));
    v128.store(out + o, f32x4.mul(y, v128.load(u + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const x = load<f32>(g + o);
    const x3 = (x * x) * x;
    const inner = k * (x + c * x3);
    const y = (<f32>0.5 * x) * (<f32>1 + tanh1(inner));
    store<f32>(out + o, y * load<f32>(u + o));
  }
}

/** x[i] = tanh(x[i] / cap) * cap (Gemma's final_logit_softcapping), as x * (1/cap) in f32. */
export function nn_softcap(x: usize, n: i32, cap: f32): void {
  const inv: f32 = <f32>1.0 / cap;
  const n4 = n & ~3;
  const vinv = f32x4.splat(inv), vcap = f32x4.splat(cap);
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(x + o, f32x4.mul(tanh4(f32x4.mul(v128.load(x + o), vinv)), vcap));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(x + o, tanh1(load<f32>(x + o) * inv) * cap);
  }
}

/** y[t, :] += bias for t < T (a linear layer's bias, after its matmul). */
export function nn_add_bias(y: usize, bias: usize, T: i32, n: i32): void {
  const row = <usize>n << 2;
  for (let t = 0; t < T; t++) nn_add(y + <usize>t * row, bias, n);
}

/** x[i] *= f32(sqrt(dim)) (Gemma's embedding scale: hidden_size**0.5 held as a float32 tensor). */
export function nn_embed_scale(x: usize, n: i32, dim: i32): void {
  const s: f32 = <f32>Math.sqrt(<f64>dim);
  const n4 = n & ~3;
  const vs = f32x4.splat(s);
  let i = 0;
  for (; i < n4; i += 4) v128.store(x + (<usize>i << 2), f32x4.mul(v128.load(x + (<usize>i << 2)), vs));
  for (; i < n; i++) store<f32>(x + (<usize>i << 2), load<f32>(x + (<usize>i << 2)) * s);
}

/** out[i] = 1 + w[i] in f32 (Gemma's RMSNorm scales by 1 + weight). */
export function nn_one_plus(w: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(out + (<usize>i << 2), <f32>1 + load<f32>(w + (<usize>i << 2)));
}

/** a[i] += b[i] (residual add). */
export function nn_add(a: usize, b: usize, n: i32): void {
  const n4 = n & ~3;
  let i = 0;
  for (; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(a + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(a + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** out[t, :] = table[tokens[t], :] (ids are validated by the caller). */
export function nn_embed(table: usize, tokens: usize, out: usize, T: i32, dim: i32): void {
  const row = <usize>dim << 2;
  for (let t = 0; t < T; t++) {
    const id = load<i32>(tokens + (<usize>t << 2));
    memory.copy(out + <usize>t * row, table + <usize>id * row, row);
  }
}

// ---------------------------------------------------------------------------------------
// cross-entropy

/** Returns acc + sum over rows t with targets[t] >= 0 of (logsumexp(logits[t]) -
 * logits[t, targets[t]]), rows taken in order, all in f64 (exp and log from AssemblyScript's
 * Math). Pass the previous return value as acc to continue a sum over chunks of rows: the
 * result does not depend on how the rows were chunked. */
export function nn_nll(logits: usize, targets: usize, T: i32, vocab: i32, acc: f64): f64 {
  const row = <usize>vocab << 2;
  for (let t = 0; t < T; t++) {
    const tgt = load<i32>(targets + (<usize>t << 2));
    if (tgt < 0) continue;
    const lr = logits + <usize>t * row;
    let m: f32 = -Infinity;
    for (let i = 0; i < vocab; i++) {
      const l = load<f32>(lr + (<usize>i << 2));
      if (l > m) m = l;
    }
    const mm = <f64>m;
    let sum: f64 = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(<f64>load<f32>(lr + (<usize>i << 2)) - mm);
    acc += (mm + Math.log(sum)) - <f64>load<f32>(lr + (<usize>tgt << 2));
  }
  return acc;
}

/** exp in f64 with this module's Math (for reports such as perplexity = exp(nll / n)). */
export function nn_exp(x: f64): f64 {
  return Math.exp(x);
}
