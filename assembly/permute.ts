// Permutations of matrices in place in the kernel: data movement only, so that large H-side
// matrices need no round trip through JavaScript.

/** dst = P src P^T for n x n matrices: dst[i, j] = src[perm[i], perm[j]]. */
export function permuteSquare(dst: usize, src: usize, n: i32, perm: usize): void {
  for (let i = 0; i < n; i++) {
    const from = src + ((<usize>load<i32>(perm + (<usize>i << 2)) * <usize>n) << 2);
    const to = dst + ((<usize>i * <usize>n) << 2);
    for (let j = 0; j < n; j++) {
      store<f32>(to + (<usize>j << 2), load<f32>(from + (<usize>load<i32>(perm + (<usize>j << 2)) << 2)));
    }
  }
}
