// The `cdquant` command: layer, quantize, eval. Progress on stderr; results on stdout.
import { parseArgs } from 'node:util';
import { CdquantError, FormatError, OptionError, ShapeError } from '../core/errors.js';
import { defaultKernel } from '../core/kernel.js';
import type { LayerResult } from '../core/types.js';
import type { Method } from '../core/options.js';
import { quantizeLayer, type QuantizeOptions } from '../quantize.js';
import { HessianAccumulator } from '../core/hessian.js';
import { parseSafetensors, readTensorF32, writeSafetensors } from '../formats/safetensors.js';
import { sha256Hex } from '../formats/digest.js';
import type { LayerProgress } from '../model/pipeline.js';
import { VERSION } from '../model/outputs.js';
import { modelPerplexity } from '../model/eval.js';
import { FanoutPool } from '../parallel/fanout.js';
import { ggufVocabFor, planJob, round, runJob, textTokens, tokenFile } from '../model/job.js';
import { checkOutputPath, closeInputs, loadModel, loadTokenizer, openOutputRun, readBytes, writeOutputFile } from './io.js';
import { resolve } from 'node:path';

const USAGE = `cdquant ${VERSION}: post-training weight quantization (RTN, GPTQ, CDQuant CD/BCD with OWC) in WebAssembly

Usage:
  cdquant layer PROBLEM.safetensors --out RESULT.safetensors [--force] [layer options]
  cdquant quantize MODEL (--calib TEXT | --calib-tokens FILE) --out DIR [--force] [--tokenizer FILE] [--calib-paragraphs A:B]
                   [--nsamples 128] [--seqlen 256] [--seed 0] [--max-memory BYTES] [--json] [--workers-url URL,...] [layer options]
  cdquant eval MODEL (--text TEXT [--paragraphs A:B] | --tokens FILE) [--seqlen 256] [--max-windows N] [--tokenizer FILE] [--json]
  cdquant tokenize MODEL --text FILE [--paragraphs A:B] [--tokenizer FILE] [--json]

MODEL: a llama2.c .bin file, a Hugging Face directory (config.json + *.safetensors,
F32/F16/BF16) of a Llama, Mistral, Qwen2, Qwen3, Gemma 3 (text) or Phi-3 model, or a GPTQ
checkpoint directory written by cdquant.

Layer options:
  --method rtn|gptq|cd|bcd   solver (default cd)
  --bits 2|3|4|8             (default 4)
  --group N                  columns per group; -1 per-channel (default -1)
  --sym                      symmetric grid
  --clip minmax|mse|owc      grid choice (default owc for cd/bcd, minmax otherwise)
  --mse                      same as --clip mse
  --owc-exact, --owc-fast    per-channel OWC: exact search, or block-diagonal screening then
                             exact rescoring (default: exact up to 512 columns)
  --init owc|gptq|rtn        cd/bcd start (default owc)
  --iters N                  cd/bcd moves per row (default: columns)
  --block K                  bcd block size (default 2)
  --refit N                  scale refit rounds after cd/bcd (default 0)
  --scales f16|f32           grid scales rounded to fp16 as GPTQ checkpoints store them
                             (default f16 for quantize, f32 for layer)
  --act-order                GPTQ act-order (and bcd block order)
  --static-groups            GPTQ static groups
  --damp F                   GPTQ damping fraction (default 0.01)
  --gptq-block N             GPTQ lazy-batch block (default 128)
  --threads N                worker threads (default: all cores for layers large enough to gain)

GGUF (quantize): --gguf TYPE writes DIR/model.gguf for llama.cpp and everything built on it, each
tensor's type chosen by llama.cpp's mix TYPE (Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q5_0, Q5_1, Q4_K_M,
Q4_K_S, Q4_0, Q4_1, Q3_K_L, Q3_K_M, Q3_K_S, Q2_K, Q2_K_S, F16, BF16, F32); --gguf-solver
cd (default: CDQuant on the format's own grid, from the best storable grid), owc (that grid,
rounded), imatrix (llama.cpp's importance-weighted rounding with the calibration's diag(H)),
ref (llama.cpp's reference rounding).

Outputs (quantize): nothing is written to DIR until the run completes; the work goes on in
DIR.partial/ (an interrupted run resumes from it) and the outputs are moved into DIR whole.
An existing, non-empty DIR is refused unless --force (which replaces it whole at the end).
--max-memory bounds the calibration hidden states kept between blocks (bytes; K/M/G suffixes).

Fan-out (quantize): --workers-url URL1,URL2,... solves the row bands on HTTP band workers
(examples/fanout: workerd / Cloudflare Workers; env CDQUANT_FANOUT_TOKEN is sent as a bearer
token); same bits as a local run.
`;

