// One prepared layer resident in a kernel, and the solve of any band of its rows.
// Like llama2.c's RunState, everything a band needs is laid out once: the H-side arrays when
// the session opens, the band buffers (grown only when a larger band arrives) on first use.
// Rows are independent in every solver, so a band's result does not depend on which other
// rows share it: bands can run on any thread or machine and merge to the same bits.
import type { Kernel } from './kernel.js';
import { KernelError } from './errors.js';
import { GRID_SEARCH } from './kernel.js';
import type { LayerPlan } from './options.js';
import { gptqSweep } from './gptq.js';
import { permuteColumns } from './permute.js';
import type { BandResult, PreparedLayer, WeightMatrix } from './types.js';
import { PSD_DAMPING, checkBandGrids, checkLosses, checkWeightRange, weightLimits, type WeightLimits } from './validate.js';

/** gridParams' search for a plan's clip: per-channel OWC is exact or fast as planned. */
export function gridSearchOf(plan: LayerPlan): number {
  switch (plan.spec.clip) {
    case 'minmax': return GRID_SEARCH.minmax;
    case 'mse': return GRID_SEARCH.mse;
    case 'owc': return plan.owcExact ? GRID_SEARCH.owcExact : GRID_SEARCH.owc;
  }
}

/** Kernel buffers for bands of up to `capacity` rows. */
export interface BandBuffers {
  capacity: number;
  /** gemmSub's pack buffer for a worker instance over shared memory (0 on the owner). */
  pack: number;
  w: number;
  w0: number;
  scales: number;
  zeros: number;
  codes: number;
  q: number;
  g: number;
  scratch: number;
  rowLoss: number;
  rtnRowLoss: number;
  /** How far below zero rounding may take each row's loss (f64 [rows]). */
  tolerance: number;
  moves: number;
  accepted: number;
  /** GPTQ: column -> group in working order. */
  colGroup: number;
}

/** What a prepared layer is besides its two big matrices: small, plain data. */
export type LayerFacts = Omit<PreparedLayer, 'hessian' | 'gptqFactor'>;

/** Where a session's H-side arrays sit in a shared kernel's memory, as plain data: a worker
 * instance over the same memory attaches to them (LayerSession.attach) and reads them in place. */
export interface SessionLayout {
  facts: LayerFacts;
  hFix: number;
  hLoss: number;
  factor: number;
  order: number;
  hdiag: number;
  hbb: number;
  hinv: number;
  colGroup: number;
  colGroupConsecutive: number;
  groupOrder: Int32Array | null;
  hGroup: number;
  limits: WeightLimits;
}

export class LayerSession {
  private readonly k: Kernel;
  readonly facts: LayerFacts;
  private readonly plan: LayerPlan;
  private readonly owned: number[] = [];
  private band: BandBuffers | null = null;
  /** Band buffers made for other threads (bandBuffersFor), freed with the session. */
  private readonly lent: BandBuffers[] = [];
  /** Attached to another thread's arrays: owns nothing, allocates nothing. */
  private readonly borrowed: boolean;
  private exported: PreparedLayer | null = null;
  /** Symmetrized H with dead diagonals 1 (CD, BCD, refit, OWC). */
  private readonly hFix: number;
  /** H as given (dead columns carry no weight): the loss. */
  private readonly hLoss: number;
  private readonly factor: number;
  private readonly order: number;
  private readonly hdiag: number;
  private readonly hbb: number;
  private readonly hinv: number;
  private readonly colGroup: number;
  /** Column -> group for grids of consecutive columns (the RTN baseline's; the same as
   * colGroup unless act-order formed GPTQ's groups in permuted order). */
  private readonly colGroupConsecutive: number;
  /** Columns sorted by group when groups are not consecutive columns (act-order + dynamic
   * GPTQ groups): refit works on contiguous groups, in this order. */
  private readonly groupOrder: Int32Array | null;
  private readonly hGroup: number;
  /** What the grid arithmetic can take (from H): rows past it are refused before solving. */
  private readonly limits: WeightLimits;

