// The cross-runtime suite: a fixed set of layer problems generated from seeds (integer PRNG,
// sums of uniforms, f64 sums in a fixed order: no Math.log/cos, whose last bits may differ
// between engines), solved in every mode this runtime offers, each mode's outputs hashed with
// SHA-256 (crypto.subtle). Bundled into the Node test, the Deno/Bun script, the browser page
// and the workerd worker; `lib` is the built package (build/index.js or build/workerd.js).
// The built package's types: the suite runs against the package as users import it.
import type * as Cdquant from 'cdquant';
import type { QuantizeOptions } from 'cdquant';

type Lib = typeof Cdquant;

export interface Problem {
  name: string;
  rows: number;
  cols: number;
  seed: number;
  options: QuantizeOptions;
}

export const PROBLEMS: Problem[] = [
  { name: 'rtn-b4-pc', rows: 37, cols: 50, seed: 1, options: { method: 'rtn', bits: 4 } },
  { name: 'rtn-b3-g16-sym', rows: 37, cols: 50, seed: 2, options: { method: 'rtn', bits: 3, groupSize: 16, sym: true } },
  { name: 'rtn-b2-g16-mse', rows: 96, cols: 130, seed: 3, options: { method: 'rtn', bits: 2, groupSize: 16, clip: 'mse' } },
  { name: 'gptq-b3-pc', rows: 37, cols: 50, seed: 4, options: { method: 'gptq', bits: 3 } },
  { name: 'gptq-b4-g32-act', rows: 96, cols: 130, seed: 5, options: { method: 'gptq', bits: 4, groupSize: 32, actOrder: true } },
  { name: 'gptq-b4-g32-act-static', rows: 96, cols: 130, seed: 6, options: { method: 'gptq', bits: 4, groupSize: 32, actOrder: true, staticGroups: true } },
  { name: 'gptq-b2-g16-sym-mse', rows: 37, cols: 50, seed: 7, options: { method: 'gptq', bits: 2, groupSize: 16, sym: true, mse: true } },
  { name: 'gptq-b8-g64', rows: 96, cols: 130, seed: 8, options: { method: 'gptq', bits: 8, groupSize: 64, gptqBlock: 32 } },
  { name: 'cd-b4-pc', rows: 96, cols: 130, seed: 9, options: { method: 'cd', bits: 4 } },
  { name: 'cd-b3-g32-refit', rows: 37, cols: 50, seed: 10, options: { method: 'cd', bits: 3, groupSize: 32, refit: 1 } },
  { name: 'cd-b2-g16-gptqinit-act-refit', rows: 96, cols: 130, seed: 11, options: { method: 'cd', bits: 2, groupSize: 16, init: 'gptq', clip: 'minmax', actOrder: true, refit: 1 } },
  { name: 'cd-b8-g64-sym', rows: 96, cols: 130, seed: 12, options: { method: 'cd', bits: 8, groupSize: 64, sym: true } },
  { name: 'bcd-b4-g32', rows: 37, cols: 50, seed: 13, options: { method: 'bcd', bits: 4, groupSize: 32 } },
  { name: 'bcd-b3-pc-act-refit', rows: 96, cols: 130, seed: 14, options: { method: 'bcd', bits: 3, actOrder: true, refit: 1 } },
];

/** xorshift32: the same integers in every engine. */
function rng(seed: number): () => number {
  let s = (seed * 0x9e3779b1) >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

/** Weights and H = (2/n) X^T X for a problem: column scales spread over 10x, a few outlier
 * weights, and one dead input column (H_jj = 0). */
export function makeProblem(p: Problem): { weights: { data: Float32Array; rows: number; cols: number }; hessian: Float32Array } {
  const { rows, cols } = p;
  const u = rng(p.seed);
  const normal = () => u() + u() + u() + u() - 2;
  const colScale = Array.from({ length: cols }, () => 0.3 + 3 * u());
  const dead = p.seed % cols;
  const n = 2 * cols;
  const x = new Float64Array(n * cols);
  for (let k = 0; k < n; k++) for (let j = 0; j < cols; j++) x[k * cols + j] = j === dead ? 0 : Math.fround(normal() * colScale[j]);
  const hessian = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = i; j < cols; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += x[k * cols + i] * x[k * cols + j];
      const v = Math.fround((2 / n) * s);
      hessian[i * cols + j] = v;
      hessian[j * cols + i] = v;
    }
  }
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = Math.fround(normal() * 0.05 * (u() < 0.01 ? 8 : 1));
  return { weights: { data, rows, cols }, hessian };
}

type Result = Awaited<ReturnType<Lib['quantizeLayer']>>;

/** Every output of a layer as bytes: codes, scales, zeros, g_idx, perm, dequantized values,
 * moves, and the losses (total, RTN total, per row) as f64. */
function outputBytes(r: Result): Uint8Array[] {
  const bytes = (a: ArrayBufferView | null) => (a ? new Uint8Array(a.buffer, a.byteOffset, a.byteLength) : new Uint8Array(0));
  return [
    bytes(r.codes), bytes(r.scales), bytes(r.zeros), bytes(r.gIdx), bytes(r.perm), bytes(r.dequantize()),
    bytes(r.moves), bytes(new Float64Array([r.loss, r.rtnLoss ?? 0])), bytes(r.rowLoss),
  ];
}

