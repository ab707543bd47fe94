// The calibration forward pass made cheaper (issue 10, item 5), in two ways that must not
// change a bit. (1) The midpoint: a block run `toMid` leaves the state at h = x + attention and
// runs `from: 'mid'` do only the MLP half, so GPTQ's sequential stages stop recomputing q/k/v,
// attention and o_proj for the MLP's stages and the block's output; checked against whole-block
// runs and against the sequential procedure written out with every stage recomputed from the
// block's input. (2) Threads: LlamaRunner.runBlock
// with `threads` shares its products (token block x 16 output rows) and its attention (query
// heads) among the workers of a shared-memory pool. Checked here: the block's captured inputs
// and the hidden states after every block are the same bits as the forward on this thread,
// for 1-3 workers, on the real stories260K and on random models whose shapes split every way
// (several token blocks with a short tail, uneven last row pieces, GQA, Gemma 3's sliding
// window, soft-capping and sandwich norms); the pipeline's quantized layers equal the
// one-thread run's; a worker failing mid-forward fails the call with its typed error and leaves
// no worker running. The reference for every value is the forward pass on this thread
// (runBlock without `threads`, on a kernel of its own), which test/forward.test.ts and
// test/families.test.ts check against float64 references written from the upstream models.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rejects, settles } from './helpers/settle.js';
import { tinyModel } from './helpers/models.js';
import type { LlamaModel } from '../src/model/types.js';
// The driver of hessianUpdate's shared bands, from the source (the package exports its users).
import { hessianUpdate } from '../src/core/linalg.js';

const lib = await import('cdquant');
type Kernel = Awaited<ReturnType<typeof lib.Kernel.create>>;
type Runner = Parameters<Parameters<InstanceType<typeof lib.WorkerPool>['parallel']>[0]>[1];

const data = join(process.cwd(), '..', 'shared', 'data');

/** A tiny random model with maxSeqLen raised for the test's windows. */
function model(seed: number, options: Parameters<typeof tinyModel>[1]): LlamaModel {
  const m = tinyModel(seed, options);
  m.config.maxSeqLen = 256;
  return m;
}

/** Gemma 3 on tinyModel's weights: sliding and full layers, attention soft-capping, q/k norms,
 * sandwich norms (the norms near 0: Gemma multiplies by 1 + w). */
function gemma(seed: number): LlamaModel {
  const m = model(seed, { dim: 64, hidden: 100, layers: 2, heads: 4, kv: 2, vocab: 40 });
  const head = 64 / 4;
  const small = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + s) * 0.1);
  m.config = { ...m.config, family: 'gemma3', ropeStyle: 'half', slidingWindow: 24, layerTypes: ['sliding', 'full'], attnSoftcap: 20, ropeLocalTheta: 10000, queryPreAttnScalar: 16 };
  m.blocks.forEach((b, l) => Object.assign(b, { postAttnNorm: small(64, l), postFfnNorm: small(64, l + 2), qNorm: small(head, l + 4), kNorm: small(head, l + 6) }));
  return m;
}

function tokens(n: number, vocab: number, seed: number): Int32Array {
  let s = seed;
  return Int32Array.from({ length: n }, () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % vocab);
}

/** Every block on every window: each stage's captured input and the state after each block,
 * as bytes, in order. `threads` counts the calls of each batch handed to it. */
function trace(kernel: Kernel, m: LlamaModel, windows: Int32Array[], threads?: Runner, batches?: number[]): Buffer[] {
  const runner = new lib.LlamaRunner(kernel, m, { classifier: false });
  const counted: Runner | undefined = threads && {
    run: (calls, scratch) => {
      batches?.push(calls.length);
      threads.run(calls, scratch);
    },
  };
  const out: Buffer[] = [];
  for (const w of windows) {
    const state = runner.embed(w);
    for (let l = 0; l < m.config.nLayers; l++) {
      runner.runBlock(l, state, {
        threads: counted,
        captureResident: (_names, ptr, rows, cols) => out.push(Buffer.from(kernel.u8(ptr, rows * cols * 4))),
      });
      out.push(Buffer.from(runner.readState(state).buffer));
    }
    runner.freeState(state);
  }
  // Not freed when a piece failed: the memory of a pool whose workers failed is dropped whole.
  runner.free();
  return out;
}

