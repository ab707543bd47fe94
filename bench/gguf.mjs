// GGUF benchmark: `npm run bench:gguf` (= build, then this file).
//   node bench/gguf.mjs [--quick] [--part layer|model|all] [--repeat 3] [--threads N] [--json FILE]
//     layer: [--cols 4096] [--rows R] [--types Q4_0,...,Q6_K]
//     model: [--models example,synthetic] [--mixes Q4_0,Q4_K_M,Q3_K_M,Q2_K] [--solvers ref,imatrix,cd]
//            [--ctx 128] [--chunks 48 quick / 200] [--data DIR] [--seeds 1,2,3] [--values] [--forward]
//            [--save DIR]
// (a) Layers: per block type, one cols x cols layer (rows: --rows, default cols) with a
//     real-shaped H = 2/n X^T X from a synthetic X [2 cols x cols] whose columns have uneven
//     scales (exp of a normal), W normal with a few outliers; each GGUF solver through
//     quantizeLayerGguf on one thread: seconds (median of --repeat, min and max) and the
//     loss sum_r e_r^T H e_r relative to llama.cpp's reference rounding ('ref') and to its
//     importance-weighted rounding ('imatrix'). Seconds are quantizeLayerGguf's whole call,
//     which also computes the 'ref' baseline loss for the report (a few per cent).
// (b) Models: the example model (stories260K, tok512) and a synthetic Llama whose rows are
//     multiples of 256 (so every k-quant applies; its random weights make its perplexity a
//     poor quality measure: it is there for speed), quantized with runJob to llama.cpp's mixes
//     by each solver (calibration: paragraphs 0:1600 of the example text), written as GGUF and
//     run by llama.cpp itself (node-llama-cpp, CPU, one thread, F32 KV cache, flash attention
//     off). Perplexity is computed as llama.cpp's llama-perplexity does (tools/perplexity):
//     the held-out text (paragraphs 1600:) tokenized by llama.cpp with BOS, cut into chunks of
//     --ctx tokens whose first token is replaced by BOS, and the negative log-likelihood of
//     the second half of each chunk (positions ctx/2 .. ctx-2 predicting the next token) from
//     llama.cpp's logits, log-softmax in float64 as its log_softmax. Also: file size and
//     quantization seconds (calibration forward passes included).
//     --seeds: one quantization per calibration seed (the random windows of paragraphs 0:1600);
//     then each solver against llama.cpp's importance-matrix rounding of the same mix and seed,
//     chunk by chunk: the perplexity ratio and its standard error over chunks, and over seeds.
//     --values: each file again with every weight stored as F32 (the same values, decoded by
//     ggml's block decoders), so llama.cpp multiplies in float32 and does not round the
//     activations to 8 bits (Q8_0/Q8_1 for the quantized matmuls) or to F16.
//     --forward: our forward pass (float32 activations, in wasm) on the values of each file,
//     on exactly llama.cpp's tokens, chunks and scored positions (compare with --values).
//     --save DIR: writes every GGUF file made.
// Prints markdown tables. Default sizes are for a dedicated machine; --quick (1024 columns,
// small calibration) keeps the whole run to a few minutes on a shared 2-core box.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import {
  Kernel, prepareResident, quantizeLayerGguf, GGUF_BLOCK_TYPES, modelFromFiles, planJob, runJob, ggufVocabFor,
  readTokenizer, textTokens, writeSafetensors, splitParagraphs, readLlamaGguf, blockDecoders, bytesSource, writeHfModel, LlamaRunner,
} from '../build/index.js';
import { randomStream } from './data.mjs';
import { timeKernelCalls } from './kernel-timing.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    part: { type: 'string', default: 'all' },
    repeat: { type: 'string', default: '3' },
    threads: { type: 'string' },
    json: { type: 'string' },
    cols: { type: 'string' },
    rows: { type: 'string' },
    types: { type: 'string', default: 'Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q2_K,Q3_K,Q4_K,Q5_K,Q6_K' },
    models: { type: 'string', default: 'example,synthetic' },
    mixes: { type: 'string', default: 'Q4_0,Q4_K_M,Q3_K_M,Q2_K' },
    solvers: { type: 'string', default: 'ref,imatrix,cd' },
    ctx: { type: 'string', default: '128' },
    chunks: { type: 'string' },
    data: { type: 'string', default: join(root, '..', 'shared', 'data') },
    values: { type: 'boolean', default: false },
    forward: { type: 'boolean', default: false },
    save: { type: 'string' },
    seeds: { type: 'string', default: '1' },
  },
});
const quick = values.quick;
const repeat = Number(values.repeat);
const threads = values.threads !== undefined ? Number(values.threads) : undefined;
const log = (s) => console.error(`[bench:gguf] ${s}`);
const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmtS = (s) => (s < 10 ? s.toFixed(3) : s.toFixed(1));
const out = { layer: [], model: [] };

