// The shared-memory pool (issue 13): workers run cdquant-shared.wasm over one wasm memory that
// this thread allocates in, reading each layer's H-side arrays in place. Checked here: the same
// bits as one thread and as both copying paths for 1-4 workers on layers wide enough for every
// kernel's tiling (gemmSub's 64-column chunks and 128-deep slices, GPTQ's blocks, groups of 128),
// a worker's instance allocating nothing, the pool's error contract on this path (typed errors,
// crash, abort: no worker left, the shared memory dropped) and the memory not growing across
// calls. The reference for every result is quantizeLayer on this thread (threads: 1), whose
// kernels the rest of the suite checks against float64 references; a worker's instance runs the
// same kernels, so any difference is a fault of the sharing.
import { test } from 'uvu';
import { rejects, sameResult, settles } from './helpers/settle.js';
import * as assert from 'uvu/assert';
import { makeProblem, type Problem } from './cross/suite.js';
// The drivers of the shared pieces, from the source (the package exports only their users).
import { cholesky, hessianUpdate, upperCholeskyOfInverse } from '../src/core/linalg.js';

const lib = await import('cdquant');
type Result = Awaited<ReturnType<typeof lib.quantizeLayer>>;

// 4-bit g128 layers of 272 inputs (two full groups and a tail; 4 gemmSub column chunks and a
// partial one; 3 k slices) in every solver family the pool runs, act-order and refits included.
const PROBLEMS: Problem[] = [
  { name: 'gptq-g128-act', rows: 70, cols: 272, seed: 31, options: { method: 'gptq', bits: 4, groupSize: 128, actOrder: true } },
  { name: 'cd-owc-g128', rows: 70, cols: 272, seed: 32, options: { method: 'cd', bits: 4, groupSize: 128, clip: 'owc' } },
  { name: 'cd-gptqinit-act-refit', rows: 70, cols: 272, seed: 33, options: { method: 'cd', bits: 3, groupSize: 128, init: 'gptq', actOrder: true, refit: 1 } },
  { name: 'bcd-g128', rows: 70, cols: 272, seed: 34, options: { method: 'bcd', bits: 4, groupSize: 128 } },
  // The fast per-channel OWC search (over 512 columns): its rescoring batches of 256 error rows
  // split a band's rows differently from the bands themselves.
  { name: 'rtn-owc-channel-fast', rows: 90, cols: 600, seed: 35, options: { method: 'rtn', bits: 3, groupSize: -1, clip: 'owc', owcExact: false } },
];
const solved = PROBLEMS.map((p) => ({ p, ...makeProblem(p) }));
const reference: Result[] = [];

test('setup: one-thread results', async () => {
  for (const { p, weights, hessian } of solved) reference.push(await lib.quantizeLayer(weights, hessian, { ...p.options, threads: 1 }));
});

test('this runtime (Node) runs pools on one shared wasm memory', () => {
  assert.ok(lib.sharedKernelSupported());
  const pool = new lib.WorkerPool({ threads: 2 });
  assert.ok(pool.usesSharedKernel(), 'default: shared wasm memory');
  assert.not.ok(new lib.WorkerPool({ threads: 2, sharedMemory: 'arrays' }).usesSharedKernel(), "'arrays': per-worker memories");
  assert.not.ok(new lib.WorkerPool({ threads: 2, sharedMemory: false }).usesSharedKernel(), 'false: copies');
  assert.is(pool.sharedMemoryBytes, 0, 'no memory before the first call');
});

test('same bits for 1-4 workers on shared memory, and on both copying paths', async () => {
  const pools = [
    ...[1, 2, 3, 4].map((threads) => ({ name: `shared ${threads}`, pool: new lib.WorkerPool({ threads, sharedMemory: true }) })),
    { name: 'arrays 2', pool: new lib.WorkerPool({ threads: 2, sharedMemory: 'arrays' }) },
    { name: 'copy 2', pool: new lib.WorkerPool({ threads: 2, sharedMemory: false }) },
  ];
  try {
    for (const { name, pool } of pools) {
      for (const [i, { p, weights, hessian }] of solved.entries()) {
        // 70 rows: bands of 8-18 rows, every worker gets several, the last one short.
        const r = await settles(lib.quantizeLayer(weights, hessian, { ...p.options, pool }), `${name} ${p.name}`);
        sameResult(r, reference[i], `${name} ${p.name}`);
      }
      if (name.startsWith('shared')) assert.ok(pool.sharedMemoryBytes > 0, `${name}: ran on the shared memory`);
      else assert.is(pool.sharedMemoryBytes, 0, `${name}: no shared memory`);
    }
  } finally {
    for (const { pool } of pools) pool.terminate();
  }
});

