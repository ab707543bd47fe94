// GGUF layers in bands on the worker pool (src/parallel/gguf-band.ts, WorkerPool.solveGgufBands,
// the pipeline's GGUF layers): the built package (build/index.js starting build/worker.js), as
// pool.test.ts. The reference is the same layer solved on this thread in one pass of bands of
// 128 rows (quantizeLayerGguf, whose bytes gguf-output.test.ts has llama.cpp read): every band
// size and worker count must give its bytes, values, losses and moves bit for bit, since each
// row's result depends on that row and H only.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { randomProblem } from './reference.js';
import { checkpoint, randomTensors } from './helpers/family-models.js';
import { readData, readDataText } from './helpers/util.js';
import { decodeGgufBand, encodeGgufBand } from '../src/parallel/frame.js';
import { decodeBandRequest, encodeBandRequest, FanoutProtocolError } from '../src/parallel/fanout.js';
import { FormatError } from '../src/core/errors.js';

const lib = await import('cdquant');
type Layer = ReturnType<typeof lib.quantizeLayerGguf>;
type Solver = Parameters<typeof lib.quantizeLayerGguf>[3];
type BlockType = Parameters<typeof lib.quantizeLayerGguf>[2];

const kernel = await lib.Kernel.create();
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

// 300 rows (not a multiple of any band size below), 512 columns (two k-quant super-blocks).
const p = randomProblem(300, 512, 1024, 31, { outliers: true });
const problem = { W: Float32Array.from(p.W, (v) => v * 0.02), H: Float32Array.from(p.H), rows: 300, cols: 512 };
const weights = { data: problem.W, rows: problem.rows, cols: problem.cols };

function session() {
  return lib.prepareResident(kernel, kernel.put(problem.H), problem.cols, { method: 'rtn' });
}

function same(a: Layer, b: Layer, what: string): void {
  assert.is(sha(b.bytes), sha(a.bytes), `${what}: bytes`);
  assert.is(sha(new Uint8Array(b.values.buffer)), sha(new Uint8Array(a.values.buffer)), `${what}: values`);
  assert.ok(Object.is(a.loss, b.loss), `${what}: loss ${b.loss} vs ${a.loss}`);
  assert.ok(Object.is(a.refLoss, b.refLoss), `${what}: refLoss ${b.refLoss} vs ${a.refLoss}`);
  assert.ok(Object.is(a.movesPerRow, b.movesPerRow), `${what}: movesPerRow ${b.movesPerRow} vs ${a.movesPerRow}`);
}

const CASES: Array<[BlockType, Solver]> = [['Q4_K', 'cd'], ['Q3_K', 'owc'], ['Q5_0', 'cd'], ['Q6_K', 'imatrix'], ['F16', 'cd']];
const reference = new Map<string, Layer>();

test('setup: each case on this thread in bands of 128 rows', () => {
  const s = session();
  try {
    for (const [type, solver] of CASES) reference.set(`${type}/${solver}`, lib.quantizeLayerGguf(s, weights, type, solver, { iters: 256 }));
  } finally {
    s.free();
  }
  // The reference is not degenerate: CD moves, and the H-weighted solvers beat llama.cpp's rounding.
  assert.ok(reference.get('Q4_K/cd')!.movesPerRow! > 1);
  assert.ok(reference.get('Q4_K/cd')!.loss < reference.get('Q4_K/cd')!.refLoss);
});

test('on this thread, bands of 1, 7 and 300 rows give the same bits', () => {
  const s = session();
  try {
    for (const [type, solver] of CASES) {
      for (const bandRows of [1, 7, 300]) {
        same(reference.get(`${type}/${solver}`)!, lib.quantizeLayerGguf(s, weights, type, solver, { iters: 256, bandRows }), `${type}/${solver} bands of ${bandRows}`);
      }
    }
  } finally {
    s.free();
  }
});

test('on 1, 2 and 3 workers (bands of 13, 64 and the pool\'s default) the same bits as on this thread; the workers do run', async () => {
  const s = session();
  try {
    for (const threads of [1, 2, 3]) {
      const pool = new lib.WorkerPool({ threads });
      try {
        for (const [type, solver] of CASES) {
          for (const bandRows of threads === 1 ? [64] : [undefined, 13]) {
            const r = await lib.quantizeLayerGgufOn(pool, s, weights, type, solver, { iters: 256, ...(bandRows ? { bandRows } : {}) });
            same(reference.get(`${type}/${solver}`)!, r, `${type}/${solver} on ${threads} workers, bands of ${bandRows ?? 'default'}`);
          }
        }
        // Workers are capped at the core count (WorkerPool.threads()).
        assert.is(pool.liveWorkers, await pool.threads(), `${threads} workers requested`);
        assert.ok(pool.liveWorkers >= 1);
      } finally {
        pool.terminate();
      }
    }
  } finally {
    s.free();
  }
});

