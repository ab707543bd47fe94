// Serverless fan-out (FanoutPool + the band worker). In-process: the worker's fetch handler
// behind a fake fetch, to refuse bad input hashes, catch corrupted replies, time out, re-upload
// evicted layers and fall back to inline layers. End to end: three workerd processes on
// 127.0.0.1 quantize the example model (GPTQ 4-bit, CD 3-bit) through the CLI-facing
// quantizeModel({ pool }), one instance is killed mid-run, and every run is bit-identical to
// the local one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  FanoutPool, createFanoutWorker, encodePrepared, prepareLayer, quantizeLayer, quantizeModel, calibrationWindows,
  gptqCheckpoint, readLlama2c, readTokenizer, splitParagraphs, HessianAccumulator, Kernel,
  WorkerError, NonFiniteError, AbortError,
  type FanoutEvent, type FanoutWorker, type LayerResult, type QuantizedLinear, type Provenance, type QuantizeOptions,
} from '../src/index.js';
import { encodeBandRequest as encodeJob, FANOUT_HEADERS } from '../src/parallel/fanout.js';
import { tokenizeParagraphs } from '../src/model/text.js';
import { sha256Hex } from '../src/formats/digest.js';
import { startLocalWorkers } from '../examples/fanout/run-local.mjs';
import { DATA, rng } from './helpers/util.js';

// Safety net: whatever happens, no workerd outlives the suite (run-local also kills on exit).
const guard = setTimeout(() => {
  console.error('fanout.test: over 150 s, giving up');
  process.exit(1);
}, 150_000);
guard.unref();

// ---------------------------------------------------------------------------------------
// A layer problem and in-process band workers

async function problem(rows: number, cols: number, seed: number) {
  const u = rng(seed);
  const data = Float32Array.from({ length: rows * cols }, () => u() * 2 - 1);
  const x = Float32Array.from({ length: 3 * cols * cols }, (_, i) => (u() + u() + u() - 1.5) * (1 + (i % cols) / 8));
  const acc = new HessianAccumulator(cols);
  await acc.add(x);
  return { weights: { data, rows, cols }, hessian: acc.hessian() };
}

async function layerHash(r: LayerResult): Promise<string> {
  const parts = [r.codes, r.scales, r.zeros, r.gIdx, r.rowLoss, new Float64Array([r.loss, r.rtnLoss ?? 0]), r.moves ?? new Int32Array()];
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), at);
    at += p.byteLength;
  }
  return sha256Hex(all);
}

type Fetch = (url: string, init: RequestInit) => Promise<Response>;

/** Band workers served in-process: origin -> handler, behind a fetch the test can tamper with. */
function inProcess(names: string[], wrap?: (origin: string, init: RequestInit, next: (init: RequestInit) => Promise<Response>) => Promise<Response>) {
  const workers = new Map<string, FanoutWorker>(names.map((n) => [`http://${n}.test`, createFanoutWorker()]));
  const fetch: Fetch = async (url, init) => {
    const origin = new URL(url).origin;
    const next = async (init: RequestInit) => {
      const w = workers.get(origin);
      if (!w) throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
      return w.fetch(new Request(url, init));
    };
    return wrap ? wrap(origin, init, next) : next(init);
  };
  return { urls: [...workers.keys()], workers, fetch };
}

async function flipByte(res: Response, at = 100): Promise<Response> {
  const body = new Uint8Array(await res.arrayBuffer());
  body[Math.min(at, body.length - 1)] ^= 0x40;
  return new Response(body, { status: res.status, headers: res.headers });
}

const CD: QuantizeOptions = { method: 'cd', bits: 3, groupSize: 8, threads: 1 };

