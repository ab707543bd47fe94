// Serverless fan-out: row bands of a layer solved by HTTP band workers (workerd / Cloudflare
// Workers, or anything serving createFanoutWorker()), merged with mergeBands() into the same
// bits as a local run. Runtime-neutral: only fetch, crypto.subtle and timers are used.
//
// Protocol (version 4). Every body is bytes; every hash is lower-case hex SHA-256.
//   PUT  /prepared/<H>   body: encodePrepared() bytes whose SHA-256 is H. The worker verifies the
//                        hash (400 HASH_MISMATCH otherwise), decodes it and keeps it in a small
//                        in-memory LRU cache: content-addressed, so any band job may refer to it.
//   POST /band           body: a band request (encodeBandRequest, a frame of src/parallel/frame.ts,
//                        magic 'CDQJ'): meta { v, r0, r1, cols, prepared: H, weights: W, baseline, gguf? }, arrays
//                        `weights` (the band's rows, f32; W = the SHA-256 of their bytes) and,
//                        when sent inline, `prepared` (u8, the encodePrepared bytes). Request header
//                        x-cdquant-job-sha256 = SHA-256 of the whole body. The worker checks all
//                        three (400 HASH_MISMATCH), answers 409 PREPARED_MISSING when it does not
//                        hold H (the coordinator then PUTs it, or sends it inline), and replies
//                        200 with encodeBand() bytes (rows [r0, r1)) and the headers (with meta.gguf =
//                        { type, solver, iters }: the rows quantized to that GGUF block type, as
//                        gguf-band.ts does, and encodeGgufBand() bytes)
//                        x-cdquant-band-sha256 (of the reply body) and the echoed
//                        x-cdquant-job-sha256, x-cdquant-prepared-sha256, x-cdquant-weights-sha256,
//                        x-cdquant-rows: "r0-r1".
//   GET  /               200 JSON { service: 'cdquant-fanout', protocol, runtime, cached }.
// A worker given a token (createFanoutWorker({ token }) or the CDQUANT_FANOUT_TOKEN binding)
// answers only requests with `authorization: Bearer <token>`; the coordinator's `headers` adds it.
// Errors are JSON { code, message } with the code also in x-cdquant-error: 400 HASH_MISMATCH /
// BAD_REQUEST, 401 UNAUTHORIZED, 404 NOT_FOUND, 405 BAD_METHOD, 409 PREPARED_MISSING, 413 TOO_LARGE, 422 with a
// CdquantError code (the solver refused: the same on every instance, so not retried), 500 INTERNAL.
import { AbortError, OptionError, WorkerError, errorFromCode, type ErrorCode } from '../core/errors.js';
import { sha256Hex } from '../formats/digest.js';
import type { LayerPlan } from '../core/options.js';
import type { BandResult, PreparedLayer, WeightMatrix } from '../core/types.js';
import { bandRanges, bandRowsFor, checkBandInputs, type BandSolver, type SolveOptions } from './bands.js';
import { decodeBand, decodeFrame, decodeGgufBand, encodeFrame, encodePrepared } from './frame.js';
import { checkGgufBandSpec, type GgufBandResult, type GgufBandSpec } from './gguf-band.js';
import { SerialQueue } from './serial.js';

// 3: the solver spec carries the scale format; a band request says whether to add the baseline.
// 4: a band request may ask for GGUF bands (meta.gguf); a version-3 worker would have solved
// integer grids for it.
export const FANOUT_PROTOCOL = 4;

/** Codes of the fan-out protocol's own refusals (besides the solver's CdquantError codes). */
export type FanoutErrorCode = 'HASH_MISMATCH' | 'PREPARED_MISSING' | 'BAD_REQUEST' | 'UNAUTHORIZED' | 'NOT_FOUND' | 'BAD_METHOD' | 'TOO_LARGE' | 'INTERNAL';

export const FANOUT_HEADERS = {
  job: 'x-cdquant-job-sha256',
  band: 'x-cdquant-band-sha256',
  prepared: 'x-cdquant-prepared-sha256',
  weights: 'x-cdquant-weights-sha256',
  rows: 'x-cdquant-rows',
  error: 'x-cdquant-error',
} as const;

