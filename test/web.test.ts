// The browser page end to end: web/serve.mjs on 127.0.0.1, the page in headless Chromium,
// the example model quantized to 3 bits with CD, perplexity read off the page, the GPTQ
// checkpoint downloaded as a .tar, and its files compared byte for byte (SHA-256) with what
// `cdquant quantize` writes for the same options; once cross-origin isolated with 2 threads
// (a WorkerPool inside the job worker) and once not (one thread). Then GGUF output: the same
// model to llama.cpp's Q4_0 mix with CD, the downloaded .gguf compared byte for byte with what
// `cdquant quantize --gguf Q4_0` writes, its report's per-layer losses with the CLI's, and the
// perplexity of the file read back with `cdquant eval`'s of the CLI's file. Screenshots:
// out/test/web/.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, ROOT } from './cross/launch.js';
import { readTar } from '../web/tar.js';
import { GGUF_SOLVERS, type JobReport } from '../src/index.js';
import { GGUF_MIXES } from '../src/model/gguf-mix.js';

const data = join(ROOT, '..', 'shared', 'data');
const cli = join(ROOT, 'build', 'cli.js');
const shots = join(ROOT, 'out', 'test', 'web');
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

// A job, as the page's form fields and as `cdquant quantize` flags.
interface Job { model: string; label: string; calib: string; nsamples: string; seqlen: string; method: string; bits: string; group: string; eval: string }
const JOB: Job = { model: 'stories260K.bin', label: 'stories260K.bin (llama2.c)', calib: '0:400', nsamples: '8', seqlen: '64', method: 'cd', bits: '3', group: '32', eval: '1600:1650' };
// The multi-file input: a Hugging Face folder in BF16 (config.json + model.safetensors).
const HF_JOB: Job = { ...JOB, model: 'stories260K-hf-bf16', label: 'stories260K-hf-bf16/ (Hugging Face)', method: 'gptq', bits: '4', group: '-1', calib: '100:300', nsamples: '4' };
// GGUF output: a fast mix (Q4_0: 32-blocks, no k-quant search) with the default solver; and the
// Hugging Face folder to llama.cpp's default Q4_K_M (its fallbacks: the example's rows are not
// multiples of 256) with llama.cpp's own reference rounding.
interface GgufJob extends Job { mix: string; solver: string }
const GGUF_JOB: GgufJob = { ...JOB, mix: 'Q4_0', solver: 'cd' };
const HF_GGUF_JOB: GgufJob = { ...HF_JOB, mix: 'Q4_K_M', solver: 'ref' };
const cliFlags = (j: Job) => ['--calib-paragraphs', j.calib, '--nsamples', j.nsamples, '--seqlen', j.seqlen, '--method', j.method, '--bits', j.bits, `--group=${j.group}`];

/** What `cdquant quantize` and `cdquant eval` give for `job`: checkpoint hashes and perplexities. */
function cliReference(job: Job, dir: string) {
  const out = join(dir, `cli-${job.model}`);
  runCli(['quantize', join(data, job.model), '--calib', join(data, 'tinystories-valid-a.txt'), '--tokenizer', join(data, 'tok512.bin'), ...cliFlags(job), '--out', out, '--json']);
  const evalPpl = (model: string) => String(JSON.parse(runCli(['eval', model, '--text', join(data, 'tinystories-valid-a.txt'),
    '--paragraphs', job.eval, '--tokenizer', join(data, 'tok512.bin'), '--json'])).ppl);
  return {
    files: new Map(['config.json', 'quantize_config.json', 'model.safetensors'].map((f) => [f, sha(readFileSync(join(out, 'gptq', f)))])),
    ppl: { before: evalPpl(join(data, job.model)), after: evalPpl(join(out, 'dequantized', job.model.endsWith('.bin') ? 'model.bin' : '')), gptq: evalPpl(join(out, 'gptq')) },
  };
}

