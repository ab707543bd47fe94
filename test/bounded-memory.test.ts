// Bounded memory (issue 10): what lets a Llama-2-7B block quantize in under 3 GB. The forward
// runner's released and in-place written layers, the lazy model's tensor and row reads, the chunked safetensors
// writer, and the pipeline's kernel memory on a model of 7B's proportions. Expected values
// come from independent whole-tensor code paths (readHfLlama, writeSafetensors, writeHfLlama,
// the runner before any release) and from the allocation sizes the spec implies.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Kernel } from '../src/core/kernel.js';
import { OptionError, ShapeError, CdquantError } from '../src/core/errors.js';
import { LlamaRunner } from '../src/model/forward.js';
import { readLlama2c } from '../src/model/checkpoint/llama2c.js';
import { readHfLlama, writeHfLlama, hfTensors } from '../src/model/checkpoint/hf.js';
import { openHfModel, memoryModel, memorySources } from '../src/model/source.js';
import { memorySink, writeHfCheckpoint, writeSafetensorsShards, type TensorEntry } from '../src/model/outputs.js';
import { quantizeModel, quantizedView, layerRows, layerValues, type QuantizedLinear } from '../src/model/pipeline.js';
import { quantizeRows, dequantizeRows } from '../src/formats/gguf-blocks.js';
import { parseSafetensors, readTensorRaw, writeSafetensors, encodeTensor } from '../src/formats/safetensors.js';
import { LINEAR_NAMES, type LlamaBlock, type LlamaModel } from '../src/model/types.js';
import { readData, readDataText, rng, sameArray, throwsType } from './helpers/util.js';

