// Dense float32 linear algebra over row-major matrices addressed by byte offsets.
//
// Determinism contract: every output element is produced by the same sequence of IEEE
// operations whatever its position in a tile, band or remainder, so results never depend on
// how rows are grouped (threads, bands) or on the engine. No fused multiply-add exists in
// WebAssembly SIMD without relaxed-SIMD, so lanes and scalar code agree exactly.

// @ts-ignore: decorator
@inline function at(base: usize, row: i32, ld: i32, col: i32): usize {
  return base + ((<usize>row * <usize>ld + <usize>col) << 2);
}

/** Sum of a[i]*b[i]: four lane accumulators, combined as (l0+l1)+(l2+l3), then the tail. */
export function dot(a: usize, b: usize, n: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    acc = f32x4.add(acc, f32x4.mul(v128.load(a + (<usize>i << 2)), v128.load(b + (<usize>i << 2))));
  }
  let s: f32 = (f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1)) + (f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3));
  for (; i < n; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

/** y[i] -= alpha * x[i]. Elementwise, so SIMD and scalar tails agree bit for bit. */
export function axpySub(y: usize, x: usize, alpha: f32, n: i32): void {
  const va = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.sub(v128.load(y + o), f32x4.mul(va, v128.load(x + o))));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(y + o) - alpha * load<f32>(x + o));
  }
}

/**
 * C[m x n] -= A[m x k] * B[k x n] (row-major, leading dimensions lda, ldb, ldc).
 * Per k slice, each C element gets acc = ((0 + a0*b0) + a1*b1) + ... in k order, then c - acc,
 * in the 4x8 register tile, the 1x8 row tail, the 1x4 and the scalar column tails alike.
 * k is cut into fixed slices of 128 (c -= acc once per slice, a property of k alone, never of
 * m, n or the tile), so an element's op sequence depends only on its row of A and column of B.
 */
export function gemmSub(c: usize, ldc: i32, a: usize, lda: i32, b: usize, ldb: i32, m: i32, n: i32, k: i32): void {
  // Columns in chunks of 64: each 128 x 64 slice of B is packed into a contiguous buffer
  // (8-column panels, k-major: 32 bytes per k step) so it stays in L1 without set conflicts
  // from a power-of-two ldb while every row tile passes over it.
  const kChunk = 128;
  const chunk = 64;
  const pack = packBuffer();
  for (let p0 = 0; p0 < k; p0 += kChunk) {
    const kb = min(kChunk, k - p0);
    const ap = a + (<usize>p0 << 2);
    const bp = at(b, p0, ldb, 0);
    for (let j0 = 0; j0 < n; j0 += chunk) {
      const j1 = min(j0 + chunk, n);
      const full = (j1 - j0) & ~7; // columns covered by 8-wide panels
      packPanels(pack, bp, ldb, j0, full, kb);
      let r = 0;
      for (; r + 4 <= m; r += 4) tileRows4(c, ldc, ap, lda, pack, r, j0, full, kb);
      for (; r < m; r++) tileRow1(c, ldc, ap, lda, pack, r, j0, full, kb);
      if (j0 + full < j1) {
        for (let rr = 0; rr < m; rr++) columnsTail(c, ldc, ap, lda, bp, ldb, rr, j0 + full, j1, kb);
      }
    }
  }
}

let packPtr: usize = 0;
// @ts-ignore: decorator
@inline function packBuffer(): usize {
  if (packPtr == 0) packPtr = heap.alloc(128 * 64 * 4);
  return packPtr;
}

/** pack[panel][p][8] = B[p, j0 + 8*panel + 0..7] for the `width` (multiple of 8) columns. */
// @ts-ignore: decorator
@inline function packPanels(pack: usize, b: usize, ldb: i32, j0: i32, width: i32, k: i32): void {
  const bStride = <usize>ldb << 2;
  for (let jp = 0; jp < width; jp += 8) {
    let src = b + (<usize>(j0 + jp) << 2);
    let dst = pack + ((<usize>jp * <usize>k) << 2);
    for (let p = 0; p < k; p++) {
      v128.store(dst, v128.load(src));
      v128.store(dst, v128.load(src, 16), 16);
      src += bStride;
      dst += 32;
    }
  }
}

