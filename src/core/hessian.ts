// Streaming H = (2/n) sum_k x_k x_k^T, accumulated in WASM exactly as the reference GPTQ does:
// after a chunk of m rows, H *= n_old / (n_old + m), then H += (2 / (n_old + m)) X^T X.
// H and its scratch stay in the kernel's memory between chunks (only the chunk crosses the
// boundary); `hessian()` copies H out, `free()` releases it.
import { DtypeError, NonFiniteError, OptionError, ShapeError, assertFinite } from './errors.js';
import { Kernel, defaultKernel } from './kernel.js';
import { hessianUpdate } from './linalg.js';
import type { ParallelRunner } from './runner.js';


interface Resident {
  kernel: Kernel;
  h: number;
  scratch: number;
}

// Releases the wasm memory of accumulators dropped without free() (where the runtime has
// FinalizationRegistry; call free() to be sure).
const released = typeof FinalizationRegistry === 'undefined'
  ? undefined
  : new FinalizationRegistry<Resident>((r) => {
    r.kernel.free(r.h);
    r.kernel.free(r.scratch);
  });

export class HessianAccumulator {
  readonly cols: number;
  private n = 0;
  private resident: Resident | undefined;
  private readonly kernel: Kernel | undefined;

  constructor(cols: number, kernel?: Kernel) {
    if (!Number.isInteger(cols) || cols < 1) throw new ShapeError(`HessianAccumulator needs a positive column count, got ${cols}`);
    this.cols = cols;
    this.kernel = kernel;
  }

  /** Rows of calibration input seen so far. */
  get count(): number {
    return this.n;
  }

  /** Adds a chunk X [m, cols] (row-major). m defaults to x.length / cols. */
  async add(x: Float32Array, m = x?.length / this.cols): Promise<void> {
    this.addWith(this.resident?.kernel ?? this.kernel ?? (await defaultKernel()), x, m);
  }

  /** Synchronous add on a given kernel (for pipelines that already hold one). */
  addWith(kernel: Kernel, x: Float32Array, m = x?.length / this.cols): void {
    const cols = this.cols;
    // Its bytes go to the kernel as they are: any other array would be read as float32 garbage.
    if (!(x instanceof Float32Array)) {
      throw new DtypeError(`calibration inputs must be a Float32Array, got ${describe(x)} (convert with Float32Array.from)`);
    }
    if (!Number.isInteger(m) || m < 0 || x.length !== m * cols) {
      throw new ShapeError(`inputs have ${x.length} values, not a whole number of rows of ${cols} (expected [n, ${cols}])`);
    }
    if (m === 0) return;
    kernel.scoped((_alloc, put) => this.addResident(kernel, put(x), m));
  }

  /** Adds X [m, cols] that is already in `kernel`'s memory at `x` (e.g. a layer input the
   * forward pass just computed): no copy crosses the boundary. With a runner (a pool's threads
   * over a shared kernel), H's 128-row bands are updated on its threads: the same bits. */
  addResident(kernel: Kernel, x: number, m: number, runner?: ParallelRunner): void {
    const cols = this.cols;
    if (!Number.isInteger(m) || m < 0) throw new ShapeError(`row count ${m} must be a non-negative integer`);
    if (m === 0) return;
    assertFinite(kernel.f32(x, m * cols), 'calibration inputs');
    const r = this.residentOn(kernel);
    const total = this.n + m;
    // Factors rounded to f32 once here; the arithmetic on H happens in WASM.
    const keep = Math.fround(this.n / total);
    const add = Math.fround(2 / total);
    if (runner) hessianUpdate(kernel, runner, r.h, x, m, cols, keep, add);
    else kernel.exports.hessianUpdate(r.h, x, m, cols, keep, add, r.scratch);
    this.n = total;
    const h = kernel.f32(r.h, cols * cols);
    for (let i = 0; i < cols; i++) {
      if (!Number.isFinite(h[i * cols + i])) throw new NonFiniteError(`Hessian overflowed at column ${i} (inputs too large for float32)`);
    }
  }

  /** A copy of the current H [cols, cols] (zeros before any input). */
  hessian(): Float32Array {
    const r = this.resident;
    return r ? r.kernel.f32(r.h, this.cols * this.cols).slice() : new Float32Array(this.cols * this.cols);
  }

  /** Hands over H's kernel allocation (the caller frees it; e.g. prepareResident takes it) and
   * starts over. Nothing is copied. */
  take(): { kernel: Kernel; h: number } {
    const r = this.resident;
    if (!r) throw new ShapeError('the accumulator holds no H yet: add calibration inputs first');
    released?.unregister(this);
    r.kernel.free(r.scratch);
    this.resident = undefined;
    this.n = 0;
    return { kernel: r.kernel, h: r.h };
  }

  /** Releases the wasm memory holding H; the accumulator starts over if used again. */
  free(): void {
    const r = this.resident;
    if (!r) return;
    released?.unregister(this);
    r.kernel.free(r.h);
    r.kernel.free(r.scratch);
    this.resident = undefined;
    this.n = 0;
  }

  private residentOn(kernel: Kernel): Resident {
    if (this.resident) {
      if (this.resident.kernel !== kernel) throw new OptionError('a HessianAccumulator keeps H in one kernel; add every chunk with the same kernel');
      return this.resident;
    }
    const cols = this.cols;
    const h = kernel.alloc(cols * cols * 4);
    kernel.f32(h, cols * cols).fill(0);
    const r: Resident = { kernel, h, scratch: kernel.alloc(kernel.exports.hessianUpdateScratch(cols)) };
    this.resident = r;
    released?.register(this, r, this);
    return r;
  }
}

function describe(x: unknown): string {
  if (x === null || typeof x !== 'object') return x === null ? 'null' : typeof x;
  return (x as object).constructor?.name ?? 'an object';
}
