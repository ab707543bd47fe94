// Solver options: what a layer is quantized with. They are resolved once, whatever the layer's
// width, into a SolverSpec (hashed into provenance and resume keys), then planned for each
// layer's column count. How a solve is run (threads, pool, abort, progress) is not here: those
// settings never change a result (RunOptions, in src/quantize.ts).
import { OptionError } from './errors.js';

export type Method = 'rtn' | 'gptq' | 'cd' | 'bcd';
export type Clip = 'minmax' | 'mse' | 'owc';
export type Init = 'owc' | 'gptq' | 'rtn';

export interface SolverOptions {
  /** Solver. Default 'cd' (CDQuant). */
  method?: Method;
  /** 2, 3, 4 or 8. Default 4. */
  bits?: number;
  /** Columns per group; -1 or 0 for one grid per row (per-channel). Default -1. A group at
   * least as wide as a layer is per-channel for that layer. */
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
   * block-diagonal screening, its 32 best candidates rescored exactly). Default: exact up to
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
  /** How the grids' scales are stored: 'f32', or 'f16' as GPTQ checkpoints store them (every
   * grid is then built on fp16-rounded scales, so what is written is what was optimised).
   * Default 'f32' for a layer (the reference algorithm); model jobs default to 'f16'. */
  scales?: ScaleFormat;
}

export type ScaleFormat = 'f32' | 'f16';

/** Solver options with every default filled in and every contradiction refused. Independent
 * of any layer: the same spec plans every layer of a model. */
export interface SolverSpec {
  method: Method;
  bits: number;
  /** Columns per group, or null for one grid per row (per-channel). */
  groupSize: number | null;
  sym: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  damp: number;
  gptqBlock: number;
  clip: Clip;
  /** Per-channel OWC search; null: exact up to OWC_EXACT_MAX_COLS columns, fast above. */
  owcExact: boolean | null;
  /** Where CD/BCD start; null for rtn and gptq. */
  init: Init | null;
  /** CD/BCD moves per row; null: as many as the layer has columns. */
  iters: number | null;
  blockSize: number;
  refit: number;
  scales: ScaleFormat;
  /** CD or BCD: codes are improved by descent after the start. */
  descent: boolean;
  /** How the codes start: GPTQ's sweep, or round-to-nearest on the chosen grid. */
  start: 'gptq' | 'grid';
}

/** A spec applied to one layer of `cols` input columns: what the kernels are given. */
export interface LayerPlan {
  spec: SolverSpec;
  cols: number;
  maxq: number;
  /** One grid per row (no groups, or a group at least as wide as the layer). */
  perChannel: boolean;
  /** Columns per group: `cols` when per-channel. */
  groupWidth: number;
  groups: number;
  /** GPTQ computes each group's grid when its sweep reaches it (the reference's dynamic
   * groups); otherwise every grid is fixed before any code is chosen. */
  dynamicGroups: boolean;
  owcExact: boolean;
  movesPerRow: number;
}

const BITS = new Set([2, 3, 4, 8]);
/** Exact per-channel OWC costs 80 x rows x cols^2: cheap up to here, slow beyond. */
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

function flag(name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new OptionError(`${name} must be true or false, got ${String(value)}`);
  return value;
}