// ---- (a) layers --------------------------------------------------------------------------------

/** H = 2/n X^T X for X [2 cols x cols] with column scales exp(N(0, 1)), by the kernel's own
 * streaming hessianUpdate (as the pipeline accumulates it). */
function hessian(k, cols, seed) {
  const g = randomStream(seed);
  const scale = Float64Array.from({ length: cols }, () => Math.exp(g.normal()));
  const n = 2 * cols, chunk = 256;
  const h = k.alloc(cols * cols * 4);
  k.f32(h, cols * cols).fill(0);
  const xp = k.alloc(chunk * cols * 4), scratch = k.alloc((cols * chunk + cols * cols) * 4);
  for (let r0 = 0, seen = 0; r0 < n; r0 += chunk) {
    const m = Math.min(chunk, n - r0);
    const view = k.f32(xp, m * cols);
    for (let i = 0; i < m; i++) for (let j = 0; j < cols; j++) view[i * cols + j] = g.normal() * scale[j];
    k.exports.hessianUpdate(h, xp, m, cols, seen / (seen + m), 2 / (seen + m), scratch);
    seen += m;
  }
  const H = k.f32(h, cols * cols).slice();
  k.free(h); k.free(xp); k.free(scratch);
  return H;
}

/** W [rows x cols]: N(0, 0.02^2), one weight in 200 times 10 (the outliers real layers have). */
function layerWeights(rows, cols, seed) {
  const g = randomStream(seed);
  const W = new Float32Array(rows * cols);
  for (let i = 0; i < W.length; i++) W[i] = 0.02 * g.normal() * (g.uniform() < 0.005 ? 10 : 1);
  return W;
}

/** Wraps the kernel's exports to time each call (as bench/layer.mjs does): `kernelTime` holds
 * seconds per export since the last clear. */
const kernelTime = new Map();
function instrument(k) {
  return timeKernelCalls(k, (name, ms) => kernelTime.set(name, (kernelTime.get(name) ?? 0) + ms / 1000));
}
const spent = (...names) => names.reduce((s, n) => s + (kernelTime.get(n) ?? 0), 0);