const stories = () => lib.readLlama2c(new Uint8Array(readFileSync(join(data, 'stories260K.bin'))));
const storyWindows = () => {
  const tokenizer = lib.readTokenizer(new Uint8Array(readFileSync(join(data, 'tok512.bin'))), 512);
  const text = lib.splitParagraphs(readFileSync(join(data, 'tinystories-valid-a.txt'), 'utf8')).slice(0, 60).join('\n');
  return lib.calibrationWindows(Int32Array.from(tokenizer.encode(text)), 102, 4, 1);
};

// down_proj of the wide model has 2100 inputs: nn_matmul's token block is then 124 tokens, so
// 130 tokens make a full block and a tail of 6 (a token quad and 2 single tokens); 2100 and 256
// output rows and 100 hidden are not all multiples of 16 (short last row pieces).
const CASES = [
  { name: 'stories260K', m: stories(), windows: storyWindows() },
  { name: 'wide llama (GQA)', m: model(7, { dim: 256, hidden: 2100, layers: 2, heads: 4, kv: 2, vocab: 64 }), windows: [tokens(130, 64, 1), tokens(7, 64, 2)] },
  { name: 'gemma3 (window, softcap)', m: gemma(8), windows: [tokens(61, 40, 3), tokens(5, 40, 4)] },
];

test('the midpoint: toMid then from: \'mid\' gives the whole block\'s captures and output; wrong combinations are refused', async () => {
  const kernel = await lib.Kernel.create();
  for (const { name, m, windows } of CASES) {
    const runner = new lib.LlamaRunner(kernel, m, { classifier: false });
    const copy = (ptr: number, rows: number, cols: number) => Buffer.from(kernel.u8(ptr, rows * cols * 4));
    for (const w of windows) {
      for (let l = 0; l < m.config.nLayers; l++) {
        // the reference: the whole block from its input, every capture
        const whole = runner.embed(w);
        const seen = new Map<string, Buffer>();
        runner.runBlock(l, whole, { captureResident: (names, ptr, rows, cols) => seen.set(names[0], copy(ptr, rows, cols)) });
        // the pipeline's order: MLP input captured on the way to the midpoint, down_proj's input
        // and the output from there
        const split = runner.embed(w);
        // (assigned in the callbacks: typed so the checks below see Buffer | null)
        let mlpIn = null as Buffer | null, downIn = null as Buffer | null;
        runner.runBlock(l, split, { stopAfter: 'up_proj', toMid: true, captureResident: (names, ptr, rows, cols) => { if (names[0] === 'gate_proj') mlpIn = copy(ptr, rows, cols); } });
        assert.is(split.layersDone, 0, 'a state at the midpoint has not finished the block');
        runner.runBlock(l, split, { stopAfter: 'down_proj', from: 'mid', captureResident: (names, ptr, rows, cols) => { if (names[0] === 'down_proj') downIn = copy(ptr, rows, cols); } });
        const mid = Buffer.from(runner.readState(split).buffer);
        runner.runBlock(l, split, { from: 'mid' });
        assert.ok(mlpIn && mlpIn.equals(seen.get('gate_proj')!), `${name} block ${l}: MLP input`);
        assert.ok(downIn && downIn.equals(seen.get('down_proj')!), `${name} block ${l}: down_proj input`);
        assert.ok(Buffer.from(runner.readState(split).buffer).equals(Buffer.from(runner.readState(whole).buffer)), `${name} block ${l}: output`);
        assert.is(split.layersDone, l + 1);
        // toMid without stopAfter stops at h: the same midpoint
        const direct = runner.embed(w);
        runner.runBlock(l, direct, { toMid: true });
        assert.ok(Buffer.from(runner.readState(direct).buffer).equals(mid), `${name} block ${l}: midpoint`);
        for (const st of [whole, split, direct]) runner.freeState(st);
      }
    }
    const st = runner.embed(windows[0]);
    const refused = (opts: object, what: RegExp) => assert.throws(() => runner.runBlock(0, st, opts), (e: Error) => e instanceof lib.OptionError && what.test(e.message));
    refused({ from: 'mid', stopAfter: 'q_proj' }, /MLP half only/);
    refused({ from: 'mid', toMid: true }, /MLP half only/);
    refused({ toMid: true, stopAfter: 'o_proj' }, /toMid/);
    refused({ toMid: true, update: false }, /toMid/);
    refused({ from: 'middle' }, /from must be/);
    runner.free();
  }
});