  /** A session over a prepared layer's arrays, copied into `kernel`. */
  static fromPrepared(kernel: Kernel, prepared: PreparedLayer): LayerSession {
    const { hessian, gptqFactor, ...facts } = prepared;
    const h = kernel.put(hessian);
    let factor = 0;
    try {
      factor = gptqFactor ? kernel.put(gptqFactor) : 0;
      return new LayerSession(kernel, facts, h, factor);
    } catch (e) {
      kernel.free(h);
      kernel.free(factor);
      throw e;
    }
  }

  /** A session on a worker's instance over shared memory: the owner's arrays (`layout`) read in
   * place and `band` (made by the owner's bandBuffersFor) for its bands. It owns and allocates
   * nothing; solveBand gives the same bits as on the owner. */
  static attach(kernel: Kernel, layout: SessionLayout, band: BandBuffers): LayerSession {
    return new LayerSession(kernel, layout.facts, layout.hFix, layout.factor, { layout, band });
  }

  /** Takes ownership of `hFix` (symmetrized H, dead diagonals 1) and `factor` (GPTQ's U or 0),
   * both resident in `kernel`. */
  constructor(kernel: Kernel, facts: LayerFacts, hFix: number, factor: number, attached?: { layout: SessionLayout; band: BandBuffers }) {
    this.k = kernel;
    this.facts = facts;
    this.plan = facts.plan;
    this.borrowed = attached !== undefined;
    if (attached) {
      const { layout, band } = attached;
      this.hFix = layout.hFix;
      this.factor = layout.factor;
      this.hLoss = layout.hLoss;
      this.order = layout.order;
      this.hdiag = layout.hdiag;
      this.hbb = layout.hbb;
      this.hinv = layout.hinv;
      this.colGroup = layout.colGroup;
      this.colGroupConsecutive = layout.colGroupConsecutive;
      this.groupOrder = layout.groupOrder;
      this.hGroup = layout.hGroup;
      this.limits = layout.limits;
      this.band = band;
      if (band.pack) kernel.exports.setPackBuffer(band.pack);
      return;
    }
    const { cols, spec } = this.plan;
    const keep = (ptr: number) => (this.owned.push(ptr), ptr);
    this.hFix = keep(hFix);
    this.factor = factor ? keep(factor) : 0;
    try {
      const n2 = cols * cols;
      this.limits = weightLimits(this.plan, kernel, hFix, facts.dead, facts.gIdx);
      if (facts.dead.length) {
        this.hLoss = keep(kernel.alloc(n2 * 4));
        kernel.u8(this.hLoss, n2 * 4).set(kernel.u8(hFix, n2 * 4));
        const given = kernel.f32(this.hLoss, n2);
        for (const i of facts.dead) given[i * cols + i] = 0;
      } else {
        this.hLoss = hFix;
      }
      const identity = Int32Array.from({ length: cols }, (_, i) => i);
      this.order = keep(kernel.put(facts.perm ?? identity));
      const h = kernel.f32(hFix, n2);
      this.hdiag = keep(kernel.put(Float32Array.from(identity, (i) => h[i * cols + i])));
      this.colGroup = keep(kernel.put(facts.gIdx));
      const consecutive = Int32Array.from(identity, (c) => Math.floor(c / this.plan.groupWidth));
      const contiguous = facts.gIdx.every((g, c) => g === consecutive[c]);
      this.colGroupConsecutive = contiguous ? this.colGroup : keep(kernel.put(consecutive));
      if (!contiguous && spec.refit > 0) {
        this.groupOrder = Int32Array.from(identity).sort((a, b) => facts.gIdx[a] - facts.gIdx[b] || a - b);
        this.hGroup = keep(kernel.alloc(n2 * 4));
        kernel.scoped((_alloc, put) => kernel.exports.permuteSquare(this.hGroup, hFix, cols, put(this.groupOrder!)));
      } else {
        this.groupOrder = null;
        this.hGroup = this.hFix;
      }
      if (spec.method === 'bcd') {
        const blocks = Math.ceil(cols / spec.blockSize) * spec.blockSize * spec.blockSize;
        this.hbb = keep(kernel.alloc(blocks * 4));
        this.hinv = keep(kernel.alloc(blocks * 4));
        kernel.scoped((alloc) => kernel.exports.bcdPrepare(this.hFix, cols, spec.blockSize, this.order, this.hbb, this.hinv, alloc(kernel.exports.bcdPrepareScratch(spec.blockSize))));
      } else {
        this.hbb = 0;
        this.hinv = 0;
      }
    } catch (e) {
      this.free();
      throw e;
    }
  }