test("a worker's instance over shared memory allocates nothing and solves a band to the owner's bits", async () => {
  const owner = await lib.Kernel.createShared();
  const { p, weights, hessian } = solved[1];
  const prepared = await lib.prepareLayer(hessian, weights.cols, p.options);
  const session = lib.LayerSession.fromPrepared(owner, prepared);
  try {
    // A second instance of the shared module over the same memory, as a worker makes one.
    const module = await WebAssembly.compile((await import('node:fs')).readFileSync(new URL('../cdquant-shared.wasm', import.meta.url)));
    const guest = await lib.Kernel.attachShared(module, owner.exports.memory);
    assert.throws(() => guest.alloc(64), (e: Error) => e instanceof lib.KernelError && /does not allocate/.test(e.message));
    const attached = lib.LayerSession.attach(guest, session.layout(), session.bandBuffersFor(32));
    const mine = attached.solveBand(weights, 3, 35);
    const theirs = session.solveBand(weights, 3, 35);
    assert.equal(mine, theirs, 'same band from either instance');
    attached.free(); // frees nothing it does not own
    assert.equal(session.solveBand(weights, 3, 35), theirs, 'the owner session is intact');
    // A session in an ordinary kernel has no layout for other threads.
    const plain = lib.LayerSession.fromPrepared(await lib.Kernel.create(), prepared);
    assert.throws(() => plain.layout(), (e: Error) => e instanceof lib.KernelError);
    plain.free();
  } finally {
    session.free();
  }
});

test('the shared memory does not grow across calls: freed and reused, layer after layer', async () => {
  const pool = new lib.WorkerPool({ threads: 2 });
  try {
    const sizes: number[] = [];
    for (let round = 0; round < 4; round++) {
      for (const [i, { p, weights, hessian }] of solved.entries()) {
        sameResult(await settles(lib.quantizeLayer(weights, hessian, { ...p.options, pool }), p.name), reference[i], `round ${round} ${p.name}`);
      }
      sizes.push(pool.sharedMemoryBytes);
    }
    assert.ok(sizes[0] > 0);
    // The allocator reuses what each call freed: after the first round the memory stays put.
    assert.equal(sizes.slice(1), [sizes[1], sizes[1], sizes[1]], `shared memory by round: ${sizes.join(', ')}`);
    assert.is(pool.liveWorkers, 2);
  } finally {
    pool.terminate();
  }
  assert.is(pool.sharedMemoryBytes, 0, 'terminate drops the shared memory');
});

test('shared path: a typed error from a band reaches the caller; workers and memory stay usable', async () => {
  const { p, weights, hessian } = solved[1];
  const pool = new lib.WorkerPool({ threads: 2, testFault: { band: 1, kind: 'throw' } });
  try {
    const e = await rejects(lib.quantizeLayer(weights, hessian, { ...p.options, pool }), 'throwing band');
    assert.instance(e, lib.NonFiniteError);
    assert.is(pool.liveWorkers, 2, 'a typed error leaves the workers running');
    assert.ok(pool.sharedMemoryBytes > 0, 'and their shared memory');
  } finally {
    pool.terminate();
  }
});

for (const kind of ['exit', 'uncaught', 'hang'] as const) {
  test(`shared path: a worker that ${kind === 'hang' ? 'hangs' : kind === 'exit' ? 'exits' : 'throws uncaught'} mid-layer fails the call with WorkerError; no worker left, the memory dropped; the pool works again`, async () => {
    const { p, weights, hessian } = solved[0];
    const pool = new lib.WorkerPool({ threads: 2, testFault: { band: 1, kind }, bandTimeoutMs: kind === 'hang' ? 1500 : undefined });
    try {
      const e = await rejects(lib.quantizeLayer(weights, hessian, { ...p.options, pool }), kind);
      assert.instance(e, lib.WorkerError);
      assert.is(e.code, 'WORKER_FAILED');
      assert.is(pool.liveWorkers, 0, 'workers terminated');
      assert.is(pool.sharedMemoryBytes, 0, 'the shared memory a dead worker may have been writing is dropped');
    } finally {
      pool.terminate();
    }
    const healthy = new lib.WorkerPool({ threads: 2 });
    try {
      sameResult(await settles(lib.quantizeLayer(weights, hessian, { ...p.options, pool: healthy }), 'after'), reference[0], `after ${kind}`);
    } finally {
      healthy.terminate();
    }
  });
}

