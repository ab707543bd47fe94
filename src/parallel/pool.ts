// Worker pool over comlink. Where the runtime has shared wasm memory (Node, Deno, Bun, cross-
// origin isolated pages), the pool owns one shared memory (cdquant-shared.wasm, allocated in by
// this thread only): each layer's H-side arrays are put there once, every worker's instance of
// the same module reads them in place and solves its bands into buffers this thread gave it.
// Elsewhere (or with sharedMemory: false) each worker has its own wasm memory and the prepared
// arrays are sent once per layer per worker (in SharedArrayBuffers where the runtime allows,
// copied otherwise) and copied into it. Either way rows are cut into bands that idle workers
// pull from a queue and mergeBands() merges them in row order, so the output is bit-identical
// for any number of workers and either path. Where no worker can be started (workerd), the
// same bands are solved on this thread.
import { transfer, wrap, type Remote } from 'comlink';
import { nodeEndpoint } from './node-endpoint.js';
import { AbortError, CdquantError, OptionError, WorkerError, errorFromCode } from '../core/errors.js';
import { Kernel, sharedKernelSupported, sharedWasmModule, wasmModule } from '../core/kernel.js';
import { LayerSession, type BandBuffers, type SessionLayout } from '../core/session.js';
import { prepareResident } from '../core/prepare.js';
import { resolveSolver, type SolverOptions, type SolverSpec } from '../core/options.js';
import { validateHessianShape } from '../core/validate.js';
import type { ParallelRunner } from '../core/runner.js';
import { AtomicsRunner, canBlock } from './threads.js';
import type { BandResult, PreparedLayer, WeightMatrix } from '../core/types.js';
import type { LayerPlan } from '../core/options.js';
import { hardwareConcurrency, nodeModule, runtimeName, sharedMemoryAvailable, workersAvailable } from '../core/runtime.js';
import { LocalBandSolver, bandRanges, bandRowsFor, checkBandInputs, type BandSolver, type SolveOptions } from './bands.js';
import { SerialQueue } from './serial.js';
import { checkGgufBandSpec, type GgufBandResult, type GgufBandSpec } from './gguf-band.js';
import type { FaultKind, Reply, WorkerApi } from './worker.js';

export interface PoolOptions {
  /** Workers to start (>= 1). Default: the runtime's core count. A larger number uses the core
   * count: workers beyond it only wait for a core, each holding its own wasm memory and a copy
   * of the layer's arrays. */
  threads?: number;
  /** A worker that has not started (loaded its script and instantiated the wasm) within this
   * many ms fails the call with WorkerError. Default 60 000. */
  startTimeoutMs?: number;
  /** A worker that has not returned a band within this many ms fails the call with WorkerError
   * and the pool's workers are terminated. Default: defaultBandTimeoutMs(plan, rows), which
   * grows with the band's work. */
  bandTimeoutMs?: number;
  /** Share memory with the workers (default: wherever the runtime can; `false` forces a copy
   * per worker): one shared wasm memory holding each layer's H-side arrays once, read in place
   * by every worker, where the runtime has shared WebAssembly.Memory; else the arrays and
   * weights through SharedArrayBuffer where it can post one; `'arrays'` only the latter (each
   * worker copies the arrays into its own wasm memory). The results are the same bits. */
  sharedMemory?: boolean | 'arrays';
  /** URL of build/worker.js. Default: `new URL('./worker.js', import.meta.url)`, the file next
   * to the bundle that contains this code. */
  workerUrl?: string | URL;
  /** @internal Test hook: make the worker that solves band number `band` fail in this way. */
  testFault?: { band: number; kind: FaultKind };
  /** @internal Test hook: make the worker that takes the first piece of a parallel region's
   * first batch fail in this way. */
  testRegionFault?: FaultKind;
}