  /** The resident H-side arrays, for other solvers of this layer's H (the GGUF grids):
   * symmetrized H with dead diagonals 1, H as given (the loss), diag(H). Read only. */
  get resident(): { kernel: Kernel; hFix: number; hLoss: number; hdiag: number } {
    return { kernel: this.k, hFix: this.hFix, hLoss: this.hLoss, hdiag: this.hdiag };
  }

  /** Where this session's arrays are, for worker instances over the same shared memory. */
  layout(): SessionLayout {
    if (!this.k.shared) throw new KernelError('only a session in a shared kernel can be attached to by other threads');
    return {
      facts: this.facts, hFix: this.hFix, hLoss: this.hLoss, factor: this.factor, order: this.order, hdiag: this.hdiag,
      hbb: this.hbb, hinv: this.hinv, colGroup: this.colGroup, colGroupConsecutive: this.colGroupConsecutive,
      groupOrder: this.groupOrder, hGroup: this.hGroup, limits: this.limits,
    };
  }

  /** Band buffers of `rows` rows (and a gemmSub pack buffer) for another thread attached to this
   * session; freed with the session. */
  bandBuffersFor(rows: number): BandBuffers {
    const b = this.allocateBand(rows);
    this.lent.push(b);
    try {
      b.pack = this.k.alloc(this.k.exports.PACK_BUFFER_BYTES.value);
    } catch (e) {
      this.lent.pop();
      this.freeBuffers(b);
      throw e;
    }
    return b;
  }

  /** Frees band buffers made by bandBuffersFor once no thread uses them any more. */
  releaseBandBuffers(b: BandBuffers): void {
    const i = this.lent.indexOf(b);
    if (i < 0) return;
    this.lent.splice(i, 1);
    this.freeBuffers(b);
  }

  /** The prepared layer as plain arrays (for workers and band workers elsewhere); copied out
   * of the kernel once. */
  portable(): PreparedLayer {
    if (!this.exported) {
      const n2 = this.plan.cols ** 2;
      this.exported = {
        ...this.facts,
        hessian: this.k.f32(this.hFix, n2).slice(),
        gptqFactor: this.factor ? this.k.f32(this.factor, n2).slice() : null,
      };
    }
    return this.exported;
  }

  free(): void {
    if (this.borrowed) {
      this.band = null;
      return;
    }
    this.freeBand();
    for (const b of this.lent.splice(0)) this.freeBuffers(b);
    for (const p of this.owned.splice(0)) this.k.free(p);
  }

  private freeBand(): void {
    const b = this.band;
    if (!b) return;
    this.band = null;
    this.freeBuffers(b);
  }

  private freeBuffers(b: BandBuffers): void {
    for (const [key, ptr] of Object.entries(b)) if (key !== 'capacity') this.k.free(ptr);
  }

  /** Band buffers for `rows` rows, reused across bands. */
  private buffers(rows: number): BandBuffers {
    if (this.band && this.band.capacity >= rows) return this.band;
    if (this.borrowed) throw new KernelError(`band of ${rows} rows exceeds the ${this.band?.capacity ?? 0} rows of the buffers this thread was given`);
    this.freeBand();
    this.band = this.allocateBand(rows);
    return this.band;
  }

