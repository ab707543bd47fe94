// The factorizations GPTQ's preparation needs, driven piece by piece so a ParallelRunner can
// share each step's independent pieces among threads. Every piece is a kernel of
// assembly/linalg.ts, and the serial kernels there (hessianUpdate, cholesky, lowerInverse,
// upperCholeskyOfInverse) are the same pieces in the same order: the result is the same bits
// with any runner, which test/threads.test.ts checks against the serial kernels.
import type { Kernel } from './kernel.js';
import type { KernelCall, ParallelRunner } from './runner.js';

/** Rows per piece: assembly/linalg.ts's block (cholesky, lowerInverse, hessianUpdate bands). */
const BLOCK = 128;

/** H = H * keep + X^T X * add (assembly hessianUpdate), its 128-row bands shared by the runner. */
export function hessianUpdate(k: Kernel, runner: ParallelRunner, h: number, x: number, m: number, n: number, keep: number, add: number): void {
  const x_ = k.exports;
  const calls: KernelCall[] = [];
  for (let b = 0; b < x_.hessianUpdateBandCount(n); b++) {
    calls.push({ fn: 'hessianUpdateBands', args: [h, x, m, n, keep, add, b, b + 1, 0], scratchArg: 8 });
  }
  runner.run(calls, x_.hessianUpdateScratch(n));
}

/** In-place lower Cholesky (assembly cholesky): each step's panel on this thread, its trailing
 * update's 128-row bands shared. Returns 0 or 1 + the failing pivot. lt: 128 * n floats. */
export function cholesky(k: Kernel, runner: ParallelRunner, a: number, n: number, lt: number): number {
  const x = k.exports;
  for (let k0 = 0; k0 < n; k0 += BLOCK) {
    const failed = x.choleskyPanel(a, n, k0, lt);
    if (failed !== 0) return failed;
    const calls: KernelCall[] = [];
    for (let r0 = k0 + BLOCK; r0 < n; r0 += BLOCK) calls.push({ fn: 'choleskyTrailing', args: [a, n, k0, r0, r0 + BLOCK, lt] });
    runner.run(calls);
  }
  x.zeroUpper(a, n);
  return 0;
}

/** M = L^-1 (assembly lowerInverse): per row block, the diagonal block on this thread and the
 * two products' 128-column chunks shared. scratch: 128 * n + 128 * 128 floats. */
export function lowerInverse(k: Kernel, runner: ParallelRunner, m: number, l: number, n: number, scratch: number): void {
  const x = k.exports;
  k.u8(m, n * n * 4).fill(0);
  const chunks = (fn: 'lowerInverseProducts' | 'lowerInverseApply', i0: number): KernelCall[] => {
    const calls: KernelCall[] = [];
    for (let c0 = 0; c0 < i0; c0 += BLOCK) {
      calls.push({ fn, args: fn === 'lowerInverseProducts' ? [m, l, n, i0, c0, c0 + BLOCK, scratch] : [m, n, i0, c0, c0 + BLOCK, scratch] });
    }
    return calls;
  };
  for (let i0 = 0; i0 < n; i0 += BLOCK) {
    x.lowerInverseDiagonal(m, l, n, i0, scratch);
    runner.run(chunks('lowerInverseProducts', i0));
    x.lowerInverseNegate(m, n, i0, scratch);
    runner.run(chunks('lowerInverseApply', i0));
  }
}

/** U with U^T U = H^-1 (assembly upperCholeskyOfInverse): J H J factored, inverted, reversed.
 * h is consumed. Returns 0, or 1 + the failing pivot (in reversed order). */
export function upperCholeskyOfInverse(k: Kernel, runner: ParallelRunner, u: number, h: number, n: number, scratch: number): number {
  const x = k.exports;
  x.reverseBoth(h, n, scratch);
  const failed = cholesky(k, runner, h, n, scratch);
  if (failed !== 0) return failed;
  lowerInverse(k, runner, u, h, n, scratch);
  x.reverseBoth(u, n, scratch);
  return 0;
}