/** Fills in defaults and refuses contradictions. Accepts a resolved spec too (idempotent). */
export function resolveSolver(given: SolverOptions | SolverSpec = {}): SolverSpec {
  if (given === null || typeof given !== 'object') throw new OptionError('solver options must be an object');
  // A spec reads as options: its nulls mean "the default", and `descent`/`start` are derived anew.
  const options = given as SolverOptions;
  const method = oneOf('method', options.method ?? 'cd', ['rtn', 'gptq', 'cd', 'bcd'] as const);
  const bits = options.bits ?? 4;
  if (!BITS.has(bits)) throw new OptionError(`bits must be 2, 3, 4 or 8, got ${String(bits)}`);
  const rawGroup = intOption('groupSize', options.groupSize ?? -1, -1);
  const descent = method === 'cd' || method === 'bcd';
  if (!descent && options.init != null) throw new OptionError(`init applies to cd and bcd only, not ${method}`);
  const init = descent ? oneOf('init', options.init ?? 'owc', ['owc', 'gptq', 'rtn'] as const) : null;
  if (options.mse && options.clip !== undefined && options.clip !== 'mse') {
    throw new OptionError(`mse: true contradicts clip: '${options.clip}'`);
  }
  const requested = options.mse ? 'mse' : options.clip;
  const clip: Clip = requested !== undefined
    ? oneOf('clip', requested, ['minmax', 'mse', 'owc'] as const)
    : init === 'owc' ? 'owc' : 'minmax';
  if (init === 'owc' && clip !== 'owc') {
    throw new OptionError(`init 'owc' starts from the OWC grid; clip '${clip}' contradicts it (use init 'rtn' with clip '${clip}')`);
  }
  const damp = options.damp ?? 0.01;
  if (typeof damp !== 'number' || !(damp >= 0 && damp < 1e3)) throw new OptionError(`damp must be a number >= 0, got ${String(damp)}`);
  const owcExact = options.owcExact ?? null;
  if (owcExact !== null && typeof owcExact !== 'boolean') throw new OptionError(`owcExact must be true or false, got ${String(owcExact)}`);
  return {
    method,
    bits,
    groupSize: rawGroup <= 0 ? null : rawGroup,
    sym: flag('sym', options.sym),
    actOrder: flag('actOrder', options.actOrder),
    staticGroups: flag('staticGroups', options.staticGroups),
    damp,
    gptqBlock: intOption('gptqBlock', options.gptqBlock ?? 128, 1, 1 << 16),
    clip,
    owcExact,
    init,
    iters: options.iters == null ? null : intOption('iters', options.iters, 0),
    blockSize: intOption('blockSize', options.blockSize ?? 2, 1, 8),
    refit: descent ? intOption('refit', options.refit ?? 0, 0, 100) : 0,
    scales: oneOf('scales', options.scales ?? 'f32', ['f32', 'f16'] as const),
    descent,
    start: method === 'gptq' || init === 'gptq' ? 'gptq' : 'grid',
  };
}

/** The spec applied to a layer with `cols` input columns. */
export function planLayer(spec: SolverSpec, cols: number): LayerPlan {
  if (!Number.isSafeInteger(cols) || cols < 1) throw new OptionError(`a layer needs a positive column count, got ${cols}`);
  const perChannel = spec.groupSize === null || spec.groupSize >= cols;
  const groupWidth = perChannel ? cols : spec.groupSize!;
  return {
    spec,
    cols,
    maxq: 2 ** spec.bits - 1,
    perChannel,
    groupWidth,
    groups: Math.ceil(cols / groupWidth),
    dynamicGroups: spec.start === 'gptq' && !perChannel && !spec.staticGroups && spec.clip !== 'owc',
    owcExact: spec.owcExact ?? cols <= OWC_EXACT_MAX_COLS,
    movesPerRow: spec.iters ?? cols,
  };
}

/** The options that resolve to `spec` (resolveSolver(solverOptionsOf(s)) equals s). */
export function solverOptionsOf(spec: SolverSpec): SolverOptions {
  return {
    method: spec.method,
    bits: spec.bits,
    groupSize: groupSizeLabel(spec),
    sym: spec.sym,
    actOrder: spec.actOrder,
    staticGroups: spec.staticGroups,
    damp: spec.damp,
    gptqBlock: spec.gptqBlock,
    clip: spec.clip,
    ...(spec.owcExact !== null ? { owcExact: spec.owcExact } : {}),
    ...(spec.init !== null ? { init: spec.init } : {}),
    ...(spec.iters !== null ? { iters: spec.iters } : {}),
    blockSize: spec.blockSize,
    ...(spec.descent ? { refit: spec.refit } : {}),
    scales: spec.scales,
  };
}

/** The group size as GPTQ checkpoints and reports write it: -1 for per-channel. */
export const groupSizeLabel = (spec: SolverSpec): number => spec.groupSize ?? -1;