const layerOptionSpec = {
  method: { type: 'string' },
  bits: { type: 'string' },
  group: { type: 'string' },
  sym: { type: 'boolean' },
  clip: { type: 'string' },
  mse: { type: 'boolean' },
  'owc-exact': { type: 'boolean' },
  'owc-fast': { type: 'boolean' },
  init: { type: 'string' },
  iters: { type: 'string' },
  block: { type: 'string' },
  refit: { type: 'string' },
  scales: { type: 'string' },
  compare: { type: 'string' },
  'act-order': { type: 'boolean' },
  'static-groups': { type: 'boolean' },
  damp: { type: 'string' },
  'gptq-block': { type: 'string' },
  threads: { type: 'string' },
} as const;

type Values = Record<string, string | boolean | undefined>;

/** A decimal number from a flag ("4", "0.01", "1e-3"; never "0x4" or ""). */
function num(values: Values, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v.trim())) throw new OptionError(`--${name} needs a decimal number, got "${String(v)}"`);
  return Number(v);
}

/** A whole number from a flag, at least `min`. */
function int(values: Values, name: string, min = 0): number | undefined {
  const n = num(values, name);
  if (n !== undefined && (!Number.isSafeInteger(n) || n < min)) throw new OptionError(`--${name} needs a whole number >= ${min}, got "${String(values[name])}"`);
  return n;
}