test('worker refuses mismatched input hashes with typed 4xx codes', async () => {
  const { weights, hessian } = await problem(16, 24, 1);
  const prepared = await prepareLayer(hessian, 24, CD);
  const bytes = encodePrepared(prepared);
  const hash = await sha256Hex(bytes);
  const worker = createFanoutWorker();
  const call = async (path: string, init: RequestInit) => {
    const res = await worker.fetch(new Request(`http://w.test${path}`, init));
    const text = await res.text();
    return { status: res.status, code: res.headers.get(FANOUT_HEADERS.error), text };
  };
  // Prepared bytes whose hash is not the key.
  let r = await call(`/prepared/${'0'.repeat(64)}`, { method: 'PUT', body: bytes as BodyInit });
  assert.equal([r.status, r.code], [400, 'HASH_MISMATCH']);
  // A band for a layer the worker does not hold.
  const band = weights.data.slice(0, 8 * 24);
  const job = (weightsHash: string, inline: Uint8Array | null = null) => encodeJob({ r0: 0, r1: 8, cols: 24, prepared: hash, weights: weightsHash }, band, inline);
  const goodWeights = await sha256Hex(new Uint8Array(band.buffer));
  const post = async (body: Uint8Array, jobHash?: string) => call('/band', { method: 'POST', body: body as BodyInit, headers: { [FANOUT_HEADERS.job]: jobHash ?? (await sha256Hex(body)) } });
  r = await post(job(goodWeights));
  assert.equal([r.status, r.code], [409, 'PREPARED_MISSING']);
  r = await call(`/prepared/${hash}`, { method: 'PUT', body: bytes as BodyInit });
  assert.is(r.status, 201);
  // Weights whose hash is not the one the job states (the job hash itself is consistent).
  r = await post(job('f'.repeat(64)));
  assert.equal([r.status, r.code], [400, 'HASH_MISMATCH']);
  assert.match(r.text, /weights have SHA-256/);
  // A job body changed after its hash was taken (corruption in transit).
  const body = job(goodWeights);
  const jobHash = await sha256Hex(body);
  body[body.length - 3] ^= 1;
  r = await post(body, jobHash);
  assert.equal([r.status, r.code], [400, 'HASH_MISMATCH']);
  assert.match(r.text, /job body has SHA-256/);
  // Inline prepared bytes that do not match the stated hash.
  const forged = bytes.slice();
  forged[forged.length - 1] ^= 1;
  r = await post(job(goodWeights, forged));
  assert.equal([r.status, r.code], [400, 'HASH_MISMATCH']);
  // Not a job frame; unknown route.
  r = await post(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]));
  assert.equal([r.status, r.code], [400, 'BAD_REQUEST']);
  r = await call('/nope', { method: 'GET' });
  assert.equal([r.status, r.code], [404, 'NOT_FOUND']);
  // And the good job: 200 with the reply hash and the echoed input hashes.
  const ok = await worker.fetch(new Request('http://w.test/band', { method: 'POST', body: job(goodWeights) as BodyInit, headers: { [FANOUT_HEADERS.job]: await sha256Hex(job(goodWeights)) } }));
  assert.is(ok.status, 200);
  const reply = new Uint8Array(await ok.arrayBuffer());
  assert.is(ok.headers.get(FANOUT_HEADERS.band), await sha256Hex(reply));
  assert.is(ok.headers.get(FANOUT_HEADERS.prepared), hash);
  assert.is(ok.headers.get(FANOUT_HEADERS.weights), goodWeights);
  assert.is(ok.headers.get(FANOUT_HEADERS.rows), '0-8');
});