test('shared path: AbortSignal mid-layer rejects with AbortError, terminates the workers, drops the memory; the next call gives the same bits', async () => {
  const { p, weights, hessian } = solved[2];
  const pool = new lib.WorkerPool({ threads: 2 });
  const controller = new AbortController();
  let reports = 0;
  try {
    const e = await rejects(lib.quantizeLayer(weights, hessian, {
      ...p.options, pool, signal: controller.signal, onProgress: () => { if (++reports === 1) controller.abort(); },
    }), 'abort');
    assert.instance(e, lib.AbortError);
    assert.is(reports, 1, 'no progress after the abort');
    assert.is(pool.liveWorkers, 0);
    assert.is(pool.sharedMemoryBytes, 0);
    sameResult(await settles(lib.quantizeLayer(weights, hessian, { ...p.options, pool }), 'after abort'), reference[2], 'after abort');
  } finally {
    pool.terminate();
  }
});

// The factorizations' pieces on 1-4 workers against the serial kernels (whose own references
// are test/kernels.test.ts and test/speed.test.ts: float64 checks and float32 emulations of
// their documented order): the same bits, whichever thread ran which band or chunk.
test('parallel regions: hessianUpdate, cholesky and chol(H^-1) pieces on 1-4 workers give the serial kernels\' bits', async () => {
  const n = 517; // 5 blocks of 128 and a tail of 5: every piece kind, uneven last pieces
  const m = 300; // 3 slices of X's rows, the last short
  let s = 99;
  const uniform = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296) - 0.5;
  const x = Float32Array.from({ length: m * n }, uniform);
  const h0 = Float32Array.from({ length: n * n }, uniform);
  for (const threads of [1, 2, 3, 4]) {
    const pool = new lib.WorkerPool({ threads });
    try {
      const done = await settles(pool.parallel((k, runner) => {
        const e = k.exports;
        const bytes = n * n * 4;
        const put = (a: Float32Array) => k.put(a);
        const hex = (p: number) => Buffer.from(k.u8(p, bytes)).toString('base64');
        const xp = put(x);
        // H * keep + X^T X * add, from a random (asymmetric) H: every element is written.
        const hs = put(h0), hp = put(h0);
        const keep = Math.fround(0.75), add = Math.fround(2 / m);
        const scratch = k.alloc(Math.max(e.hessianUpdateScratch(n), e.upperCholeskyOfInverseScratch(n)));
        e.hessianUpdate(hs, xp, m, n, keep, add, scratch);
        hessianUpdate(k, runner, hp, xp, m, n, keep, add);
        assert.is(hex(hp), hex(hs), `hessianUpdate, ${threads} workers`);
        // A positive definite H from it: X^T X * 2/m plus 1% damping.
        const hpd = put(new Float32Array(n * n));
        e.hessianUpdate(hpd, xp, m, n, 0, add, scratch);
        e.addDamping(hpd, n, 0.01);
        const a1 = k.alloc(bytes), a2 = k.alloc(bytes);
        k.u8(a1, bytes).set(k.u8(hpd, bytes));
        k.u8(a2, bytes).set(k.u8(hpd, bytes));
        assert.is(e.cholesky(a1, n, scratch), 0);
        assert.is(cholesky(k, runner, a2, n, scratch), 0);
        assert.is(hex(a2), hex(a1), `cholesky, ${threads} workers`);
        const u1 = k.alloc(bytes), u2 = k.alloc(bytes);
        k.u8(a1, bytes).set(k.u8(hpd, bytes));
        k.u8(a2, bytes).set(k.u8(hpd, bytes));
        assert.is(e.upperCholeskyOfInverse(u1, a1, n, scratch), 0);
        assert.is(upperCholeskyOfInverse(k, runner, u2, a2, n, scratch), 0);
        assert.is(hex(u2), hex(u1), `chol(H^-1), ${threads} workers`);
        // An indefinite matrix (the random H0): the same failing pivot either way.
        k.u8(a1, bytes).set(new Uint8Array(h0.buffer));
        k.u8(a2, bytes).set(new Uint8Array(h0.buffer));
        const f1 = e.cholesky(a1, n, scratch);
        assert.ok(f1 > 0, 'H0 is indefinite');
        assert.is(cholesky(k, runner, a2, n, scratch), f1, 'failing pivot');
        for (const p of [xp, hs, hp, scratch, hpd, a1, a2, u1, u2]) k.free(p);
        return true;
      }), `parallel region, ${threads} workers`);
      assert.equal(done, { value: true });
      // Pools run at most one worker per core (4 here only on a machine with 4 cores).
      assert.is(pool.liveWorkers, Math.min(threads, await lib.hardwareConcurrency()), 'the workers stay after a region');
    } finally {
      pool.terminate();
    }
  }
});