/** What `cdquant quantize --gguf` and `cdquant eval` of its model.gguf give for `job`. */
function cliGgufReference(job: GgufJob, dir: string) {
  const out = join(dir, `cli-gguf-${job.mix}`);
  runCli(['quantize', join(data, job.model), '--calib', join(data, 'tinystories-valid-a.txt'), '--tokenizer', join(data, 'tok512.bin'),
    '--calib-paragraphs', job.calib, '--nsamples', job.nsamples, '--seqlen', job.seqlen, '--gguf', job.mix, '--gguf-solver', job.solver, '--out', out, '--json']);
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as JobReport;
  const ppl = String(JSON.parse(runCli(['eval', join(out, 'model.gguf'), '--text', join(data, 'tinystories-valid-a.txt'),
    '--paragraphs', job.eval, '--tokenizer', join(data, 'tok512.bin'), '--json'])).ppl);
  return { gguf: sha(readFileSync(join(out, 'model.gguf'))), report, ppl };
}

async function startServer(flags: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(ROOT, 'web', 'serve.mjs'), '--port', '0', ...flags], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`web server did not start:\n${out}`)), 20_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`web server exited (${code}):\n${out}`)));
  });
  return { url, child };
}

function runCli(args: string[]) {
  const run = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: ROOT });
  assert.is(run.status, 0, `cdquant ${args[0]} failed:\n${run.stderr}`);
  return run.stdout;
}

interface PageRun {
  isolated: boolean;
  ppl: Record<'before' | 'after' | 'gptq', string>;
  files: Map<string, Uint8Array>;
  tableRows: number;
  gptqBars: number;
  seconds: number;
}

type Context = Awaited<ReturnType<typeof import('playwright-core')['chromium']['launchPersistentContext']>>;

async function runPage(context: Context, url: string, job: Job, threads: string | null, screenshot?: string): Promise<PageRun> {
  const page = await context.newPage();
  const log: string[] = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  try {
    await page.goto(url, { timeout: 30_000 });
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30_000 });
    const isolated = await page.evaluate(() => (globalThis as any).crossOriginIsolated === true);
    // The example model, tokenizer and text are offered and selected by default.
    assert.is(await page.locator('#model-example option:checked').textContent(), JOB.label);
    assert.is(await page.locator('#tok-example option:checked').textContent(), 'tok512.bin');
    assert.ok(await page.isChecked('#model-src-example'), 'example model selected by default');
    if (job.label !== JOB.label) await page.selectOption('#model-example', { label: job.label });
    await page.fill('#calib-paragraphs', job.calib);
    await page.fill('#nsamples', job.nsamples);
    await page.fill('#seqlen', job.seqlen);
    await page.fill('#eval-paragraphs', job.eval);
    await page.selectOption('#method', job.method);
    await page.selectOption('#bits', job.bits);
    await page.fill('#group', job.group);
    assert.is(await page.isDisabled('#threads'), !isolated, 'threads field enabled exactly when cross-origin isolated');
    if (threads) await page.fill('#threads', threads);
    const t0 = performance.now();
    await page.click('#run');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, { timeout: 90_000 });
    const seconds = (performance.now() - t0) / 1000;
    const state = await page.evaluate(() => document.body.dataset.state);
    if (state !== 'done') throw new Error(`page job failed: ${await page.textContent('#error')}`);
    const ppl = {
      before: (await page.getAttribute('#ppl-before', 'data-value'))!,
      after: (await page.getAttribute('#ppl-after', 'data-value'))!,
      gptq: (await page.getAttribute('#ppl-gptq', 'data-value'))!,
    };
    const tableRows = await page.locator('#layers tbody tr').count();
    const gptqBars = await page.locator('#chart rect.gptq:not(.legend)').count();
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.click('#download-tar')]);
    assert.is(download.suggestedFilename(), `${job.model.replace(/\.bin$/, '')}-${job.method}-${job.bits}bit-gptq.tar`);
    const tar = new Uint8Array(readFileSync((await download.path())!));
    const files = new Map(readTar(tar).map((e) => [e.name.replace(/^[^/]+\//, ''), e.data as Uint8Array]));
    if (screenshot) {
      await page.locator('#results').scrollIntoViewIfNeeded();
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: screenshot, fullPage: true });
    }
    return { isolated, ppl, files, tableRows, gptqBars, seconds };
  } catch (e) {
    throw new Error(`${(e as Error).message}\nbrowser console:\n${log.slice(-30).join('\n')}`);
  } finally {
    await page.close();
  }
}

interface GgufPageRun {
  ppl: Record<'before' | 'after' | 'gguf', string>;
  gguf: Uint8Array;
  report: JobReport;
  tableRows: number;
  seconds: number;
}

