// Loads build/cdquant.wasm in any runtime and gives typed access to its memory.
// All numerics that shape a result run inside this module; TypeScript only moves bytes.
import { instantiate } from '@assemblyscript/loader';
import { sharedWasmBase64, wasmBase64 } from 'virtual:cdquant-wasm';
import { KernelError } from './errors.js';

/** gridParams' grid searches (assembly/clip.ts GRID_*): min-max, the MSE clip search, OWC (the
 * fast per-channel search when a row is one wide group), OWC with the exact per-channel search.
 * Kernel.create checks them against the module's own constants. */
export const GRID_SEARCH = { minmax: 0, mse: 1, owc: 2, owcExact: 3 } as const;

/** wasm32 addresses 4 GiB; a larger allocation is refused before it can wrap around. */
export const MAX_WASM_BYTES = 2 ** 32 - 2 ** 16;

type Ptr = number;
/** Sizes from the kernels' *Scratch functions are f64 byte counts (no u32 wrap-around). */
type Bytes = number;

/** The exports of cdquant.wasm: plain functions over byte offsets (Ptr) and sizes. Each
 * kernel's contract (shapes, scratch) is documented at its definition in assembly/. */
export interface KernelExports {
  memory: WebAssembly.Memory;
  alloc(bytes: number): Ptr;
  free(ptr: Ptr): void;
  /** gemmSub's pack buffer for this instance (PACK_BUFFER_BYTES): shared-memory workers only. */
  setPackBuffer(ptr: Ptr): void;
  PACK_BUFFER_BYTES: WebAssembly.Global;
  GRID_MINMAX: WebAssembly.Global;
  GRID_MSE: WebAssembly.Global;
  GRID_OWC: WebAssembly.Global;
  GRID_OWC_EXACT: WebAssembly.Global;
  // linalg.ts
  symmetrize(h: Ptr, n: number): void;
  addDamping(h: Ptr, n: number, percdamp: number): number;
  /** Consumes h. */
  upperCholeskyOfInverse(u: Ptr, h: Ptr, n: number, scratch: Ptr): number;
  upperCholeskyOfInverseScratch(n: number): Bytes;
  hessianUpdate(h: Ptr, x: Ptr, m: number, n: number, keep: number, add: number, scratch: Ptr): void;
  hessianUpdateScratch(n: number): Bytes;
  gemmSub(c: Ptr, ldc: number, a: Ptr, lda: number, b: Ptr, ldb: number, m: number, n: number, k: number): void;
  cholesky(a: Ptr, n: number, scratch: Ptr): number;
  // The pieces of hessianUpdate, cholesky and lowerInverse that threads share (src/core/linalg.ts).
  hessianUpdateBands(h: Ptr, x: Ptr, m: number, n: number, keep: number, add: number, b0: number, b1: number, scratch: Ptr): void;
  hessianUpdateBandCount(n: number): number;
  choleskyPanel(a: Ptr, n: number, k0: number, lt: Ptr): number;
  choleskyTrailing(a: Ptr, n: number, k0: number, r0: number, r1: number, lt: Ptr): void;
  zeroUpper(a: Ptr, n: number): void;
  lowerInverseDiagonal(m: Ptr, l: Ptr, n: number, i0: number, scratch: Ptr): void;
  lowerInverseProducts(m: Ptr, l: Ptr, n: number, i0: number, c0: number, c1: number, scratch: Ptr): void;
  lowerInverseNegate(m: Ptr, n: number, i0: number, scratch: Ptr): void;
  lowerInverseApply(m: Ptr, n: number, i0: number, c0: number, c1: number, scratch: Ptr): void;
  reverseBoth(a: Ptr, n: number, scratch: Ptr): void;
  lowerInverse(m: Ptr, l: Ptr, n: number, scratch: Ptr): void;
  dot(a: Ptr, b: Ptr, n: number): number;
  // permute.ts
  permuteSquare(dst: Ptr, src: Ptr, n: number, perm: Ptr): void;
  // grid.ts, clip.ts, owc.ts
  gridParams(w: Ptr, rows: number, cols: number, groupWidth: number, maxq: number, sym: boolean, search: number,
    h: Ptr, scales: Ptr, zeros: Ptr, scratch: Ptr): void;
  gridParamsScratch(rows: number, cols: number, groupWidth: number, search: number): Bytes;
  quantizeWith(w: Ptr, rows: number, cols: number, maxq: number, scales: Ptr, zeros: Ptr, groups: number, colGroup: Ptr,
    codes: Ptr, q: Ptr): void;
  dequantizeCodes(codes: Ptr, rows: number, cols: number, scales: Ptr, zeros: Ptr, groups: number, gIdx: Ptr, out: Ptr): void;
  /** Grids built from now on round their scales to fp16 (1) or keep f32 (0): see assembly/grid.ts. */
  setHalfScales(on: number): void;
  roundScaleToHalf(x: number): number;
  // loss.ts
  rowLosses(w: Ptr, q: Ptr, rows: number, cols: number, h: Ptr, rowLoss: Ptr, scratch: Ptr): void;
  rowLossesScratch(rows: number, cols: number): Bytes;
  quadForms(e: Ptr, rows: number, n: number, lde: number, h: Ptr, ldh: number, out: Ptr, scratch: Ptr): void;
  quadFormsScratch(rows: number): Bytes;
  gradientBand(g: Ptr, w: Ptr, q: Ptr, rows: number, cols: number, h: Ptr, scratch: Ptr): void;
  gradientScratch(rows: number, cols: number): Bytes;
  // gptq.ts
  gptqBand(w: Ptr, rows: number, cols: number, u: Ptr, maxq: number, sym: boolean, search: number, groupWidth: number,
    dynamic: boolean, blockSize: number, groups: number, colGroup: Ptr, scales: Ptr, zeros: Ptr, codes: Ptr, q: Ptr, scratch: Ptr): void;
  gptqBandScratch(rows: number, blockSize: number): Bytes;
  // cd.ts, bcd.ts, refit.ts
  /** offsets: per-(row, group) grid offsets, or 0 for the integer grids. */
  cdBand(q: Ptr, codes: Ptr, g: Ptr, rows: number, cols: number, h: Ptr, hdiag: Ptr, maxq: number, groups: number,
    colGroup: Ptr, scales: Ptr, zeros: Ptr, offsets: Ptr, iters: number, moves: Ptr, scratch: Ptr): void;
  cdBandScratch(cols: number): Bytes;
  bcdPrepare(h: Ptr, cols: number, k: number, order: Ptr, hbb: Ptr, hinv: Ptr, scratch: Ptr): void;
  bcdPrepareScratch(k: number): Bytes;
  bcdBand(q: Ptr, codes: Ptr, g: Ptr, rows: number, cols: number, h: Ptr, k: number, order: Ptr, hbb: Ptr, hinv: Ptr,
    maxq: number, groups: number, colGroup: Ptr, scales: Ptr, zeros: Ptr, iters: number, moves: Ptr, scratch: Ptr): void;
  bcdBandScratch(cols: number, k: number): Bytes;
  refitBand(w: Ptr, q: Ptr, codes: Ptr, g: Ptr, rows: number, cols: number, h: Ptr, maxq: number, sym: boolean,
    groupWidth: number, groups: number, scales: Ptr, zeros: Ptr, accepted: Ptr, scratch: Ptr): void;
  refitBandScratch(rows: number, cols: number): Bytes;
  // check.ts
  psdCheck(h: Ptr, n: number, damping: number, work: Ptr): number;
  psdCheckScratch(n: number): Bytes;
  psdScaled(h: Ptr, n: number, damping: number, work: Ptr): number;
  lossTolerance(w: Ptr, q: Ptr, rows: number, cols: number, hdiag: Ptr, damping: number, out: Ptr): void;
  hessianFlawed(h: Ptr, n: number, tolerance: number, deadDiagonal: number): number;
  nonFiniteIndex(p: Ptr, count: number): number;
  columnAbsSums(h: Ptr, n: number, out: Ptr): void;
  // gguf/ (GGML block types; src/formats/gguf-blocks.ts documents the arrays)
  ggufBlockElems(type: number): number;
  ggufBlockBytes(type: number): number;
  ggufGroupSize(type: number): number;
  ggufMaxq(type: number): number;
  ggufZero(type: number): number;
  ggufQuantize(type: number, src: Ptr, rows: number, cols: number, imatrix: Ptr, dst: Ptr): void;
  ggufDequantize(type: number, src: Ptr, rows: number, cols: number, dst: Ptr): void;
  ggufDecodeGrid(type: number, src: Ptr, rows: number, cols: number, codes: Ptr, halves: Ptr, subScales: Ptr, subMins: Ptr, ga: Ptr, gb: Ptr): void;
  ggufEncodeGrid(type: number, codes: Ptr, halves: Ptr, subScales: Ptr, subMins: Ptr, rows: number, cols: number, dst: Ptr): void;
  ggufGroupAffine(type: number, halves: Ptr, subScales: Ptr, subMins: Ptr, rows: number, cols: number, ga: Ptr, gb: Ptr): void;
  ggufGridValues(type: number, codes: Ptr, ga: Ptr, gb: Ptr, rows: number, cols: number, out: Ptr): void;
  ggufRtnCodes(type: number, x: Ptr, ga: Ptr, gb: Ptr, rows: number, cols: number, codes: Ptr): void;
  ggufGridFromRanges(type: number, lo: Ptr, hi: Ptr, rows: number, cols: number, halves: Ptr, subScales: Ptr, subMins: Ptr): void;
  ggufCandidateGrid(type: number, x: Ptr, p: Ptr, rows: number, cols: number, halves: Ptr, subScales: Ptr, subMins: Ptr): void;
  ggufOwc(type: number, w: Ptr, rows: number, cols: number, h: Ptr, halves: Ptr, subScales: Ptr, subMins: Ptr, scratch: Ptr): void;
  ggufOwcScratch(): Bytes;
  ggufKeepBetter(type: number, w: Ptr, rows: number, cols: number, h: Ptr, halves: Ptr, subScales: Ptr, subMins: Ptr,
    bHalves: Ptr, bSubScales: Ptr, bSubMins: Ptr, scratch: Ptr): void;
  // nn.ts (the forward pass; typed where it is driven, src/model/forward.ts)
  [nn: `nn_${string}`]: (...args: number[]) => number | void;
}