test('bad GGUF band requests get typed errors, from the pool as from this thread', async () => {
  const s = session();
  const pool = new lib.WorkerPool({ threads: 2 });
  try {
    const prepared = s.portable();
    const bad: Array<[unknown, string]> = [
      [{ type: 'Q9_K', solver: 'cd', iters: 1 }, 'GGUF type'],
      [{ type: 'Q4_K', solver: 'gptq', iters: 1 }, 'GGUF solver'],
      [{ type: 'Q4_K', solver: 'cd', iters: -1 }, 'GGUF iters'],
      [{ type: 'Q4_K', solver: 'cd', iters: 1.5 }, 'GGUF iters'],
    ];
    for (const [spec, words] of bad) {
      for (const solver of [pool, new lib.LocalBandSolver(kernel)]) {
        try {
          await solver.solveGgufBands(prepared, weights, spec as any);
          assert.unreachable(`${JSON.stringify(spec)} accepted`);
        } catch (e) {
          assert.instance(e, lib.OptionError, `${JSON.stringify(spec)}: ${(e as Error).message}`);
          assert.ok((e as Error).message.includes(words), (e as Error).message);
        }
      }
    }
    // Rows of 96 fit no k-quant's 256-value blocks.
    const narrow = lib.prepareResident(kernel, kernel.put(new Float32Array(96 * 96).map((_, i) => (i % 97 === 0 ? 1 : 0))), 96, { method: 'rtn' });
    try {
      const w96 = { data: new Float32Array(4 * 96).fill(0.5), rows: 4, cols: 96 };
      for (const run of [() => lib.quantizeLayerGgufOn(pool, narrow, w96, 'Q4_K', 'cd'), async () => lib.quantizeLayerGguf(narrow, w96, 'Q4_K', 'cd')]) {
        try {
          await run();
          assert.unreachable('Q4_K on rows of 96 accepted');
        } catch (e) {
          assert.instance(e, lib.OptionError, (e as Error).message);
          assert.ok((e as Error).message.includes('multiple of 256'), (e as Error).message);
        }
      }
    } finally {
      narrow.free();
    }
    // A non-finite weight is refused before any band is sent.
    const nan = { data: problem.W.slice(), rows: problem.rows, cols: problem.cols };
    nan.data[5 * 512 + 3] = NaN;
    try {
      await lib.quantizeLayerGgufOn(pool, s, nan, 'Q4_K', 'cd');
      assert.unreachable('NaN weight accepted');
    } catch (e) {
      assert.instance(e, lib.NonFiniteError, (e as Error).message);
    }
  } finally {
    pool.terminate();
    s.free();
  }
});

test('HTTP band workers (the fan-out protocol, in-process) give the same bits; a reply whose GGUF band does not fit is refused and the band solved elsewhere', async () => {
  const workers = new Map(['a', 'b'].map((n) => [`http://${n}.test`, lib.createFanoutWorker()]));
  let tampered = 0;
  const fetch = async (url: string, init: RequestInit) => {
    const origin = new URL(url).origin;
    const res = await workers.get(origin)!.fetch(new Request(url, init));
    if (origin !== 'http://b.test' || !url.endsWith('/band') || !res.ok) return res;
    // Worker b answers with one byte fewer per band, under a hash that matches its body: only
    // the GGUF band decoder can tell.
    const band = decodeGgufBand(new Uint8Array(await res.arrayBuffer()));
    const body = encodeGgufBand({ ...band, bytes: band.bytes.subarray(1) });
    tampered++;
    const headers = new Headers(res.headers);
    headers.set('x-cdquant-band-sha256', sha(body));
    return new Response(body as Uint8Array<ArrayBuffer>, { status: 200, headers });
  };
  const s = session();
  try {
    const events: string[] = [];
    const pool = new lib.FanoutPool({ urls: [...workers.keys()], fetch, bandRows: 50, retries: 8, onEvent: (e) => events.push(e.type) });
    for (const [type, solver] of [['Q4_K', 'cd'], ['Q3_K', 'owc']] as Array<[BlockType, Solver]>) {
      same(reference.get(`${type}/${solver}`)!, await lib.quantizeLayerGgufOn(pool, s, weights, type, solver, { iters: 256 }), `${type}/${solver} on band workers`);
    }
    assert.ok(tampered > 0 && events.includes('retry'), `tampered ${tampered}, events ${[...new Set(events)]}`);
  } finally {
    s.free();
  }
});

