// Worker entry (build/worker.js): one wasm instance per worker, one prepared layer at a time,
// row bands solved on request. With shared memory, a second instance (cdquant-shared.wasm) over
// the pool's shared memory reads the layer's arrays in place and solves into band buffers the
// pool allocated for this worker; it never allocates. Spoken to over comlink by src/pool.ts. The same bundle runs as
// a Node worker_threads worker and as a module Web Worker (browsers, Deno, Bun).
import { expose, transfer } from 'comlink';
import { nodeEndpoint } from './node-endpoint.js';
import { CdquantError, NonFiniteError, KernelError } from '../core/errors.js';
import { Kernel, sharedWasmModule } from '../core/kernel.js';
import { LayerSession, type BandBuffers, type SessionLayout } from '../core/session.js';
import type { BandResult, PreparedLayer, WeightMatrix } from '../core/types.js';
import { nodeModule } from '../core/runtime.js';
import { serveRegion } from './threads.js';
import { checkGgufBandSpec, solveGgufBand, type GgufBandResult, type GgufBandSpec } from './gguf-band.js';

/** Test-only fault injection (see WorkerPool's `testFault`). */
export type FaultKind = 'throw' | 'exit' | 'uncaught' | 'hang';

/** What a call returns: errors travel as data (code + message) and are rebuilt as the same
 * CdquantError subclass on the caller's side. */
export type Reply<T> = { ok: true; value: T } | { ok: false; code: string; name: string; message: string };

export interface WorkerApi {
  /** Keeps the caller's compiled module (where the runtime can post one: its optimized code is
   * shared, no compile or tier-up per worker; else the inlined bytes are compiled when first
   * needed) for this worker's own instance, made at the first `load`; with a lock name, holds
   * that Web Lock for the worker's lifetime so the caller can notice the worker dying where the
   * runtime fires no event for it. */
  init(lockName: string | null, module: WebAssembly.Module | null): Promise<Reply<null>>;
  /** Makes `prepared` (and, with shared memory, the whole weight matrix) the current layer. */
  load(layer: number, prepared: PreparedLayer, weights: WeightMatrix | null): Promise<Reply<null>>;
  /** Instantiates cdquant-shared.wasm (`module`, or the inlined copy) over the pool's shared
   * `memory`, replacing any earlier one. */
  share(module: WebAssembly.Module | null, memory: WebAssembly.Memory): Promise<Reply<null>>;
  /** Makes the layer whose arrays sit in the shared memory at `layout` the current one, solved
   * into `band` (this worker's buffers in that memory) from `weights` (in a SharedArrayBuffer). */
  attach(layer: number, layout: SessionLayout, band: BandBuffers, weights: WeightMatrix): Reply<null>;
  /** Serves the owner's parallel region whose control block is at `control` in the shared
   * memory (src/parallel/threads.ts), as worker number `slot`, until the owner closes it;
   * blocks this worker meanwhile. Replies with the number of calls it ran. */
  serve(control: number, slot: number, fault: FaultKind | null): Reply<number>;
  /** Solves rows [r0, r1): from the shared weights, or from `band` (rows r0..r1 only). */
  solve(layer: number, r0: number, r1: number, band: Float32Array | null, fault: FaultKind | null, baseline: boolean): Promise<Reply<BandResult>>;
  /** The same for a GGUF band (gguf-band.ts): rows [r0, r1) quantized as `spec` says. */
  solveGguf(layer: number, r0: number, r1: number, band: Float32Array | null, spec: GgufBandSpec, fault: FaultKind | null): Promise<Reply<GgufBandResult>>;
}

/** This worker's own wasm instance (the copying path), made on first use: a worker of a
 * shared-memory pool never needs one, and each reserves address space (a browser tab runs out
 * after a few dozen). */
let kernel: Kernel | null = null;
let ownModule: WebAssembly.Module | null = null;
let sharedKernel: Kernel | null = null;
let session: LayerSession | null = null;
let current = -1;
let sharedWeights: WeightMatrix | null = null;
const g = globalThis as any;

function failure(e: unknown): Reply<never> {
  if (e instanceof CdquantError) return { ok: false, code: e.code, name: e.name, message: e.message };
  if (e instanceof WebAssembly.RuntimeError) return { ok: false, code: 'KERNEL_FAILED', name: 'KernelError', message: `wasm trap: ${e.message}` };
  const err = e as Error;
  return { ok: false, code: 'WORKER_FAILED', name: 'WorkerError', message: `${err?.name ?? 'Error'}: ${err?.message ?? String(e)}` };
}

