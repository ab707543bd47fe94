// The worker pool's failure paths in Node, on the built package (build/index.js starting
// build/worker.js): typed errors cross the thread boundary intact, a crashed worker fails the
// call instead of hanging it, an abort terminates the workers, the copy path (no
// SharedArrayBuffer) gives the same bits, and band jobs round-trip through bytes.
import { test } from 'uvu';
import { rejects, sameResult, settles } from './helpers/settle.js';
import * as assert from 'uvu/assert';
import { PROBLEMS, makeProblem } from './cross/suite.js';

const lib = await import('cdquant');
type Result = Awaited<ReturnType<typeof lib.quantizeLayer>>;

// A larger CD layer (8 bands on 2 workers) for abort and the copy path.
const big = { name: 'cd-300x96', rows: 300, cols: 96, seed: 21, options: { method: 'cd' as const, bits: 3, groupSize: 32 } };
const bigProblem = makeProblem(big);
const cdProblem = PROBLEMS[8];
const cd = makeProblem(cdProblem);
let inlineCd: Result;
let inlineBig: Result;

test('setup: single-thread results', async () => {
  inlineCd = await lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, threads: 1 });
  inlineBig = await lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, { ...big.options, threads: 1 });
});

test('a typed error thrown in a worker reaches the caller as the same class, code and message; the pool stays usable', async () => {
  const pool = new lib.WorkerPool({ threads: 2, testFault: { band: 2, kind: 'throw' } });
  try {
    const e = await rejects(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool: pool }), 'throwing worker');
    assert.instance(e, lib.NonFiniteError);
    assert.instance(e, lib.CdquantError);
    assert.is(e.code, 'NON_FINITE');
    assert.is(e.name, 'NonFiniteError');
    assert.match(e.message, /^injected fault: band \[\d+, \d+\) has a non-finite value$/);
    assert.is(pool.liveWorkers, 2, 'a typed error leaves the workers running');
  } finally {
    pool.terminate();
  }
  const healthy = new lib.WorkerPool({ threads: 2 });
  try {
    sameResult(await settles(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool: healthy }), 'pool'), inlineCd, 'after error');
  } finally {
    healthy.terminate();
  }
});

test('a worker that exits (process.exit in the worker) fails the call with WorkerError, never hangs; the pool restarts', async () => {
  const pool = new lib.WorkerPool({ threads: 2, testFault: { band: 1, kind: 'exit' } });
  try {
    const e = await rejects(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool: pool }), 'exiting worker');
    assert.instance(e, lib.WorkerError);
    assert.is(e.code, 'WORKER_FAILED');
    assert.match(e.message, /worker exited with code 7/);
    assert.is(pool.liveWorkers, 0, 'a crash terminates the pool');
  } finally {
    pool.terminate();
  }
});

test('an uncaught error in a worker fails the call with WorkerError', async () => {
  const pool = new lib.WorkerPool({ threads: 3, testFault: { band: 0, kind: 'uncaught' } });
  try {
    const e = await rejects(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool: pool }), 'uncaught error');
    assert.instance(e, lib.WorkerError);
    assert.match(e.message, /injected uncaught error in worker/);
    assert.is(pool.liveWorkers, 0);
  } finally {
    pool.terminate();
  }
});

test('a worker script that cannot load fails the call, never hangs', async () => {
  const pool = new lib.WorkerPool({ threads: 2, workerUrl: new URL('./no-such-worker.js', import.meta.url) });
  try {
    const e = await rejects(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool: pool }), 'missing worker');
    assert.instance(e, lib.WorkerError);
    assert.is(pool.liveWorkers, 0);
  } finally {
    pool.terminate();
  }
});

test('AbortSignal mid-layer: AbortError, workers terminated, no hang', async () => {
  const pool = new lib.WorkerPool({ threads: 2 });
  const controller = new AbortController();
  const seen: number[] = [];
  try {
    const e = await rejects(lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, { pool: pool, 
      ...big.options,
      signal: controller.signal,
      onProgress: ({ rowsDone }) => {
        seen.push(rowsDone);
        if (seen.length === 2) controller.abort();
      },
    }), 'abort');
    assert.instance(e, lib.AbortError);
    assert.is(e.code, 'ABORTED');
    assert.is(seen.length, 2, 'no progress after the abort');
    assert.ok(seen[1] < big.rows, 'aborted mid-layer');
    assert.is(pool.liveWorkers, 0, 'workers terminated');
    // The pool starts fresh workers afterwards.
    sameResult(await settles(lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, { ...big.options, pool: pool }), 'pool after abort'), inlineBig, 'after abort');
  } finally {
    pool.terminate();
  }
});