test('the GGUF band codec and band requests refuse what does not fit (FormatError, BAD_REQUEST)', () => {
  const spec = { type: 'Q4_K' as BlockType, solver: 'cd' as Solver, iters: 8 };
  const ok = { r0: 10, r1: 12, bytes: new Uint8Array(2 * 2 * 144), rowLoss: new Float64Array([1, 2]), refRowLoss: new Float64Array([3, 4]), moves: new Int32Array([0, 5]) };
  const back = decodeGgufBand(encodeGgufBand(ok), { spec, cols: 512 });
  assert.equal([back.r0, back.r1, [...back.moves!]], [10, 12, [0, 5]]);
  const refused: Array<[string, Parameters<typeof encodeGgufBand>[0], typeof spec]> = [
    ['array bytes has 575 values, expected 576', { ...ok, bytes: new Uint8Array(575) }, spec],
    ['rowLoss has a non-finite value', { ...ok, rowLoss: new Float64Array([1, NaN]) }, spec],
    ['a negative move count', { ...ok, moves: new Int32Array([0, -1]) }, spec],
    ['moves missing for solver cd', { ...ok, moves: null }, spec],
    ['moves given for solver owc', ok, { ...spec, solver: 'owc' }],
    ['GGUF type must be one of', ok, { ...spec, type: 'Q7_K' as BlockType }],
  ];
  for (const [words, band, sp] of refused) {
    try {
      decodeGgufBand(encodeGgufBand(band), { spec: sp, cols: 512 });
      assert.unreachable(`accepted: ${words}`);
    } catch (e) {
      assert.instance(e, FormatError, (e as Error).message);
      assert.ok((e as Error).message.includes(words), `${(e as Error).message} (expected: ${words})`);
    }
  }
  const hash = 'a'.repeat(64);
  const request = (gguf: unknown, cols = 256, baseline = false) => encodeBandRequest({ r0: 0, r1: 1, cols, prepared: hash, weights: hash, baseline, gguf: gguf as any }, new Float32Array(cols), null);
  assert.equal(decodeBandRequest(request(spec)).header.gguf, spec);
  for (const [gguf, cols, baseline, words] of [
    [{ ...spec, solver: 'rtn' }, 256, false, 'GGUF solver'],
    [spec, 96, false, 'multiple of 256'],
    [{ ...spec, iters: -2 }, 256, false, 'GGUF iters'],
    [spec, 256, true, 'baseline'],
  ] as Array<[unknown, number, boolean, string]>) {
    try {
      decodeBandRequest(request(gguf, cols, baseline));
      assert.unreachable(`accepted ${JSON.stringify(gguf)} at ${cols} columns`);
    } catch (e) {
      assert.instance(e, FanoutProtocolError);
      assert.is((e as FanoutProtocolError).code, 'BAD_REQUEST');
      assert.ok((e as Error).message.includes(words), (e as Error).message);
    }
  }
});

test('the pipeline: a GGUF job with --threads 2 writes the same file as with one thread', async () => {
  // A Llama of the example vocabulary whose rows are multiples of 256 (as gguf-output.test.ts).
  const cfg = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 256, intermediate_size: 512, num_hidden_layers: 1,
    num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 512, max_position_embeddings: 256, rope_theta: 10000, tie_word_embeddings: false,
  };
  const model = lib.readHfModel(checkpoint(cfg, randomTensors(cfg, 7)));
  const source = lib.memoryModel(model, 'hf', 'F32', async () => 'wide');
  const tok = lib.readTokenizer(readData('tok512.bin'), 512);
  const ggufVocab = await lib.ggufVocabFor(tok, model.config);
  const calibration = tok.encode(readDataText('tinystories-valid-a.txt').split('\n\n').slice(0, 100).join('\n\n'));
  const plan = await lib.planJob(source, calibration, { method: 'cd' }, { nsamples: 4, seqlen: 64, seed: 1 }, { mix: 'Q4_K_M', solver: 'cd' });
  const file = async (threads: number) => {
    const job = await lib.runJob(source, plan, { kernel, modelName: 'wide', ggufVocab, threads });
    return job.files.find((f) => f.path === 'model.gguf')!.data as Uint8Array;
  };
  const one = await file(1);
  const two = await file(2);
  assert.ok(one.length > 100_000);
  assert.is(sha(two), sha(one));
});

test.run();