function injectFault(kind: FaultKind, r0: number, r1: number): Promise<never> | void {
  if (kind === 'throw') throw new NonFiniteError(`injected fault: band [${r0}, ${r1}) has a non-finite value`);
  if (kind === 'hang') {
    // A solve that never ends (a stuck kernel): this thread answers nothing until terminated.
    for (;;) {
      // busy
    }
  }
  if (kind === 'exit') {
    // Process-level death of this worker: no reply, no clean-up.
    if (typeof g.Deno?.exit === 'function') g.Deno.exit(7);
    if (typeof g.process?.exit === 'function' && typeof g.importScripts !== 'function') g.process.exit(7);
    g.close?.();
    return new Promise<never>(() => {});
  }
  setTimeout(() => {
    throw new Error('injected uncaught error in worker');
  }, 0);
  return new Promise<never>(() => {});
}

const api: WorkerApi = {
  async init(lockName, module) {
    try {
      ownModule = module;
      if (lockName && g.navigator?.locks) {
        await new Promise<void>((held) => {
          g.navigator.locks.request(lockName, () => {
            held();
            return new Promise(() => {}); // released only when this worker ends
          });
        });
      }
      return { ok: true, value: null };
    } catch (e) {
      return failure(e);
    }
  },

  async load(layer, prepared, weights) {
    try {
      kernel ??= await Kernel.create(ownModule ?? undefined);
      session?.free();
      session = null;
      current = -1;
      session = LayerSession.fromPrepared(kernel, prepared);
      sharedWeights = weights;
      current = layer;
      return { ok: true, value: null };
    } catch (e) {
      return failure(e);
    }
  },

  async share(module, memory) {
    try {
      session?.free();
      session = null;
      current = -1;
      sharedKernel = null;
      sharedKernel = await Kernel.attachShared(module ?? (await sharedWasmModule()), memory);
      return { ok: true, value: null };
    } catch (e) {
      return failure(e);
    }
  },

  attach(layer, layout, band, weights) {
    try {
      if (!sharedKernel) throw new KernelError('worker has no shared memory');
      session?.free();
      session = null;
      current = -1;
      session = LayerSession.attach(sharedKernel, layout, band);
      sharedWeights = weights;
      current = layer;
      return { ok: true, value: null };
    } catch (e) {
      return failure(e);
    }
  },

  serve(control, slot, fault) {
    try {
      if (!sharedKernel) throw new KernelError('worker has no shared memory');
      // 'uncaught' has no meaning while this thread is blocked serving: 'exit' stands for it.
      const inject = fault && (() => void injectFault(fault === 'uncaught' ? 'exit' : fault, -1, -1));
      return { ok: true, value: serveRegion(sharedKernel, control, slot, inject ?? undefined) };
    } catch (e) {
      return failure(e);
    }
  },

  async solve(layer, r0, r1, band, fault, baseline) {
    try {
      if (!session || layer !== current) throw new KernelError(`worker has layer ${current} loaded, not ${layer}`);
      if (fault) await injectFault(fault, r0, r1);
      let result: BandResult;
      if (band) {
        const cols = band.length / (r1 - r0);
        result = session.solveBand({ data: band, rows: r1 - r0, cols }, 0, r1 - r0, baseline);
        result.r0 = r0;
        result.r1 = r1;
      } else {
        if (!sharedWeights) throw new KernelError('no shared weights loaded');
        result = session.solveBand(sharedWeights, r0, r1, baseline);
      }
      const buffers = [result.codes, result.scales, result.zeros, result.rowLoss, result.rtnRowLoss, result.moves]
        .filter((a) => a !== null)
        .map((a) => a!.buffer as ArrayBuffer);
      return transfer({ ok: true, value: result }, buffers);
    } catch (e) {
      return failure(e);
    }
  },

  async solveGguf(layer, r0, r1, band, spec, fault) {
    try {
      if (!session || layer !== current) throw new KernelError(`worker has layer ${current} loaded, not ${layer}`);
      if (fault) await injectFault(fault, r0, r1);
      let result: GgufBandResult;
      if (band) {
        const cols = band.length / (r1 - r0);
        result = solveGgufBand(session, { data: band, rows: r1 - r0, cols }, 0, r1 - r0, checkGgufBandSpec(spec, cols));
        result.r0 = r0;
        result.r1 = r1;
      } else {
        if (!sharedWeights) throw new KernelError('no shared weights loaded');
        result = solveGgufBand(session, sharedWeights, r0, r1, checkGgufBandSpec(spec, sharedWeights.cols));
      }
      const buffers = [result.bytes, result.rowLoss, result.refRowLoss, result.moves]
        .filter((a) => a !== null)
        .map((a) => a!.buffer as ArrayBuffer);
      // The 'ref' solver's two loss arrays are one: transfer its buffer once.
      return transfer({ ok: true, value: result }, [...new Set(buffers)]);
    } catch (e) {
      return failure(e);
    }
  },
};

if (typeof g.self === 'object' && g.self !== null && typeof g.self.postMessage === 'function') {
  // Module Web Worker: browsers, Deno, Bun.
  expose(api, g.self);
} else {
  // Node worker_threads.
  const { parentPort } = await nodeModule<typeof import('node:worker_threads')>('node:worker_threads');
  if (!parentPort) throw new Error('cdquant worker.js must run as a worker');
  expose(api, nodeEndpoint(parentPort as any));
}
