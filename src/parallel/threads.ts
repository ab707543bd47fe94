// Parallel regions over a shared wasm memory: the owning thread hands batches of kernel calls
// to workers through a small control block in that memory (Atomics), and blocks until every
// call of the batch is done. The calls of a batch are independent pieces whose split is fixed
// by the problem (a 128-row band of a trailing update, a 128-column chunk of a product), never
// by the number of threads, and each piece is the same arithmetic whichever thread runs it: the
// bits do not depend on the threads (src/core/runner.ts).
import { KernelError, WorkerError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { PARALLEL_KERNELS, type KernelCall, type ParallelRunner } from '../core/runner.js';

// The control block: CONTROL_WORDS i32 words, then one slot per worker (scratch pointer, its
// bytes, gemmSub's pack buffer), then the job table (JOB_WORDS f64 words per call).
// A batch is numbered (15 bits) and its claims carry the number: NEXT = batch << 16 | next
// index, COUNT = batch << 16 | calls. A claim counts only if its batch is the one COUNT names
// and its index is below the count: a worker that claims late, on a word already reset for
// the next batch, either gets a real call of that batch or nothing (never a call twice).
const GEN = 0; // bumped to start a batch (or to stop)
const NEXT = 1;
const COUNT = 2;
const DONE = 3; // calls finished in this batch
const EVENT = 4; // bumped (and notified) whenever DONE changes
const STOP = 5;
const ERROR = 6; // 1 + index of a call that failed
const JOBS = 7; // pointer of the job table
const SLOTS = 8; // pointer of the slots
export const CONTROL_WORDS = 16;
const SLOT_WORDS = 4;
const JOB_WORDS = 18; // f64: fn index, argument count, scratch argument (-1: none), arguments (nn_attention_heads: 14)
const MAX_ARGS = JOB_WORDS - 3;
const MAX_CALLS = 0xffff;

/** What a worker does while serving a region (worker.ts calls it): claims and runs calls until
 * the owner sets STOP. Returns the number of calls it ran. */
export function serveRegion(k: Kernel, control: number, slot: number, testFault?: () => void): number {
  const memory = k.exports.memory;
  const c = () => new Int32Array(memory.buffer, control, CONTROL_WORDS);
  const slotWords = () => new Int32Array(memory.buffer, Atomics.load(c(), SLOTS) + slot * SLOT_WORDS * 4, SLOT_WORDS);
  // The block starts at generation 0: batches posted before this worker joined are claimed
  // at once (the owner does not wait for its workers to arrive).
  let seen = 0;
  let ran = 0;
  for (;;) {
    while (Atomics.load(c(), GEN) === seen) Atomics.wait(c(), GEN, seen, 1000);
    seen = Atomics.load(c(), GEN);
    if (Atomics.load(c(), STOP)) return ran;
    const pack = slotWords()[2];
    if (pack) k.exports.setPackBuffer(pack);
    for (;;) {
      const ctl = c();
      const claim = Atomics.add(ctl, NEXT, 1);
      const count = Atomics.load(ctl, COUNT);
      const j = claim & 0xffff;
      if (claim >>> 16 !== count >>> 16 || j >= (count & 0xffff)) break;
      const row = new Float64Array(memory.buffer, Atomics.load(ctl, JOBS) + j * JOB_WORDS * 8, JOB_WORDS);
      // The scratch is read for each claim, not once per wake-up: a worker that claims late
      // gets a call of the batch after the one that woke it, and the owner may have grown
      // (freed and reallocated) the scratch for that batch. A pointer read at wake-up then
      // names a freed block, or 0 when the earlier batch needed none: the call wrote the
      // allocator's memory (the heap corruption of the forward pass on workers, in free).
      const scratch = slotWords()[0];
      try {
        if (testFault && j === 0 && count >>> 16 === 1) testFault();
        const args = Array.from(row.subarray(3, 3 + row[1]));
        if (row[2] >= 0) args[row[2]] = scratch;
        (k.exports[PARALLEL_KERNELS[row[0]]] as (...a: number[]) => void)(...args);
      } catch {
        Atomics.compareExchange(c(), ERROR, 0, j + 1);
      }
      ran++;
      Atomics.add(c(), DONE, 1);
      Atomics.add(c(), EVENT, 1);
      Atomics.notify(c(), EVENT);
    }
  }
}

/**
 * The owner's side: a control block in `kernel` (the shared kernel, allocated by this thread)
 * and `workers` serving it. open() allocates; run() blocks this thread (Atomics.wait) until the
 * batch is done, failing with WorkerError when no call finishes within `stallMs`; close() tells
 * the workers to stop serving.
 */
export class AtomicsRunner implements ParallelRunner {
  private control = 0;
  private slots = 0;
  private jobs = 0;
  private jobCapacity = 0;
  private batch = 0;
  private readonly scratch: number[] = [];
  private readonly owned: number[] = [];

  constructor(private readonly kernel: Kernel, private readonly workers: number, private readonly stallMs: number) {}

  /** Allocates the control block and the workers' slots (with gemmSub pack buffers). */
  open(): number {
    const k = this.kernel;
    const keep = (p: number) => (this.owned.push(p), p);
    this.control = keep(k.alloc(CONTROL_WORDS * 4));
    this.slots = keep(k.alloc(this.workers * SLOT_WORDS * 4));
    k.i32(this.control, CONTROL_WORDS).fill(0);
    k.i32(this.slots, this.workers * SLOT_WORDS).fill(0);
    for (let w = 0; w < this.workers; w++) this.slotWords(w)[2] = keep(k.alloc(k.exports.PACK_BUFFER_BYTES.value));
    const c = this.words();
    c[SLOTS] = this.slots; // batch 0 has no calls: NEXT = COUNT = 0
    this.scratch.length = this.workers;
    this.scratch.fill(0);
    return this.control;
  }

  private words(): Int32Array {
    return this.kernel.i32(this.control, CONTROL_WORDS);
  }

  private slotWords(w: number): Int32Array {
    return this.kernel.i32(this.slots + w * SLOT_WORDS * 4, SLOT_WORDS);
  }

  run(calls: KernelCall[], scratchBytes = 0): void {
    if (calls.length === 0) return;
    if (calls.length > MAX_CALLS) throw new KernelError(`a batch of ${calls.length} calls exceeds ${MAX_CALLS}`);
    const k = this.kernel;
    // Memory is only allocated here, between batches, while the workers wait.
    for (let w = 0; w < this.workers; w++) {
      const s = this.slotWords(w);
      if (scratchBytes > s[1]) {
        if (this.scratch[w]) k.free(this.scratch[w]);
        this.scratch[w] = 0;
        this.scratch[w] = k.alloc(scratchBytes);
        this.slotWords(w)[0] = this.scratch[w];
        this.slotWords(w)[1] = scratchBytes;
      }
    }
    if (calls.length > this.jobCapacity) {
      if (this.jobs) k.free(this.jobs);
      this.jobs = 0;
      this.jobCapacity = Math.max(calls.length, 64);
      this.jobs = k.alloc(this.jobCapacity * JOB_WORDS * 8);
    }
    const table = k.f64(this.jobs, calls.length * JOB_WORDS);
    calls.forEach((call, j) => {
      if (call.args.length > MAX_ARGS) throw new KernelError(`${call.fn}: more than ${MAX_ARGS} arguments`);
      const row = j * JOB_WORDS;
      table[row] = PARALLEL_KERNELS.indexOf(call.fn);
      table[row + 1] = call.args.length;
      table[row + 2] = call.scratchArg ?? -1;
      table.set(call.args, row + 3);
    });
    const c = this.words();
    this.batch = (this.batch % 0x7fff) + 1;
    Atomics.store(c, JOBS, this.jobs);
    Atomics.store(c, DONE, 0);
    Atomics.store(c, ERROR, 0);
    Atomics.store(c, COUNT, (this.batch << 16) | calls.length);
    // Claims open only now: everything above is visible to a worker whose claim lands here.
    Atomics.store(c, NEXT, this.batch << 16);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    let done = 0;
    let since = performance.now();
    for (;;) {
      const cw = this.words();
      const event = Atomics.load(cw, EVENT);
      const now = Atomics.load(cw, DONE);
      if (now >= calls.length) break;
      if (now > done) {
        done = now;
        since = performance.now();
      } else if (performance.now() - since > this.stallMs) {
        throw new WorkerError(`no worker finished a piece of ${calls[0].fn} within ${this.stallMs} ms`);
      }
      Atomics.wait(cw, EVENT, event, 250);
    }
    const failed = Atomics.load(this.words(), ERROR);
    if (failed) throw new KernelError(`${calls[failed - 1].fn} failed on a worker`);
  }

  /** Tells the workers to stop serving (they return from serveRegion) and frees the block. */
  close(): void {
    if (!this.control) return;
    const c = this.words();
    Atomics.store(c, STOP, 1);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
  }

  /** Frees the control block, slots and scratch (only once no worker serves it). */
  free(): void {
    const k = this.kernel;
    for (const p of [...this.owned.splice(0), ...this.scratch.splice(0), this.jobs]) k.free(p);
    this.jobs = 0;
    this.control = 0;
  }
}

/** Whether this thread may block in Atomics.wait (not a browser's main thread). */
export function canBlock(): boolean {
  const g = globalThis as any;
  if (typeof Atomics?.wait !== 'function') return false;
  // Browsers' main threads refuse Atomics.wait; workers and server runtimes allow it.
  if (typeof g.document === 'object' && g.document !== null) return false;
  return true;
}
