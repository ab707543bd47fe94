// Bounded worker pools (issue 14, case 11): no more workers than cores, a start-up and a
// per-band timeout after which the call fails with WorkerError and the workers are gone, and a
// Node process that exits on its own after an abort or a timeout, whatever its workers were
// doing. Runs on the built package (build/index.js starting build/worker.js).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PROBLEMS, makeProblem } from './cross/suite.js';
import { mulberry32 } from './reference.js';

const lib = await import('cdquant');
const cdProblem = PROBLEMS[8];
const cd = makeProblem(cdProblem);
const INDEX = pathToFileURL(join(process.cwd(), 'build', 'index.js')).href;

/** A worker script that loads and then never answers: its start never completes. */
const dir = mkdtempSync(join(tmpdir(), 'cdquant-pool-'));
const silentWorker = join(dir, 'silent-worker.mjs');
writeFileSync(silentWorker, 'setInterval(() => {}, 1 << 30);\n');

async function rejection(p: Promise<unknown>, what: string, ms = 30_000): Promise<Error & { code?: string }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms)));
  try {
    await Promise.race([p, hang]);
  } catch (e) {
    if ((e as Error).message.startsWith(`${what}: still pending`)) throw e;
    return e as Error & { code?: string };
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`${what}: expected a rejection`);
}

test('threads are capped at the core count: a pool asked for 64 runs as many workers as there are cores', async () => {
  const cores = await lib.hardwareConcurrency();
  const pool = new lib.WorkerPool({ threads: 64 });
  try {
    assert.is(await pool.threads(), cores);
    const r = await lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool, onProgress: () => assert.ok(pool.liveWorkers <= cores) });
    assert.ok(pool.liveWorkers <= cores, `${pool.liveWorkers} workers on ${cores} cores`);
    const one = await lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, threads: 1 });
    assert.equal(r.codes, one.codes, 'same bits');
  } finally {
    pool.terminate();
  }
  assert.is(await new lib.WorkerPool({ threads: 1 }).threads(), 1);
  for (const bad of [0, 1.5, -1]) {
    assert.throws(() => new lib.WorkerPool({ startTimeoutMs: bad }), (e: Error) => e instanceof lib.OptionError);
    assert.throws(() => new lib.WorkerPool({ bandTimeoutMs: bad }), (e: Error) => e instanceof lib.OptionError);
  }
});

test('a worker that never returns its band fails the call with WorkerError at the band timeout; workers terminated; the pool works again', async () => {
  const pool = new lib.WorkerPool({ threads: 2, bandTimeoutMs: 400, testFault: { band: 1, kind: 'hang' } });
  try {
    const t0 = performance.now();
    const e = await rejection(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool }), 'hung band');
    assert.instance(e, lib.WorkerError, String(e));
    assert.match(e.message, /did not finish rows \[\d+, \d+\) within 400 ms/);
    assert.ok(performance.now() - t0 < 10_000, 'fails at the timeout, not later');
    assert.is(pool.liveWorkers, 0, 'workers terminated');
  } finally {
    pool.terminate();
  }
  const again = new lib.WorkerPool({ threads: 2, bandTimeoutMs: 30_000 });
  try {
    const r = await lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool: again });
    const one = await lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, threads: 1 });
    assert.equal(r.codes, one.codes);
  } finally {
    again.terminate();
  }
});

test('a worker that never starts fails the call with WorkerError at the start timeout', async () => {
  const pool = new lib.WorkerPool({ threads: 2, startTimeoutMs: 500, workerUrl: pathToFileURL(silentWorker) });
  try {
    const e = await rejection(lib.quantizeLayer(cd.weights, cd.hessian, { ...cdProblem.options, pool }), 'silent start');
    assert.instance(e, lib.WorkerError, String(e));
    assert.match(e.message, /did not start within 500 ms/);
    assert.is(pool.liveWorkers, 0);
  } finally {
    pool.terminate();
  }
});