const SOLVER_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'SHAPE_MISMATCH', 'NON_FINITE', 'NOT_POSITIVE_DEFINITE', 'BAD_OPTION', 'BAD_FILE', 'UNSUPPORTED_DTYPE', 'KERNEL_FAILED',
]);
const HASH = /^[0-9a-f]{64}$/;

/** The meta of a band request. */
export interface BandRequestHeader {
  v: number;
  r0: number;
  r1: number;
  cols: number;
  /** SHA-256 of the encodePrepared() bytes. */
  prepared: string;
  /** Also the RTN baseline's row losses (default false). */
  baseline?: boolean;
  /** SHA-256 of the band's weights (f32 little-endian bytes). */
  weights: string;
  /** A GGUF band (gguf-band.ts) instead of the prepared layer's integer grids. */
  gguf?: GgufBandSpec;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const BAND_REQUEST = 'CDQJ';

/** A band request as bytes: the band's weights and, inline, the prepared layer's bytes. */
export function encodeBandRequest(header: Omit<BandRequestHeader, 'v'>, weights: Float32Array, inlinePrepared: Uint8Array | null): Uint8Array {
  return encodeFrame(BAND_REQUEST, { v: FANOUT_PROTOCOL, ...header }, { weights, prepared: inlinePrepared });
}

/** The inverse of encodeBandRequest(); a FanoutProtocolError (BAD_REQUEST) for a malformed one. */
export function decodeBandRequest(bytes: Uint8Array): { header: BandRequestHeader; inlinePrepared: Uint8Array | null; weights: Float32Array } {
  const bad = (why: string) => new FanoutProtocolError('BAD_REQUEST', `bad band request: ${why}`);
  let frame;
  try {
    frame = decodeFrame(BAND_REQUEST, bytes);
  } catch (e) {
    throw bad((e as Error).message);
  }
  const h = frame.meta as unknown as BandRequestHeader;
  const int = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (h.v !== FANOUT_PROTOCOL) throw bad(`protocol version ${String(h.v)}, this worker speaks ${FANOUT_PROTOCOL}`);
  if (!int(h.r0) || !int(h.r1) || h.r1 <= h.r0 || !int(h.cols) || h.cols < 1) throw bad('r0, r1 and cols must be integers with r0 < r1 and cols >= 1');
  if (h.baseline !== undefined && typeof h.baseline !== 'boolean') throw bad('baseline must be true or false');
  if (typeof h.prepared !== 'string' || !HASH.test(h.prepared) || typeof h.weights !== 'string' || !HASH.test(h.weights)) throw bad('hashes must be hex SHA-256');
  if (h.gguf !== undefined) {
    try {
      checkGgufBandSpec(h.gguf, h.cols);
    } catch (e) {
      throw bad((e as Error).message);
    }
    if (h.baseline) throw bad('the RTN baseline does not apply to GGUF bands (their reference loss is always given)');
  }
  const { weights, prepared } = frame.arrays;
  if (!(weights instanceof Float32Array) || weights.length !== (h.r1 - h.r0) * h.cols) throw bad(`weights must be (r1 - r0) * cols = ${(h.r1 - h.r0) * h.cols} f32 values`);
  if (prepared !== undefined && !(prepared instanceof Uint8Array)) throw bad('inline prepared bytes must be u8');
  return { header: h, inlinePrepared: prepared ?? null, weights };
}

/** A refusal of the fan-out protocol (carried as HTTP status + code). */
export class FanoutProtocolError extends Error {
  readonly code: FanoutErrorCode;
  constructor(code: FanoutErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = 'FanoutProtocolError';
  }
}

// ---------------------------------------------------------------------------------------
// Coordinator

type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface FanoutPoolOptions {
  /** Base URLs of the band workers (e.g. http://127.0.0.1:8701). At least one. */
  urls: readonly (string | URL)[];
  /** Rows per band job. Default: about four bands per request slot, 8-128 rows (as WorkerPool). */
  bandRows?: number;
  /** Per request (upload or band), including reading the reply. Default 120 000 ms. */
  timeoutMs?: number;
  /** Extra attempts per band after a failed one, preferably on other instances. Default 4. */
  retries?: number;
  /** Requests in flight per URL. Default 1 (one workerd process solves one band at a time);
   * raise it for one edge URL that fans out to many isolates. */
  concurrency?: number;
  /** 'cache' (default): PUT the prepared layer once per worker, band jobs refer to its hash
   * (falls back to inline for a URL whose instances do not keep it). 'inline': every band job
   * carries the prepared bytes. */
  prepared?: 'cache' | 'inline';
  /** After a network failure or a timeout, the URL rests this long before it is tried again.
   * Default 2000 ms. */
  cooldownMs?: number;
  /** Headers added to every request, e.g. { authorization: 'Bearer <token>' }. */
  headers?: Record<string, string>;
  /** fetch to use (default globalThis.fetch): a hook for tests and proxies. */
  fetch?: FetchLike;
  /** Observability: accepted uploads (and inline sends), bands sent and done, retries. */
  onEvent?: (event: FanoutEvent) => void;
}

export type FanoutEvent =
  | { type: 'upload'; url: string; hash: string; bytes: number }
  | { type: 'send'; url: string; r0: number; r1: number; attempt: number }
  | { type: 'done'; url: string; r0: number; r1: number; ms: number }
  | { type: 'retry'; url: string; r0: number; r1: number; attempt: number; code: string; message: string };

export interface FanoutStats {
  /** Band jobs solved (accepted replies). */
  bands: number;
  /** Failed attempts that were retried. */
  retries: number;
  /** Prepared layers sent: PUTs the worker accepted, plus band jobs that carried one inline. */
  uploads: number;
  byUrl: Record<string, { bands: number; failures: number; uploads: number }>;
}

/** A failed attempt: retried elsewhere unless `fatal`. */
class AttemptError extends Error {
  constructor(readonly code: string, message: string, readonly markDown = false, readonly fatal: Error | null = null) {
    super(message);
  }
}

interface Target {
  url: string;
  /** Prepared hashes this URL has accepted (most recent last; a few kept). */
  has: string[];
  uploads: Map<string, Promise<void>>;
  downUntil: number;
  /** Its instances do not keep PUT layers (e.g. an edge URL over many isolates): send inline. */
  inline: boolean;
  stats: { bands: number; failures: number; uploads: number };
}

interface BandTask {
  index: number;
  r0: number;
  r1: number;
  weights: Float32Array;
  weightsHash: string;
  baseline: boolean;
  gguf: GgufBandSpec | null;
  tried: Set<Target>;
  failures: string[];
}

interface Layer {
  bytes: Uint8Array;
  hash: string;
  plan: LayerPlan;
}

/**
 * Solves row bands on HTTP band workers: the same `solveBands` contract as WorkerPool, so it
 * plugs into `quantizeLayer(w, h, { pool })` and `quantizeModel(model, samples, { pool })`.
 * Bands go to the URLs from a work queue; a band whose attempt fails (network error, timeout,
 * 5xx, refused input hash, reply failing its hash or shape checks) is retried on another
 * instance; the merged result is bit-identical to a local run.
 */
export class FanoutPool implements BandSolver {
  private readonly targets: Target[];
  private readonly options: Required<Omit<FanoutPoolOptions, 'urls' | 'bandRows' | 'fetch' | 'onEvent'>> & Pick<FanoutPoolOptions, 'bandRows' | 'onEvent'>;
  private readonly fetchImpl: FetchLike;
  private readonly queue = new SerialQueue();
  private controllers = new Set<AbortController>();
  private counters = { bands: 0, retries: 0, uploads: 0 };