/** How long a band may take before its worker is presumed stuck: a minute, plus 50 ns per unit
 * of the band's work rows * cols * max(cols, moves per row), times (1 + refit rounds), and for
 * BCD times 2^k k^2 / 16 (its 2^k candidates of k coordinates per block; k = 2 gives 1). On the
 * 2-core test machine every solver takes 0.4-4 ns per unit (CD from OWC about 2; BCD with
 * k = 4 and 8: 20-45 and 850 ns, within the factor), so only a worker that stopped making
 * progress, or a machine some twenty times slower, reaches it: 128 rows of 4096 columns get
 * 3 minutes, of 11008 columns 14 minutes. */
export function defaultBandTimeoutMs(plan: LayerPlan, rows: number): number {
  const { cols, spec } = plan;
  const k = spec.blockSize;
  const blocks = spec.method === 'bcd' ? Math.max(1, (2 ** k * k * k) / 16) : 1;
  const work = rows * cols * Math.max(cols, plan.movesPerRow) * (1 + spec.refit) * blocks;
  return 60_000 + work * 50e-6;
}

/** Rejects with WorkerError(`message`) if `promise` has not settled within `ms`. */
function within<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WorkerError(message())), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function checkTimeout(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new OptionError(`${name} must be an integer number of ms in [1, 2^31 - 1], got ${String(value)}`);
  }
  return value;
}

/** Checks a `threads` option: undefined (automatic) or an integer >= 1. */
export function checkThreads(threads: unknown): number | undefined {
  if (threads === undefined) return undefined;
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw new OptionError(`threads must be an integer in [1, 1024], got ${String(threads)}`);
  }
  return threads;
}

/** Worker count used when `threads` is not given: the core count, but one thread for layers
 * whose solve takes less than about a second (rows * cols^2 < 2^29, e.g. 512 x 1024), where
 * starting workers (0.1-0.4 s) would not pay, and never more workers than bands. */
export async function autoThreads(rows: number, cols: number): Promise<number> {
  if (!workersAvailable()) return 1;
  if (rows * cols * cols < 2 ** 29) return 1;
  return Math.max(1, Math.min(await hardwareConcurrency(), Math.ceil(rows / 32)));
}

let lockSerial = 0;

function defaultWorkerUrl(): URL {
  return new URL('./worker.js', import.meta.url);
}

function unwrap<T>(reply: Reply<T>): T {
  if (reply.ok) return reply.value;
  throw errorFromCode(reply.code, reply.message);
}

/** One started worker: its comlink proxy and a promise that rejects when it dies. */
class PoolWorker {
  api!: Remote<WorkerApi>;
  layer = -1;
  /** The pool's shared memory this worker has an instance over, if any. */
  memory: WebAssembly.Memory | null = null;
  /** Rejects with WorkerError when the worker exits, crashes or fails to start. */
  readonly dead: Promise<never>;
  private die!: (e: Error) => void;
  private stopped = false;
  private terminateImpl: () => void = () => {};
  private refImpl: (on: boolean) => void = () => {};

  constructor() {
    this.dead = new Promise<never>((_, reject) => (this.die = reject));
    this.dead.catch(() => {}); // observed by whoever races it
  }

  private fail(message: string): void {
    if (!this.stopped) {
      this.stopped = true;
      this.die(new WorkerError(message));
    }
  }