test('parallel regions: none without shared memory; a typed error in the body leaves the pool usable', async () => {
  const copy = new lib.WorkerPool({ threads: 2, sharedMemory: 'arrays' });
  assert.is(await copy.parallel(() => 1), null, 'no shared kernel: the caller does the work');
  assert.is(await copy.prepareShared(solved[0].hessian, 272, solved[0].p.options), null);
  const pool = new lib.WorkerPool({ threads: 2 });
  try {
    const e = await rejects(pool.parallel(() => {
      throw new lib.ShapeError('from the body');
    }), 'throwing body');
    assert.instance(e, lib.ShapeError);
    assert.is(pool.liveWorkers, 2);
    const { p, weights, hessian } = solved[0];
    sameResult(await settles(lib.quantizeLayer(weights, hessian, { ...p.options, pool }), 'after'), reference[0], 'after a failed region');
  } finally {
    pool.terminate();
  }
});

for (const kind of ['throw', 'exit', 'hang'] as const) {
  test(`parallel regions: a worker that ${kind === 'throw' ? 'fails a piece' : kind === 'exit' ? 'exits' : 'hangs'} mid-factorization fails the call with a typed error${kind === 'throw' ? ', workers kept' : ': WorkerError at the stall limit, workers terminated, memory dropped'}`, async () => {
    const { p, weights, hessian } = solved[0]; // GPTQ: chol(H^-1) in a region
    const pool = new lib.WorkerPool({ threads: 2, testRegionFault: kind, bandTimeoutMs: 1500 });
    try {
      const e = await rejects(lib.quantizeLayer(weights, hessian, { ...p.options, pool }), kind);
      if (kind === 'throw') {
        assert.instance(e, lib.KernelError);
        assert.match(e.message, /failed on a worker/);
        assert.is(pool.liveWorkers, 2);
      } else {
        assert.instance(e, lib.WorkerError);
        assert.match(e.message, /within 1500 ms/);
        assert.is(pool.liveWorkers, 0);
        assert.is(pool.sharedMemoryBytes, 0);
      }
    } finally {
      pool.terminate();
    }
  });
}

test('the model pipeline on a shared-memory pool (H prepared in the pool\'s memory, bands in place) gives the one-thread layers', async () => {
  const { readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const data = join(process.cwd(), '..', 'shared', 'data');
  const tokenizer = lib.readTokenizer(new Uint8Array(readFileSync(join(data, 'tok512.bin'))), 512);
  const text = lib.splitParagraphs(readFileSync(join(data, 'tinystories-valid-a.txt'), 'utf8')).slice(0, 60).join('\n');
  const samples = lib.calibrationWindows(Int32Array.from(tokenizer.encode(text)), 64, 4, 1);
  const model = () => lib.readLlama2c(new Uint8Array(readFileSync(join(data, 'stories260K.bin'))));
  for (const options of [{ method: 'gptq', bits: 4, groupSize: 32 }, { method: 'cd', bits: 3 }] as const) {
    const one = await lib.quantizeModel(model(), samples, { ...options, threads: 1 });
    for (const sharedMemory of [true, 'arrays'] as const) {
      const pool = new lib.WorkerPool({ threads: 2, sharedMemory });
      try {
        const two = await settles(lib.quantizeModel(model(), samples, { ...options, pool }), `pipeline ${options.method}`);
        assert.is(two.layers.length, one.layers.length);
        two.layers.forEach((l, i) => {
          const what = `${options.method} ${String(sharedMemory)} block ${l.block} ${l.name}`;
          assert.equal(l.codes, one.layers[i].codes, `${what}: codes`);
          assert.equal(l.scales, one.layers[i].scales, `${what}: scales`);
          assert.ok(Object.is(l.loss, one.layers[i].loss), `${what}: loss`);
        });
        assert.is(pool.sharedMemoryBytes > 0, sharedMemory === true, 'the shared path ran where asked');
      } finally {
        pool.terminate();
      }
    }
  }
});

test.run();