/** A byte count with an optional K/M/G suffix (powers of 1024). */
function bytesFlag(values: Values, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const m = typeof v === 'string' ? /^(\d+)([KMG]?)i?B?$/i.exec(v.trim()) : null;
  if (!m) throw new OptionError(`--${name} needs a byte count like 4G, 512M or 1048576, got "${String(v)}"`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf(m[2].toUpperCase() || ' ');
}

/** The solver options and `threads` from the flags (resolved and checked by the library). */
function layerOptions(values: Values): QuantizeOptions {
  const o: QuantizeOptions = {};
  if (values.method !== undefined) o.method = values.method as QuantizeOptions['method'];
  if (values.init !== undefined) o.init = values.init as QuantizeOptions['init'];
  if (values.clip !== undefined) o.clip = values.clip as QuantizeOptions['clip'];
  if (values.scales !== undefined) o.scales = values.scales as QuantizeOptions['scales'];
  const set = (key: keyof QuantizeOptions, flag: string) => {
    const n = num(values, flag);
    if (n !== undefined) (o as Record<string, unknown>)[key] = n;
  };
  set('bits', 'bits');
  set('groupSize', 'group');
  set('iters', 'iters');
  set('blockSize', 'block');
  set('refit', 'refit');
  set('damp', 'damp');
  set('gptqBlock', 'gptq-block');
  set('threads', 'threads');
  if (values.sym) o.sym = true;
  if (values.mse) o.mse = true;
  if (values['owc-exact'] && values['owc-fast']) throw new OptionError('--owc-exact and --owc-fast contradict each other');
  if (values['owc-exact']) o.owcExact = true;
  if (values['owc-fast']) o.owcExact = false;
  if (values['act-order']) o.actOrder = true;
  if (values['static-groups']) o.staticGroups = true;
  return o;
}

/** --compare M[,M...]: methods solved on the same H for their loss only (reporting). */
function compareFlag(values: Values, allowed: readonly Method[]): Method[] | undefined {
  const v = values.compare;
  if (v === undefined) return undefined;
  const methods = String(v).split(',').map((m) => m.trim()).filter(Boolean);
  const bad = methods.find((m) => !(allowed as readonly string[]).includes(m));
  if (bad !== undefined || methods.length === 0) throw new OptionError(`--compare takes ${allowed.join(', ')} (comma-separated), got "${String(v)}"`);
  return [...new Set(methods)] as Method[];
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new OptionError(`expected exactly one ${what}, got ${positionals.length ? positionals.join(' ') : 'none'}`);
  return positionals[0];
}


// ---------------------------------------------------------------------------------------
// cdquant layer

async function layerCommand(argv: string[]) {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...layerOptionSpec, out: { type: 'string' }, force: { type: 'boolean' } } });
  const path = one(positionals, 'PROBLEM.safetensors');
  const out = values.out;
  if (!out) throw new OptionError('cdquant layer needs --out RESULT.safetensors');
  const { compare: _compare, ...layerValues } = values;
  const options = { ...layerOptions(layerValues), ...(compareFlag(values, ['rtn']) ? { baseline: true } : {}) };
  await checkOutputPath(out, [path], 'file');
  const bytes = await readBytes(path);
  const file = parseSafetensors(bytes);
  const weightInfo = file.tensors.get('weight');
  if (!weightInfo) throw new FormatError(`${path} has no "weight" tensor ([out, in], F32/F16/BF16)`);
  if (weightInfo.shape.length !== 2) throw new ShapeError(`weight must be 2-D [out, in], got [${weightInfo.shape.join(', ')}]`);
  const [rows, cols] = weightInfo.shape;
  const weight = readTensorF32(file, bytes, 'weight');
  let hessian: Float32Array;
  if (file.tensors.has('hessian')) {
    const h = file.tensors.get('hessian')!;
    if (h.dtype !== 'F32') throw new FormatError(`hessian must be F32, got ${h.dtype}`);
    if (h.shape.length !== 2 || h.shape[0] !== cols || h.shape[1] !== cols) throw new ShapeError(`hessian must be [${cols}, ${cols}] for a weight of ${cols} columns, got [${h.shape.join(', ')}]`);
    hessian = readTensorF32(file, bytes, 'hessian');
  } else if (file.tensors.has('inputs')) {
    const x = file.tensors.get('inputs')!;
    if (x.dtype !== 'F32') throw new FormatError(`inputs must be F32, got ${x.dtype}`);
    if (x.shape.length !== 2 || x.shape[1] !== cols) throw new ShapeError(`inputs must be [n, ${cols}], got [${x.shape.join(', ')}]`);
    const acc = new HessianAccumulator(cols);
    await acc.add(readTensorF32(file, bytes, 'inputs'), x.shape[0]);
    hessian = acc.hessian();
    acc.free();
  } else {
    throw new FormatError(`${path} needs a "hessian" [in, in] or an "inputs" [n, in] tensor`);
  }
  const t0 = performance.now();
  const res = await quantizeLayer({ data: weight, rows, cols }, hessian, options);
  const seconds = (performance.now() - t0) / 1000;
  await writeOutputFile(out, [path], writeSafetensors([
    { name: 'weight', dtype: 'F32', shape: [rows, cols], data: res.dequantize() },
    { name: 'codes', dtype: 'U8', shape: [rows, cols], data: res.codes },
    { name: 'scales', dtype: 'F32', shape: [rows, res.groups], data: res.scales },
    { name: 'zeros', dtype: 'F32', shape: [rows, res.groups], data: res.zeros },
    { name: 'g_idx', dtype: 'I32', shape: [cols], data: res.gIdx },
  ], provenanceOf(res)), !!values.force);
  console.log(JSON.stringify({ method: res.method, bits: res.bits, group: res.groupSize, loss: res.loss, loss_rtn: res.rtnLoss, seconds: round(seconds, 4) }));
}

function provenanceOf(res: LayerResult): Record<string, string> {
  return {
    quantizer: `cdquant ${VERSION}`,
    method: res.method,
    bits: String(res.bits),
    group_size: String(res.groupSize),
    clip: res.clip,
    init: String(res.init),
    damp_used: String(res.dampUsed),
    loss: String(res.loss),
    ...(res.rtnLoss !== null ? { loss_rtn: String(res.rtnLoss) } : {}),
  };
}

// ---------------------------------------------------------------------------------------
// cdquant quantize