test('AbortSignal through quantizeLayer({ threads: 2 }) and an already aborted signal', async () => {
  const controller = new AbortController();
  const e = await rejects(lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, {
    ...big.options, threads: 2, signal: controller.signal, onProgress: () => controller.abort(),
  }), 'quantizeLayer abort');
  assert.instance(e, lib.AbortError);
  const pre = await rejects(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, threads: 2, signal: AbortSignal.abort() }), 'pre-aborted');
  assert.instance(pre, lib.AbortError);
});

test('progress: rows done rise to the total; same bits with shared memory and with copies', async () => {
  for (const sharedMemory of [true, false]) {
    const pool = new lib.WorkerPool({ threads: 2, sharedMemory });
    assert.is(pool.usesSharedMemory(), sharedMemory, 'shared memory as asked (Node has SharedArrayBuffer)');
    const progress: Array<{ rowsDone: number; rows: number; stage: string }> = [];
    try {
      const r = await settles(lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, { pool: pool,  ...big.options, onProgress: (p) => progress.push(p) }), 'pool');
      sameResult(r, inlineBig, `sharedMemory ${sharedMemory}`);
    } finally {
      pool.terminate();
    }
    assert.ok(progress.length >= 3, 'several progress reports');
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i].rowsDone > progress[i - 1].rowsDone, 'increasing');
    assert.equal(progress[progress.length - 1], { rowsDone: big.rows, rows: big.rows, stage: 'cd' });
  }
});

test('quantizeLayer({ pool }) reuses one pool across layers of different shapes', async () => {
  const pool = new lib.WorkerPool({ threads: 2 });
  try {
    for (let i = 0; i < 2; i++) {
      sameResult(await settles(lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, { ...big.options, pool }), 'pool big'), inlineBig, `big ${i}`);
      sameResult(await settles(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool }), 'pool cd'), inlineCd, `cd ${i}`);
      assert.is(pool.liveWorkers, 2);
    }
  } finally {
    pool.terminate();
  }
  assert.is(pool.liveWorkers, 0);
});

test('concurrent calls on one pool wait their turn and give the same bits', async () => {
  const pool = new lib.WorkerPool({ threads: 2 });
  try {
    const [a, b, c] = await settles(Promise.all([
      lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, { ...big.options, pool }),
      lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool }),
      lib.quantizeLayer(bigProblem.weights, bigProblem.hessian, { ...big.options, pool: pool }),
    ]), 'concurrent');
    sameResult(a, inlineBig, 'first');
    sameResult(b, inlineCd, 'second');
    sameResult(c, inlineBig, 'third');
  } finally {
    pool.terminate();
  }
});

test('threads option is validated; threads 1 uses no worker', async () => {
  for (const threads of [0, -1, 1.5, NaN]) {
    const e = await rejects(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, threads }), `threads ${threads}`);
    assert.instance(e, lib.OptionError);
  }
  assert.throws(() => new lib.WorkerPool({ threads: 0 }), (e: Error) => e instanceof lib.OptionError);
  sameResult(await lib.quantizeLayer(cd.weights, cd.hessian, cdProblem.options), inlineCd, 'automatic threads');
  assert.ok((await lib.hardwareConcurrency()) >= 1);
  assert.is(lib.runtimeName(), 'node');
});

test('band jobs: bytes round-trip exactly, bad ranges and bad bytes are typed errors', async () => {
  const prepared = await lib.prepareLayer(cd.hessian, cd.weights.cols, cdProblem.options);
  const again = lib.decodePrepared(lib.encodePrepared(prepared));
  assert.equal(again, prepared);
  const band = await lib.solveBand(again, cd.weights, 10, 40);
  const back = lib.decodeBand(lib.encodeBand(band));
  assert.equal(back, band);
  const bands = [back, await lib.solveBand(prepared, cd.weights, 0, 10), await lib.solveBand(prepared, cd.weights, 40, cd.weights.rows)];
  sameResult(await lib.mergeBands(prepared, cd.weights.rows, bands), inlineCd, 'merged bands');
  await rejects(lib.solveBand(prepared, cd.weights, 5, 5), 'empty band').then((e) => assert.instance(e, lib.ShapeError));
  await rejects(lib.solveBand(prepared, cd.weights, 0, cd.weights.rows + 1), 'past the end').then((e) => assert.instance(e, lib.ShapeError));
  assert.throws(() => lib.decodeBand(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), (e: Error) => e instanceof lib.FormatError);
  assert.throws(() => lib.decodeBand(lib.encodePrepared(prepared)), (e: Error) => e instanceof lib.FormatError);
});

test.run();
