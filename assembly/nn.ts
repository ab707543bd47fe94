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
// * Softmax denominators and cross-entropy are accumulated in f64 with AssemblyScript's own
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
 * overlap X or W. Tiled so a block of tokens and a block of weight rows share the cache. */
export function nn_matmul(x: usize, w: usize, y: usize, T: i32, nIn: i32, nOut: i32): void {
  const rowX = <usize>nIn << 2;
  const rowY = <usize>nOut << 2;
  const n4 = nIn & ~3;
  const rowBytes = max<i32>(nIn << 2, 16);
  const tileT = max<i32>(4, ((256 * 1024) / rowBytes) & ~3);
  const tileO = max<i32>(2, ((128 * 1024) / rowBytes) & ~1);
  for (let t0 = 0; t0 < T; t0 += tileT) {
    const t1 = min<i32>(t0 + tileT, T);
    for (let o0 = 0; o0 < nOut; o0 += tileO) {
      const o1 = min<i32>(o0 + tileO, nOut);
      let t = t0;
      for (; t + 4 <= t1; t += 4) {
        const xt = x + <usize>t * rowX;
        const yt = y + <usize>t * rowY;
        let o = o0;
        for (; o + 2 <= o1; o += 2) micro4x2(xt, w + <usize>o * rowX, yt + (<usize>o << 2), rowX, rowY, nIn, n4);
        for (; o < o1; o++) micro4x1(xt, w + <usize>o * rowX, yt + (<usize>o << 2), rowX, rowY, nIn, n4);
      }
      for (; t < t1; t++) {
        const xt = x + <usize>t * rowX;
        const yt = y + <usize>t * rowY;
        for (let o = o0; o < o1; o++) store<f32>(yt + (<usize>o << 2), dot(xt, w + <usize>o * rowX, nIn));
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
  for (let i = 0; i < half; i++) {
    const freq = Math.pow(theta, -<f64>(2 * i) / <f64>head);
    for (let p = 0; p < nPos; p++) {
      const ang = <f64>p * freq;
      const at = tab + ((<usize>p * <usize>half + <usize>i) << 3);
      store<f32>(at, <f32>Math.cos(ang));
      store<f32>(at + 4, <f32>Math.sin(ang));
    }
  }
}

/** Rotates x [T, nHeads * head] in place; row t uses tab row t (pass tab + pos0 * head * 4
 * for a window starting at pos0). halfSplit = 0: pairs (2i, 2i+1) (llama2.c / Meta);
 * halfSplit = 1: pairs (i, i + head/2) (Hugging Face `rotate_half`). Both rotate a pair
 * (a, b) to (a c - b s, a s + b c). */
export function nn_rope(x: usize, tab: usize, T: i32, nHeads: i32, head: i32, halfSplit: i32): void {
  const half = head >> 1;
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
// Causal grouped-query attention over one sequence.
// q [T, nHeads*head], k, v [T, nKv*head] (RoPE already applied), out [T, nHeads*head].
// Query head h reads KV head h / (nHeads / nKv). Scores (q . k) * (1/sqrt(head)); softmax
// with max subtraction: e_j = expf(s_j - max), sum in f64, p_j = e_j * f32(1/sum);
// out = sum_j p_j v_j accumulated in order j = 0..t.

export function nn_attention(q: usize, k: usize, v: usize, out: usize, T: i32, nHeads: i32, nKv: i32, head: i32): void {
  const scores = heap.alloc(<usize>max<i32>(T, 4) << 2);
  const group = nHeads / nKv;
  const scale: f32 = <f32>1.0 / Mathf.sqrt(<f32>head);
  const qRow = <usize>(nHeads * head) << 2;
  const kRow = <usize>(nKv * head) << 2;
  const headBytes = <usize>head << 2;
  const h4 = head & ~3;
  for (let h = 0; h < nHeads; h++) {
    const kvOff = <usize>(h / group) * headBytes;
    const qOff = <usize>h * headBytes;
    for (let t = 0; t < T; t++) {
      const qp = q + <usize>t * qRow + qOff;
      let m: f32 = -Infinity;
      for (let j = 0; j <= t; j++) {
        const s = dot(qp, k + <usize>j * kRow + kvOff, head) * scale;
        store<f32>(scores + (<usize>j << 2), s);
        if (s > m) m = s;
      }
      let sum: f64 = 0;
      for (let j = 0; j <= t; j++) {
        const at = scores + (<usize>j << 2);
        const e = Mathf.exp(load<f32>(at) - m);
        store<f32>(at, e);
        sum += <f64>e;
      }
      const inv = <f32>(1.0 / sum);
      const op = out + <usize>t * qRow + qOff;
      memory.fill(op, 0, headBytes);
      for (let j = 0; j <= t; j++) {
        const p = load<f32>(scores + (<usize>j << 2)) * inv;
        const vp = v + <usize>j * kRow + kvOff;
        const pv = f32x4.splat(p);
        let d = 0;
        for (; d < h4; d += 4) {
          const o = <usize>d << 2;
          v128.store(op + o, f32x4.add(v128.load(op + o), f32x4.mul(pv, v128.load(vp + o))));
        }
        for (; d < head; d++) {
          const o = <usize>d << 2;
          store<f32>(op + o, load<f32>(op + o) + p * load<f32>(vp + o));
        }
      }
    }
  }
  heap.free(scores);
}

// ---------------------------------------------------------------------------------------
// elementwise

/** out[i] = silu(g[i]) * u[i], silu(x) = x / (1 + expf(-x)). out may equal g or u. */
export function nn_swiglu(g: usize, u: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const a = load<f32>(g + o);
    store<f32>(out + o, (a / (<f32>1.0 + Mathf.exp(-a))) * load<f32>(u + o));
  }
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