  private allocateBand(rows: number): BandBuffers {
    const plan = this.plan;
    const { cols, groups, spec } = plan;
    const k = this.k;
    const x = k.exports;
    const n = rows * cols;
    // One scratch serves every kernel of a band in turn: the largest any of them needs.
    const scratchBytes = Math.max(
      x.rowLossesScratch(rows, cols),
      x.gridParamsScratch(rows, cols, plan.groupWidth, GRID_SEARCH.minmax),
      x.gridParamsScratch(rows, cols, plan.groupWidth, gridSearchOf(plan)),
      spec.start === 'gptq' ? x.gptqBandScratch(rows, spec.gptqBlock) : 0,
      spec.descent ? x.gradientScratch(rows, cols) : 0,
      spec.method === 'cd' ? x.cdBandScratch(cols) : 0,
      spec.method === 'bcd' ? x.bcdBandScratch(cols, spec.blockSize) : 0,
      spec.refit > 0 ? x.refitBandScratch(rows, cols) : 0,
    );
    const sizes: Omit<BandBuffers, 'capacity' | 'pack'> = {
      w: n * 4,
      w0: n * 4,
      scales: rows * groups * 4,
      zeros: rows * groups * 4,
      codes: n,
      q: n * 4,
      g: spec.descent ? n * 4 : 0,
      scratch: scratchBytes,
      rowLoss: rows * 8,
      rtnRowLoss: rows * 8,
      tolerance: rows * 8,
      moves: spec.descent ? rows * 4 : 0,
      accepted: spec.refit > 0 ? rows * 4 : 0,
      colGroup: spec.start === 'gptq' ? cols * 4 : 0,
    };
    // Allocated one by one into `b`, so a failure part way frees what was made.
    const b: BandBuffers = { capacity: rows, pack: 0, ...sizes };
    for (const key of Object.keys(sizes) as Array<keyof typeof sizes>) b[key] = 0;
    try {
      for (const key of Object.keys(sizes) as Array<keyof typeof sizes>) if (sizes[key]) b[key] = k.alloc(sizes[key]);
    } catch (e) {
      this.freeBuffers(b);
      throw e;
    }
    return b;
  }

  /** Solves rows [r0, r1) of `weights` (the whole matrix is passed; only the band is read).
   * Rows out of the grid arithmetic's range are refused before any kernel runs; the band's
   * grids and losses are checked before they are returned (see validate.ts). `baseline`: also
   * the RTN baseline's row losses (round-to-nearest on min-max grids), a quadratic form more. */
  solveBand(weights: WeightMatrix, r0: number, r1: number, baseline = false): BandResult {
    const plan = this.plan;
    const { cols, groups, spec, maxq } = plan;
    const rows = r1 - r0;
    const k = this.k;
    const x = k.exports;
    checkWeightRange(this.limits, weights.data, r0, r1);
    const b = this.buffers(rows);
    // Every grid of this band (baseline, clip search, GPTQ's groups, refits) in the spec's format.
    x.setHalfScales(spec.scales === 'f16' ? 1 : 0);
    const n = rows * cols;
    const band = weights.data.subarray(r0 * cols, r1 * cols);
    k.f32(b.w, n).set(band);
    k.f32(b.w0, n).set(band);
    this.zeroDead(b.w0, rows);

    // RTN on min-max grids of W as given: the method itself (rtn, minmax) or, when asked, the
    // baseline it is compared with; every other method overwrites these codes and grids.
    const isBaseline = spec.method === 'rtn' && spec.clip === 'minmax';
    if (isBaseline || baseline) {
      x.gridParams(b.w, rows, cols, plan.groupWidth, maxq, spec.sym, GRID_SEARCH.minmax, 0, b.scales, b.zeros, 0);
      x.quantizeWith(b.w, rows, cols, maxq, b.scales, b.zeros, groups, this.colGroupConsecutive, b.codes, b.q);
      x.rowLosses(b.w, b.q, rows, cols, this.hLoss, b.rtnRowLoss, b.scratch);
      this.checkLosses(b, b.rtnRowLoss, rows, r0, isBaseline ? 'rtn' : 'RTN baseline');
    }

    const search = gridSearchOf(plan);
    if (spec.start === 'gptq') {
      gptqSweep(
        { kernel: k, plan, perm: this.facts.perm, gIdx: this.facts.gIdx, factor: this.factor, hessian: this.hFix, gridSearch: search },
        { rows, w: b.w, w0: b.w0, scales: b.scales, zeros: b.zeros, codes: b.codes, q: b.q, scratch: b.scratch, colGroup: b.colGroup },
      );
      // The sweep consumed w0; descent continues from the dead-zeroed weights.
      k.f32(b.w0, n).set(band);
      this.zeroDead(b.w0, rows);
    } else if (spec.method !== 'rtn' || spec.clip !== 'minmax') {
      // Grid from W as given (min-max, MSE) or from the dead-zeroed W in H's metric (OWC).
      const src = spec.clip === 'owc' ? b.w0 : b.w;
      x.gridParams(src, rows, cols, plan.groupWidth, maxq, spec.sym, search, this.hFix, b.scales, b.zeros, b.scratch);
      x.quantizeWith(b.w, rows, cols, maxq, b.scales, b.zeros, groups, this.colGroupConsecutive, b.codes, b.q);
    }

    if (spec.descent) this.descend(b, rows);

    // Plain RTN is the baseline itself: its loss is already known.
    const rowLoss = isBaseline ? b.rtnRowLoss : b.rowLoss;
    if (!isBaseline) {
      x.rowLosses(b.w, b.q, rows, cols, this.hLoss, b.rowLoss, b.scratch);
      this.checkLosses(b, b.rowLoss, rows, r0, spec.method);
    }
    const scales = k.f32(b.scales, rows * groups).slice();
    const zeros = k.f32(b.zeros, rows * groups).slice();
    checkBandGrids(plan, scales, zeros, r0);
    return {
      r0,
      r1,
      codes: k.u8(b.codes, n).slice(),
      scales,
      zeros,
      rowLoss: k.f64(rowLoss, rows).slice(),
      rtnRowLoss: baseline ? k.f64(b.rtnRowLoss, rows).slice() : null,
      moves: spec.descent ? k.i32(b.moves, rows).slice() : null,
    };
  }