// GPTQ's sequential procedure written out with the public API, the way the reference code runs
// it: each stage's inputs recomputed from the block's input with the block's layers quantized
// so far, each layer solved by quantizeLayer on its stage's H, the block re-run whole. The
// pipeline (midpoint, H in place, prepared once per stage) must give its bits.
test('quantizeModel equals the sequential procedure that recomputes every stage from the block\'s input', async () => {
  const kernel = await lib.Kernel.create();
  const m = stories();
  const samples = storyWindows();
  const options = { method: 'gptq', bits: 4, groupSize: 32 } as const;
  const got = await lib.quantizeModel(stories(), samples, { ...options, kernel });
  const runner = new lib.LlamaRunner(kernel, m, { classifier: false });
  const states = samples.map((s) => runner.embed(s));
  const stages = [['q_proj', 'k_proj', 'v_proj'], ['o_proj'], ['gate_proj', 'up_proj'], ['down_proj']] as const;
  let i = 0;
  for (let l = 0; l < m.config.nLayers; l++) {
    for (const stage of stages) {
      let acc: InstanceType<typeof lib.HessianAccumulator> | null = null;
      for (const st of states) {
        runner.runBlock(l, st, {
          update: false,
          stopAfter: stage[stage.length - 1],
          captureResident: (names, ptr, rows, c) => {
            if (names[0] !== stage[0]) return;
            acc ??= new lib.HessianAccumulator(c, kernel);
            acc.addResident(kernel, ptr, rows);
          },
        });
      }
      const h = acc!.hessian();
      acc!.free();
      for (const name of stage) {
        const data = runner.getLinear(l, name);
        const c = Math.round(Math.sqrt(h.length));
        const res = await lib.quantizeLayer({ data, rows: data.length / c, cols: c }, h, { ...options, scales: 'f16', kernel });
        const mine = got.layers[i++];
        assert.is(`${mine.block} ${mine.name}`, `${l} ${name}`);
        assert.equal(mine.codes, res.codes, `block ${l} ${name}: codes`);
        assert.equal(mine.scales, res.scales, `block ${l} ${name}: scales`);
        assert.ok(Object.is(mine.loss, res.loss), `block ${l} ${name}: loss`);
        runner.setLinear(l, name, res.dequantize());
      }
    }
    for (const st of states) runner.runBlock(l, st);
  }
  assert.is(i, got.layers.length);
  runner.free();
});

test('runBlock on 1-3 workers: every captured input and every block\'s output state are the one-thread bits', async () => {
  const serial = await lib.Kernel.create();
  for (const { name, m, windows } of CASES) {
    const reference = trace(serial, m, windows);
    for (const threads of [1, 2, 3]) {
      const pool = new lib.WorkerPool({ threads });
      try {
        const batches: number[] = [];
        const done = await settles(pool.parallel((k, runner) => trace(k, m, windows, runner, batches)), `${name}, ${threads} workers`);
        assert.ok(done, 'a parallel region ran');
        const got = done!.value;
        assert.is(got.length, reference.length);
        got.forEach((b, i) => assert.ok(b.equals(reference[i]), `${name}, ${threads} workers: value ${i} of ${got.length} differs`));
        assert.ok(Math.max(...batches) > 1, `${name}: the products were split (largest batch ${Math.max(...batches)} calls)`);
      } finally {
        pool.terminate();
      }
    }
  }
});

// The late claim: a worker that finishes a batch's last call and claims again after the owner
// posted the next batch runs a call of that batch. Its scratch must be that batch's: a batch
// without scratch (products) followed by one whose scratch the owner has just grown (H's bands,
// n growing) is where a pointer read at wake-up was 0 or freed, and the bands wrote the heap.
test('parallel regions: scratch-free batches then a batch with grown scratch, many times: H is the serial kernel\'s, the heap intact', async () => {
  const pool = new lib.WorkerPool({ threads: 2 });
  try {
    const done = await settles(pool.parallel((k, runner) => {
      const e = k.exports;
      let s = 5;
      const uniform = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296) - 0.5;
      for (let round = 0; round < 40; round++) {
        const n = 16 + 8 * round, m = 12;
        const x = k.put(Float32Array.from({ length: m * n }, uniform));
        const y = k.alloc(m * n * 4);
        // tiny product pieces, no scratch: Y = X X^T, one output column each
        runner.run(Array.from({ length: m }, (_, i) => ({ fn: 'nn_matmul_part' as const, args: [x, x, y, m, n, m, 0, m, i, i + 1] })));
        const h1 = k.put(new Float32Array(n * n)), h2 = k.put(new Float32Array(n * n));
        const scratch = k.alloc(e.hessianUpdateScratch(n));
        e.hessianUpdate(h1, x, m, n, 0, 1, scratch);
        hessianUpdate(k, runner, h2, x, m, n, 0, 1); // its scratch grows with n: reallocated
        assert.ok(Buffer.from(k.u8(h1, n * n * 4)).equals(Buffer.from(k.u8(h2, n * n * 4))), `round ${round}: H`);
        for (const p of [x, y, h1, h2, scratch]) k.free(p); // a corrupted heap fails here
      }
      // and the allocator still works after all of it
      k.free(k.alloc(1 << 20));
      return true;
    }), 'late claims');
    assert.equal(done, { value: true });
  } finally {
    pool.terminate();
  }
});