test('coordinator: corrupted replies and corrupted requests are caught and retried elsewhere; same bits', async () => {
  const { weights, hessian } = await problem(40, 24, 2);
  const local = await layerHash(await quantizeLayer(weights, hessian, CD));
  let corruptReplies = 0, corruptRequests = 0;
  const { urls, fetch } = inProcess(['a', 'b'], async (origin, init, next) => {
    if (origin === 'http://a.test' && init.method === 'POST') {
      // a: the first two replies are damaged on the way back, the next request on the way out.
      if (corruptReplies < 2) {
        corruptReplies++;
        return flipByte(await next(init));
      }
      if (corruptRequests < 1) {
        corruptRequests++;
        const body = (init.body as Uint8Array).slice();
        body[body.length - 5] ^= 2;
        return next({ ...init, body });
      }
    }
    return next(init);
  });
  const events: FanoutEvent[] = [];
  const pool = new FanoutPool({ urls, fetch, bandRows: 8, onEvent: (e) => events.push(e) });
  const result = await quantizeLayer(weights, hessian, { ...CD, pool });
  assert.is(await layerHash(result), local);
  const retries = events.filter((e): e is Extract<FanoutEvent, { type: 'retry' }> => e.type === 'retry');
  assert.equal(retries.map((e) => e.code), ['CORRUPT_RESPONSE', 'CORRUPT_RESPONSE', 'HASH_MISMATCH'], JSON.stringify(retries));
  assert.ok(retries.every((e) => e.url === 'http://a.test'));
  assert.match(retries[0].message, /body SHA-256/);
  assert.match(retries[2].message, /job body has SHA-256/);
  const s = pool.stats();
  assert.is(s.bands, 5);
  assert.is(s.retries, 3);
  assert.is(corruptRequests, 1);
});

test('coordinator: timeouts retried on another instance; evicted layers re-uploaded; cache-less URLs get inline layers', async () => {
  const { weights, hessian } = await problem(48, 32, 3);
  const opts: QuantizeOptions = { method: 'gptq', bits: 4, groupSize: 16, actOrder: true, threads: 1 };
  const local = await layerHash(await quantizeLayer(weights, hessian, opts));
  // Timeout: 'slow' never answers its first band.
  let hung = 0;
  const slow = inProcess(['slow', 'fast'], async (origin, init, next) => {
    if (origin === 'http://slow.test' && init.method === 'POST' && hung++ === 0) {
      // Never answers; only the coordinator's timeout (an abort) ends it.
      return new Promise<Response>((_, reject) => init.signal!.addEventListener('abort', () => reject(init.signal!.reason)));
    }
    return next(init);
  });
  const events: FanoutEvent[] = [];
  const pool = new FanoutPool({ urls: slow.urls, fetch: slow.fetch, bandRows: 8, timeoutMs: 300, cooldownMs: 50, onEvent: (e) => events.push(e) });
  assert.is(await layerHash(await quantizeLayer(weights, hessian, { ...opts, pool })), local);
  assert.ok(events.some((e) => e.type === 'retry' && e.code === 'TIMEOUT' && e.url === 'http://slow.test'));

  // Eviction: the worker forgets every layer after each band, so each band is a 409, a re-PUT
  // and a resend; and an "edge" URL whose every request lands on a fresh isolate falls back to
  // sending the layer inline.
  const forgetful = inProcess(['forgetful']);
  const edge: Fetch = async (url, init) => createFanoutWorker().fetch(new Request(url, init));
  const both: Fetch = (url, init) => (url.startsWith('http://forgetful.test') ? forgetful.fetch(url, init) : edge(url, init));
  let puts = 0;
  const counting: Fetch = async (url, init) => {
    if (init.method === 'PUT') puts++;
    const res = await both(url, init);
    if (url.startsWith('http://forgetful.test') && init.method === 'POST') forgetful.workers.set('http://forgetful.test', createFanoutWorker());
    return res;
  };
  const pool2 = new FanoutPool({ urls: ['http://forgetful.test', 'http://edge.test'], fetch: counting, bandRows: 8 });
  assert.is(await layerHash(await quantizeLayer(weights, hessian, { ...opts, pool: pool2 })), local);
  const s = pool2.stats();
  assert.is(s.retries, 0, 'a 409 is not a failure');
  assert.ok(s.byUrl['http://forgetful.test'].bands > 0 && s.byUrl['http://edge.test'].bands > 0);
  assert.ok(puts >= 3, `re-uploads expected, saw ${puts} PUTs`);
  // A second layer on the edge URL goes inline at once (no PUT to it).
  const before = puts;
  const pool3 = new FanoutPool({ urls: ['http://edge.test'], fetch: counting, bandRows: 16 });
  await pool3.solveBands(await prepareLayer(hessian, 32, opts), weights);
  const putsToEdge = puts - before;
  await pool3.solveBands(await prepareLayer(hessian, 32, opts), weights);
  assert.is(puts - before, putsToEdge, 'after the first fallback, no more PUTs to a cache-less URL');
});