async function layerPart() {
  const cols = Number(values.cols ?? (quick ? 1024 : 4096));
  const rows = Number(values.rows ?? cols);
  const k = instrument(await Kernel.create());
  const t0 = performance.now();
  const H = hessian(k, cols, 7 + cols);
  const W = { data: layerWeights(rows, cols, 11 + cols), rows, cols };
  log(`layer ${rows} x ${cols}: H in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  const solvers = ['ref', 'imatrix', 'owc', 'cd'];
  for (const type of values.types.split(',')) {
    if (!(type in GGUF_BLOCK_TYPES)) throw new Error(`--types: ${type} is not a block type`);
    const row = { type, rows, cols };
    for (const solver of solvers) {
      const seconds = [], search = [], descent = [], losses = [];
      let result = null;
      for (let i = 0; i < repeat; i++) {
        const session = prepareResident(k, k.put(H), cols, { method: 'rtn' });
        try {
          kernelTime.clear();
          const t = performance.now();
          result = quantizeLayerGguf(session, W, type, solver);
          seconds.push((performance.now() - t) / 1000);
          search.push(spent('ggufOwc', 'ggufKeepBetter'));
          descent.push(spent('gradientBand', 'cdBand'));
          losses.push(spent('rowLosses'));
        } finally {
          session.free();
        }
      }
      row[solver] = {
        seconds: median(seconds), min: Math.min(...seconds), max: Math.max(...seconds), loss: result.loss, refLoss: result.refLoss,
        search: median(search), descent: median(descent), lossProducts: median(losses),
      };
      log(`${type} ${solver}: ${fmtS(median(seconds))}s, loss ${result.loss.toExponential(4)}`);
    }
    out.layer.push(row);
  }
  console.log(`\n### GGUF layer solvers: ${rows} x ${cols}, one thread (seconds: median of ${repeat} [min-max]; loss relative to llama.cpp's ref / imatrix rounding)\n`);
  console.log('| type | ref s | imatrix s | owc s | cd s | owc / imatrix time | owc: grid search s | cd: descent s | loss products s (each solver) | owc loss / ref | owc loss / imatrix | cd loss / ref | cd loss / imatrix |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const t = (r) => `${fmtS(r.seconds)} [${fmtS(r.min)}-${fmtS(r.max)}]`;
  for (const r of out.layer) {
    const ref = r.ref.loss, im = r.imatrix.loss;
    console.log(`| ${r.type} | ${t(r.ref)} | ${t(r.imatrix)} | ${t(r.owc)} | ${t(r.cd)} | ${(r.owc.seconds / r.imatrix.seconds).toFixed(1)}x | ${fmtS(r.owc.search)} | ${fmtS(r.cd.descent)} | ${fmtS(r.imatrix.lossProducts)} | ${(r.owc.loss / ref).toFixed(3)} | ${(r.owc.loss / im).toFixed(3)} | ${(r.cd.loss / ref).toFixed(3)} | ${(r.cd.loss / im).toFixed(3)} |`);
  }
  console.log('\n(loss products: the rowLosses calls every solver makes for its own loss and the ref baseline\'s, O(rows cols^2); grid search: ggufOwc + ggufKeepBetter.)');
}

// ---- (b) models ---------------------------------------------------------------------------------

/** llama.cpp (node-llama-cpp's prebuilt CPU binary), set up as test/helpers/llamacpp.ts does. */
let llamaPromise = null;
async function llamaCpp() {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  llamaPromise ??= getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: 1 });
  return llamaPromise;
}

/** log softmax(logits)[tok] in float64, as llama-perplexity's log_softmax (max subtracted). */
function logSoftmax(logits, tok) {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[tok] - max - Math.log(sum);
}

/** Sums -log p(next token) over llama-perplexity's scored positions: `tokens` cut into chunks
 * of `ctx` whose first token is replaced by BOS, positions ctx/2 .. ctx-2 of each scored.
 * `logitsOf(chunk, first)` gives the logits rows of positions first .. ctx-2 (any runner). */
async function chunkPerplexity(tokens, bos, ctx, maxChunks, logitsOf) {
  const chunks = Math.min(maxChunks, Math.floor(tokens.length / ctx));
  const first = ctx >> 1;
  let nll = 0, count = 0;
  const perChunk = new Float64Array(chunks);
  for (let c = 0; c < chunks; c++) {
    const chunk = tokens.slice(c * ctx, (c + 1) * ctx);
    chunk[0] = bos;
    const rows = await logitsOf(chunk, first);
    for (let i = first; i < ctx - 1; i++) {
      perChunk[c] -= logSoftmax(rows[i - first], chunk[i + 1]);
      count++;
    }
    nll += perChunk[c];
  }
  return { ppl: Math.exp(nll / count), count, perChunk };
}

/** llama-perplexity's perplexity of the GGUF file `bytes` on `text`: see the header. Also
 * returns llama.cpp's tokens of the text (BOS first), for scoring other runners on the same
 * chunks. */
