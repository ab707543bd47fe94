// Layer-solver options: defaults, validation and the resolved form every solver path reads.
import { OptionError } from './errors.js';
import type { BandResult, PreparedLayer, WeightMatrix } from './layer.js';
import type { SolveOptions } from '../parallel/pool.js';

export type Method = 'rtn' | 'gptq' | 'cd' | 'bcd';
export type Clip = 'minmax' | 'mse' | 'owc';
export type Init = 'owc' | 'gptq' | 'rtn';

export interface QuantizeOptions {
  /** Solver. Default 'cd' (CDQuant). */
  method?: Method;
  /** 2, 3, 4 or 8. Default 4. */
  bits?: number;
  /** Columns per group; -1 or 0 for one grid per row (per-channel). Default -1. */
  groupSize?: number;
  /** Symmetric grid (zero fixed at (maxq+1)/2). Default false. */
  sym?: boolean;
  /** GPTQ (and BCD's block order): columns in descending diag(H). Default false. */
  actOrder?: boolean;
  /** GPTQ: all group grids from the unpermuted weights up front. Default false. */
  staticGroups?: boolean;
  /** GPTQ damping as a fraction of mean diag(H). Default 0.01. */
  damp?: number;
  /** GPTQ lazy-batch block width. Default 128. */
  gptqBlock?: number;
  /** Grid choice: min-max, MSE clip search, or optimal weight clipping. Default: 'owc' for
   * cd/bcd started from OWC, otherwise 'minmax'. */
  clip?: Clip;
  /** Alias of clip: 'mse' (the reference GPTQ flag). */
  mse?: boolean;
  /** OWC per-channel: exact search over all 80 candidates (true) or the fast search (false:
   * block-diagonal screening, best candidates rescored exactly). Default: exact up to
   * 512 columns, where it is cheap, fast above. */
  owcExact?: boolean;
  /** CD/BCD start: RTN on the OWC grid (default), GPTQ, or RTN on the clip grid. */
  init?: Init;
  /** CD/BCD iterations (moves) per row. Default: the number of columns. */
  iters?: number;
  /** BCD block size k (2^k candidates per block). Default 2. */
  blockSize?: number;
  /** Refit rounds after CD/BCD (scales and zeros in H's metric, then CD again). Default 0. */
  refit?: number;
  /** Worker threads: 1 solves on this thread; more solve row bands on a worker pool (same
   * bits). Default: the runtime's core count for layers large enough to gain from workers
   * (rows * cols^2 >= 2^29, e.g. 512 x 1024), else 1. Runtimes without workers (workerd) always use 1. */
  threads?: number;
  /** Where to solve the row bands: a WorkerPool (reuses its workers across layers), a FanoutPool
   * (HTTP band workers), or anything with the same solveBands(). Overrides `threads`. */
  pool?: BandSolver;
  signal?: AbortSignal;
  onProgress?: (progress: { rowsDone: number; rows: number; stage: string }) => void;
}

/** The contract of WorkerPool and FanoutPool: solve every row of a prepared layer, in bands. */
export interface BandSolver {
  solveBands(prepared: PreparedLayer, weights: WeightMatrix, options?: SolveOptions): Promise<BandResult[]>;
}

export interface ResolvedOptions {
  method: Method;
  bits: number;
  maxq: number;
  groupSize: number; // 0 = per-channel
  groups: number;
  sym: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  damp: number;
  gptqBlock: number;
  clip: Clip;
  owcExact: boolean;
  init: Init;
  iters: number;
  blockSize: number;
  refit: number;
}

const BITS = new Set([2, 3, 4, 8]);
const OWC_EXACT_MAX_COLS = 512;

function intOption(name: string, value: unknown, lo: number, hi = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) {
    throw new OptionError(`${name} must be an integer in [${lo}, ${hi}], got ${String(value)}`);
  }
  return value;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) throw new OptionError(`${name} must be one of ${allowed.join(', ')}, got ${String(value)}`);
  return value as T;
}

export function resolveOptions(options: QuantizeOptions, cols: number): ResolvedOptions {
  const method = oneOf('method', options.method ?? 'cd', ['rtn', 'gptq', 'cd', 'bcd'] as const);
  const bits = options.bits ?? 4;
  if (!BITS.has(bits)) throw new OptionError(`bits must be 2, 3, 4 or 8, got ${String(bits)}`);
  const rawGroup = intOption('groupSize', options.groupSize ?? -1, -1);
  const groupSize = rawGroup <= 0 || rawGroup >= cols ? 0 : rawGroup;
  const groups = groupSize === 0 ? 1 : Math.ceil(cols / groupSize);
  const descent = method === 'cd' || method === 'bcd';
  const init = descent ? oneOf('init', options.init ?? 'owc', ['owc', 'gptq', 'rtn'] as const) : 'rtn';
  if (!descent && options.init !== undefined) throw new OptionError(`init applies to cd and bcd only, not ${method}`);
  if (options.mse && options.clip !== undefined && options.clip !== 'mse') {
    throw new OptionError(`mse: true contradicts clip: '${options.clip}'`);
  }
  const requested = options.mse ? 'mse' : options.clip;
  let clip: Clip;
  if (requested !== undefined) clip = oneOf('clip', requested, ['minmax', 'mse', 'owc'] as const);
  else clip = descent && init === 'owc' ? 'owc' : 'minmax';
  if (descent && init === 'owc' && clip !== 'owc') {
    throw new OptionError(`init 'owc' starts from the OWC grid; clip '${clip}' contradicts it (use init 'rtn' with clip '${clip}')`);
  }
  const damp = options.damp ?? 0.01;
  if (typeof damp !== 'number' || !(damp >= 0 && damp < 1e3)) throw new OptionError(`damp must be a number >= 0, got ${String(damp)}`);
  const staticGroups = !!options.staticGroups;
  return {
    method,
    bits,
    maxq: 2 ** bits - 1,
    groupSize,
    groups,
    sym: !!options.sym,
    actOrder: !!options.actOrder,
    staticGroups,
    damp,
    gptqBlock: intOption('gptqBlock', options.gptqBlock ?? 128, 1, 1 << 16),
    clip,
    owcExact: options.owcExact ?? cols <= OWC_EXACT_MAX_COLS,
    init,
    iters: intOption('iters', options.iters ?? cols, 0),
    blockSize: intOption('blockSize', options.blockSize ?? 2, 1, 8),
    refit: descent ? intOption('refit', options.refit ?? 0, 0, 100) : 0,
  };
}