// @ts-ignore: decorator
@inline function tileRows4(c: usize, ldc: i32, a: usize, lda: i32, pack: usize, r: i32, j0: i32, width: i32, k: i32): void {
  const a0 = at(a, r, lda, 0);
  const aStride = <usize>lda << 2;
  for (let jp = 0; jp < width; jp += 8) {
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
    let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
    let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
    let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
    let bp = pack + ((<usize>jp * <usize>k) << 2);
    let ap = a0;
    const aEnd = a0 + (<usize>k << 2);
    while (ap < aEnd) {
      const b0 = v128.load(bp), b1 = v128.load(bp, 16);
      let x = v128.load32_splat(ap);
      c00 = f32x4.add(c00, f32x4.mul(x, b0)); c01 = f32x4.add(c01, f32x4.mul(x, b1));
      x = v128.load32_splat(ap + aStride);
      c10 = f32x4.add(c10, f32x4.mul(x, b0)); c11 = f32x4.add(c11, f32x4.mul(x, b1));
      x = v128.load32_splat(ap + 2 * aStride);
      c20 = f32x4.add(c20, f32x4.mul(x, b0)); c21 = f32x4.add(c21, f32x4.mul(x, b1));
      x = v128.load32_splat(ap + 3 * aStride);
      c30 = f32x4.add(c30, f32x4.mul(x, b0)); c31 = f32x4.add(c31, f32x4.mul(x, b1));
      bp += 32;
      ap += 4;
    }
    let cp = at(c, r, ldc, j0 + jp);
    const cStride = <usize>ldc << 2;
    v128.store(cp, f32x4.sub(v128.load(cp), c00)); v128.store(cp, f32x4.sub(v128.load(cp, 16), c01), 16);
    cp += cStride;
    v128.store(cp, f32x4.sub(v128.load(cp), c10)); v128.store(cp, f32x4.sub(v128.load(cp, 16), c11), 16);
    cp += cStride;
    v128.store(cp, f32x4.sub(v128.load(cp), c20)); v128.store(cp, f32x4.sub(v128.load(cp, 16), c21), 16);
    cp += cStride;
    v128.store(cp, f32x4.sub(v128.load(cp), c30)); v128.store(cp, f32x4.sub(v128.load(cp, 16), c31), 16);
  }
}

// @ts-ignore: decorator
@inline function tileRow1(c: usize, ldc: i32, a: usize, lda: i32, pack: usize, r: i32, j0: i32, width: i32, k: i32): void {
  const a0 = at(a, r, lda, 0);
  for (let jp = 0; jp < width; jp += 8) {
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
    let bp = pack + ((<usize>jp * <usize>k) << 2);
    for (let p = 0; p < k; p++) {
      const x = v128.load32_splat(a0 + (<usize>p << 2));
      c00 = f32x4.add(c00, f32x4.mul(x, v128.load(bp)));
      c01 = f32x4.add(c01, f32x4.mul(x, v128.load(bp, 16)));
      bp += 32;
    }
    const cp = at(c, r, ldc, j0 + jp);
    v128.store(cp, f32x4.sub(v128.load(cp), c00)); v128.store(cp, f32x4.sub(v128.load(cp, 16), c01), 16);
  }
}

function columnsTail(c: usize, ldc: i32, a: usize, lda: i32, b: usize, ldb: i32, r: i32, j0: i32, j1: i32, k: i32): void {
  const a0 = at(a, r, lda, 0);
  const bStride = <usize>ldb << 2;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    let acc = f32x4.splat(0);
    let bp = at(b, 0, ldb, j);
    for (let p = 0; p < k; p++) {
      acc = f32x4.add(acc, f32x4.mul(v128.load32_splat(a0 + (<usize>p << 2)), v128.load(bp)));
      bp += bStride;
    }
    const cp = at(c, r, ldc, j);
    v128.store(cp, f32x4.sub(v128.load(cp), acc));
  }
  for (; j < j1; j++) {
    let acc: f32 = 0;
    let bp = at(b, 0, ldb, j);
    for (let p = 0; p < k; p++) {
      acc += load<f32>(a0 + (<usize>p << 2)) * load<f32>(bp);
      bp += bStride;
    }
    const cp = at(c, r, ldc, j);
    store<f32>(cp, load<f32>(cp) - acc);
  }
}

/** dst[k x m] = transpose(src[m x k]) with leading dimensions lds (src) and ldd (dst). */
export function transpose(dst: usize, ldd: i32, src: usize, lds: i32, m: i32, k: i32): void {
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) store<f32>(at(dst, p, ldd, i), load<f32>(at(src, i, lds, p)));
  }
}

/** Rows of H updated per pass of hessianUpdate (and the k slicing of X it shares with gemmSub). */
// @ts-ignore: decorator
@inline const UPDATE_BAND: i32 = 128;

/** Bytes of hessianUpdate's scratch for n columns: one band of X's columns transposed and one
 * band of rows of X^T X. */