  /** Starts a worker; `spawned` sees it as soon as it exists (so it can be terminated while it
   * starts). Fails with WorkerError if it is not ready within `timeoutMs`. */
  static async start(url: string | URL, timeoutMs: number, spawned: (w: PoolWorker) => void): Promise<PoolWorker> {
    const w = new PoolWorker();
    const g = globalThis as any;
    let lockName: string | null = null;
    if (typeof g.Worker === 'function') {
      // Browsers, Deno, Bun: a module Web Worker.
      const worker: Worker = new g.Worker(url, { type: 'module', name: 'cdquant' });
      w.api = wrap<WorkerApi>(worker);
      worker.addEventListener('error', (e: ErrorEvent) => {
        e.preventDefault?.();
        const message = (e as any)?.error?.message ?? e?.message;
        w.fail(`worker crashed: ${message || 'uncaught error or failed to load'}`);
      });
      worker.addEventListener('messageerror', () => w.fail('worker sent a message that could not be read'));
      // Bun fires 'close' when a worker ends (process.exit in it, or a crash).
      worker.addEventListener('close', () => w.fail('worker exited'));
      w.terminateImpl = () => worker.terminate();
      // Browsers and Deno fire nothing when a worker closes itself or is killed: the worker
      // holds a Web Lock for its lifetime, and our request for it is granted when it dies.
      if (g.navigator?.locks) lockName = `cdquant-worker-${Date.now().toString(36)}-${(lockSerial++).toString(36)}-${Math.random().toString(36).slice(2)}`;
    } else if (runtimeName() === 'node') {
      const { Worker } = await nodeModule<typeof import('node:worker_threads')>('node:worker_threads');
      const worker = new Worker(url);
      w.api = wrap<WorkerApi>(nodeEndpoint(worker as any));
      worker.on('error', (e: Error) => w.fail(`worker crashed: ${e?.message ?? String(e)}`));
      worker.on('messageerror', () => w.fail('worker sent a message that could not be read'));
      worker.on('exit', (code: number) => w.fail(`worker exited with code ${code}`));
      w.terminateImpl = () => void worker.terminate();
      w.refImpl = (on) => (on ? worker.ref() : worker.unref());
    } else {
      throw new WorkerError('this runtime cannot start workers');
    }
    spawned(w);
    w.ref(true);
    try {
      // The compiled module is posted where the runtime allows it (all tested runtimes do);
      // otherwise the worker compiles its inlined copy.
      const module = await wasmModule();
      const first = w.api.init(lockName, module) as Promise<Reply<null>>;
      const init = first.catch(() => w.api.init(lockName, null) as Promise<Reply<null>>);
      unwrap(await within(Promise.race([init, w.dead]), timeoutMs, () => `a worker did not start within ${timeoutMs} ms`));
    } catch (e) {
      w.terminate();
      throw e;
    } finally {
      w.ref(false);
    }
    if (lockName) {
      g.navigator.locks.request(lockName, () => w.fail('worker ended unexpectedly'));
    }
    return w;
  }

  /** Keeps the Node process alive while the worker has work (and lets it exit when idle). */
  ref(on: boolean): void {
    if (!this.stopped) this.refImpl(on);
  }

  /** Stops the worker; whatever still waits on it (its start, a call) fails at once instead of
   * holding timers and the process open. */
  terminate(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.terminateImpl();
    this.die(new WorkerError('the worker was terminated'));
  }
}

/**
 * A pool of workers, each with its own wasm instance. Reuse one pool across layers (a model)
 * to pay worker start-up once; `terminate()` it when done. Where the runtime cannot start
 * workers, every call runs on this thread with the same results.
 */
export class WorkerPool implements BandSolver {
  private readonly options: PoolOptions;
  private workers: PoolWorker[] = [];
  /** Workers spawned but not yet ready: terminate() stops them too. */
  private readonly starting = new Set<PoolWorker>();
  private generation = 0;
  private readonly requested: number | undefined;
  private size: number | undefined;
  private readonly startTimeoutMs: number;
  private readonly bandTimeoutMs: number | undefined;
  private layerSerial = 0;
  private readonly queue = new SerialQueue();
  /** The shared kernel (this thread's instance over the memory the workers share). Dropped,
   * never reused, when workers are terminated: a terminated worker may still be writing to it
   * for a moment, so nothing of it is freed or handed out again. */
  private sharedKernel: Kernel | undefined;
  /** Set when a worker could not take the shared memory: the copying path from then on. */
  private sharedRefused = false;

  constructor(options: PoolOptions = {}) {
    this.options = options;
    this.requested = checkThreads(options.threads);
    this.startTimeoutMs = checkTimeout('startTimeoutMs', options.startTimeoutMs) ?? 60_000;
    this.bandTimeoutMs = checkTimeout('bandTimeoutMs', options.bandTimeoutMs);
  }

  /** The number of workers this pool runs: `threads`, at most the core count. */
  async threads(): Promise<number> {
    if (this.size === undefined) {
      const cores = await hardwareConcurrency();
      this.size = Math.min(this.requested ?? cores, cores);
    }
    return this.size;
  }