let compiled: Promise<WebAssembly.Module> | undefined;

/** Where the wasm comes from. Edge runtimes that forbid compiling bytes (workerd) pass the
 * WebAssembly.Module they imported; everything else can use the inlined copy. */
export function setWasmSource(source: WebAssembly.Module | BufferSource): void {
  compiled = Promise.resolve(source instanceof WebAssembly.Module ? source : WebAssembly.compile(source));
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The compiled module, compiled once per realm and shared by every Kernel in it. */
export function wasmModule(): Promise<WebAssembly.Module> {
  compiled ??= WebAssembly.compile(decodeBase64(wasmBase64));
  return compiled;
}

let compiledShared: Promise<WebAssembly.Module> | undefined;
/** build/cdquant-shared.wasm: the same kernels over an imported shared memory. */
export function sharedWasmModule(): Promise<WebAssembly.Module> {
  compiledShared ??= WebAssembly.compile(decodeBase64(sharedWasmBase64));
  return compiledShared;
}

/** Pages of the shared memory: what cdquant-shared.wasm's import declares (asconfig.json's
 * initialMemory and maximumMemory); a shared memory must state its maximum up front. */
const SHARED_PAGES = { initial: 16, maximum: 65536 } as const;

/** Whether this realm can make a shared wasm memory and post it to workers: SharedArrayBuffer
 * (cross-origin isolated pages only, in browsers) and shared WebAssembly.Memory. */
export function sharedKernelSupported(): boolean {
  const g = globalThis as any;
  if (typeof g.SharedArrayBuffer !== 'function' || g.crossOriginIsolated === false) return false;
  try {
    return new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true } as WebAssembly.MemoryDescriptor).buffer instanceof g.SharedArrayBuffer;
  } catch {
    return false;
  }
}