async function llamaPerplexity(bytes, text, ctx, maxChunks) {
  const llama = await llamaCpp();
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-bench-gguf-'));
  const path = join(dir, 'model.gguf');
  let model;
  try {
    writeFileSync(path, bytes);
    model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: false, defaultContextFlashAttention: false });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  try {
    const bos = model.tokens.bos;
    const tokens = [bos, ...model.tokenize(text, false)];
    const context = await model.createContext({
      contextSize: ctx + 32, batchSize: ctx + 32, sequences: 1, threads: 1, flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
    });
    const sequence = context.getSequence();
    try {
      const result = await chunkPerplexity(tokens, bos, ctx, maxChunks, async (chunk, first) => {
        await sequence.clearHistory(); // each chunk on its own, as llama-perplexity clears the KV cache
        const results = await sequence.controlledEvaluate(chunk.map((t, i) => (i >= first ? [t, { generateNext: { logits: true } }] : t)));
        const rows = [];
        for (let i = first; i < chunk.length - 1; i++) {
          const row = results[i]?.next?.logits;
          if (!row) throw new Error(`llama.cpp returned no logits at position ${i}`);
          const logits = new Float64Array(row.size);
          for (const [t, v] of row) logits[t] = v;
          rows.push(logits);
        }
        return rows;
      });
      return { ...result, tokens, bos };
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

/** The GGUF file `bytes` read back (ggml's block decoders): the model whose float weights are
 * the values llama.cpp multiplies by. */
const ggufValues = (kernel, bytes) => readLlamaGguf(bytesSource(bytes), { decoders: blockDecoders(kernel), ropeStyle: 'half', kernel });

/** Our forward pass (float32 activations, in wasm) on exactly llama.cpp's chunks and scored
 * positions (chunkPerplexity), for the model the GGUF file `bytes` decodes to. */
async function forwardPerplexity(kernel, bytes, tokens, bos, ctx, maxChunks) {
  const model = await ggufValues(kernel, bytes);
  const runner = new LlamaRunner(kernel, model);
  try {
    return await chunkPerplexity(tokens, bos, ctx, maxChunks, (chunk, first) => {
      const logits = runner.logits(Int32Array.from(chunk));
      const vocab = model.config.vocabSize;
      const rows = [];
      for (let i = first; i < chunk.length - 1; i++) rows.push(Float64Array.from(logits.subarray(i * vocab, (i + 1) * vocab)));
      return rows;
    });
  } finally {
    runner.free();
  }
}

/** A Llama with the example vocabulary whose rows are multiples of 256: random weights
 * (U(-1, 1) * 1.5 / sqrt(in), norms near 1), HF layout. */
function syntheticModelFiles() {
  const cfg = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 512, intermediate_size: 1024, num_hidden_layers: 2,
    num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 512, max_position_embeddings: 512, rope_theta: 10000,
    rms_norm_eps: 1e-5, tie_word_embeddings: false,
  };
  const d = cfg.hidden_size, f = cfg.intermediate_size, v = cfg.vocab_size, kv = (d / cfg.num_attention_heads) * cfg.num_key_value_heads;
  const shapes = [['model.embed_tokens.weight', [v, d]]];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    shapes.push([`${p}input_layernorm.weight`, [d]], [`${p}self_attn.q_proj.weight`, [d, d]], [`${p}self_attn.k_proj.weight`, [kv, d]],
      [`${p}self_attn.v_proj.weight`, [kv, d]], [`${p}self_attn.o_proj.weight`, [d, d]], [`${p}post_attention_layernorm.weight`, [d]],
      [`${p}mlp.gate_proj.weight`, [f, d]], [`${p}mlp.up_proj.weight`, [f, d]], [`${p}mlp.down_proj.weight`, [d, f]]);
  }
  shapes.push(['model.norm.weight', [d]], ['lm_head.weight', [v, d]]);
  const g = randomStream(5);
  const u = () => 2 * g.uniform() - 1;
  const tensors = shapes.map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 1) for (let i = 0; i < n; i++) data[i] = 1 + 0.2 * u();
    else if (name === 'model.embed_tokens.weight') for (let i = 0; i < n; i++) data[i] = u();
    else for (let i = 0; i < n; i++) data[i] = (u() / Math.sqrt(shape[1])) * 1.5;
    return { name, dtype: 'F32', shape, data };
  });
  return [
    { name: 'config.json', bytes: new TextEncoder().encode(JSON.stringify(cfg)) },
    { name: 'model.safetensors', bytes: writeSafetensors(tensors) },
  ];
}