  /** Workers currently started (0 after terminate(), an abort or a crash). */
  get liveWorkers(): number {
    return this.workers.length;
  }

  /** Whether the arrays go to workers through SharedArrayBuffer. */
  usesSharedMemory(): boolean {
    return this.options.sharedMemory !== false && sharedMemoryAvailable();
  }

  /** Whether the workers run on one shared wasm memory (the layer's arrays exist once). */
  usesSharedKernel(): boolean {
    return this.options.sharedMemory !== 'arrays' && this.usesSharedMemory() && !this.sharedRefused && sharedKernelSupported();
  }

  /** Bytes of the shared wasm memory (0 without one): it grows to the largest layer's arrays
   * and band buffers and is reused across calls. */
  get sharedMemoryBytes(): number {
    return this.sharedKernel?.exports.memory.buffer.byteLength ?? 0;
  }

  /** The shared kernel, with an instance of it on every one of `workers`; undefined if a worker
   * cannot take it (the pool then copies, as where the runtime has no shared wasm memory). */
  private async shareWith(workers: PoolWorker[], abort: Promise<never>): Promise<Kernel | undefined> {
    if (!this.usesSharedKernel()) return undefined;
    const generation = this.generation;
    const module = await sharedWasmModule();
    const kernel = this.sharedKernel ?? (await Kernel.createShared(module));
    if (generation !== this.generation) throw new AbortError('the worker pool was terminated');
    this.sharedKernel = kernel;
    const memory = kernel.exports.memory;
    try {
      await Promise.all(workers.filter((w) => w.memory !== memory).map(async (w) => {
        w.layer = -1;
        const call = (m: WebAssembly.Module | null) => Promise.race([w.api.share(m, memory) as Promise<Reply<null>>, w.dead, abort]);
        w.ref(true); // the reply is awaited: keep Node's event loop alive for it
        try {
          // The compiled module where the runtime can post it, else the worker compiles its own.
          unwrap(await call(module).catch((e) => (e instanceof CdquantError ? Promise.reject(e) : call(null))));
        } finally {
          w.ref(false);
        }
        w.memory = memory;
      }));
    } catch (e) {
      if (e instanceof CdquantError && (e.code === 'WORKER_FAILED' || e.code === 'ABORTED')) throw e;
      // Posting a shared memory (or instantiating over it) is refused here: copy instead.
      this.sharedRefused = true;
      return undefined;
    }
    return kernel;
  }