async function rejectsType(p: Promise<unknown>, Type: new (...a: never[]) => Error, match?: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof Type)) throw new Error(`expected ${Type.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    if (match && !match.test((e as Error).message)) throw new Error(`message "${(e as Error).message}" does not match ${match}`);
    return;
  }
  throw new Error(`expected ${Type.name}, nothing thrown`);
}

const l2c = readLlama2c(readData('stories260K.bin'));

test('releaseLinear: a block with a released layer refuses to run; setLinear gives the same bits back', async () => {
  const kernel = await Kernel.create();
  const runner = new LlamaRunner(kernel, l2c);
  try {
    const tokens = Int32Array.from({ length: 40 }, (_, i) => (i * 37 + 1) % l2c.config.vocabSize);
    const want = runner.logits(tokens); // before any release: the reference
    const down = runner.getLinear(3, 'down_proj');
    const up = runner.getLinear(3, 'up_proj');
    runner.releaseLinear(3, 'down_proj');
    runner.releaseLinear(3, 'down_proj'); // twice is a no-op
    runner.releaseLinear(3, 'up_proj');
    throwsType(() => runner.logits(tokens), OptionError, /block 3's (down|up)_proj was released/);
    throwsType(() => runner.getLinear(3, 'down_proj'), OptionError, /released/);
    throwsType(() => runner.releaseLinear(9, 'q_proj'), OptionError, /layer must be/);
    runner.setLinear(3, 'down_proj', down);
    throwsType(() => runner.logits(tokens), OptionError, /up_proj was released/);
    runner.setLinear(3, 'up_proj', up);
    sameArray(runner.logits(tokens), want, 'logits after release and restore');
    // fillLinear: written in place (here by copying the reference into the kernel), on a
    // released layer too; a fill that throws leaves the layer released
    runner.releaseLinear(3, 'down_proj');
    runner.fillLinear(3, 'down_proj', (ptr) => kernel.f32(ptr, down.length).set(down));
    sameArray(runner.logits(tokens), want, 'logits after fillLinear');
    throwsType(() => runner.fillLinear(3, 'down_proj', () => { throw new ShapeError('fill failed'); }), ShapeError, /fill failed/);
    throwsType(() => runner.logits(tokens), OptionError, /down_proj was released/);
    runner.setLinear(3, 'down_proj', down);
    // setLinearRows: a released layer loaded a few rows at a time
    runner.releaseLinear(3, 'down_proj');
    const cols = down.length / 64;
    for (const [r0, r1] of [[0, 5], [5, 6], [6, 64]]) runner.setLinearRows(3, 'down_proj', r0, down.slice(r0 * cols, r1 * cols));
    sameArray(runner.logits(tokens), want, 'logits after setLinearRows');
    throwsType(() => runner.setLinearRows(3, 'down_proj', 60, down.slice(0, 5 * cols)), ShapeError, /not whole rows within it/);
    throwsType(() => runner.setLinearRows(3, 'down_proj', 0, down.slice(0, cols + 1)), ShapeError, /whole rows/);
    // unloadBlock after a release frees only what is held (no double free: the kernel still allocates)
    runner.releaseLinear(1, 'q_proj');
    runner.unloadBlock(1);
    runner.loadBlock(1, l2c.blocks[1]);
    sameArray(runner.logits(tokens), want, 'logits after reload');
  } finally {
    runner.free();
  }
});

test('LazyModel.tensor: whole tensors and row ranges equal the whole-file reader, in F32, F16 and BF16', async () => {
  for (const dir of ['stories260K-hf', 'stories260K-hf-f16', 'stories260K-hf-bf16']) {
    const config = readDataText(`${dir}/config.json`);
    const bytes = readData(`${dir}/model.safetensors`);
    const whole = readHfLlama({ config, safetensors: [bytes] }); // reads every tensor at once
    const lazy = await openHfModel({ config, shards: memorySources([{ name: 'model.safetensors', bytes }]) });
    const dim = whole.config.dim;
    for (const [r0, r1] of [[0, 512], [0, 1], [511, 512], [100, 357], [7, 7]] as const) {
      sameArray(await lazy.tensor({ kind: 'embedding' }, [r0, r1]), whole.embedding.subarray(r0 * dim, r1 * dim), `${dir} embedding rows ${r0}-${r1}`);
      // tied: the classifier is the embedding
      sameArray(await lazy.tensor({ kind: 'classifier' }, [r0, r1]), whole.embedding.subarray(r0 * dim, r1 * dim), `${dir} classifier rows ${r0}-${r1}`);
    }
    for (const t of hfTensors(whole.config)) {
      const s = t.slot;
      const want = s.kind === 'embedding' ? whole.embedding : s.kind === 'finalNorm' ? whole.finalNorm
        : s.kind === 'norm' ? whole.blocks[s.layer][s.field]! : s.kind === 'linear' ? whole.blocks[s.layer].linear[s.name] : null;
      if (want) sameArray(await lazy.tensor(s), want, `${dir} ${t.name}`);
    }
    await rejectsType(lazy.tensor({ kind: 'embedding' }, [5, 513]), ShapeError, /rows \[5, 513\)/);
    await rejectsType(lazy.tensor({ kind: 'embedding' }, [5, 4]), ShapeError, /rows/);
    await rejectsType(lazy.tensor({ kind: 'linear', layer: 5, name: 'q_proj' }), ShapeError, /no tensor/);
  }
  // the memory model: views of its arrays
  const mem = memoryModel(l2c, 'llama2c', 'F32', async () => '');
  sameArray(await mem.tensor({ kind: 'linear', layer: 2, name: 'gate_proj' }, [3, 5]), l2c.blocks[2].linear.gate_proj.subarray(3 * 64, 5 * 64), 'memory rows');
  await rejectsType(mem.tensor({ kind: 'classifier' }, [0, 513]), ShapeError, /rows/);
});

test('writeSafetensorsShards: chunked entries write the bytes of the whole tensor; a wrong count is refused', async () => {
  const r = rng(7);
  const a = Float32Array.from({ length: 6 * 5 }, () => r() - 0.5);
  const b = Float32Array.from({ length: 4 }, () => r());
  const chunked: TensorEntry = {
    name: 'a', dtype: 'BF16', shape: [6, 5],
    async *chunks() {
      for (const [r0, r1] of [[0, 4], [4, 5], [5, 6]]) yield encodeTensor({ name: 'a', dtype: 'BF16', shape: [r1 - r0, 5], data: a.subarray(r0 * 5, r1 * 5) });
    },
  };
  const plain: TensorEntry = { name: 'b', dtype: 'F32', shape: [4], bytes: async () => encodeTensor({ name: 'b', dtype: 'F32', shape: [4], data: b }) };
  const sink = memorySink();
  await writeSafetensorsShards(sink, 'out', [chunked, plain], { format: 'pt' });
  // the whole-file writer, from whole tensors, is the reference
  const want = writeSafetensors([{ name: 'a', dtype: 'BF16', shape: [6, 5], data: a }, { name: 'b', dtype: 'F32', shape: [4], data: b }], { format: 'pt' });
  sameArray(sink.files[0].data as Uint8Array, want, 'file bytes');
  const short: TensorEntry = { name: 'a', dtype: 'F32', shape: [6, 5], async *chunks() { yield new Uint8Array(8); } };
  const long: TensorEntry = { name: 'a', dtype: 'F32', shape: [2], async *chunks() { yield new Uint8Array(8); yield new Uint8Array(4); } };
  await rejectsType(writeSafetensorsShards(memorySink(), 'x', [short], {}), OptionError, /produced 8 bytes, its layout says 120/);
  const sinkLong = memorySink();
  await rejectsType(writeSafetensorsShards(sinkLong, 'x', [long], {}), OptionError, /more than the 8 bytes/);
});

test('writeHfCheckpoint: an embedding larger than a chunk is written by rows, the same bytes as the whole-model writer', async () => {
  // 70000 x 64 = 4.48M values, past one chunk of 4M: the embedding goes out in two chunks.
  const vocab = 70000;
  const r = rng(3);
  const embedding = Float32Array.from({ length: vocab * 64 }, () => (r() - 0.5) * 0.1);
  const model: LlamaModel = { ...l2c, config: { ...l2c.config, vocabSize: vocab }, embedding, classifier: embedding };
  for (const dtype of ['BF16', 'F32'] as const) {
    const sink = memorySink();
    await writeHfCheckpoint(sink, 'hf', memoryModel(model, 'hf', 'F32', async () => ''), dtype, {}, Infinity);
    const got = parseSafetensors(sink.files.find((f) => f.path === 'hf/model.safetensors')!.data as Uint8Array);
    const gotBytes = sink.files.find((f) => f.path === 'hf/model.safetensors')!.data as Uint8Array;
    const ref = writeHfLlama(model, dtype); // encodes each tensor whole
    const want = parseSafetensors(ref.safetensors);
    assert.equal([...got.tensors.keys()], [...want.tensors.keys()]);
    for (const name of want.tensors.keys()) {
      const x = readTensorRaw(got, gotBytes, name) as Uint16Array | Float32Array, y = readTensorRaw(want, ref.safetensors, name) as Uint16Array | Float32Array;
      sameArray(x, y, `${dtype} ${name}`);
    }
  }
});

test('quantized rows: layerRows and the quantized view\'s row reads are those rows of the whole layer, integer grids and GGUF', async () => {
  const kernel = await Kernel.create();
  const r = rng(9);
  const samples = [Int32Array.from({ length: 48 }, () => Math.floor(r() * 512))];
  const { layers } = await quantizeModel(l2c, samples, { method: 'gptq', bits: 4, groupSize: 16, kernel });
  const view = quantizedView(memoryModel(l2c, 'llama2c', 'F32', async () => ''), async (b) => layers.filter((l) => l.block === b), kernel);
  for (const l of layers.filter((x) => x.block === 1)) {
    const whole = layerValues(kernel, l); // the reference: the whole layer dequantized at once
    for (const [r0, r1] of [[0, l.rows], [0, 1], [l.rows - 3, l.rows], [5, 17]]) {
      sameArray(layerRows(kernel, l, r0, r1), whole.subarray(r0 * l.cols, r1 * l.cols), `${l.name} rows ${r0}-${r1}`);
      sameArray(await view.tensor({ kind: 'linear', layer: 1, name: l.name as 'q_proj' }, [r0, r1]), whole.subarray(r0 * l.cols, r1 * l.cols), `view ${l.name} rows ${r0}-${r1}`);
    }
    await rejectsType(view.tensor({ kind: 'linear', layer: 1, name: l.name as 'q_proj' }, [0, l.rows + 1]), ShapeError, /rows/);
  }
  // a GGUF layer: Q4_K rows of 256 values (the embedding's rows padded to 256 columns)
  const rows = 12, cols = 256;
  const values = Float32Array.from({ length: rows * cols }, () => r() - 0.5);
  const bytes = quantizeRows(kernel, 'Q4_K', values, rows, cols);
  const g: QuantizedLinear = { ...layers[0], rows, cols, bits: 0, groups: 0, codes: new Uint8Array(0), scales: new Float32Array(0), zeros: new Float32Array(0), gIdx: new Int32Array(0), gguf: { type: 'Q4_K', bytes } };
  const whole = dequantizeRows(kernel, 'Q4_K', bytes, rows, cols);
  sameArray(layerRows(kernel, g, 4, 9), whole.subarray(4 * cols, 9 * cols), 'GGUF rows');
});

/** A random Llama model with 7B's proportions at a small size: hidden / dim = 11008 / 4096,
 * MHA, so down_proj's H (hidden^2) is smaller than the block's other linear layers together
 * (4 dim^2 + 2 hidden dim), as in Llama-2-7B. */
function proportionalModel(dim: number, hidden: number, layers: number, vocab: number): LlamaModel {
  const r = rng(11);
  const w = (n: number, scale: number) => Float32Array.from({ length: n }, () => (r() - 0.5) * scale);
  const blocks: LlamaBlock[] = [];
  for (let l = 0; l < layers; l++) {
    blocks.push({
      attnNorm: Float32Array.from({ length: dim }, () => 1 + (r() - 0.5) * 0.1),
      ffnNorm: Float32Array.from({ length: dim }, () => 1 + (r() - 0.5) * 0.1),
      linear: {
        q_proj: w(dim * dim, 0.1), k_proj: w(dim * dim, 0.1), v_proj: w(dim * dim, 0.1), o_proj: w(dim * dim, 0.1),
        gate_proj: w(hidden * dim, 0.1), up_proj: w(hidden * dim, 0.1), down_proj: w(dim * hidden, 0.1),
      },
    });
  }
  const embedding = w(vocab * dim, 1);
  return {
    config: { ...l2c.config, dim, hiddenDim: hidden, nLayers: layers, nHeads: 8, nKvHeads: 8, vocabSize: vocab, maxSeqLen: 256 },
    embedding, classifier: embedding, finalNorm: Float32Array.from({ length: dim }, () => 1), blocks,
  };
}

test('quantizeModel: GPTQ factors down_proj\'s H where the block\'s quantized layers were (kernel memory bound)', async () => {
  const dim = 256, hidden = 688;
  const model = proportionalModel(dim, hidden, 2, 512);
  const kernel = await Kernel.create();
  // The highest address any allocation reaches: the kernel's pages touched, hence resident
  // (wasm memory itself grows in doublings, most of them never touched).
  const base = kernel.alloc(16);
  kernel.free(base);
  let top = 0;
  const alloc = kernel.alloc.bind(kernel);
  kernel.alloc = (bytes: number) => {
    const p = alloc(bytes);
    top = Math.max(top, p + bytes);
    return p;
  };
  const r = rng(5);
  const samples = Array.from({ length: 2 }, () => Int32Array.from({ length: 64 }, () => Math.floor(r() * 512)));
  const result = await quantizeModel(model, samples, { method: 'gptq', bits: 4, groupSize: 16, kernel, keepLayers: false, threads: 1 });
  assert.is(result.layers.length, 2 * LINEAR_NAMES.length);
  const used = top - base;
  // What down_proj's stage needs at once: the block (its linear layers), H, GPTQ's factor
  // U = chol(H^-1) and the copy of H the Cholesky consumes (hidden^2 floats each), then the
  // band's buffers (W, its working copy, the values: 3 x dim x hidden floats, 1.1 H here).
  // Kept in the kernel, the block's layers push all of it above them: the block, three H and
  // the band (3.8 H beyond the block when this test was written, with the layers kept). With
  // the quantized layers released, U and the band reuse their memory: at most the block, two
  // H and the band (the allocator's placement decides how much of the band fits below).
  const blockBytes = (4 * dim * dim + 3 * hidden * dim) * 4;
  const hBytes = hidden * hidden * 4;
  const bandBytes = 3 * dim * hidden * 4;
  assert.ok(4 * dim * dim + 2 * hidden * dim > hidden * hidden, 'the proportions of Llama-2-7B');
  assert.ok(used <= blockBytes + 2 * hBytes + bandBytes, `the kernel's allocations reach ${used} bytes; block ${blockBytes}, H ${hBytes}, band ${bandBytes}: ${((used - blockBytes) / hBytes).toFixed(2)} H beyond the block`);
});

test.run();