class ProgressBar {
  constructor(private readonly baseline: string) {}
  private readonly start = performance.now();
  private readonly tty = !!process.stderr.isTTY;
  update(p: LayerProgress) {
    const elapsed = (performance.now() - this.start) / 1000;
    const fraction = (p.layersDone + (p.stage === 'done' ? 0 : p.rowsDone / Math.max(1, p.rows))) / p.layers;
    const eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : NaN;
    const width = 24;
    const filled = Math.round(fraction * width);
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    const loss = p.loss !== undefined ? ` loss ${p.loss.toExponential(3)}${p.rtnLoss != null ? ` (${this.baseline} ${p.rtnLoss.toExponential(3)})` : ''}` : '';
    const line = `[${bar}] ${p.layersDone}/${p.layers} block ${p.block} ${p.name.padEnd(9)} rows ${p.rowsDone}/${p.rows}${loss} ${elapsed.toFixed(1)}s eta ${Number.isFinite(eta) ? eta.toFixed(1) + 's' : '?'}`;
    if (this.tty) process.stderr.write(`\r${line.padEnd(110)}`);
    else if (p.stage === 'done') process.stderr.write(`${line}\n`);
  }
  end() {
    if (this.tty) process.stderr.write('\n');
  }
}

async function quantizeCommand(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...layerOptionSpec,
      calib: { type: 'string' },
      'calib-tokens': { type: 'string' },
      'calib-paragraphs': { type: 'string' },
      tokenizer: { type: 'string' },
      nsamples: { type: 'string' },
      seqlen: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      'max-memory': { type: 'string' },
      gguf: { type: 'string' },
      'gguf-solver': { type: 'string' },
      json: { type: 'boolean' },
      'workers-url': { type: 'string' },
    },
  });
  const modelPath = one(positionals, 'MODEL');
  if (!values.calib === !values['calib-tokens']) {
    throw new OptionError('cdquant quantize needs one of --calib TEXT (a text file of paragraphs) or --calib-tokens FILE (int32 little-endian token ids)');
  }
  if (!values.out) throw new OptionError('cdquant quantize needs --out DIR');
  const outDir = values.out;
  const { threads, ...solverOptions } = layerOptions({ ...values, compare: undefined });
  const compareMethods = compareFlag(values, ['rtn', 'gptq', 'cd', 'bcd']);
  const calibration = { nsamples: int(values, 'nsamples'), seqlen: int(values, 'seqlen', 2), seed: int(values, 'seed') };
  const maxStateBytes = bytesFlag(values, 'max-memory');
  const calibFile = values['calib-tokens'] ?? values.calib!;
  // Before any work: the output path against every input (model, tokenizer, calibration).
  await checkOutputPath(outDir, [modelPath, calibFile, ...(values.tokenizer ? [values.tokenizer] : [])], 'folder');
  const kernel = await defaultKernel();
  const loaded = await loadModel(modelPath, kernel);
  const { model } = loaded;
  const inputs = [...loaded.inputs, resolve(calibFile), ...(values.tokenizer ? [resolve(values.tokenizer)] : [])];
  if (values['gguf-solver'] !== undefined && values.gguf === undefined) throw new OptionError('--gguf-solver applies with --gguf TYPE');
  const gguf = values.gguf !== undefined ? { mix: values.gguf, solver: values['gguf-solver'] ?? 'cd' } : null;
  // GGUF files carry the vocabulary: the tokenizer is needed even with --calib-tokens (a GGUF
  // input's own vocabulary serves).
  const tokenizer = values.calib || gguf ? await loadTokenizer(modelPath, model.config.vocabSize, values.tokenizer, model.ggufVocabulary) : null;
  const tokens = values['calib-tokens']
    ? tokenFile(await readBytes(values['calib-tokens']), model.config.vocabSize, values['calib-tokens'])
    : textTokens(tokenizer!, new TextDecoder().decode(await readBytes(values.calib!)), values['calib-paragraphs']);
  const plan = await planJob(model, tokens, solverOptions, calibration, gguf);
  const ggufVocab = plan.gguf ? await ggufVocabFor(tokenizer!, model.config) : undefined;
  const { provenance, samples, seqlen } = plan;
  const { calibrationSha256 } = provenance;
  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(`cdquant ${VERSION}: ${model.kind} model ${modelPath} (${model.config.family ?? 'llama'}, ${model.config.nLayers} blocks, dim ${model.config.dim})`);
  const what = plan.gguf
    ? `GGUF ${plan.gguf.mix} (llama.cpp's mix), codes by ${plan.gguf.solver}`
    : `method ${provenance.method}, ${provenance.bits} bits, group ${provenance.groupSize}, grid ${provenance.clip}${provenance.init ? `, init ${provenance.init}` : ''}${provenance.refit ? `, refit ${provenance.refit}` : ''}`;
  log(`${what}; calibration ${samples.length} x ${seqlen} tokens (sha256 ${calibrationSha256.slice(0, 12)})`);

  // Resume: finished blocks of an interrupted run with the same model, solver and data (how it
  // ran, e.g. --threads or --workers-url, does not change a bit, so it is not in the key).
  const key = await sha256Hex(new TextEncoder().encode(JSON.stringify({ model: await model.fingerprint(), provenance, solver: plan.solver, VERSION })));
  const run = await openOutputRun(outDir, inputs, key, !!values.force, log);
  try {
    // Fan-out: bands on HTTP band workers (not part of the solver options: the results, and so
    // the resume key, are the same bits either way).
    const workerUrls = values['workers-url']?.split(',').map((u) => u.trim()).filter(Boolean);
    const token = process.env.CDQUANT_FANOUT_TOKEN;
    const pool = workerUrls ? new FanoutPool({ urls: workerUrls, headers: token ? { authorization: `Bearer ${token}` } : {} }) : undefined;
    if (pool) log(`fan-out: row bands on ${pool.urls.length} band workers (${pool.urls.join(', ')})`);

    const bar = new ProgressBar(plan.gguf ? 'llama.cpp' : 'rtn');
    const { gptq, gguf: ggufOut, report } = await runJob(model, plan, {
      ...(pool ? { pool } : {}),
      threads,
      kernel,
      ...(compareMethods ? { compareMethods } : {}),
      modelName: modelPath,
      store: run.store,
      sink: run.sink,
      ...(ggufVocab ? { ggufVocab } : {}),
      ...(maxStateBytes !== undefined ? { maxStateBytes } : {}),
      onProgress: (p) => bar.update(p),
    });
    bar.end();
    if (pool) {
      const s = pool.stats();
      log(`fan-out: ${s.bands} bands, ${s.retries} retried attempts, ${s.uploads} prepared uploads; per worker ${Object.entries(s.byUrl).map(([u, b]) => `${u} ${b.bands}`).join(', ')}`);
    }
    await run.commit();
    const { layers, totals } = report;
    if (values.json) {
      console.log(JSON.stringify(report));
    } else {
      // The baseline (RTN on min-max grids, asked for with --compare rtn; llama.cpp's own
      // rounding in GGUF runs) and the other --compare methods, beside the method's loss.
      const base = plan.gguf ? 'llama.cpp loss' : 'RTN loss';
      const mine = plan.gguf ? `${plan.gguf.solver} loss` : `${provenance.method} loss`;
      const others = (compareMethods ?? []).filter((m) => m !== 'rtn' && m !== provenance.method);
      const withBase = totals.loss_rtn !== null;
      const e3 = (x: number | undefined) => (x === undefined ? '-' : x.toExponential(3));
      console.log(table(
        ['block', 'layer', 'shape', ...(withBase ? [base] : []), ...others.map((m) => `${m} loss`), mine, ...(withBase ? ['ratio'] : []), 'seconds'],
        layers.map((l) => [
          String(l.block), l.layer, `${l.rows}x${l.cols}`,
          ...(withBase ? [e3(l.loss_rtn!)] : []),
          ...others.map((m) => e3(l.compare?.[m])),
          e3(l.loss),
          ...(withBase ? [(l.loss / l.loss_rtn!).toFixed(3)] : []),
          l.seconds.toFixed(3),
        ]),
      ));
      const baseTotal = totals.loss_rtn !== null ? `${base} ${totals.loss_rtn.toExponential(4)}, ` : '';
      const ratio = totals.loss_rtn !== null ? ` (${(totals.loss / totals.loss_rtn).toFixed(3)} of it)` : '';
      console.log(`total: ${baseTotal}${mine} ${totals.loss.toExponential(4)}${ratio}, ${totals.seconds}s`);
      if (ggufOut) {
        const types = Object.entries(ggufOut.types).map(([t, c]) => `${c.tensors} ${t}`).join(', ');
        console.log(`wrote ${outDir}/model.gguf (${(ggufOut.fileBytes / 2 ** 20).toFixed(2)} MiB; ${types})`);
      } else if (gptq) {
        console.log(`wrote ${outDir}/dequantized (${model.kind === 'llama2c' ? 'llama2.c' : `Hugging Face ${model.dtype}`}) and ${outDir}/gptq (${gptq.format}${gptq.dense.length ? `; ${gptq.dense.length} layers whose shape GPTQ kernels cannot pack stored dense` : ''})`);
      }
    }
  } finally {
    await run.release().catch(() => {});
  }
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------
// cdquant eval