test('the default band timeout leaves real bands a wide margin (measured here) and grows with the work', async () => {
  // The minute's floor covers small layers; what must scale is the work-scaled part, so it is
  // compared alone with bands wide enough for the per-unit cost to settle (0.1-0.4 s each).
  // Five times is the floor on a busy machine; at 128 x 4096 the margin is about 25 times.
  for (const [cols, rows, options] of [
    [1024, 64, { method: 'cd', bits: 3, groupSize: 128 }],
    [1024, 64, { method: 'cd', bits: 4, refit: 2 }],
    [512, 32, { method: 'bcd', bits: 2, groupSize: 128, blockSize: 4 }],
  ] as const) {
    const u = mulberry32(cols + rows);
    const acc = new lib.HessianAccumulator(cols);
    await acc.add(Float32Array.from({ length: 2 * cols * cols }, () => u() + u() - 1));
    const hessian = acc.hessian();
    const weights = { data: Float32Array.from({ length: rows * cols }, () => (u() - 0.5) * 0.1), rows, cols };
    const prepared = await lib.prepareLayer(hessian, cols, options);
    const t0 = performance.now();
    await lib.solveBand(prepared, weights, 0, rows);
    const ms = performance.now() - t0;
    const allowed = lib.defaultBandTimeoutMs(prepared.plan, rows) - 60_000;
    assert.ok(allowed > 5 * ms, `${JSON.stringify(options)}: band took ${ms.toFixed(0)} ms, work-scaled allowance ${allowed.toFixed(0)} ms`);
  }
  const plan = lib.planLayer(lib.resolveSolver({ method: 'cd' }), 4096);
  assert.ok(lib.defaultBandTimeoutMs(plan, 128) > lib.defaultBandTimeoutMs(plan, 64));
});

/** Runs `body` (module code with `lib` and a CD problem in scope) in a fresh Node process that
 * must end by itself: no worker may keep it alive. */
let children = 0;
function runAlone(body: string): { status: number | null; stdout: string; stderr: string; ms: number } {
  const script = `
    const lib = await import(${JSON.stringify(INDEX)});
    const rows = 96, cols = 64;
    const weights = { data: Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i)), rows, cols };
    const hessian = new Float32Array(cols * cols);
    for (let i = 0; i < cols; i++) hessian[i * cols + i] = 1;
    ${body}
  `;
  // A file, not --eval: workers inherit the process's exec arguments.
  const file = join(dir, `child-${children++}.mjs`);
  writeFileSync(file, script);
  const t0 = performance.now();
  const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 20_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, ms: performance.now() - t0 };
}

test('the Node process exits by itself after an abort or a timeout: hung band, hung start', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['abort while a worker hangs in its band', `
      const c = new AbortController();
      const pool = new lib.WorkerPool({ threads: 2, testFault: { band: 1, kind: 'hang' } });
      setTimeout(() => c.abort(), 300);
      await lib.quantizeLayer(weights, hessian, { method: 'cd', pool, signal: c.signal }).catch((e) => console.log(e.name, e.message));
    `, /AbortError/],
    ['abort while workers hang in their start', `
      const c = new AbortController();
      const pool = new lib.WorkerPool({ threads: 2, workerUrl: new URL(${JSON.stringify(pathToFileURL(silentWorker).href)}) });
      setTimeout(() => c.abort(), 300);
      await lib.quantizeLayer(weights, hessian, { method: 'cd', pool, signal: c.signal }).catch((e) => console.log(e.name, e.message));
    `, /AbortError/],
    ['band timeout', `
      const pool = new lib.WorkerPool({ threads: 2, bandTimeoutMs: 300, testFault: { band: 0, kind: 'hang' } });
      await lib.quantizeLayer(weights, hessian, { method: 'cd', pool }).catch((e) => console.log(e.name, e.message));
    `, /WorkerError/],
    ['start timeout', `
      const pool = new lib.WorkerPool({ threads: 2, startTimeoutMs: 300, workerUrl: new URL(${JSON.stringify(pathToFileURL(silentWorker).href)}) });
      await lib.quantizeLayer(weights, hessian, { method: 'cd', pool }).catch((e) => console.log(e.name, e.message));
    `, /WorkerError/],
  ];
  for (const [what, body, printed] of cases) {
    const r = runAlone(body);
    assert.is(r.status, 0, `${what}: the process did not exit by itself (status ${r.status}, ${r.ms.toFixed(0)} ms): ${r.stderr}`);
    assert.match(r.stdout, printed, `${what}: stdout ${JSON.stringify(r.stdout)}, stderr ${r.stderr}`);
    assert.ok(r.ms < 15_000, `${what}: took ${r.ms.toFixed(0)} ms`);
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