  private async ensureWorkers(count: number): Promise<PoolWorker[]> {
    if (this.workers.length >= count) return this.workers.slice(0, count);
    const generation = this.generation;
    const url = this.options.workerUrl ?? defaultWorkerUrl();
    const mine: PoolWorker[] = [];
    const spawned = (w: PoolWorker) => {
      mine.push(w);
      this.starting.add(w);
    };
    const settled = await Promise.allSettled(Array.from({ length: count - this.workers.length }, () => PoolWorker.start(url, this.startTimeoutMs, spawned)));
    for (const w of mine) this.starting.delete(w);
    const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure || generation !== this.generation) {
      // Stop whichever did start: a failed start, or the pool was terminated meanwhile.
      for (const w of started) w.terminate();
      throw failure ? failure.reason : new AbortError('the worker pool was terminated while starting');
    }
    this.workers.push(...started);
    return this.workers.slice(0, count);
  }

  /** Stops every worker. The pool starts fresh workers if it is used again. */
  terminate(): void {
    this.generation++;
    this.sharedKernel = undefined;
    for (const w of this.workers.splice(0)) w.terminate();
    for (const w of this.starting) w.terminate();
    this.starting.clear();
  }

  /**
   * Solves every row of `weights` for a prepared layer, in bands pulled from a queue by idle
   * workers. Resolves to the bands (for mergeBands); rejects with the worker's typed error,
   * WorkerError if a worker dies, or AbortError when `signal` aborts (the workers are then
   * terminated).
   */
  async solveBands(layer: PreparedLayer | LayerSession, weights: WeightMatrix, options: SolveOptions = {}): Promise<BandResult[]> {
    checkBandInputs(layer instanceof LayerSession ? layer.facts : layer, weights);
    if (options.signal?.aborted) throw new AbortError();
    const bandRows = options.bandRows ?? bandRowsFor(weights.rows, await this.threads());
    const portable = () => (layer instanceof LayerSession ? layer.portable() : layer);
    if (!workersAvailable()) return new LocalBandSolver().solveBands(portable(), weights, { ...options, bandRows });
    const queue = bandRanges(weights.rows, bandRows);
    const baseline = options.baseline ?? false;
    return this.queue.run(async () => {
      if (options.signal?.aborted) throw new AbortError();
      const facts = layer instanceof LayerSession ? layer.facts : layer;
      return this.solveQueue(layer, weights, queue, options, facts.plan.spec.method, true,
        (w, serial, r0, r1, band, fault) => w.api.solve(serial, r0, r1, band, fault, baseline) as Promise<Reply<BandResult>>);
    });
  }

  /** solveBands for GGUF bands (gguf-band.ts): the same queue, workers and failure handling.
   * Always on the workers' own memories: the GGUF kernels keep scratch in static memory and
   * allocate, which threads sharing one memory must not. */
  async solveGgufBands(prepared: PreparedLayer, weights: WeightMatrix, spec: GgufBandSpec, options: SolveOptions = {}): Promise<GgufBandResult[]> {
    checkBandInputs(prepared, weights);
    const checked = checkGgufBandSpec(spec, weights.cols);
    if (options.signal?.aborted) throw new AbortError();
    const bandRows = options.bandRows ?? bandRowsFor(weights.rows, await this.threads());
    if (!workersAvailable()) return new LocalBandSolver().solveGgufBands(prepared, weights, checked, { ...options, bandRows });
    const queue = bandRanges(weights.rows, bandRows);
    return this.queue.run(async () => {
      if (options.signal?.aborted) throw new AbortError();
      return this.solveQueue(prepared, weights, queue, options, checked.solver, false,
        (w, serial, r0, r1, band, fault) => w.api.solveGguf(serial, r0, r1, band, checked, fault) as Promise<Reply<GgufBandResult>>);
    });
  }

  /**
   * Runs `body` on this thread with the pool's shared kernel and a runner that shares each batch
   * of kernel calls among the workers (blocking this thread until the batch is done). Resolves
   * to null where there is no shared wasm memory or this thread may not block (a browser's main
   * thread): the caller then does the work its own way. A worker that stops answering fails
   * the call with WorkerError (the workers are terminated).
   */
  async parallel<T>(body: (kernel: Kernel, runner: ParallelRunner) => T, signal?: AbortSignal): Promise<{ value: T } | null> {
    if (!this.usesSharedKernel() || !canBlock() || !workersAvailable()) return null;
    return this.queue.run(async () => {
      if (signal?.aborted) throw new AbortError();
      // An abort while the workers start ends the call (the body itself is not interruptible:
      // the signal is looked at again once it returns).
      let aborted: () => void = () => {};
      const abort = new Promise<never>((_, reject) => (aborted = () => reject(new AbortError())));
      abort.catch(() => {});
      const onAbort = () => {
        aborted();
        this.terminate();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let workers: PoolWorker[];
      let kernel: Kernel | undefined;
      try {
        workers = await Promise.race([this.ensureWorkers(await this.threads()), abort]);
        kernel = await Promise.race([this.shareWith(workers, abort), abort]);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      if (!kernel) return null;
      const generation = this.generation;
      const runner = new AtomicsRunner(kernel, workers.length, this.bandTimeoutMs ?? 60_000);
      const control = runner.open();
      for (const w of workers) w.ref(true);
      const serving = workers.map((w, slot) => Promise.race([w.api.serve(control, slot, this.options.testRegionFault ?? null) as Promise<Reply<number>>, w.dead]));
      for (const s of serving) s.catch(() => {});
      let value: T;
      try {
        value = body(kernel, runner);
      } catch (e) {
        if (e instanceof WorkerError) this.terminate();
        throw e;
      } finally {
        runner.close();
        if (generation === this.generation) {
          // The workers leave their loop within one wait: then the block may be freed.
          try {
            await within(Promise.all(serving), 10_000, () => 'a worker did not leave a parallel region');
            runner.free();
          } catch {
            this.terminate();
          }
        }
        for (const w of workers) w.ref(false);
      }
      if (signal?.aborted) throw new AbortError();
      return { value };
    });
  }

  /** Whether `kernel` is still this pool's shared memory. False once the workers were
   * terminated: the memory is then dropped whole, and nothing in it may be freed, because a
   * terminated worker may still be writing its band buffers for a moment and a free writes the
   * allocator's links into the freed block. */
  holdsMemory(kernel: Kernel): boolean {
    return this.sharedKernel === kernel;
  }

  /** The pool's shared kernel (made now if need be), for callers that keep their own arrays in
   * it (the model pipeline: forward pass and H accumulation) and run parallel() regions on them;
   * null where parallel() would be. A kernel the pool drops (terminate) stays usable on this
   * thread, but later calls run in a new one. */
  async memoryKernel(): Promise<Kernel | null> {
    if (!this.usesSharedKernel() || !canBlock() || !workersAvailable()) return null;
    this.sharedKernel ??= await Kernel.createShared(await sharedWasmModule());
    return this.sharedKernel;
  }

  /** prepareResident on the pool's shared kernel, GPTQ's factorization shared among the
   * workers: the layer's H, factor and arrays exist once, read in place by every worker. The
   * caller frees the session. Null where the pool has no shared kernel (see parallel()). */
  async prepareShared(hessian: Float32Array, cols: number, solver: SolverOptions | SolverSpec = {}, signal?: AbortSignal): Promise<LayerSession | null> {
    const spec = resolveSolver(solver);
    validateHessianShape(hessian, cols); // its values are checked in the kernel (prepareResident)
    let session: LayerSession | null = null;
    try {
      const done = await this.parallel((kernel, runner) => (session = prepareResident(kernel, kernel.put(hessian), cols, spec, runner)), signal);
      return done?.value ?? null;
    } catch (e) {
      const s = session as LayerSession | null;
      if (s && this.holdsMemory(s.resident.kernel)) s.free();
      throw e;
    }
  }

  private async solveQueue<T>(
    source: PreparedLayer | LayerSession, weights: WeightMatrix, queue: Array<[number, number]>, options: SolveOptions, stage: string,
    mayShare: boolean,
    call: (w: PoolWorker, layer: number, r0: number, r1: number, band: Float32Array | null, fault: FaultKind | null) => Promise<Reply<T>>,
  ): Promise<T[]> {
    const prepared = source instanceof LayerSession ? source.facts : source;
    const { rows, cols } = weights;
    const { signal, onProgress } = options;
    const threads = await this.threads();
    const fault = this.options.testFault;

    let failed = false;
    let aborted: () => void = () => {};
    const abort = new Promise<never>((_, reject) => {
      aborted = () => reject(new AbortError());
    });
    abort.catch(() => {});
    const onAbort = () => {
      failed = true;
      // Rejected before the workers' `dead`, so waits racing both end with the AbortError.
      aborted();
      this.terminate();
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    const results: T[] = new Array(queue.length);
    let rowsDone = 0;
    let nextBand = 0;
    const layer = ++this.layerSerial;
    const generation = this.generation;
    // Shared path: the layer's arrays in the shared memory, and each worker's band buffers.
    let session: LayerSession | null = null;
    let ownSession = false;
    let layout: SessionLayout | null = null;
    const slots = new Map<PoolWorker, BandBuffers>();
    let runs: Promise<void>[] = [];
    try {
      const workers = await Promise.race([this.ensureWorkers(Math.min(threads, queue.length)), abort]);
      const sharedKernel = mayShare ? await Promise.race([this.shareWith(workers, abort), abort]) : undefined;
      if (sharedKernel) {
        // A session already in the shared memory is read in place; else the arrays go there once.
        if (source instanceof LayerSession && source.resident.kernel === sharedKernel) {
          session = source;
        } else {
          session = LayerSession.fromPrepared(sharedKernel, source instanceof LayerSession ? source.portable() : source);
          ownSession = true;
        }
        layout = session.layout();
        const bandRows = Math.max(...queue.map(([r0, r1]) => r1 - r0));
        for (const w of workers) slots.set(w, session.bandBuffersFor(bandRows));
      }
      const shared = this.usesSharedMemory();
      const portable = session ? null : source instanceof LayerSession ? source.portable() : source;
      const sentPrepared = portable && (shared ? toShared(portable) : portable);
      const sentWeights = shared ? { data: sharedCopy(weights.data), rows, cols } : null;

      const run = async (w: PoolWorker) => {
        w.ref(true);
        try {
          while (!failed && nextBand < queue.length) {
            const index = nextBand++;
            const [r0, r1] = queue[index];
            const solveOne = async () => {
              if (w.layer !== layer) {
                w.layer = -1;
                const load = layout && sentWeights
                  ? w.api.attach(layer, layout, slots.get(w)!, sentWeights)
                  : w.api.load(layer, sentPrepared!, sentWeights);
                unwrap(await Promise.race([load, w.dead, abort]));
                w.layer = layer;
              }
              // Copy path: the band's rows only, moved (not cloned again) to the worker.
              const band = sentWeights ? null : weights.data.slice(r0 * cols, r1 * cols);
              const reply = call(w, layer, r0, r1, band && transfer(band, [band.buffer]), fault && fault.band === index ? fault.kind : null);
              return unwrap(await Promise.race([reply, w.dead, abort]));
            };
            // One deadline for the band, loading the layer included; past it the catch below
            // terminates the workers, which ends the abandoned call too.
            const ms = this.bandTimeoutMs ?? defaultBandTimeoutMs(prepared.plan, r1 - r0);
            const attempt = solveOne();
            attempt.catch(() => {});
            results[index] = await within(attempt, ms, () => `a worker did not finish rows [${r0}, ${r1}) within ${ms} ms`);
            rowsDone += r1 - r0;
            if (!failed) onProgress?.({ rowsDone, rows, stage });
          }
        } finally {
          w.ref(false);
        }
      };
      runs = workers.map((w) => run(w).catch((e) => {
        failed = true;
        throw e;
      }));
      await Promise.all(runs);
      // An abort between two bands ends the loops without an error: never return holes.
      if (signal?.aborted) throw new AbortError();
      if (failed || results.some((r) => r === undefined)) throw new WorkerError('a worker stopped before its bands were solved');
      return results;
    } catch (e) {
      failed = true;
      // A worker that died, an abort, or an unexpected failure leaves the others in an unknown
      // state: start afresh next time. A typed error from a band leaves the workers healthy.
      const code = e instanceof CdquantError ? e.code : 'WORKER_FAILED';
      if (code === 'WORKER_FAILED' || code === 'ABORTED') this.terminate();
      // The others stop after their current band (each has its deadline): only then may the
      // shared buffers they write be freed.
      else if (session) await Promise.allSettled(runs);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // After a termination the shared memory is dropped whole (a worker may still be running).
      if (session && generation === this.generation) {
        if (ownSession) session.free();
        else for (const b of slots.values()) session.releaseBandBuffers(b);
      }
    }
  }
}

function sharedCopy<T extends Float32Array | Int32Array>(a: T): T {
  const Ctor = a.constructor as { new (buffer: SharedArrayBuffer): T };
  const out = new Ctor(new SharedArrayBuffer(a.byteLength));
  out.set(a as any);
  return out;
}

/** The prepared layer with its arrays in SharedArrayBuffers: posting it to N workers copies
 * nothing. */
function toShared(p: PreparedLayer): PreparedLayer {
  return {
    ...p,
    hessian: sharedCopy(p.hessian),
    dead: sharedCopy(p.dead),
    perm: p.perm && sharedCopy(p.perm),
    gptqFactor: p.gptqFactor && sharedCopy(p.gptqFactor),
    gIdx: sharedCopy(p.gIdx),
  };
}