async function evalCommand(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      text: { type: 'string' },
      tokens: { type: 'string' },
      paragraphs: { type: 'string' },
      seqlen: { type: 'string' },
      'max-windows': { type: 'string' },
      tokenizer: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const modelPath = one(positionals, 'MODEL');
  if (!values.text === !values.tokens) throw new OptionError('cdquant eval needs one of --text FILE (paragraphs) or --tokens FILE (int32 little-endian token ids)');
  const seqlen = int(values, 'seqlen', 2) ?? 256;
  const maxWindows = int(values, 'max-windows', 1);
  const kernel = await defaultKernel();
  const { model } = await loadModel(modelPath, kernel);
  const tokens = values.tokens
    ? tokenFile(await readBytes(values.tokens), model.config.vocabSize, values.tokens)
    : textTokens(await loadTokenizer(modelPath, model.config.vocabSize, values.tokenizer, model.ggufVocabulary), new TextDecoder().decode(await readBytes(values.text!)), values.paragraphs);
  const t0 = performance.now();
  const r = await modelPerplexity(kernel, model, tokens, seqlen, maxWindows !== undefined ? { maxWindows } : {});
  const seconds = (performance.now() - t0) / 1000;
  const out = { model: modelPath, kind: model.kind, ppl: r.ppl, nll: r.nll, tokens: r.count, windows: r.windows, seqlen, seconds: round(seconds, 3) };
  if (values.json) console.log(JSON.stringify(out));
  else console.log(`${modelPath} (${model.kind}): perplexity ${r.ppl.toFixed(4)} over ${r.windows} windows of ${seqlen} tokens (${r.count} predictions), ${out.seconds}s`);
}