  constructor(options: FanoutPoolOptions) {
    const urls = options?.urls;
    if (!Array.isArray(urls) || urls.length === 0) throw new OptionError('FanoutPool needs at least one worker URL');
    this.targets = urls.map((u) => {
      let url: URL;
      try {
        url = new URL(String(u));
      } catch {
        throw new OptionError(`worker URL "${String(u)}" is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OptionError(`worker URL ${url} must be http(s)`);
      return { url: url.href.replace(/\/+$/, ''), has: [], uploads: new Map(), downUntil: 0, inline: false, stats: { bands: 0, failures: 0, uploads: 0 } };
    });
    const positiveInt = (name: string, v: unknown, lo: number) => {
      if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < lo)) throw new OptionError(`${name} must be an integer >= ${lo}, got ${String(v)}`);
    };
    positiveInt('bandRows', options.bandRows, 1);
    positiveInt('timeoutMs', options.timeoutMs, 1);
    positiveInt('retries', options.retries, 0);
    positiveInt('concurrency', options.concurrency, 1);
    positiveInt('cooldownMs', options.cooldownMs, 0);
    if (options.prepared !== undefined && options.prepared !== 'cache' && options.prepared !== 'inline') {
      throw new OptionError(`prepared must be 'cache' or 'inline', got ${String(options.prepared)}`);
    }
    this.options = {
      bandRows: options.bandRows,
      timeoutMs: options.timeoutMs ?? 120_000,
      retries: options.retries ?? 4,
      concurrency: options.concurrency ?? 1,
      prepared: options.prepared ?? 'cache',
      cooldownMs: options.cooldownMs ?? 2000,
      headers: { ...options.headers },
      onEvent: options.onEvent,
    };
    if (!options.fetch && typeof globalThis.fetch !== 'function') throw new OptionError('no fetch in this runtime: pass options.fetch');
    this.fetchImpl = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
  }

  /** The worker URLs, normalized (no trailing slash). */
  get urls(): string[] {
    return this.targets.map((t) => t.url);
  }

  /** Counts since the pool was made: accepted bands, retried attempts, uploads, per URL. */
  stats(): FanoutStats {
    return { ...this.counters, byUrl: Object.fromEntries(this.targets.map((t) => [t.url, { ...t.stats }])) };
  }

  /** Aborts requests in flight (the running call rejects with AbortError) and forgets which
   * workers hold which prepared layer. The pool can be used again. */
  terminate(): void {
    for (const c of this.controllers) c.abort(new AbortError('the fan-out pool was terminated'));
    for (const t of this.targets) {
      t.has = [];
      t.uploads.clear();
    }
  }

  /** Quantizes one layer's rows on the band workers; resolves to the bands for mergeBands().
   * Calls on one pool run one after another. */
  async solveBands(prepared: PreparedLayer, weights: WeightMatrix, options: SolveOptions = {}): Promise<BandResult[]> {
    return this.solveAll<BandResult>(prepared, weights, options, null);
  }

  /** solveBands for GGUF bands (gguf-band.ts), solved by the band workers the same way. */
  async solveGgufBands(prepared: PreparedLayer, weights: WeightMatrix, spec: GgufBandSpec, options: SolveOptions = {}): Promise<GgufBandResult[]> {
    checkBandInputs(prepared, weights);
    return this.solveAll<GgufBandResult>(prepared, weights, options, checkGgufBandSpec(spec, weights.cols));
  }

  /** Every band of the layer (integer grids, or GGUF with `gguf`), one call on this pool at a time. */
  private async solveAll<T extends BandResult | GgufBandResult>(prepared: PreparedLayer, weights: WeightMatrix, options: SolveOptions, gguf: GgufBandSpec | null): Promise<T[]> {
    checkBandInputs(prepared, weights);
    if (options.signal?.aborted) throw new AbortError();
    const slots = this.targets.length * this.options.concurrency;
    const bandRows = options.bandRows ?? this.options.bandRows ?? bandRowsFor(weights.rows, slots);
    const ranges = bandRanges(weights.rows, bandRows);
    return this.queue.run(async () => {
      if (options.signal?.aborted) throw new AbortError();
      return this.run<T>(prepared, weights, ranges, options, gguf);
    });
  }

  private async run<T extends BandResult | GgufBandResult>(
    prepared: PreparedLayer, weights: WeightMatrix, ranges: Array<[number, number]>, options: SolveOptions, gguf: GgufBandSpec | null,
  ): Promise<T[]> {
    const { rows, cols } = weights;
    const bytes = encodePrepared(prepared);
    const layer: Layer = { bytes, hash: await sha256Hex(bytes), plan: prepared.plan };
    const pending: BandTask[] = [];
    for (const [index, [r0, r1]] of ranges.entries()) {
      // A copy: the caller may reuse weights.data after the call; hashing wants an ArrayBuffer.
      const band = weights.data.slice(r0 * cols, r1 * cols);
      pending.push({ index, r0, r1, weights: band, weightsHash: await sha256Hex(bytesOf(band)), baseline: gguf ? false : options.baseline ?? false, gguf, tried: new Set(), failures: [] });
    }
    const results: T[] = new Array(pending.length);
    let remaining = pending.length;
    let rowsDone = 0;
    let inflight = 0;
    let failure: Error | null = null;
    let wake: () => void = () => {};
    let changed = new Promise<void>((resolve) => (wake = resolve));
    const notify = () => {
      wake();
      changed = new Promise<void>((resolve) => (wake = resolve));
    };
    const controllers = new Set<AbortController>();
    // Rejects when the run fails: attempts are raced against it, so a fetch that ignores its
    // abort signal cannot hold the call open.
    let failed!: (e: Error) => void;
    const failedPromise = new Promise<never>((_, reject) => (failed = reject));
    failedPromise.catch(() => {});
    const fail = (e: Error) => {
      if (failure) return;
      failure = e;
      failed(e);
      for (const c of controllers) c.abort(e);
      notify();
    };
    const onAbort = () => fail(new AbortError());
    options.signal?.addEventListener('abort', onAbort, { once: true });

    // Rest periods of downed URLs; cleared at the end so no timer outlives the call.
    const timers = new Set<ReturnType<typeof setTimeout>>();
    const sleep = (ms: number) => new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });
    const live = (t: Target) => t.downUntil <= Date.now();
    // The first job this target may take: one it has not failed, or one every other target
    // has failed or cannot take now (then a retry on the same instance beats waiting).
    const pick = (t: Target): BandTask | undefined => {
      let i = pending.findIndex((j) => !j.tried.has(t));
      if (i < 0) i = pending.findIndex((j) => this.targets.every((o) => o === t || j.tried.has(o) || !live(o)));
      return i < 0 ? undefined : pending.splice(i, 1)[0];
    };

    const runner = async (t: Target) => {
      while (!failure && remaining > 0) {
        const wait = t.downUntil - Date.now();
        if (wait > 0) {
          await Promise.race([sleep(wait), changed]);
          continue;
        }
        const job = pick(t);
        if (!job) {
          await changed;
          continue;
        }
        inflight++;
        const controller = new AbortController();
        controllers.add(controller);
        this.controllers.add(controller);
        const attempt = job.failures.length + 1;
        try {
          this.options.onEvent?.({ type: 'send', url: t.url, r0: job.r0, r1: job.r1, attempt });
          const t0 = Date.now();
          const band = await Promise.race([this.attempt(t, layer, job, controller), failedPromise]);
          if (failure) break;
          results[job.index] = band as T;
          remaining--;
          rowsDone += job.r1 - job.r0;
          t.stats.bands++;
          this.counters.bands++;
          this.options.onEvent?.({ type: 'done', url: t.url, r0: job.r0, r1: job.r1, ms: Date.now() - t0 });
          options.onProgress?.({ rowsDone, rows, stage: gguf ? gguf.solver : prepared.plan.spec.method });
        } catch (e) {
          if (failure) break;
          if (controller.signal.aborted && !(e instanceof AttemptError && e.code === 'TIMEOUT')) {
            fail(controller.signal.reason instanceof Error ? controller.signal.reason : new AbortError());
            break;
          }
          const err = e instanceof AttemptError ? e : new AttemptError('INTERNAL', (e as Error)?.message ?? String(e));
          if (err.fatal) {
            fail(err.fatal);
            break;
          }
          t.stats.failures++;
          job.tried.add(t);
          job.failures.push(`${t.url}: ${err.code}: ${err.message}`);
          if (err.markDown) t.downUntil = Date.now() + this.options.cooldownMs;
          if (job.failures.length > this.options.retries) {
            fail(new WorkerError(`band [${job.r0}, ${job.r1}) failed ${job.failures.length} times:\n  ${job.failures.join('\n  ')}`));
            break;
          }
          this.counters.retries++;
          this.options.onEvent?.({ type: 'retry', url: t.url, r0: job.r0, r1: job.r1, attempt, code: err.code, message: err.message });
          pending.unshift(job);
        } finally {
          inflight--;
          controllers.delete(controller);
          this.controllers.delete(controller);
          notify();
        }
      }
    };

    try {
      const runners: Promise<void>[] = [];
      for (let s = 0; s < this.options.concurrency; s++) for (const t of this.targets) runners.push(runner(t));
      await Promise.all(runners);
      if (failure) throw failure;
      if (remaining > 0 || inflight > 0) throw new WorkerError(`fan-out ended with ${remaining} bands unsolved`);
      return results;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      for (const timer of timers) clearTimeout(timer);
    }
  }

  /** One band on one target: upload the prepared layer if needed, send, verify. */
  private async attempt(t: Target, layer: Layer, job: BandTask, controller: AbortController): Promise<BandResult | GgufBandResult> {
    const timer = setTimeout(() => controller.abort(new AttemptError('TIMEOUT', `no reply within ${this.options.timeoutMs} ms`, true)), this.options.timeoutMs);
    controller.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
    try {
      let inline = this.options.prepared === 'inline' || t.inline;
      if (!inline && !t.has.includes(layer.hash)) await this.upload(t, layer, controller.signal);
      let res = await this.post(t, layer, job, inline, controller.signal);
      if (res.status === 409 && !inline) {
        // Evicted or restarted: upload again; if the next request still misses it, this URL
        // spreads requests over instances that do not share a cache, so send it inline.
        await res.body?.cancel().catch(() => {});
        t.has = t.has.filter((h) => h !== layer.hash);
        await this.upload(t, layer, controller.signal);
        res = await this.post(t, layer, job, false, controller.signal);
        if (res.status === 409) {
          await res.body?.cancel().catch(() => {});
          t.inline = inline = true;
          res = await this.post(t, layer, job, true, controller.signal);
        }
      }
      if (!res.ok) throw await refusal(res);
      const body = new Uint8Array(await res.arrayBuffer());
      return await verify(res, body, layer, job);
    } catch (e) {
      throw attemptError(e, controller.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  private upload(t: Target, layer: Layer, signal: AbortSignal): Promise<void> {
    let p = t.uploads.get(layer.hash);
    if (!p) {
      p = (async () => {
        const res = await this.fetchImpl(`${t.url}/prepared/${layer.hash}`, {
          method: 'PUT',
          body: layer.bytes as Uint8Array<ArrayBuffer>,
          headers: { ...this.options.headers, 'content-type': 'application/octet-stream' },
          signal,
        });
        if (!res.ok) throw await refusal(res);
        await res.body?.cancel().catch(() => {});
        t.stats.uploads++;
        this.counters.uploads++;
        this.options.onEvent?.({ type: 'upload', url: t.url, hash: layer.hash, bytes: layer.bytes.length });
        t.has = [...t.has.filter((h) => h !== layer.hash), layer.hash].slice(-8);
      })();
      t.uploads.set(layer.hash, p);
      // Settled uploads are forgotten: `has` says what the worker holds.
      p.then(() => t.uploads.delete(layer.hash), () => t.uploads.delete(layer.hash));
    }
    return p;
  }

  private async post(t: Target, layer: Layer, job: BandTask, inline: boolean, signal: AbortSignal): Promise<Response> {
    if (inline) {
      t.stats.uploads++;
      this.counters.uploads++;
      this.options.onEvent?.({ type: 'upload', url: t.url, hash: layer.hash, bytes: layer.bytes.length });
    }
    const header = { r0: job.r0, r1: job.r1, cols: layer.plan.cols, prepared: layer.hash, weights: job.weightsHash, baseline: job.baseline, ...(job.gguf ? { gguf: job.gguf } : {}) };
    const body = encodeBandRequest(header, job.weights, inline ? layer.bytes : null);
    return this.fetchImpl(`${t.url}/band`, {
      method: 'POST',
      body: body as Uint8Array<ArrayBuffer>,
      headers: { ...this.options.headers, 'content-type': 'application/octet-stream', [FANOUT_HEADERS.job]: await sha256Hex(body) },
      signal,
    });
  }
}

/** The refusal in an error reply, as an AttemptError (fatal for the solver's typed errors). */
async function refusal(res: Response): Promise<AttemptError> {
  let code = res.headers.get(FANOUT_HEADERS.error) ?? '';
  let message = '';
  try {
    const j = JSON.parse(await res.text());
    code ||= String(j.code ?? '');
    message = String(j.message ?? '');
  } catch {
    // not our JSON: a proxy's or the platform's error page
  }
  code ||= `HTTP_${res.status}`;
  message ||= `HTTP ${res.status} ${res.statusText}`;
  if (res.status === 422 && SOLVER_CODES.has(code)) return new AttemptError(code, message, false, errorFromCode(code, message));
  // A wrong or missing token is a set-up error: no retry will fix it.
  if (res.status === 401) return new AttemptError(code, message, false, new WorkerError(`${res.url || 'band worker'}: ${code}: ${message}`));
  // 5xx: the instance may be overloaded or restarting; retried elsewhere (not rested: the
  // platform's own errors, e.g. exceeded CPU, are per request).
  return new AttemptError(code, message);
}

function attemptError(e: unknown, signal: AbortSignal): AttemptError {
  if (e instanceof AttemptError) return e;
  if (signal.aborted && signal.reason instanceof AttemptError) return signal.reason;
  if (signal.aborted) return new AttemptError('ABORTED', 'aborted');
  // fetch's TypeError: refused, reset, DNS. The instance is likely gone: rest it.
  const cause = (e as any)?.cause;
  const detail = cause?.code ?? cause?.message ?? '';
  return new AttemptError('NETWORK', `${(e as Error)?.message ?? String(e)}${detail ? ` (${detail})` : ''}`, true);
}

/** Checks a band reply against what was sent: body hash, echoed input hashes, rows, shapes. */
async function verify(res: Response, body: Uint8Array, layer: Layer, job: BandTask): Promise<BandResult | GgufBandResult> {
  const h = (name: keyof typeof FANOUT_HEADERS) => res.headers.get(FANOUT_HEADERS[name]);
  const bad = (why: string) => new AttemptError('CORRUPT_RESPONSE', `reply for band [${job.r0}, ${job.r1}) rejected: ${why}`);
  const claimed = h('band');
  if (!claimed) throw bad(`no ${FANOUT_HEADERS.band} header`);
  const actual = await sha256Hex(body);
  if (actual !== claimed) throw bad(`body SHA-256 ${actual.slice(0, 12)}... differs from the worker's ${claimed.slice(0, 12)}...`);
  if (h('prepared') !== layer.hash) throw bad(`prepared hash echoed as ${h('prepared')}, sent ${layer.hash}`);
  if (h('weights') !== job.weightsHash) throw bad(`weights hash echoed as ${h('weights')}, sent ${job.weightsHash}`);
  if (h('rows') !== `${job.r0}-${job.r1}`) throw bad(`rows echoed as ${h('rows')}`);
  let band: BandResult | GgufBandResult;
  try {
    band = job.gguf ? decodeGgufBand(body, { spec: job.gguf, cols: layer.plan.cols }) : decodeBand(body, layer.plan);
  } catch (e) {
    throw bad(`undecodable band bytes (${(e as Error).message})`);
  }
  if (band.r0 !== job.r0 || band.r1 !== job.r1) throw bad(`band holds rows [${band.r0}, ${band.r1})`);
  return band;
}

