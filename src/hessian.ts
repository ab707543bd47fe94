// Streaming H = (2/n) sum_k x_k x_k^T, accumulated in WASM exactly as the reference GPTQ does:
// after a chunk of m rows, H *= n_old / (n_old + m), then H += (2 / (n_old + m)) X^T X.
import { NonFiniteError, ShapeError, assertFinite } from './errors.js';
import { Kernel, defaultKernel } from './kernel.js';

export class HessianAccumulator {
  readonly cols: number;
  private n = 0;
  private readonly h: Float32Array;
  private kernel: Kernel | undefined;

  constructor(cols: number, kernel?: Kernel) {
    if (!Number.isInteger(cols) || cols < 1) throw new ShapeError(`HessianAccumulator needs a positive column count, got ${cols}`);
    this.cols = cols;
    this.h = new Float32Array(cols * cols);
    this.kernel = kernel;
  }

  /** Rows of calibration input seen so far. */
  get count(): number {
    return this.n;
  }

  /** Adds a chunk X [m, cols] (row-major). m defaults to x.length / cols. */
  async add(x: Float32Array, m = x.length / this.cols): Promise<void> {
    this.addWith(this.kernel ?? (this.kernel = await defaultKernel()), x, m);
  }

  /** Synchronous add on a given kernel (for pipelines that already hold one). */
  addWith(kernel: Kernel, x: Float32Array, m = x.length / this.cols): void {
    const cols = this.cols;
    if (!Number.isInteger(m) || m < 0 || x.length !== m * cols) {
      throw new ShapeError(`inputs have ${x.length} values, not a whole number of rows of ${cols} (expected [n, ${cols}])`);
    }
    if (m === 0) return;
    assertFinite(x, 'calibration inputs');
    const total = this.n + m;
    // Factors rounded to f32 once here; the arithmetic on H happens in WASM.
    const keep = Math.fround(this.n / total);
    const add = Math.fround(2 / total);
    kernel.scoped((alloc, put) => {
      const h = put(this.h);
      const xp = put(x);
      const scratch = alloc((cols * 128 + cols * cols) * 4);
      kernel.exports.hessianUpdate(h, xp, m, cols, keep, add, scratch);
      this.h.set(kernel.f32(h, cols * cols));
    });
    this.n = total;
    for (let i = 0; i < cols; i++) {
      const d = this.h[i * cols + i];
      if (!Number.isFinite(d)) throw new NonFiniteError(`Hessian overflowed at column ${i} (inputs too large for float32)`);
    }
  }

  /** A copy of the current H [cols, cols]. */
  hessian(): Float32Array {
    return this.h.slice();
  }
}