/** The page with "GGUF for llama.cpp" chosen: the form's GGUF state, the run, the downloads. */
async function runGgufPage(context: Context, url: string, job: GgufJob, screenshot?: string): Promise<GgufPageRun> {
  const page = await context.newPage();
  const log: string[] = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  try {
    await page.goto(url, { timeout: 30_000 });
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30_000 });
    // The GPTQ checkpoint is the default output; GGUF's fields are off until chosen.
    assert.ok(await page.isChecked('#out-gptq'), 'GPTQ checkpoint output by default');
    assert.ok(await page.isDisabled('#gguf-mix'), 'GGUF mix off for GPTQ output');
    await page.check('#out-gguf');
    // Every mix of GGUF_MIXES (src/model/gguf-mix.ts) is offered, Q4_K_M by default.
    const mixes = await page.locator('#gguf-mix option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    assert.equal(mixes.sort(), Object.keys(GGUF_MIXES).sort(), 'every GGUF mix offered');
    assert.is(await page.inputValue('#gguf-mix'), 'Q4_K_M', 'Q4_K_M by default');
    assert.equal(await page.locator('#gguf-solver option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value)), [...GGUF_SOLVERS], 'every GGUF solver offered');
    assert.is(await page.inputValue('#gguf-solver'), 'cd', 'solver cd by default');
    for (const id of ['method', 'bits', 'group', 'clip', 'init', 'refit', 'damp', 'sym', 'act-order', 'compare']) assert.ok(await page.isDisabled(`#${id}`), `#${id} off in GGUF mode`);
    assert.ok(await page.isEnabled('#iters'), 'CD moves per row applies in GGUF mode');
    // And back: the GPTQ checkpoint's options return, GGUF's go.
    await page.check('#out-gptq');
    for (const id of ['method', 'bits', 'group', 'compare']) assert.ok(await page.isEnabled(`#${id}`), `#${id} on again for GPTQ output`);
    assert.ok(await page.isHidden('#gguf-mix') && await page.isDisabled('#gguf-mix'), 'GGUF mix hidden and off for GPTQ output');
    await page.check('#out-gguf');
    if (job.label !== JOB.label) await page.selectOption('#model-example', { label: job.label });
    await page.fill('#calib-paragraphs', job.calib);
    await page.fill('#nsamples', job.nsamples);
    await page.fill('#seqlen', job.seqlen);
    await page.fill('#eval-paragraphs', job.eval);
    await page.selectOption('#gguf-mix', job.mix);
    await page.selectOption('#gguf-solver', job.solver);
    const t0 = performance.now();
    await page.click('#run');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), null, { timeout: 90_000 });
    const seconds = (performance.now() - t0) / 1000;
    if ((await page.evaluate(() => document.body.dataset.state)) !== 'done') throw new Error(`page job failed: ${await page.textContent('#error')}`);
    const value = async (id: string) => (await page.getAttribute(id, 'data-value'))!;
    const ppl = { before: await value('#ppl-before'), after: await value('#ppl-after'), gguf: await value('#ppl-gguf') };
    assert.ok(await page.isHidden('#ppl-gptq-box'), 'no GPTQ checkpoint perplexity in GGUF mode');
    assert.is(await page.textContent('#base-col'), 'llama.cpp reference loss', 'baseline column labelled as llama.cpp\'s rounding');
    assert.ok(await page.isHidden('#gptq-col'), 'no GPTQ comparison column in GGUF mode');
    assert.is(await page.locator('#chart rect.gptq').count(), 0, 'no GPTQ bars in GGUF mode');
    const tableRows = await page.locator('#layers tbody tr').count();
    assert.is(await page.locator('#layers tbody tr:first-child td').count(), 6, 'GGUF table rows: block, shape, baseline, loss, ratio, seconds (+ the layer name)');
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.click('#download-gguf')]);
    assert.is(download.suggestedFilename(), `${job.model.replace(/\.bin$/, '')}-${job.mix}.gguf`);
    const gguf = new Uint8Array(readFileSync((await download.path())!));
    const [reportDownload] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.click('#downloads a[download$="-report.json"]')]);
    const report = JSON.parse(readFileSync((await reportDownload.path())!, 'utf8')) as JobReport;
    assert.match((await page.textContent('#gguf-types'))!, new RegExp(`${Object.values(report.gguf_types!)[0].tensors} ${Object.keys(report.gguf_types!)[0]}`), 'the types are shown');
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
    return { ppl, gguf, report, tableRows, seconds };
  } catch (e) {
    throw new Error(`${(e as Error).message}\nbrowser console:\n${log.slice(-30).join('\n')}`);
  } finally {
    await page.close();
  }
}