// ---------------------------------------------------------------------------------------

/** `--group -1` as `--group=-1`: parseArgs would take a negative number for an option. */
function joinNegativeValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--') && !a.includes('=') && i + 1 < argv.length && /^-\d/.test(argv[i + 1])) out.push(`${a}=${argv[++i]}`);
    else out.push(a);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// cdquant tokenize

async function tokenizeCommand(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { text: { type: 'string' }, paragraphs: { type: 'string' }, tokenizer: { type: 'string' }, json: { type: 'boolean' } },
  });
  const modelPath = one(positionals, 'MODEL');
  if (!values.text) throw new OptionError('cdquant tokenize needs --text FILE');
  const { model } = await loadModel(modelPath, await defaultKernel());
  const tokenizer = await loadTokenizer(modelPath, model.config.vocabSize, values.tokenizer, model.ggufVocabulary);
  const text = new TextDecoder().decode(await readBytes(values.text));
  const tokens = values.paragraphs !== undefined ? textTokens(tokenizer, text, values.paragraphs) : tokenizer.encode(text);
  if (values.json) console.log(JSON.stringify({ tokens: Array.from(tokens) }));
  else console.log(Array.from(tokens).join(' '));
}

async function main(argv: string[]) {
  const [command, ...rest] = joinNegativeValues(argv);
  switch (command) {
    case 'layer': return layerCommand(rest);
    case 'quantize': return quantizeCommand(rest);
    case 'eval': return evalCommand(rest);
    case 'tokenize': return tokenizeCommand(rest);
    case undefined: case '-h': case '--help': case 'help':
      process.stdout.write(USAGE);
      return;
    case '--version':
      console.log(VERSION);
      return;
    default:
      throw new OptionError(`unknown command "${command}" (layer, quantize, eval, tokenize)`);
  }
}

main(process.argv.slice(2)).finally(closeInputs).catch((e: unknown) => {
  if (e instanceof CdquantError) {
    process.stderr.write(`cdquant: ${e.code}: ${e.message}\n`);
    process.exit(2);
  }
  const code = (e as { code?: string }).code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`cdquant: BAD_OPTION: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  process.stderr.write(`cdquant: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