async function modelPart() {
  const data = values.data;
  const kernel = await Kernel.create();
  const text = readFileSync(join(data, 'tinystories-valid-a.txt'), 'utf8');
  const paragraphs = splitParagraphs(text);
  const evalText = paragraphs.slice(1600).join('\n\n');
  const ctx = Number(values.ctx);
  const maxChunks = Number(values.chunks ?? (quick ? 48 : 200));
  const exampleFiles = ['config.json', 'model.safetensors'].map((n) => ({ name: n, bytes: new Uint8Array(readFileSync(join(data, 'stories260K-hf', n))) }));
  const models = {
    example: { files: exampleFiles, calibration: quick ? { nsamples: 32, seqlen: 256, seed: 1 } : { nsamples: 128, seqlen: 256, seed: 1 } },
    synthetic: { files: syntheticModelFiles(), calibration: quick ? { nsamples: 16, seqlen: 128, seed: 1 } : { nsamples: 64, seqlen: 256, seed: 1 } },
  };
  const solvers = values.solvers.split(',');
  const seeds = values.seeds.split(',').map(Number);
  for (const name of values.models.split(',')) {
    const spec = models[name];
    if (!spec) throw new Error(`--models: ${name} is not example or synthetic`);
    const source = await modelFromFiles(spec.files, kernel);
    const tokenizer = readTokenizer(new Uint8Array(readFileSync(join(data, 'tok512.bin'))), source.config.vocabSize);
    const ggufVocab = await ggufVocabFor(tokenizer, source.config);
    const calibTokens = textTokens(tokenizer, text, '0:1600');
    const quantize = async (mix, solver, seed = spec.calibration.seed) => {
      const t = performance.now();
      const plan = await planJob(source, calibTokens, { method: 'cd' }, { ...spec.calibration, seed }, { mix, solver });
      const job = await runJob(source, plan, { kernel, modelName: name, ggufVocab, ...(threads !== undefined ? { threads } : {}) });
      const seconds = (performance.now() - t) / 1000;
      const bytes = job.files.find((f) => f.path === 'model.gguf').data;
      return { bytes, seconds, loss: job.report.totals.loss };
    };
    /** The GGUF file `bytes` rewritten with every weight as F32 (the same values): llama.cpp
     * then multiplies in float32, without rounding activations to 8 bits (Q8_0/Q8_1) or F16. */
    const asF32 = async (bytes) => {
      const { config: cfg, safetensors } = writeHfModel(await ggufValues(kernel, bytes), 'F32');
      const values = await modelFromFiles([{ name: 'config.json', bytes: new TextEncoder().encode(cfg) }, { name: 'model.safetensors', bytes: safetensors }], kernel);
      const plan = await planJob(values, calibTokens.subarray(0, 16), { method: 'cd' }, { nsamples: 1, seqlen: 8, seed: 1 }, { mix: 'F32', solver: 'ref' });
      const job = await runJob(values, plan, { kernel, modelName: name, ggufVocab });
      return job.files.find((f) => f.path === 'model.gguf').data;
    };
    const measure = async (bytes) => {
      const p = await llamaPerplexity(bytes, evalText, ctx, maxChunks);
      const extra = {};
      if (values.values) extra.valuesPpl = (await llamaPerplexity(await asF32(bytes), evalText, ctx, maxChunks)).ppl;
      if (values.forward) extra.forwardPpl = (await forwardPerplexity(kernel, bytes, p.tokens, p.bos, ctx, maxChunks)).ppl;
      return { ppl: p.ppl, count: p.count, perChunk: p.perChunk, ...extra };
    };
    const f32 = await quantize('F32', 'ref');
    if (values.save) writeFileSync(join(values.save, `${name}-F32.gguf`), f32.bytes);
    const base = await measure(f32.bytes);
    log(`${name} F32: perplexity ${base.ppl.toFixed(4)} (${base.count} predictions), ${f32.bytes.length} bytes${base.forwardPpl ? `, forward ${base.forwardPpl.toFixed(4)}` : ''}`);
    out.model.push({ model: name, mix: 'F32', solver: '-', seed: null, bytes: f32.bytes.length, seconds: null, loss: 0, ...base });
    for (const mix of values.mixes.split(',')) {
      for (const seed of seeds) {
        for (const solver of solvers) {
          // llama.cpp's reference rounding reads no calibration: one file for every seed
          if (solver === 'ref' && seed !== seeds[0]) continue;
          const q = await quantize(mix, solver, seed);
          if (values.save) writeFileSync(join(values.save, `${name}-${mix}-${solver}${seeds.length > 1 ? `-seed${seed}` : ''}.gguf`), q.bytes);
          const p = await measure(q.bytes);
          const { seconds } = q;
          log(`${name} ${mix}/${solver} seed ${seed}: perplexity ${p.ppl.toFixed(4)}${p.valuesPpl ? ` (F32 values ${p.valuesPpl.toFixed(4)})` : ''}${p.forwardPpl ? ` (forward ${p.forwardPpl.toFixed(4)})` : ''}, ${q.bytes.length} bytes, ${fmtS(seconds)}s, summed layer loss ${q.loss.toExponential(4)}`);
          out.model.push({ model: name, mix, solver, seed, bytes: q.bytes.length, seconds, loss: q.loss, ...p });
        }
      }
    }
  }
  console.log(`\n### GGUF models: perplexity by llama.cpp (ctx ${ctx}, second half of each chunk scored, one thread, F32 KV cache), file size, quantization seconds${threads ? ` (--threads ${threads})` : ' (one thread)'}\n`);
  const cols = [['perplexity', (r) => r.ppl.toFixed(4)]];
  if (values.values) cols.push(['llama.cpp, weights as F32', (r) => r.valuesPpl.toFixed(4)]);
  if (values.forward) cols.push(['our forward, same chunks', (r) => r.forwardPpl.toFixed(4)]);
  console.log(`| model | mix | solver | calibration seed | ${cols.map((c) => c[0]).join(' | ')} | file bytes | seconds | summed layer loss |`);
  console.log(`|---|---|---|---:|${cols.map(() => '---:|').join('')}---:|---:|---:|`);
  for (const r of out.model) {
    console.log(`| ${r.model} | ${r.mix} | ${r.solver} | ${r.seed ?? '-'} | ${cols.map((c) => c[1](r)).join(' | ')} | ${r.bytes} | ${r.seconds === null ? '-' : fmtS(r.seconds)} | ${r.loss ? r.loss.toExponential(3) : '-'} |`);
  }
  pairedSummary();
}

