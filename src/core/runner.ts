// A ParallelRunner runs batches of independent kernel calls: pieces of one operation whose split
// is fixed by the problem (a 128-row band of a trailing update, a 128-column chunk of a
// product), never by the number of threads, each the same arithmetic whichever thread runs it.
// It is synchronous, so the code that drives a factorization reads like its serial spec.
// SerialRunner runs the calls on this thread; src/parallel/threads.ts's AtomicsRunner hands
// them to workers over a shared wasm memory.
import type { Kernel } from './kernel.js';

/** The kernels a parallel region may run: each a piece of work that writes only its own part of
 * the result and never allocates (see their definitions in assembly/linalg.ts and nn.ts). */
export const PARALLEL_KERNELS = [
  'hessianUpdateBands', 'choleskyTrailing', 'lowerInverseProducts', 'lowerInverseApply',
  'nn_matmul_part', 'nn_attention_heads',
] as const;
export type ParallelKernel = typeof PARALLEL_KERNELS[number];

/** One call: `args` as the kernel takes them; with `scratchArg`, that argument is replaced by
 * the running thread's own scratch (ParallelRunner.run's `scratchBytes`). */
export interface KernelCall {
  fn: ParallelKernel;
  args: number[];
  scratchArg?: number;
}

export interface ParallelRunner {
  /** Runs every call, in any order on any thread, and returns when all are done. */
  run(calls: KernelCall[], scratchBytes?: number): void;
}

/** The calls one after another on `kernel` (this thread). */
export class SerialRunner implements ParallelRunner {
  constructor(private readonly kernel: Kernel) {}

  run(calls: KernelCall[], scratchBytes = 0): void {
    const k = this.kernel;
    k.scoped((alloc) => {
      const scratch = scratchBytes > 0 ? alloc(scratchBytes) : 0;
      for (const call of calls) callKernel(k, call, scratch);
    });
  }
}

function callKernel(k: Kernel, call: KernelCall, scratch: number): void {
  const args = call.args.slice();
  if (call.scratchArg !== undefined) args[call.scratchArg] = scratch;
  (k.exports[call.fn] as (...a: number[]) => void)(...args);
}