async function sha256(parts: Uint8Array[]): Promise<string> {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

export type Solver = (weights: { data: Float32Array; rows: number; cols: number }, hessian: Float32Array, options: QuantizeOptions) => Promise<Result>;

/** SHA-256 over all problems' outputs solved by `solve`, plus one short hash per problem. */
export async function hashAll(solve: Solver): Promise<{ hash: string; problems: Record<string, string> }> {
  const all: Uint8Array[] = [];
  const problems: Record<string, string> = {};
  for (const p of PROBLEMS) {
    const { weights, hessian } = makeProblem(p);
    // The RTN baseline too (asked for), so its bits are compared across runtimes as well.
    const parts = outputBytes(await solve(weights, hessian, { ...p.options, baseline: true }));
    problems[p.name] = (await sha256(parts)).slice(0, 16);
    all.push(...parts);
  }
  return { hash: await sha256(all), problems };
}

/** Bands solved one by one as separate jobs (uneven sizes), carried as bytes, then merged. */
export function bandsSolver(lib: Lib): Solver {
  return async (weights, hessian, options) => {
    const prepared = lib.decodePrepared(lib.encodePrepared(await lib.prepareLayer(hessian, weights.cols, options)));
    const cuts = [0, 5, 6, 19, weights.rows].filter((c, i, a) => c <= weights.rows && (i === 0 || c > a[i - 1]));
    const bands = [];
    for (let i = cuts.length - 2; i >= 0; i--) {
      const band = await lib.solveBand(prepared, weights, cuts[i], cuts[i + 1], { baseline: options.baseline });
      bands.push(lib.decodeBand(lib.encodeBand(band)));
    }
    return lib.mergeBands(prepared, weights.rows, bands);
  };
}

export interface RunReport {
  runtime: string;
  cores: number;
  workers: boolean;
  sharedMemory: boolean;
  /** mode -> SHA-256 over all problems' outputs */
  hashes: Record<string, string>;
  /** mode -> per-problem short hashes (for diagnosing a mismatch) */
  problems: Record<string, Record<string, string>>;
  /** fault kind -> 'ErrorName:CODE:message' as caught by the caller */
  faults: Record<string, string>;
  seconds: number;
}

/** Runs every mode this runtime supports. `threads` lists the pool sizes to try. */
export async function runSuite(lib: Lib, opts: { threads?: number[]; faults?: boolean; workerUrl?: string | URL } = {}): Promise<RunReport> {
  const t0 = Date.now();
  const report: RunReport = {
    runtime: lib.runtimeName(),
    cores: await lib.hardwareConcurrency(),
    workers: lib.workersAvailable(),
    sharedMemory: lib.sharedMemoryAvailable(),
    hashes: {},
    problems: {},
    faults: {},
    seconds: 0,
  };
  const record = async (mode: string, solve: Solver) => {
    const { hash, problems } = await hashAll(solve);
    report.hashes[mode] = hash;
    report.problems[mode] = problems;
  };
  await record('inline', (w, h, o) => lib.quantizeLayer(w, h, { ...o, threads: 1 }));
  await record('bands', bandsSolver(lib));
  for (const n of opts.threads ?? []) {
    const pool = new lib.WorkerPool({ threads: n, workerUrl: opts.workerUrl });
    try {
      await record(`pool${n}`, (w, h, o) => lib.quantizeLayer(w, h, { ...o, pool }));
    } finally {
      pool.terminate();
    }
  }
  if (opts.threads?.length) {
    const pool = new lib.WorkerPool({ threads: 2, sharedMemory: false, workerUrl: opts.workerUrl });
    try {
      await record('pool2-copy', (w, h, o) => lib.quantizeLayer(w, h, { ...o, pool }));
    } finally {
      pool.terminate();
    }
    if (!opts.workerUrl) await record('quantizeLayer-threads3', (w, h, o) => lib.quantizeLayer(w, h, { ...o, threads: 3 }));
  }
  if (opts.faults) {
    const { weights, hessian } = makeProblem(PROBLEMS[8]);
    for (const kind of ['throw', 'exit', 'uncaught'] as const) {
      const pool = new lib.WorkerPool({ threads: 2, workerUrl: opts.workerUrl, testFault: { band: 1, kind } });
      try {
        await lib.quantizeLayer(weights, hessian, { ...PROBLEMS[8].options, pool });
        report.faults[kind] = 'no error';
      } catch (e) {
        const err = e as Error & { code?: string };
        report.faults[kind] = `${err.name}:${err.code}:${err.message}`;
      } finally {
        pool.terminate();
      }
    }
    // Abort mid-layer: the first progress report aborts; the call must reject, not hang.
    const pool = new lib.WorkerPool({ threads: 2, workerUrl: opts.workerUrl });
    const controller = new AbortController();
    try {
      await lib.quantizeLayer(weights, hessian, { ...PROBLEMS[8].options, pool, signal: controller.signal, onProgress: () => controller.abort() });
      report.faults.abort = 'no error';
    } catch (e) {
      const err = e as Error & { code?: string };
      report.faults.abort = `${err.name}:${err.code}:${err.message}`;
    } finally {
      pool.terminate();
    }
  }
  report.seconds = (Date.now() - t0) / 1000;
  return report;
}