/** Each solver against llama.cpp's importance-matrix rounding of the same mix and calibration
 * seed, chunk by chunk on the same text: the perplexity ratio exp(mean per-token NLL
 * difference) with its standard error over chunks (what the held-out text's sampling alone
 * leaves uncertain), and over seeds the mean ratio and how many seeds put the solver ahead
 * (what the calibration sample leaves uncertain). */
function pairedSummary() {
  const rows = out.model.filter((r) => r.solver !== '-' && r.perChunk);
  const groups = new Map();
  for (const r of rows) {
    const key = `${r.model} ${r.mix} ${r.solver}`;
    // the reference rounding reads no calibration: its one file against every seed's imatrix
    const bases = rows.filter((b) => b.model === r.model && b.mix === r.mix && b.solver === 'imatrix' && b !== r && (r.solver === 'ref' || b.seed === r.seed));
    for (const base of bases) {
      const per = r.count / r.perChunk.length;
      const d = Array.from(r.perChunk, (x, c) => (x - base.perChunk[c]) / per);
      const mean = d.reduce((a, b) => a + b, 0) / d.length;
      const sd = Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / (d.length - 1));
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push({ seed: base.seed, mean, se: sd / Math.sqrt(d.length) });
    }
  }
  if (groups.size === 0) return;
  console.log('\n### Against llama.cpp\'s importance-matrix rounding (perplexity ratio solver / imatrix, same mix and calibration seed, same chunks)\n');
  console.log('| model | mix | solver | ratio per seed (± 1 SE over chunks) | mean ratio | seeds ahead of imatrix |');
  console.log('|---|---|---|---|---:|---:|');
  for (const [key, g] of groups) {
    const [model, mix, solver] = key.split(' ');
    const each = g.map((x) => `${Math.exp(x.mean).toFixed(4)} ± ${(Math.exp(x.mean) * x.se).toFixed(4)}`).join(', ');
    const mean = Math.exp(g.reduce((a, x) => a + x.mean, 0) / g.length);
    console.log(`| ${model} | ${mix} | ${solver} | ${each} | ${mean.toFixed(4)} | ${g.filter((x) => x.mean < 0).length} of ${g.length} |`);
  }
}

if (values.part === 'layer' || values.part === 'all') await layerPart();
if (values.part === 'model' || values.part === 'all') await modelPart();
if (llamaPromise) await (await llamaPromise).dispose();
if (values.json) writeFileSync(values.json, JSON.stringify(out, (k, v) => (k === 'perChunk' ? undefined : v), 2));