export function hessianUpdateScratch(n: i32): f64 {
  return (<f64>UPDATE_BAND * <f64>UPDATE_BAND + <f64>UPDATE_BAND * <f64>n) * 4;
}

/**
/**
 * H = H * keep + X^T X * add for X [m x n]: the streaming Hessian update, one band of 128 rows
 * of H at a time, so the scratch is 128 x n floats rather than a second n x n matrix. Within a
 * band, X^T X goes through gemmSub one 128-row slice of X at a time (transposed into scratch),
 * which is exactly the k slicing gemmSub does itself: each element of X^T X is the same
 * sequence of operations as one product over all m rows, in whichever band it falls. Only the
 * lower triangle (with the diagonal blocks) is computed: element (j, i) is made of the products
 * x_pj x_pi of element (i, j), in the same order, so X^T X is exactly symmetric and the band's
 * columns above it take the same values, mirrored.
 */
export function hessianUpdate(h: usize, x: usize, m: i32, n: i32, keep: f32, add: f32, scratch: usize): void {
  const band = UPDATE_BAND;
  const xt = scratch; // [bi x rows]: the band's columns of one slice of X, transposed
  const prod = scratch + ((<usize>band * <usize>band) << 2); // -(X^T X)[band rows, :i1]
  for (let i0 = 0; i0 < n; i0 += band) {
    const bi = min(band, n - i0);
    const i1 = i0 + bi;
    for (let i = 0; i < bi; i++) memory.fill(at(prod, i, n, 0), 0, <usize>i1 << 2);
    for (let r0 = 0; r0 < m; r0 += band) {
      const rows = min(band, m - r0);
      const xs = x + ((<usize>r0 * <usize>n) << 2);
      transpose(xt, rows, xs + (<usize>i0 << 2), n, rows, bi);
      gemmSub(prod, n, xt, rows, xs, n, bi, i1, rows); // prod[:, :i1] -= X_s[:, band]^T X_s[:, :i1]
    }
    const vk = f32x4.splat(keep), va = f32x4.splat(add);
    for (let i = 0; i < bi; i++) {
      // Row i0 + i, columns [0, i1): the lower triangle and the diagonal block.
      const hr = at(h, i0 + i, n, 0), pr = at(prod, i, n, 0);
      let j = 0;
      for (; j + 4 <= i1; j += 4) {
        const o = <usize>j << 2;
        v128.store(hr + o, f32x4.sub(f32x4.mul(v128.load(hr + o), vk), f32x4.mul(v128.load(pr + o), va)));
      }
      for (; j < i1; j++) {
        const o = <usize>j << 2;
        store<f32>(hr + o, load<f32>(hr + o) * keep - load<f32>(pr + o) * add);
      }
    }
    // Rows above the band, the band's columns: the mirror of the band's lower part.
    for (let r = 0; r < i0; r++) {
      const hr = at(h, r, n, i0);
      for (let i = 0; i < bi; i++) {
        const o = <usize>i << 2;
        store<f32>(hr + o, load<f32>(hr + o) * keep - load<f32>(at(prod, i, n, r)) * add);
      }
    }
  }
}

/** Rows i .. i+3 of cholesky's panel: for each column j, a[r][j] = (a[r][j] - dot(a[r][k0:j],
 * a[j][k0:j])) / a[j][j] with dot's exact order (four lane sums over whole quads, combined
 * (l0 + l1) + (l2 + l3), then the tail in order), the four rows' dots in one loop. */
function panelRows4(a: usize, n: i32, i: i32, k0: i32, k1: i32): void {
  const stride = <usize>n << 2;
  const r0 = at(a, i, n, k0), r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride;
  for (let j = k0; j < k1; j++) {
    const len = j - k0;
    const lj = at(a, j, n, k0);
    let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
    let p = 0;
    for (; p + 4 <= len; p += 4) {
      const o = <usize>p << 2;
      const l = v128.load(lj + o);
      c0 = f32x4.add(c0, f32x4.mul(v128.load(r0 + o), l));
      c1 = f32x4.add(c1, f32x4.mul(v128.load(r1 + o), l));
      c2 = f32x4.add(c2, f32x4.mul(v128.load(r2 + o), l));
      c3 = f32x4.add(c3, f32x4.mul(v128.load(r3 + o), l));
    }
    let s0 = laneSum(c0), s1 = laneSum(c1), s2 = laneSum(c2), s3 = laneSum(c3);
    for (; p < len; p++) {
      const o = <usize>p << 2;
      const l = load<f32>(lj + o);
      s0 += load<f32>(r0 + o) * l;
      s1 += load<f32>(r1 + o) * l;
      s2 += load<f32>(r2 + o) * l;
      s3 += load<f32>(r3 + o) * l;
    }
    const d = load<f32>(at(a, j, n, j));
    const o = <usize>len << 2;
    store<f32>(r0 + o, (load<f32>(r0 + o) - s0) / d);
    store<f32>(r1 + o, (load<f32>(r1 + o) - s1) / d);
    store<f32>(r2 + o, (load<f32>(r2 + o) - s2) / d);
    store<f32>(r3 + o, (load<f32>(r3 + o) - s3) / d);
  }
}

