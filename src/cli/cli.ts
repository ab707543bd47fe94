// The `cdquant` command: layer, quantize, eval. Progress on stderr; results on stdout.
import { parseArgs } from 'node:util';
import { resolve, join } from 'node:path';
import { readFile, rm } from 'node:fs/promises';
import { CdquantError, FormatError, OptionError, ShapeError } from '../core/errors.js';
import { defaultKernel } from '../core/kernel.js';
import type { LayerResult } from '../core/types.js';
import { quantizeLayer, type QuantizeOptions } from '../quantize.js';
import { HessianAccumulator } from '../core/hessian.js';
import { parseSafetensors, readTensorF32, readTensorRaw, writeSafetensors } from '../formats/safetensors.js';
import { sha256Hex } from '../formats/digest.js';
import type { QuantizedLinear, LayerProgress } from '../model/pipeline.js';
import { VERSION } from '../model/export.js';
import { FanoutPool } from '../parallel/fanout.js';
import { modelPerplexity, planJob, round, runJob, textTokens, tokenFile } from '../model/job.js';
import { loadModel, loadTokenizer, readBytes, writeAtomic } from './io.js';

const USAGE = `cdquant ${VERSION}: post-training weight quantization (RTN, GPTQ, CDQuant CD/BCD with OWC) in WebAssembly

Usage:
  cdquant layer PROBLEM.safetensors --out RESULT.safetensors [layer options]
  cdquant quantize MODEL (--calib TEXT | --calib-tokens FILE) --out DIR [--tokenizer FILE] [--calib-paragraphs A:B]
                   [--nsamples 128] [--seqlen 256] [--seed 0] [--json] [--workers-url URL,...] [layer options]
  cdquant eval MODEL --text TEXT [--paragraphs A:B] [--seqlen 256] [--max-windows N] [--tokenizer FILE] [--json]

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
  --act-order                GPTQ act-order (and bcd block order)
  --static-groups            GPTQ static groups
  --damp F                   GPTQ damping fraction (default 0.01)
  --gptq-block N             GPTQ lazy-batch block (default 128)
  --threads N                worker threads (default: all cores for layers large enough to gain)

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
  'act-order': { type: 'boolean' },
  'static-groups': { type: 'boolean' },
  damp: { type: 'string' },
  'gptq-block': { type: 'string' },
  threads: { type: 'string' },
} as const;

type Values = Record<string, string | boolean | undefined>;

function num(values: Values, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) throw new OptionError(`--${name} needs a number, got "${String(v)}"`);
  return n;
}

/** The solver options and `threads` from the flags (resolved and checked by the library). */
function layerOptions(values: Values): QuantizeOptions {
  const o: QuantizeOptions = {};
  if (values.method !== undefined) o.method = values.method as QuantizeOptions['method'];
  if (values.init !== undefined) o.init = values.init as QuantizeOptions['init'];
  if (values.clip !== undefined) o.clip = values.clip as QuantizeOptions['clip'];
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

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new OptionError(`expected exactly one ${what}, got ${positionals.length ? positionals.join(' ') : 'none'}`);
  return positionals[0];
}

function refuseOverwrite(input: string, output: string) {
  if (resolve(input) === resolve(output)) throw new OptionError(`--out ${output} is the input itself; choose another path (inputs are never overwritten)`);
}

// ---------------------------------------------------------------------------------------
// cdquant layer

async function layerCommand(argv: string[]) {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...layerOptionSpec, out: { type: 'string' } } });
  const path = one(positionals, 'PROBLEM.safetensors');
  const out = values.out;
  if (!out) throw new OptionError('cdquant layer needs --out RESULT.safetensors');
  refuseOverwrite(path, out);
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
  const res = await quantizeLayer({ data: weight, rows, cols }, hessian, layerOptions(values));
  const seconds = (performance.now() - t0) / 1000;
  await writeAtomic(out, writeSafetensors([
    { name: 'weight', dtype: 'F32', shape: [rows, cols], data: res.dequantize() },
    { name: 'codes', dtype: 'U8', shape: [rows, cols], data: res.codes },
    { name: 'scales', dtype: 'F32', shape: [rows, res.groups], data: res.scales },
    { name: 'zeros', dtype: 'F32', shape: [rows, res.groups], data: res.zeros },
    { name: 'g_idx', dtype: 'I32', shape: [cols], data: res.gIdx },
  ], provenanceOf(res)));
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
    loss_rtn: String(res.rtnLoss),
  };
}

// ---------------------------------------------------------------------------------------
// cdquant quantize

class ProgressBar {
  private readonly start = performance.now();
  private readonly tty = !!process.stderr.isTTY;
  update(p: LayerProgress) {
    const elapsed = (performance.now() - this.start) / 1000;
    const fraction = (p.layersDone + (p.stage === 'done' ? 0 : p.rowsDone / Math.max(1, p.rows))) / p.layers;
    const eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : NaN;
    const width = 24;
    const filled = Math.round(fraction * width);
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    const loss = p.loss !== undefined ? ` loss ${p.loss.toExponential(3)} (rtn ${p.rtnLoss!.toExponential(3)})` : '';
    const line = `[${bar}] ${p.layersDone}/${p.layers} block ${p.block} ${p.name.padEnd(9)} rows ${p.rowsDone}/${p.rows}${loss} ${elapsed.toFixed(1)}s eta ${Number.isFinite(eta) ? eta.toFixed(1) + 's' : '?'}`;
    if (this.tty) process.stderr.write(`\r${line.padEnd(110)}`);
    else if (p.stage === 'done') process.stderr.write(`${line}\n`);
  }
  end() {
    if (this.tty) process.stderr.write('\n');
  }
}

interface RunManifest {
  key: string;
  blocks: number[];
}

function layerToTensors(layers: QuantizedLinear[]) {
  return layers.flatMap((l) => {
    const groups = l.scales.length / l.rows;
    const p = `${l.block}.${l.name}`;
    return [
      { name: `${p}.codes`, dtype: 'U8' as const, shape: [l.rows, l.cols], data: l.codes },
      { name: `${p}.scales`, dtype: 'F32' as const, shape: [l.rows, groups], data: l.scales },
      { name: `${p}.zeros`, dtype: 'F32' as const, shape: [l.rows, groups], data: l.zeros },
      { name: `${p}.g_idx`, dtype: 'I32' as const, shape: [l.cols], data: l.gIdx },
    ];
  });
}

function layersFromTensors(bytes: Uint8Array, meta: QuantizedLinear[]): QuantizedLinear[] {
  const file = parseSafetensors(bytes);
  return meta.map((m) => {
    const p = `${m.block}.${m.name}`;
    return {
      ...m,
      codes: readTensorRaw(file, bytes, `${p}.codes`) as Uint8Array,
      scales: readTensorF32(file, bytes, `${p}.scales`),
      zeros: readTensorF32(file, bytes, `${p}.zeros`),
      gIdx: readTensorRaw(file, bytes, `${p}.g_idx`) as Int32Array,
    };
  });
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
  refuseOverwrite(modelPath, outDir);
  const { threads, ...solverOptions } = layerOptions(values);
  const calibration = { nsamples: num(values, 'nsamples'), seqlen: num(values, 'seqlen'), seed: num(values, 'seed') };
  const kernel = await defaultKernel();
  const loaded = await loadModel(modelPath, kernel);
  const { model } = loaded;
  const tokens = values['calib-tokens']
    ? tokenFile(await readBytes(values['calib-tokens']), model.config.vocabSize, values['calib-tokens'])
    : textTokens(await loadTokenizer(modelPath, model.config.vocabSize, values.tokenizer), new TextDecoder().decode(await readBytes(values.calib!)), values['calib-paragraphs']);
  const plan = await planJob(model, tokens, solverOptions, calibration);
  const { provenance, samples, seqlen } = plan;
  const { calibrationSha256 } = provenance;
  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(`cdquant ${VERSION}: ${loaded.kind} model ${modelPath} (${model.config.nLayers} blocks, dim ${model.config.dim})`);
  log(`method ${provenance.method}, ${provenance.bits} bits, group ${provenance.groupSize}, grid ${provenance.clip}${provenance.init ? `, init ${provenance.init}` : ''}${provenance.refit ? `, refit ${provenance.refit}` : ''}; calibration ${samples.length} x ${seqlen} tokens (sha256 ${calibrationSha256.slice(0, 12)})`);

  // Resume: finished blocks of an interrupted run with the same model, solver and data (how it
  // ran, e.g. --threads or --workers-url, does not change a bit, so it is not in the key).
  const progressDir = join(outDir, '.progress');
  const key = await sha256Hex(new TextEncoder().encode(JSON.stringify({ model: await sha256Hex(loaded.bytes), provenance, solver: plan.solver, VERSION })));
  const resume: QuantizedLinear[][] = [];
  let manifest: RunManifest = { key, blocks: [] };
  try {
    const old = JSON.parse(await readFile(join(progressDir, 'run.json'), 'utf8')) as RunManifest;
    if (old.key === key) {
      for (const blockIndex of old.blocks) {
        const meta = JSON.parse(await readFile(join(progressDir, `block-${blockIndex}.json`), 'utf8')) as QuantizedLinear[];
        resume[blockIndex] = layersFromTensors(await readBytes(join(progressDir, `block-${blockIndex}.safetensors`)), meta);
      }
      manifest = old;
      if (old.blocks.length) log(`resuming: blocks ${old.blocks.join(', ')} already done`);
    } else {
      log('found progress of a different run in the output folder; starting over');
    }
  } catch {
    // no earlier run
  }

  // Fan-out: bands on HTTP band workers (not part of `options`: the results, and so the resume
  // key, are the same bits either way).
  const workerUrls = values['workers-url']?.split(',').map((u) => u.trim()).filter(Boolean);
  const token = process.env.CDQUANT_FANOUT_TOKEN;
  const pool = workerUrls ? new FanoutPool({ urls: workerUrls, headers: token ? { authorization: `Bearer ${token}` } : {} }) : undefined;
  if (pool) log(`fan-out: row bands on ${pool.urls.length} band workers (${pool.urls.join(', ')})`);

  const bar = new ProgressBar();
  const { gptq, files, report } = await runJob(loaded, plan, {
    ...(pool ? { pool } : {}),
    threads,
    kernel,
    modelName: modelPath,
    resume,
    onProgress: (p) => bar.update(p),
    onBlockDone: async (block, layers) => {
      const meta = layers.map(({ codes, scales, zeros, gIdx, ...rest }) => rest);
      await writeAtomic(join(progressDir, `block-${block}.safetensors`), writeSafetensors(layerToTensors(layers)));
      await writeAtomic(join(progressDir, `block-${block}.json`), JSON.stringify(meta));
      manifest.blocks.push(block);
      await writeAtomic(join(progressDir, 'run.json'), JSON.stringify(manifest));
    },
  });
  bar.end();
  if (pool) {
    const s = pool.stats();
    log(`fan-out: ${s.bands} bands, ${s.retries} retried attempts, ${s.uploads} prepared uploads; per worker ${Object.entries(s.byUrl).map(([u, b]) => `${u} ${b.bands}`).join(', ')}`);
  }
  const { layers, totals } = report;

  // Outputs: the dequantized model in the input's own format, the GPTQ checkpoint, the report.
  for (const f of files) await writeAtomic(join(outDir, f.path), f.data);
  await writeAtomic(join(outDir, 'report.json'), JSON.stringify(report, null, 2));
  await rm(progressDir, { recursive: true, force: true });

  if (values.json) {
    console.log(JSON.stringify(report));
  } else {
    console.log(table(
      ['block', 'layer', 'shape', 'RTN loss', `${provenance.method} loss`, 'ratio', 'seconds'],
      layers.map((l) => [String(l.block), l.layer, `${l.rows}x${l.cols}`, l.loss_rtn.toExponential(3), l.loss.toExponential(3), (l.loss / l.loss_rtn).toFixed(3), l.seconds.toFixed(3)]),
    ));
    console.log(`total: RTN loss ${totals.loss_rtn.toExponential(4)}, ${provenance.method} loss ${totals.loss.toExponential(4)} (${(totals.loss / totals.loss_rtn).toFixed(3)} of RTN), ${totals.seconds}s`);
    console.log(`wrote ${join(outDir, 'dequantized')} (${loaded.kind === 'llama2c' ? 'llama2.c' : `Hugging Face ${loaded.dtype}`}) and ${join(outDir, 'gptq')} (${gptq.format}${gptq.dense.length ? `; ${gptq.dense.length} layers whose shape GPTQ kernels cannot pack stored dense` : ''})`);
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
      paragraphs: { type: 'string' },
      seqlen: { type: 'string' },
      'max-windows': { type: 'string' },
      tokenizer: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const modelPath = one(positionals, 'MODEL');
  if (!values.text) throw new OptionError('cdquant eval needs --text FILE');
  const seqlen = num(values, 'seqlen') ?? 256;
  const maxWindows = num(values, 'max-windows');
  const kernel = await defaultKernel();
  const loaded = await loadModel(modelPath, kernel);
  const tokenizer = await loadTokenizer(modelPath, loaded.model.config.vocabSize, values.tokenizer);
  const tokens = textTokens(tokenizer, new TextDecoder().decode(await readBytes(values.text)), values.paragraphs);
  const t0 = performance.now();
  const r = modelPerplexity(kernel, loaded.model, tokens, seqlen, maxWindows !== undefined ? { maxWindows } : {});
  const seconds = (performance.now() - t0) / 1000;
  const out = { model: modelPath, kind: loaded.kind, ppl: r.ppl, nll: r.nll, tokens: r.count, windows: r.windows, seqlen, seconds: round(seconds, 3) };
  if (values.json) console.log(JSON.stringify(out));
  else console.log(`${modelPath} (${loaded.kind}): perplexity ${r.ppl.toFixed(4)} over ${r.windows} windows of ${seqlen} tokens (${r.count} predictions), ${out.seconds}s`);
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

async function main(argv: string[]) {
  const [command, ...rest] = joinNegativeValues(argv);
  switch (command) {
    case 'layer': return layerCommand(rest);
    case 'quantize': return quantizeCommand(rest);
    case 'eval': return evalCommand(rest);
    case undefined: case '-h': case '--help': case 'help':
      process.stdout.write(USAGE);
      return;
    case '--version':
      console.log(VERSION);
      return;
    default:
      throw new OptionError(`unknown command "${command}" (layer, quantize, eval)`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
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