test('quantizeModel on 2 and 3 workers (forward, H and solves in the pool\'s memory) gives the one-thread layers', async () => {
  const samples = storyWindows();
  const options = { method: 'gptq', bits: 4, groupSize: 32 } as const;
  const one = await lib.quantizeModel(stories(), samples, { ...options, threads: 1 });
  for (const threads of [2, 3]) {
    const pool = new lib.WorkerPool({ threads });
    try {
      const got = await settles(lib.quantizeModel(stories(), samples, { ...options, pool }), `pipeline, ${threads} workers`);
      assert.is(got.layers.length, one.layers.length);
      got.layers.forEach((l, i) => {
        const what = `${threads} workers, block ${l.block} ${l.name}`;
        assert.equal(l.codes, one.layers[i].codes, `${what}: codes`);
        assert.equal(l.scales, one.layers[i].scales, `${what}: scales`);
        assert.equal(l.zeros, one.layers[i].zeros, `${what}: zeros`);
        assert.ok(Object.is(l.loss, one.layers[i].loss), `${what}: loss`);
      });
      assert.ok(pool.sharedMemoryBytes > 0, 'the shared path ran');
    } finally {
      pool.terminate();
    }
  }
});

for (const kind of ['throw', 'exit', 'hang'] as const) {
  test(`forward on workers: a worker that ${kind === 'throw' ? 'fails a piece' : kind === 'exit' ? 'exits' : 'hangs'} mid-forward fails the call with ${kind === 'throw' ? 'KernelError, workers kept, the next forward right' : 'WorkerError, no worker left, the memory dropped'}`, async () => {
    const { m, windows } = CASES[1];
    const serial = trace(await lib.Kernel.create(), m, windows);
    // testRegionFault hits the first call of a region's first batch: here q_proj's first piece.
    const pool = new lib.WorkerPool({ threads: 2, testRegionFault: kind, bandTimeoutMs: 1500 });
    try {
      const e = await rejects(pool.parallel((k, runner) => trace(k, m, windows, runner)), kind);
      if (kind === 'throw') {
        assert.instance(e, lib.KernelError);
        assert.match(e.message, /nn_matmul_part failed on a worker/);
        assert.is(pool.liveWorkers, 2);
      } else {
        assert.instance(e, lib.WorkerError);
        assert.match(e.message, /nn_matmul_part within 1500 ms/);
        assert.is(pool.liveWorkers, 0);
        assert.is(pool.sharedMemoryBytes, 0);
      }
    } finally {
      pool.terminate();
    }
    if (kind === 'throw') {
      const again = new lib.WorkerPool({ threads: 2 });
      try {
        const done = await settles(again.parallel((k, runner) => trace(k, m, windows, runner)), 'after');
        done!.value.forEach((b, i) => assert.ok(b.equals(serial[i]), `after a failure: value ${i}`));
      } finally {
        again.terminate();
      }
    }
  });
}

test('quantizeModel on a pool whose worker exits in a region: WorkerError, no worker left, the memory dropped', async () => {
  const pool = new lib.WorkerPool({ threads: 2, testRegionFault: 'exit', bandTimeoutMs: 1500 });
  try {
    const e = await rejects(lib.quantizeModel(stories(), storyWindows(), { method: 'gptq', bits: 4, pool }), 'pipeline exit');
    assert.instance(e, lib.WorkerError);
    assert.is(pool.liveWorkers, 0);
    assert.is(pool.sharedMemoryBytes, 0);
  } finally {
    pool.terminate();
  }
});

test.run();