/** (l0 + l1) + (l2 + l3): dot's lane combination. */
// @ts-ignore: decorator
@inline function laneSum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/**
 * In-place lower Cholesky A = L L^T of an n x n matrix (row-major, leading dimension n).
 * Only the lower triangle is read; the strict upper triangle is zeroed. Right-looking, blocked
 * by 128: factor the diagonal block, solve the panel, update the trailing lower part by GEMM.
 * Returns 0 on success or (1 + the index of the failing pivot) when A is not positive definite.
 * scratch: 128 * n floats.
 */
export function cholesky(a: usize, n: i32, scratch: usize): i32 {
  const bs = 128;
  for (let k0 = 0; k0 < n; k0 += bs) {
    const k1 = min(k0 + bs, n);
    const kb = k1 - k0;
    // Diagonal block, unblocked (left-looking over the block's own columns).
    for (let i = k0; i < k1; i++) {
      for (let j = k0; j <= i; j++) {
        const s = load<f32>(at(a, i, n, j)) - dot(at(a, i, n, k0), at(a, j, n, k0), j - k0);
        if (i == j) {
          if (!(s > 0) || !isFinite<f32>(s)) return i + 1;
          store<f32>(at(a, i, n, i), sqrt<f32>(s));
        } else {
          store<f32>(at(a, i, n, j), s / load<f32>(at(a, j, n, j)));
        }
      }
    }
    // Panel below: L21 = A21 L11^-T, each row by forward substitution (the dot order of the
    // diagonal block), four rows interleaved so their dependency chains overlap.
    let i = k1;
    for (; i + 4 <= n; i += 4) panelRows4(a, n, i, k0, k1);
    for (; i < n; i++) {
      for (let j = k0; j < k1; j++) {
        const s = load<f32>(at(a, i, n, j)) - dot(at(a, i, n, k0), at(a, j, n, k0), j - k0);
        store<f32>(at(a, i, n, j), s / load<f32>(at(a, j, n, j)));
      }
    }
    // Trailing update A22 -= L21 L21^T, lower part only, one 128-row band at a time.
    if (k1 < n) {
      const rest = n - k1;
      transpose(scratch, rest, at(a, k1, n, k0), n, rest, kb); // scratch = L21^T [kb x rest]
      for (let r0 = k1; r0 < n; r0 += bs) {
        const r1 = min(r0 + bs, n);
        gemmSub(at(a, r0, n, k1), n, at(a, r0, n, k0), n, scratch, rest, r1 - r0, r1 - k1, kb);
      }
    }
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) store<f32>(at(a, i, n, j), 0);
  }
  return 0;
}

/**
 * M = L^-1 for lower-triangular L (n x n, leading dimension n), written to m (distinct from l).
 * Row blocks of 128: M[I, I] by substitution, then M[I, :i1] = -M[I,I] * (L[I, :i1] * M[:i1, :i1]),
 * where the GEMM for column chunk [j0, j0+128) starts at k = j0 (M is zero above its diagonal).
 * scratch: 128 * n + 128 * 128 floats.
 */