export class Kernel {
  readonly exports: KernelExports;
  /** Whether the memory is shared with worker instances (build/cdquant-shared.wasm). */
  readonly shared: boolean;
  /** False for a worker's instance over another thread's shared memory: only the owner's
   * allocator may touch the heap, so the worker runs kernels on pointers it is given. */
  readonly allocates: boolean;
  private constructor(exports: KernelExports, shared: boolean, allocates: boolean) {
    this.exports = exports;
    this.shared = shared;
    this.allocates = allocates;
  }

  /** A kernel over a new shared memory, owned (allocated in) by this thread. */
  static async createShared(module?: WebAssembly.Module): Promise<Kernel> {
    const memory = new WebAssembly.Memory({ ...SHARED_PAGES, shared: true } as WebAssembly.MemoryDescriptor);
    return Kernel.instantiate(module ?? (await sharedWasmModule()), memory, true);
  }

  /** A worker's instance of cdquant-shared.wasm over the owner's shared `memory`. It never
   * allocates (alloc throws): the owner gives it every buffer, gemmSub's pack buffer included. */
  static async attachShared(module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<Kernel> {
    return Kernel.instantiate(module, memory, false);
  }

  static async create(module?: WebAssembly.Module): Promise<Kernel> {
    return Kernel.instantiate(module ?? (await wasmModule()), undefined, true);
  }

  private static async instantiate(module: WebAssembly.Module, imported: WebAssembly.Memory | undefined, allocates: boolean): Promise<Kernel> {
    let memory: WebAssembly.Memory | undefined = imported;
    const env: Record<string, unknown> = {
      abort(msg: number, file: number, line: number, column: number) {
        throw new KernelError(`wasm abort at ${readString(memory, file)}:${line}:${column}: ${readString(memory, msg)}`);
      },
    };
    if (imported) env.memory = imported;
    const result = await instantiate<Record<string, unknown>>(module, { env });
    const exports = { ...(result.exports as unknown as KernelExports) };
    if (imported) exports.memory = imported;
    memory = exports.memory;
    const constants = { minmax: exports.GRID_MINMAX, mse: exports.GRID_MSE, owc: exports.GRID_OWC, owcExact: exports.GRID_OWC_EXACT };
    for (const [name, global] of Object.entries(constants)) {
      if (global?.value !== GRID_SEARCH[name as keyof typeof GRID_SEARCH]) throw new KernelError(`cdquant.wasm's grid search ${name} is ${global?.value}, this build expects ${GRID_SEARCH[name as keyof typeof GRID_SEARCH]}`);
    }
    return new Kernel(exports, imported !== undefined, allocates);
  }

  /** Allocates `bytes` (a JS number: sizes are computed in double precision, never in u32). */
  alloc(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new KernelError(`cannot allocate ${bytes} bytes`);
    if (!this.allocates) throw new KernelError('a worker\'s instance over shared memory does not allocate: the owning thread gives it its buffers');
    if (bytes > MAX_WASM_BYTES) throw new KernelError(`allocation of ${bytes} bytes exceeds wasm32's 4 GiB address space`);
    let ptr = 0;
    try {
      ptr = this.exports.alloc(Math.max(16, bytes));
    } catch {
      // the allocator traps when memory cannot grow
    }
    if (!ptr) throw new KernelError(`out of wasm memory allocating ${bytes} bytes (${this.exports.memory.buffer.byteLength} bytes in use)`);
    return ptr;
  }
  free(ptr: number): void {
    if (ptr) this.exports.free(ptr);
  }

  // Views are made fresh on each call: growing memory detaches the old ones.
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.exports.memory.buffer, ptr, length);
  }
  f64(ptr: number, length: number): Float64Array {
    return new Float64Array(this.exports.memory.buffer, ptr, length);
  }
  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.exports.memory.buffer, ptr, length);
  }
  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.exports.memory.buffer, ptr, length);
  }

  /** Allocates and fills a copy of `values`; the caller frees it. */
  put(values: Float32Array | Int32Array | Uint8Array | Float64Array): number {
    const ptr = this.alloc(values.byteLength);
    new Uint8Array(this.exports.memory.buffer, ptr, values.byteLength).set(
      new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    );
    return ptr;
  }

  /** Runs `body` with scratch allocations that are freed however it ends. */
  scoped<T>(body: (alloc: (bytes: number) => number, put: Kernel['put']) => T): T {
    const owned: number[] = [];
    try {
      return body(
        (bytes) => { const p = this.alloc(bytes); owned.push(p); return p; },
        (values) => { const p = this.put(values); owned.push(p); return p; },
      );
    } finally {
      for (const p of owned) this.free(p);
    }
  }
}

function readString(memory: WebAssembly.Memory | undefined, ptr: number): string {
  if (!memory || !ptr) return '?';
  const bytes = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
  const chars = new Uint16Array(memory.buffer, ptr, bytes >>> 1);
  let text = '';
  for (let i = 0; i < chars.length; i++) text += String.fromCharCode(chars[i]);
  return text;
}

let shared: Promise<Kernel> | undefined;
/** One kernel per realm (thread) for callers that need no isolation. */
export function defaultKernel(): Promise<Kernel> {
  shared ??= Kernel.create();
  return shared;
}