test('web page: 3-bit CD of the example model in Chromium gives the CLI checkpoint bytes and perplexity', async () => {
  assert.ok(existsSync(join(data, 'stories260K.bin')), `example data missing in ${data}`);
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CDQUANT_CHROMIUM)`);
  const playwright = await import('playwright-core');
  mkdirSync(shots, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-web-'));
  const servers: ChildProcess[] = [];
  let context: Context | undefined;
  try {
    // The reference: the command line, same options.
    const want = cliReference(JOB, dir);

    const isolatedServer = await startServer([]);
    const plainServer = await startServer(['--no-isolation']);
    servers.push(isolatedServer.child, plainServer.child);
    context = await playwright.chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      acceptDownloads: true,
      viewport: { width: 1360, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const runs = [
      await runPage(context, isolatedServer.url, JOB, '2', join(shots, 'page.png')),
      await runPage(context, plainServer.url, JOB, null, join(shots, 'page-no-isolation.png')),
    ];
    assert.ok(runs[0].isolated, 'served with COOP/COEP: cross-origin isolated');
    assert.ok(!runs[1].isolated, 'served with --no-isolation: not isolated');
    for (const [i, run] of runs.entries()) {
      const name = run.isolated ? 'isolated, 2 threads' : 'not isolated, 1 thread';
      assert.equal([...run.files.keys()].sort(), [...want.files.keys()].sort(), `${name}: tar holds the three checkpoint files`);
      for (const [f, hash] of want.files) assert.is(sha(run.files.get(f)!), hash, `${name}: ${f} SHA-256 equals the CLI's`);
      assert.equal(run.ppl, want.ppl, `${name}: perplexity before/after/GPTQ equals cdquant eval's`);
      assert.is(run.tableRows, 35, `${name}: a table row per layer`);
      assert.is(run.gptqBars, 35, `${name}: a GPTQ bar per layer`);
      console.log(`  web page (${name}): ${run.seconds.toFixed(1)}s, perplexity ${Number(run.ppl.before).toFixed(4)} -> ${Number(run.ppl.after).toFixed(4)}${i === 0 ? `, screenshot ${join(shots, 'page.png')}` : ''}`);
    }
    assert.ok(Number(want.ppl.after) > Number(want.ppl.before), 'quantization costs some perplexity');

    // Multi-file model input: a Hugging Face BF16 folder, GPTQ 4-bit, automatic threads.
    const hfWant = cliReference(HF_JOB, dir);
    const hf = await runPage(context, isolatedServer.url, HF_JOB, null);
    for (const [f, hash] of hfWant.files) assert.is(sha(hf.files.get(f)!), hash, `Hugging Face BF16 folder: ${f} SHA-256 equals the CLI's`);
    // The page scores the quantized weights themselves; `cdquant eval` of dequantized/ scores them
    // as written there, rounded to the folder's BF16: close, not equal.
    assert.is(hf.ppl.before, hfWant.ppl.before, 'Hugging Face BF16 folder: perplexity before equals cdquant eval\'s');
    assert.is(hf.ppl.gptq, hfWant.ppl.gptq, 'Hugging Face BF16 folder: GPTQ checkpoint perplexity equals cdquant eval\'s');
    assert.ok(Math.abs(Number(hf.ppl.after) / Number(hfWant.ppl.after) - 1) < 0.005, `Hugging Face BF16 folder: perplexity after ${hf.ppl.after} vs ${hfWant.ppl.after}`);
    assert.is(hf.gptqBars, 0, 'method GPTQ: no separate comparison bars');
    console.log(`  web page (Hugging Face BF16, GPTQ 4-bit): ${hf.seconds.toFixed(1)}s, perplexity ${Number(hf.ppl.before).toFixed(4)} -> ${Number(hf.ppl.after).toFixed(4)}`);

    // GGUF output, on the plain (one-thread) page: GGUF solves run on the job worker's thread.
    const ggufWant = cliGgufReference(GGUF_JOB, dir);
    const g = await runGgufPage(context, plainServer.url, GGUF_JOB, join(shots, 'page-gguf.png'));
    assert.is(sha(g.gguf), ggufWant.gguf, `GGUF ${GGUF_JOB.mix}: the downloaded .gguf SHA-256 equals cdquant quantize --gguf's`);
    assert.equal(g.report.gguf_types, ggufWant.report.gguf_types, 'GGUF: report types equal the CLI report\'s');
    assert.is(g.report.gguf_bytes, g.gguf.length, 'GGUF: report size is the file\'s');
    assert.is(g.report.gguf, `${GGUF_JOB.mix}/${GGUF_JOB.solver}`, 'GGUF: report names mix and solver');
    // Same bits as the CLI, layer by layer: the solver's loss and llama.cpp's reference rounding's.
    assert.equal(g.report.layers.map((l) => [l.layer, l.loss, l.loss_rtn]), ggufWant.report.layers.map((l) => [l.layer, l.loss, l.loss_rtn]), 'GGUF: per-layer losses equal the CLI\'s');
    assert.is(g.tableRows, ggufWant.report.layers.length, 'GGUF: a table row per quantized tensor, the classifier included');
    assert.is(g.ppl.before, want.ppl.before, 'GGUF: perplexity before equals cdquant eval\'s');
    assert.is(g.ppl.gguf, ggufWant.ppl, 'GGUF: perplexity of model.gguf read back equals cdquant eval of the CLI\'s model.gguf');
    // The job's quantized view holds exactly the values the file decodes to (gguf-output.test.ts
    // checks this tensor by tensor), so the two perplexities are the same number.
    assert.is(g.ppl.after, g.ppl.gguf, 'GGUF: perplexity of the quantized view equals the file\'s');
    assert.ok(Number(g.ppl.gguf) > Number(g.ppl.before), 'GGUF: quantization costs some perplexity');
    console.log(`  web page (GGUF ${GGUF_JOB.mix}, ${GGUF_JOB.solver}): ${g.seconds.toFixed(1)}s, perplexity ${Number(g.ppl.before).toFixed(4)} -> ${Number(g.ppl.gguf).toFixed(4)}, screenshot ${join(shots, 'page-gguf.png')}`);

    // The Hugging Face BF16 folder to Q4_K_M with llama.cpp's reference rounding, on the
    // isolated page.
    const hfGgufWant = cliGgufReference(HF_GGUF_JOB, dir);
    const hg = await runGgufPage(context, isolatedServer.url, HF_GGUF_JOB);
    const what = `GGUF ${HF_GGUF_JOB.mix}/${HF_GGUF_JOB.solver} of the Hugging Face BF16 folder`;
    assert.is(sha(hg.gguf), hfGgufWant.gguf, `${what}: the downloaded .gguf SHA-256 equals cdquant quantize --gguf's`);
    assert.equal(hg.report.gguf_types, hfGgufWant.report.gguf_types, `${what}: report types equal the CLI report's`);
    // Solver ref is the baseline itself: every layer's loss is its baseline's, exactly.
    for (const l of hg.report.layers) assert.is(l.loss, l.loss_rtn, `${what}: ${l.block} ${l.layer} loss is llama.cpp's reference rounding's`);
    assert.is(hg.ppl.before, hfWant.ppl.before, `${what}: perplexity before equals cdquant eval's`);
    assert.is(hg.ppl.gguf, hfGgufWant.ppl, `${what}: perplexity of model.gguf read back equals cdquant eval of the CLI's model.gguf`);
    // The same values, but GGUF stores a Hugging Face Llama's q/k rows permuted to llama.cpp's
    // interleaved RoPE pairs (convert_hf_to_gguf.py), so the attention sums run in another
    // order: the two perplexities agree to float32 rounding, not bit for bit (the llama2.c
    // model above is in llama.cpp's layout already, and there they are equal).
    assert.ok(Math.abs(Number(hg.ppl.after) / Number(hg.ppl.gguf) - 1) < 1e-6, `${what}: perplexity of the quantized view ${hg.ppl.after} vs the file's ${hg.ppl.gguf}`);
    assert.ok(Number(hg.ppl.gguf) > Number(hg.ppl.before), `${what}: quantization costs some perplexity`);
    console.log(`  web page (${what}): ${hg.seconds.toFixed(1)}s, perplexity ${Number(hg.ppl.before).toFixed(4)} -> ${Number(hg.ppl.gguf).toFixed(4)}`);
  } finally {
    await context?.close().catch(() => {});
    for (const s of servers) s.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