  /** Row losses (just computed from b.w and b.q) finite and not below zero by more than
   * rounding allows on an H that is positive semidefinite up to damping. */
  private checkLosses(b: BandBuffers, losses: number, rows: number, r0: number, what: string): void {
    const k = this.k;
    k.exports.lossTolerance(b.w, b.q, rows, this.plan.cols, this.hdiag, PSD_DAMPING, b.tolerance);
    checkLosses(k.f64(losses, rows), k.f64(b.tolerance, rows), r0, what);
  }

  /** CD or BCD from the current codes, with `refit` rounds of scale refits in between. */
  private descend(b: BandBuffers, rows: number): void {
    const { cols, groups, spec, maxq } = this.plan;
    const x = this.k.exports;
    x.gradientBand(b.g, b.w0, b.q, rows, cols, this.hFix, b.scratch);
    for (let round = 0; ; round++) {
      if (spec.method === 'cd') {
        x.cdBand(b.q, b.codes, b.g, rows, cols, this.hFix, this.hdiag, maxq, groups, this.colGroup, b.scales, b.zeros, 0, this.plan.movesPerRow, b.moves, b.scratch);
      } else {
        x.bcdBand(b.q, b.codes, b.g, rows, cols, this.hFix, spec.blockSize, this.order, this.hbb, this.hinv, maxq, groups, this.colGroup, b.scales, b.zeros, this.plan.movesPerRow, b.moves, b.scratch);
      }
      if (round === spec.refit) break;
      this.inGroupOrder(rows, [b.w0, b.q, b.g], b.codes, false);
      x.refitBand(b.w0, b.q, b.codes, b.g, rows, cols, this.hGroup, maxq, spec.sym, this.plan.groupWidth, groups, b.scales, b.zeros, b.accepted, b.scratch);
      this.inGroupOrder(rows, [b.w0, b.q, b.g], b.codes, true);
    }
  }

  /** Permutes band matrices into (or back from) group order; a no-op when groups are contiguous. */
  private inGroupOrder(rows: number, floats: number[], codes: number, back: boolean): void {
    const order = this.groupOrder;
    if (!order) return;
    const { cols } = this.plan;
    const k = this.k;
    for (const ptr of floats) k.f32(ptr, rows * cols).set(permuteColumns(k.f32(ptr, rows * cols), rows, cols, order, back));
    k.u8(codes, rows * cols).set(permuteColumns(k.u8(codes, rows * cols), rows, cols, order, back));
  }

  /** Step 1 of GPTQ, for every solver: dead columns of W are zero (rows x cols at ptr). */
  zeroDead(ptr: number, rows: number): void {
    const { dead } = this.facts;
    if (!dead.length) return;
    const { cols } = this.plan;
    const m = this.k.f32(ptr, rows * cols);
    for (let r = 0; r < rows; r++) for (const d of dead) m[r * cols + d] = 0;
  }
}
