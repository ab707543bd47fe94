// The portability proof: the same layer problems solved in Node, Deno, Bun, headless Chromium
// (cross-origin isolated and not) and workerd give one SHA-256, and within each runtime every
// mode (this thread, separately solved bands merged from bytes, pools of 1-4 workers on one
// shared wasm memory where the runtime has it, pools whose workers each copy the arrays, the
// copy path without SharedArrayBuffer) gives that same hash. A missing runtime fails the test.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runSuite, type RunReport } from './cross/suite.js';
import { runBun, runChromium, runDeno, runWorkerd } from './cross/launch.js';

// The built package itself (package self-reference through the exports map).
const lib = await import('cdquant');

let reference = '';
const timings: string[] = [];
async function timed<T>(name: string, body: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await body();
  } finally {
    timings.push(`${name} ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  }
}
const seen: Record<string, string> = {};

function checkReport(name: string, report: RunReport, modes: string[]): void {
  seen[name] = report.hashes.inline;
  for (const mode of modes) assert.ok(report.hashes[mode], `${name}: mode ${mode} missing (has ${Object.keys(report.hashes).join(', ')})`);
  for (const [mode, hash] of Object.entries(report.hashes)) {
    if (hash !== reference) {
      const diff = Object.entries(report.problems[mode]).filter(([p, h]) => h !== report.problems.inline?.[p] || !reference).map(([p]) => p);
      assert.unreachable(`${name} ${mode}: ${hash} differs from node's ${reference} (problems differing from ${name} inline: ${diff.join(', ') || 'none'})`);
    }
  }
}

function checkFaults(name: string, report: RunReport): void {
  assert.match(report.faults.throw, /^NonFiniteError:NON_FINITE:injected fault: band \[\d+, \d+\) has a non-finite value$/, `${name} throw`);
  assert.match(report.faults.exit, /^WorkerError:WORKER_FAILED:/, `${name} exit`);
  assert.match(report.faults.uncaught, /^WorkerError:WORKER_FAILED:.*injected uncaught error/s, `${name} uncaught`);
  assert.is(report.faults.abort, 'AbortError:ABORTED:the operation was aborted', `${name} abort`);
}

const POOL_MODES = ['inline', 'bands', 'pool1', 'pool2', 'pool3', 'pool4', 'pool2-copy', 'pool2-arrays', 'quantizeLayer-threads3'];

test('node: every mode (1-4 workers, bands, copy path) gives one hash', async () => {
  const report = await timed('node', () => runSuite(lib, { threads: [1, 2, 3, 4], faults: true }));
  assert.is(report.runtime, 'node');
  reference = report.hashes.inline;
  assert.ok(report.sharedKernel, 'node: pools on one shared wasm memory expected');
  assert.ok(report.regions, 'node: parallel regions expected');
  checkReport('node', report, POOL_MODES);
  checkFaults('node', report);
});

test('deno: same hash in every mode', async () => {
  const report = await timed('deno', runDeno);
  assert.is(report.runtime, 'deno');
  assert.ok(report.sharedMemory, 'deno: SharedArrayBuffer expected');
  assert.ok(report.sharedKernel, 'deno: pools on one shared wasm memory expected');
  assert.ok(report.regions, 'deno: parallel regions expected');
  checkReport('deno', report, POOL_MODES);
  checkFaults('deno', report);
});

test('bun: same hash in every mode', async () => {
  const report = await timed('bun', runBun);
  assert.is(report.runtime, 'bun');
  assert.ok(report.sharedKernel, 'bun: pools on one shared wasm memory expected');
  assert.ok(report.regions, 'bun: parallel regions expected');
  checkReport('bun', report, POOL_MODES);
  checkFaults('bun', report);
});

test('chromium: same hash, cross-origin isolated (SharedArrayBuffer) and not (copy path)', async () => {
  const { isolated, plain } = await timed('chromium', runChromium);
  assert.is(isolated.runtime, 'browser');
  assert.ok(isolated.crossOriginIsolated && isolated.sharedMemory, 'COOP/COEP page must be cross-origin isolated with SharedArrayBuffer');
  assert.ok(!plain.crossOriginIsolated && !plain.sharedMemory, 'page without COOP/COEP must have no SharedArrayBuffer');
  assert.ok(isolated.sharedKernel, 'cross-origin isolated page: pools on one shared wasm memory expected');
  assert.not.ok(isolated.regions, "a page's main thread may not block: no parallel regions (the copying preparation)");
  assert.ok(!plain.sharedKernel, 'page without COOP/COEP: the copying path');
  checkReport('chromium', isolated, POOL_MODES);
  checkFaults('chromium', isolated);
  checkReport('chromium-no-sab', plain, POOL_MODES);
});

test('workerd: same hash on one thread (wasm imported as a module, no workers)', async () => {
  const report = await timed('workerd', runWorkerd);
  assert.is(report.runtime, 'workerd');
  assert.is(report.workers, false);
  checkReport('workerd', report, ['inline', 'bands', 'pool2', 'pool2-copy', 'pool2-arrays', 'quantizeLayer-threads3']);
});

test('all runtimes agree', () => {
  assert.equal(Object.keys(seen).sort(), ['bun', 'chromium', 'chromium-no-sab', 'deno', 'node', 'workerd']);
  for (const [name, hash] of Object.entries(seen)) assert.is(hash, reference, name);
  console.log(`  cross-runtime SHA-256 ${reference} (${Object.keys(seen).join(', ')}); ${timings.join(', ')}`);
});

test.run();