export function lowerInverse(m: usize, l: usize, n: i32, scratch: usize): void {
  const bs = 128;
  memory.fill(m, 0, (<usize>n * <usize>n) << 2);
  for (let i0 = 0; i0 < n; i0 += bs) {
    const i1 = min(i0 + bs, n);
    const ib = i1 - i0;
    // Diagonal block inverse by forward substitution, row by row.
    for (let i = i0; i < i1; i++) {
      const dinv: f32 = 1 / load<f32>(at(l, i, n, i));
      for (let j = i0; j < i; j++) {
        let s: f32 = 0;
        for (let p = j; p < i; p++) s += load<f32>(at(l, i, n, p)) * load<f32>(at(m, p, n, j));
        store<f32>(at(m, i, n, j), -s * dinv);
      }
      store<f32>(at(m, i, n, i), dinv);
    }
    if (i0 == 0) continue;
    // T = -(L[I, :i0] * M[:i0, :i0]) into scratch [ib x i0].
    memory.fill(scratch, 0, (<usize>ib * <usize>i0) << 2);
    for (let j0 = 0; j0 < i0; j0 += bs) {
      const j1 = min(j0 + bs, i0);
      gemmSub(at(scratch, 0, i0, j0), i0, at(l, i0, n, j0), n, at(m, j0, n, j0), n, ib, j1 - j0, i0 - j0);
    }
    // M[I, :i0] = M[I, I] * T: from zero, minus (-M[I, I]) T by gemmSub (k = ib <= 128, one
    // slice), so each element is the negated ordered sum of -M_ip T_p: the bits of the ordered
    // sum of M_ip T_p. -M[I, I] (zero above its diagonal) goes to the 128 x 128 after T.
    const neg = scratch + ((<usize>bs * <usize>n) << 2);
    for (let i = 0; i < ib; i++) {
      for (let p = 0; p < ib; p++) store<f32>(at(neg, i, bs, p), p <= i ? -load<f32>(at(m, i0 + i, n, i0 + p)) : 0);
    }
    gemmSub(at(m, i0, n, 0), n, neg, bs, scratch, i0, ib, i0, ib);
  }
}

/** Bytes of upperCholeskyOfInverse's scratch for n x n. */
export function upperCholeskyOfInverseScratch(n: i32): f64 {
  // cholesky's and lowerInverse's panels (128 x n) and lowerInverse's 128 x 128 block.
  return (128 * <f64>n + 128 * 128) * 4;
}

/**
 * U = upper Cholesky factor of H^-1 (U^T U = H^-1), as GPTQ needs it, in two O(n^3/3) steps
 * instead of the reference's three: with J the reversal, chol(J H J) = L gives H = R R^T for
 * the upper R = J L J, so H^-1 = (R^-1)^T R^-1 and U = R^-1 = J L^-1 J.
 * h is consumed (reversed and factored in place: no second n x n copy); u receives U.
 * scratch: upperCholeskyOfInverseScratch(n) bytes. Returns 0, or 1 + the failing pivot (in
 * reversed order) if H is not positive definite.
 */
export function upperCholeskyOfInverse(u: usize, h: usize, n: i32, scratch: usize): i32 {
  reverseBoth(h, n, scratch); // J H J; cholesky reads its lower triangle
  const failed = cholesky(h, n, scratch);
  if (failed != 0) return failed;
  lowerInverse(u, h, n, scratch); // u = L^-1 (lower), reversed next
  reverseBoth(u, n, scratch);
  return 0;
}

/** dst[j] = src[n - 1 - j] for n floats (distinct buffers). */
function reverseCopy(dst: usize, src: usize, n: i32): void {
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const v = v128.load(src + (<usize>(n - 4 - j) << 2));
    v128.store(dst + (<usize>j << 2), v128.shuffle<f32>(v, v, 3, 2, 1, 0));
  }
  for (; j < n; j++) store<f32>(dst + (<usize>j << 2), load<f32>(src + (<usize>(n - 1 - j) << 2)));
}

/** A := J A J in place (reverse rows and columns): rows i and n-1-i swapped, each reversed,
 * through one row of scratch. */
function reverseBoth(a: usize, n: i32, scratch: usize): void {
  const bytes = <usize>n << 2;
  for (let i = 0, k = n - 1; i <= k; i++, k--) {
    const ri = at(a, i, n, 0), rk = at(a, k, n, 0);
    reverseCopy(scratch, ri, n); // row i, reversed
    if (i < k) reverseCopy(ri, rk, n);
    memory.copy(rk, scratch, bytes);
  }
}

/** h := (h + h^T) / 2, so row i of H is exactly its column i (CD reads columns as rows). */
export function symmetrize(h: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = at(h, i, n, j), b = at(h, j, n, i);
      const v: f32 = (load<f32>(a) + load<f32>(b)) * 0.5;
      store<f32>(a, v);
      store<f32>(b, v);
    }
  }
}

/** GPTQ damping: h_ii += percdamp * mean(diag h); returns the amount added. */
export function addDamping(h: usize, n: i32, percdamp: f64): f32 {
  let sum: f64 = 0;
  for (let i = 0; i < n; i++) sum += <f64>load<f32>(at(h, i, n, i));
  const damp = <f32>(percdamp * (sum / <f64>n));
  for (let i = 0; i < n; i++) {
    const p = at(h, i, n, i);
    store<f32>(p, load<f32>(p) + damp);
  }
  return damp;
}