test('coordinator: a solver error is not retried; a missing token is refused; all instances down fails with WorkerError', async () => {
  const { weights, hessian } = await problem(16, 24, 4);
  const prepared = await prepareLayer(hessian, 24, CD);
  // A 422 with a solver code would be the same on every instance: the caller gets that
  // CdquantError class at once, no retry.
  const w = inProcess(['x', 'y'], async (origin, init, next) => {
    if (origin === 'http://y.test' && init.method === 'POST') {
      return new Response(JSON.stringify({ code: 'NON_FINITE', message: 'weights has a non-finite value' }), { status: 422, headers: { [FANOUT_HEADERS.error]: 'NON_FINITE' } });
    }
    return next(init);
  });
  const events: FanoutEvent[] = [];
  const pool = new FanoutPool({ urls: w.urls, fetch: w.fetch, bandRows: 4, onEvent: (e) => events.push(e) });
  try {
    await pool.solveBands(prepared, weights);
    assert.unreachable('should fail');
  } catch (e) {
    assert.instance(e, NonFiniteError);
    assert.is((e as Error).message, 'weights has a non-finite value');
    assert.is(events.filter((e) => e.type === 'retry').length, 0);
  }
  // A worker with a token refuses requests without it (401, not retried); with it, solves.
  const guarded = createFanoutWorker({ token: 's3cret' });
  const viaGuarded: Fetch = async (url, init) => guarded.fetch(new Request(url, init));
  try {
    await new FanoutPool({ urls: ['http://guarded.test'], fetch: viaGuarded }).solveBands(prepared, weights);
    assert.unreachable('should be refused');
  } catch (e) {
    assert.instance(e, WorkerError);
    assert.match((e as Error).message, /UNAUTHORIZED/);
  }
  const authorized = new FanoutPool({ urls: ['http://guarded.test'], fetch: viaGuarded, bandRows: 16, headers: { authorization: 'Bearer s3cret' } });
  assert.is((await authorized.solveBands(prepared, weights)).length, 1);
  const viaEnv = createFanoutWorker();
  const res = await viaEnv.fetch(new Request('http://env.test/'), { CDQUANT_FANOUT_TOKEN: 'other' });
  assert.is(res.status, 401);

  const down = new FanoutPool({ urls: ['http://gone1.test', 'http://gone2.test'], fetch: inProcess([]).fetch, retries: 2, cooldownMs: 10 });
  try {
    await down.solveBands(prepared, weights);
    assert.unreachable('should fail');
  } catch (e) {
    assert.instance(e, WorkerError);
    assert.match((e as Error).message, /failed 3 times/);
    assert.match((e as Error).message, /NETWORK/);
  }
});

test('coordinator: an abort signal stops the run with AbortError', async () => {
  const { weights, hessian } = await problem(32, 24, 6);
  const prepared = await prepareLayer(hessian, 24, CD);
  const controller = new AbortController();
  let sent = 0;
  const w = inProcess(['p', 'q'], async (_origin, init, next) => {
    if (init.method === 'POST' && ++sent === 3) {
      controller.abort();
      return new Promise<Response>((_, reject) => init.signal!.addEventListener('abort', () => reject(init.signal!.reason)));
    }
    return next(init);
  });
  const pool = new FanoutPool({ urls: w.urls, fetch: w.fetch, bandRows: 4 });
  try {
    await pool.solveBands(prepared, weights, { signal: controller.signal });
    assert.unreachable('should abort');
  } catch (e) {
    assert.instance(e, AbortError);
  }
  assert.is(pool.stats().retries, 0);
  // The pool works again afterwards.
  assert.is((await pool.solveBands(prepared, weights)).length, 8);
});

// ---------------------------------------------------------------------------------------
// End to end on workerd

const modelBytes = new Uint8Array(readFileSync(join(DATA, 'stories260K.bin')));
const tokenizer = readTokenizer(new Uint8Array(readFileSync(join(DATA, 'tok512.bin'))), 512);
const tokens = tokenizeParagraphs(tokenizer, splitParagraphs(readFileSync(join(DATA, 'tinystories-valid-a.txt'), 'utf8')).slice(0, 200));
const samples = calibrationWindows(tokens, 64, 8, 3);
const provenance = (method: 'gptq' | 'cd', bits: number, groupSize: number): Provenance => ({
  method, bits, groupSize, sym: false, actOrder: false, staticGroups: false, damp: 0.01,
  clip: method === 'cd' ? 'owc' : 'minmax', init: method === 'cd' ? 'owc' : null, refit: 0, calibrationSha256: 'test', nsamples: 8, seqlen: 64,
});

async function modelHashes(kernel: Kernel, layers: QuantizedLinear[], prov: Provenance) {
  const parts: Uint8Array[] = [];
  for (const l of layers) {
    for (const a of [l.codes, l.scales, l.zeros, l.gIdx, new Float64Array([l.loss, l.rtnLoss ?? 0])]) parts.push(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const ckpt = await gptqCheckpoint(kernel, readLlama2c(modelBytes), layers, prov);
  return { layers: await sha256Hex(all), checkpoint: await sha256Hex(ckpt.safetensors) };
}

let workers: Awaited<ReturnType<typeof startLocalWorkers>> | null = null;
const timings: string[] = [];

test.after(async () => {
  await workers?.close();
  clearTimeout(guard);
  if (timings.length) console.log(`  fan-out timings: ${timings.join(', ')}`);
});

test('workerd: 3 instances; GPTQ 4-bit and CD 3-bit models bit-identical to local, one instance killed mid-run', async () => {
  let t0 = performance.now();
  workers = await startLocalWorkers({ count: 3 });
  timings.push(`3 x workerd up ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  const kernel = await Kernel.create();
  const model = readLlama2c(modelBytes);

  // Refusals come from the real worker too.
  const res = await fetch(`${workers.urls[0]}/prepared/${'a'.repeat(64)}`, { method: 'PUT', body: new Uint8Array(16) });
  assert.is(res.status, 400);
  assert.is(res.headers.get(FANOUT_HEADERS.error), 'HASH_MISMATCH');
  await res.body?.cancel();

  for (const [method, bits, groupSize] of [['gptq', 4, -1], ['cd', 3, 32]] as const) {
    const options = { method, bits, groupSize, threads: 1 } as const;
    t0 = performance.now();
    const local = await quantizeModel(model, samples, { ...options, kernel });
    const tLocal = (performance.now() - t0) / 1000;
    const want = await modelHashes(kernel, local.layers, provenance(method, bits, groupSize));

    // The CD run loses instance #1 mid-run: killed as it is sent its 6th band.
    const kill = method === 'cd' ? workers.urls[1] : null;
    let sentToVictim = 0;
    let killedAt = -1;
    const events: FanoutEvent[] = [];
    const pool = new FanoutPool({
      urls: workers.urls,
      bandRows: 16,
      timeoutMs: 20_000,
      cooldownMs: 500,
      onEvent: (e) => {
        events.push(e);
        if (kill && e.type === 'send' && e.url === kill && ++sentToVictim === 6) {
          killedAt = events.filter((x) => x.type === 'done').length;
          workers!.kill(1);
        }
      },
    });
    t0 = performance.now();
    const fanned = await quantizeModel(model, samples, { ...options, kernel, pool });
    const tFan = (performance.now() - t0) / 1000;
    const got = await modelHashes(kernel, fanned.layers, provenance(method, bits, groupSize));
    assert.equal(got, want, `${method}: fan-out differs from the local run`);
    const s = pool.stats();
    for (const url of workers.urls) assert.ok(s.byUrl[url].bands > 0, `${method}: ${url} got no band`);
    const total = events.filter((e) => e.type === 'done').length;
    if (kill) {
      assert.ok(!workers.instances[1].alive, 'instance #1 was killed');
      assert.ok(killedAt > 0 && killedAt < total - 20, `killed mid-run (after ${killedAt} of ${total} bands)`);
      assert.ok(s.retries >= 1, 'the killed instance\'s band was retried');
      assert.ok(events.some((e) => e.type === 'retry' && e.url === kill && e.code === 'NETWORK'));
      assert.is(s.byUrl[kill].bands, 5, 'the victim finished 5 bands before it died');
    } else {
      assert.is(s.retries, 0);
    }
    timings.push(`${method}${bits}: local ${tLocal.toFixed(1)}s, fan-out ${tFan.toFixed(1)}s (${s.bands} bands, ${s.uploads} uploads, ${s.retries} retries${kill ? ', 1 of 3 killed' : ''})`);
  }
});

test('workerd: a reply corrupted on the way back is detected and solved again elsewhere (2 requests in flight per instance)', async () => {
  assert.ok(workers, 'workers started by the previous test');
  const live = workers!.urls.filter((_, i) => workers!.instances[i].alive);
  assert.is(live.length, 2);
  const { weights, hessian } = await problem(64, 64, 5);
  const opts: QuantizeOptions = { method: 'cd', bits: 3, groupSize: 16, threads: 1 };
  const local = await layerHash(await quantizeLayer(weights, hessian, opts));
  let damaged = 0;
  // Two requests in flight per instance: concurrent requests interleave in one isolate.
  const pool = new FanoutPool({
    urls: live,
    bandRows: 8,
    concurrency: 2,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      if (url.startsWith(live[0]) && init.method === 'POST' && res.ok && damaged === 0) {
        damaged++;
        return flipByte(res, 999);
      }
      return res;
    },
  });
  assert.is(await layerHash(await quantizeLayer(weights, hessian, { ...opts, pool })), local);
  assert.is(damaged, 1);
  assert.is(pool.stats().retries, 1);
});

test('workerd: cdquant quantize --workers-url writes the same files as a local run', async () => {
  assert.ok(workers, 'workers started by an earlier test');
  const live = workers!.urls.filter((_, i) => workers!.instances[i].alive);
  const out = mkdtempSync(join(tmpdir(), 'cdquant-fanout-'));
  try {
    const cli = (dir: string, extra: string[]) => spawnSync(process.execPath, [
      join(process.cwd(), 'build', 'cli.js'), 'quantize', join(DATA, 'stories260K.bin'), '--calib', join(DATA, 'tinystories-valid-a.txt'),
      '--calib-paragraphs', '0:200', '--nsamples', '8', '--seqlen', '64', '--method', 'gptq', '--bits', '4', '--group', '32', '--json',
      '--out', join(out, dir), ...extra,
    ], { encoding: 'utf8', timeout: 60_000 });
    const local = cli('local', ['--threads', '1']);
    assert.is(local.status, 0, local.stderr);
    const fanned = cli('fanned', ['--workers-url', live.join(',')]);
    assert.is(fanned.status, 0, fanned.stderr);
    assert.match(fanned.stderr, new RegExp(`fan-out: row bands on ${live.length} band workers`));
    assert.match(fanned.stderr, /fan-out: \d+ bands, 0 retried attempts/);
    for (const f of ['gptq/model.safetensors', 'dequantized/model.bin']) {
      const a = await sha256Hex(new Uint8Array(readFileSync(join(out, 'local', f))));
      const b = await sha256Hex(new Uint8Array(readFileSync(join(out, 'fanned', f))));
      assert.is(b, a, f);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test.run();
