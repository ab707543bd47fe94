// The page: reads the form, loads the model/tokenizer/text (the examples served under data/, or
// the user's files), runs the job in a Web Worker (job-worker.ts) and shows progress, the
// per-layer table and chart, perplexity before and after, and the downloads: the GPTQ
// checkpoint (+ the dequantized model), or a GGUF file for llama.cpp.
// The mix names straight from their module: through src/index.js the bundle would pull in
// modules with top-level code (the kernel's among them) that the page script never runs.
import { GGUF_MIXES } from '../src/model/gguf-mix.js';
import type { JobReport, LayerProgress, OutputFile, QuantizeOptions } from '../src/index.js';
import { renderChart, type ChartRow } from './chart.js';
import type { JobMessage, JobRequest, PplStage } from './protocol.js';
import { writeTar } from './tar.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`page: #${id} missing`);
  return e as T;
};
const input = (id: string) => $<HTMLInputElement>(id);
const select = (id: string) => $<HTMLSelectElement>(id);

const METHOD_LABEL: Record<string, string> = { rtn: 'RTN', gptq: 'GPTQ', cd: 'CD', bcd: 'BCD' };
const GGUF_SOLVER_LABEL: Record<string, string> = { cd: 'CD', owc: 'OWC', imatrix: 'llama.cpp imatrix', ref: 'llama.cpp reference' };
/** GGUF runs' baseline: llama.cpp's own rounding of each tensor (llama-quantize, no imatrix). */
const GGUF_BASE_LABEL = 'llama.cpp reference';
const isolated = (globalThis as any).crossOriginIsolated === true;

// ---------------------------------------------------------------------------------------
// Examples served by web/serve.mjs under data/ (when run from a checkout with ../shared/data).

/** The files of a model folder the job reads (tokenizer.json too: it is the folder's tokenizer). */
const MODEL_FILE = /^(config\.json|model\.safetensors\.index\.json|tokenizer\.json|tokenizer_config\.json)$|\.safetensors$/;

interface ExampleModel { label: string; files: string[] }
let exampleModels: ExampleModel[] = [];

async function loadExamples(): Promise<void> {
  let files: string[] = [];
  try {
    const res = await fetch('./data/index.json');
    if (res.ok) files = ((await res.json()) as { files: string[] }).files;
  } catch {
    // no examples: the user's files only
  }
  const base = (f: string) => f.slice(f.lastIndexOf('/') + 1);
  const isTokenizer = (f: string) => /^(tok\d*|tokenizer)\.bin$/.test(base(f));
  const dirs = new Map<string, string[]>();
  for (const f of files) {
    const slash = f.lastIndexOf('/');
    if (slash > 0) dirs.set(f.slice(0, slash), [...(dirs.get(f.slice(0, slash)) ?? []), f]);
  }
  exampleModels = [
    ...files.filter((f) => f.endsWith('.bin') && !f.includes('/') && !isTokenizer(f)).map((f) => ({ label: `${f} (llama2.c)`, files: [f] })),
    ...[...dirs].filter(([, fs]) => fs.some((f) => base(f) === 'config.json'))
      .map(([dir, fs]) => ({ label: `${dir}/ (Hugging Face)`, files: fs.filter((f) => MODEL_FILE.test(base(f))) })),
  ];
  const fill = (sel: HTMLSelectElement, items: { label: string; value: string }[]) =>
    sel.replaceChildren(...items.map((i) => Object.assign(document.createElement('option'), { textContent: i.label, value: i.value })));
  fill(select('model-example'), exampleModels.map((m, i) => ({ label: m.label, value: String(i) })));
  fill(select('tok-example'), files.filter(isTokenizer).map((f) => ({ label: f, value: f })));
  fill(select('text-example'), files.filter((f) => f.endsWith('.txt')).map((f) => ({ label: f, value: f })));
  for (const [kind, sel, fileRadio] of [['model', 'model-example', 'model-src-files'], ['tok', 'tok-example', 'tok-src-file'], ['text', 'text-example', 'text-src-file']] as const) {
    const empty = select(sel).options.length === 0;
    input(`${kind}-src-example`).disabled = empty;
    select(sel).disabled = empty;
    if (empty) {
      input(fileRadio).checked = true;
      select(sel).append(Object.assign(document.createElement('option'), { textContent: 'none served' }));
    }
  }
  document.body.dataset.examples = String(files.length > 0);
}

// Choosing a file selects "Your file(s)"; choosing an example selects "Example".
for (const [fileInput, fileRadio, sel, exampleRadio] of [
  ['model-files', 'model-src-files', 'model-example', 'model-src-example'],
  ['tok-file', 'tok-src-file', 'tok-example', 'tok-src-example'],
  ['text-file', 'text-src-file', 'text-example', 'text-src-example'],
] as const) {
  input(fileInput).addEventListener('change', () => (input(fileRadio).checked = true));
  select(sel).addEventListener('change', () => (input(exampleRadio).checked = true));
}

async function fetchBytes(path: string): Promise<Uint8Array> {
  const res = await fetch(`./data/${path.split('/').map(encodeURIComponent).join('/')}`);
  if (!res.ok) throw new Error(`could not load the example ${path} (HTTP ${res.status})`);
  return new Uint8Array(await res.arrayBuffer());
}

async function readInputs(): Promise<Pick<JobRequest, 'model' | 'modelName' | 'tokenizer' | 'text'>> {
  let model: JobRequest['model'];
  let modelName: string;
  if (input('model-src-example').checked) {
    const m = exampleModels[Number(select('model-example').value)];
    model = await Promise.all(m.files.map(async (f) => ({ name: f, bytes: await fetchBytes(f) })));
    modelName = m.files.length === 1 ? m.files[0] : m.files[0].slice(0, m.files[0].lastIndexOf('/'));
  } else {
    const files = Array.from(input('model-files').files ?? []);
    if (!files.length) throw new Error('choose the model files (a .bin or .gguf, or a folder\'s config.json, .safetensors and tokenizer.json)');
    // The files themselves go to the worker, which reads them a tensor at a time (Blob.slice):
    // a model of several GB is never in the page's memory.
    model = files.map((f) => ({ name: f.webkitRelativePath || f.name, blob: f }));
    // A folder's files are named by the folder, as the CLI names them (the report, the download
    // names, a GGUF file's general.name); files picked one by one do not tell it: "model".
    const folder = files[0].webkitRelativePath.slice(0, Math.max(0, files[0].webkitRelativePath.lastIndexOf('/')));
    modelName = files.length === 1 ? files[0].name : folder && files.every((f) => f.webkitRelativePath.startsWith(`${folder}/`)) ? folder : 'model';
  }
  const folderHasTokenizer = model.some((f) => f.name.endsWith('tokenizer.json'));
  let tokenizer: JobRequest['tokenizer'] = [];
  if (input('tok-src-example').checked && !folderHasTokenizer) {
    const name = select('tok-example').value;
    tokenizer = [{ name, bytes: await fetchBytes(name) }];
  } else if (input('tok-src-file').checked) {
    const files = Array.from(input('tok-file').files ?? []);
    if (!files.length && !folderHasTokenizer) throw new Error('choose a tokenizer (tokenizer.json with tokenizer_config.json, or a llama2.c tokenizer.bin)');
    tokenizer = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
  }
  let text: string;
  if (input('text-src-example').checked) text = new TextDecoder().decode(await fetchBytes(select('text-example').value));
  else {
    const f = input('text-file').files?.[0];
    if (!f) throw new Error('choose a text file');
    text = await f.text();
  }
  return { model, modelName, tokenizer, text };
}

// ---------------------------------------------------------------------------------------
// Output: the GPTQ checkpoint (+ dequantized model), or GGUF for llama.cpp.

select('gguf-mix').replaceChildren(...Object.keys(GGUF_MIXES).map((name) =>
  Object.assign(document.createElement('option'), { textContent: name, value: name, selected: name === 'Q4_K_M' })));

/** The integer-grid options: a GGUF mix sets each tensor's grid itself (CD moves per row and
 * threads still apply). */
const INTEGER_GRID_FIELDS = ['method', 'bits', 'group', 'clip', 'init', 'refit', 'block', 'damp', 'gptq-block', 'owc', 'sym', 'act-order', 'static-groups', 'compare'];
const ggufOutput = () => input('out-gguf').checked;

function applyOutputChoice() {
  const gguf = ggufOutput();
  for (const id of INTEGER_GRID_FIELDS) ($(id) as HTMLInputElement | HTMLSelectElement).disabled = gguf;
  select('gguf-mix').disabled = !gguf;
  select('gguf-solver').disabled = !gguf;
  $('gguf-fields').hidden = !gguf;
  $('gguf-note').hidden = !gguf;
  document.body.dataset.output = gguf ? 'gguf' : 'gptq';
}
for (const id of ['out-gptq', 'out-gguf']) input(id).addEventListener('change', applyOutputChoice);

/** The chosen solver's one-line explanation (each option's data-hint). */
function showSolverHint() {
  const sel = select('gguf-solver');
  $('gguf-solver-hint').textContent = sel.selectedOptions[0]?.dataset.hint ?? '';
}
select('gguf-solver').addEventListener('change', showSolverHint);
showSolverHint();

// ---------------------------------------------------------------------------------------
// Options, the same flags and defaults as `cdquant quantize` (empty fields: the default).

function intField(id: string, label: string, min: number): number | undefined {
  const raw = input(id).value.trim();
  if (raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${label} must be a whole number >= ${min}, got "${raw}"`);
  return n;
}

function readOptions(): Pick<JobRequest, 'options' | 'calibration' | 'calibParagraphs' | 'evalParagraphs' | 'evalSeqlen' | 'maxWindows' | 'compareGptq' | 'gguf'> {
  const range = (id: string, label: string) => {
    const v = input(id).value.trim();
    if (!/^\d*:\d*$/.test(v)) throw new Error(`${label} must look like A:B, A: or :B, got "${v}"`);
    return v;
  };
  const common = {
    calibration: { nsamples: intField('nsamples', 'Samples', 0) ?? 128, seqlen: intField('seqlen', 'Sequence length', 2) ?? 256, seed: intField('seed', 'Seed', 0) ?? 0 },
    calibParagraphs: range('calib-paragraphs', 'Calibration paragraphs'),
    evalParagraphs: range('eval-paragraphs', 'Evaluation paragraphs'),
    evalSeqlen: intField('eval-seqlen', 'Evaluation window', 2) ?? 256,
    maxWindows: intField('max-windows', 'Max. evaluation windows', 1),
  };
  if (ggufOutput()) {
    // As `cdquant quantize --gguf MIX --gguf-solver SOLVER [--iters N] [--threads N]`.
    const o: QuantizeOptions = {};
    const iters = intField('iters', 'CD moves per row', 0);
    if (iters !== undefined) o.iters = iters;
    const threads = intField('threads', 'Threads', 1);
    if (threads !== undefined) o.threads = threads;
    return { options: o, ...common, compareGptq: false, gguf: { mix: select('gguf-mix').value, solver: select('gguf-solver').value } };
  }
  const o: QuantizeOptions = { method: select('method').value as QuantizeOptions['method'], bits: Number(select('bits').value) };
  const set = (key: keyof QuantizeOptions, value: unknown) => value !== undefined && value !== '' && ((o as Record<string, unknown>)[key] = value);
  set('groupSize', intField('group', 'Group size', -1));
  set('clip', select('clip').value || undefined);
  const descent = o.method === 'cd' || o.method === 'bcd';
  if (descent) {
    set('init', select('init').value || undefined);
    set('refit', intField('refit', 'Refit rounds', 0) || undefined);
    set('iters', intField('iters', 'CD moves per row', 0));
    set('blockSize', intField('block', 'BCD block', 1));
  }
  const damp = input('damp').value.trim();
  if (damp !== '') {
    if (!(Number(damp) >= 0)) throw new Error(`GPTQ damping must be a number >= 0, got "${damp}"`);
    o.damp = Number(damp);
  }
  set('gptqBlock', intField('gptq-block', 'GPTQ block', 1));
  set('threads', intField('threads', 'Threads', 1));
  if (select('owc').value) o.owcExact = select('owc').value === 'exact';
  if (input('sym').checked) o.sym = true;
  if (input('act-order').checked) o.actOrder = true;
  if (input('static-groups').checked) o.staticGroups = true;
  return { options: o, ...common, compareGptq: input('compare').checked && o.method !== 'gptq', gguf: null };
}

// ---------------------------------------------------------------------------------------
// Running a job.

let worker: Worker | null = null;
let objectUrls: string[] = [];

function setState(state: 'idle' | 'running' | 'done' | 'error' | 'cancelled') {
  document.body.dataset.state = state;
  $<HTMLButtonElement>('run').disabled = state === 'running';
  $<HTMLButtonElement>('cancel').disabled = state !== 'running';
}

function status(text: string) {
  $('status').textContent = text;
}

function fail(message: string) {
  const e = $('error');
  e.textContent = message;
  e.hidden = false;
  status('Stopped.');
  setState('error');
}

/** What a run's results are called: its method (or GGUF solver), its baseline, its output. */
interface RunLabels { method: string; base: string; gguf: boolean }

function resetResults(labels: RunLabels) {
  $('error').hidden = true;
  $('info').textContent = '';
  for (const s of ['before', 'after', 'gptq', 'gguf']) {
    const dd = $(`ppl-${s}`);
    dd.textContent = '–';
    delete dd.dataset.value;
  }
  $('ppl-gptq-box').hidden = labels.gguf;
  $('ppl-gguf-box').hidden = !labels.gguf;
  $('ppl-hint').textContent = labels.gguf
    ? 'Quantized: the quantized weights in float32. model.gguf: the file offered below, read back and decoded as llama.cpp decodes its blocks.'
    : 'Quantized: the quantized weights in float32. GPTQ checkpoint: the checkpoint offered below, read back (float16 scales).';
  $('chart-caption').textContent = labels.gguf
    ? 'Layer output error ‖(W − Q)X‖² on the calibration set, log scale: llama.cpp\'s reference rounding (llama-quantize without an importance matrix) on each tensor\'s type, and the chosen solver, layer by layer.'
    : 'Layer output error ‖(W − Q)X‖² on the calibration set, log scale: RTN on the run\'s grid, GPTQ, and the chosen method, layer by layer.';
  $('layers').querySelector('tbody')!.replaceChildren();
  $('base-col').textContent = `${labels.base} loss`;
  $('gptq-col').hidden = labels.gguf; // no GPTQ comparison on a GGUF type's grid
  $('method-col').textContent = `${labels.method} loss`;
  $('ratio-col').textContent = `vs ${labels.gguf ? 'llama.cpp' : 'RTN'}`;
  $<HTMLProgressElement>('bar').value = 0;
  for (const u of objectUrls) URL.revokeObjectURL(u);
  objectUrls = [];
  $('downloads').replaceChildren(labels.gguf ? 'The GGUF file appears here when the job is done.' : 'The GPTQ checkpoint appears here when the job is done.');
}

const PPL_STAGE_LABEL: Record<PplStage, string> = {
  before: 'Perplexity of the original model', after: 'Perplexity of the quantized model',
  gptq: 'Perplexity of the GPTQ checkpoint', gguf: 'Perplexity of model.gguf',
};

const fmt = (x: number | undefined) => (x === undefined ? '–' : x.toExponential(3));

async function start(ev: SubmitEvent) {
  ev.preventDefault();
  if (worker) return;
  let request: JobRequest;
  const gguf = ggufOutput();
  const labels: RunLabels = gguf
    ? { method: GGUF_SOLVER_LABEL[select('gguf-solver').value], base: GGUF_BASE_LABEL, gguf }
    : { method: METHOD_LABEL[select('method').value], base: 'RTN', gguf };
  const methodLabel = labels.method;
  resetResults(labels);
  setState('running');
  try {
    const opts = readOptions();
    status('Loading files…');
    request = { type: 'run', ...(await readInputs()), ...opts };
  } catch (e) {
    fail((e as Error).message);
    return;
  }
  const rows: ChartRow[] = [];
  let totalLayers = 0;
  let shapes: Record<string, [number, number]> = {};
  const tbody = $('layers').querySelector('tbody')!;
  const chart = $('chart');
  const t0 = performance.now();
  const w = new Worker(new URL('./job-worker.js', import.meta.url), { type: 'module', name: 'cdquant-job' });
  worker = w;
  w.onerror = (e) => {
    e.preventDefault();
    finish();
    fail(`the job worker failed: ${e.message || 'could not start'}`);
  };
  const finish = () => {
    w.terminate();
    if (worker === w) worker = null;
  };
  w.onmessage = (e: MessageEvent<JobMessage>) => {
    const m = e.data;
    switch (m.type) {
      case 'status':
        status(m.text);
        break;
      case 'model': {
        const i = m.info;
        $('info').textContent = `${i.kind === 'llama2c' ? 'llama2.c' : `Hugging Face ${i.dtype}`} model: ${i.blocks} blocks, dim ${i.dim}, hidden ${i.hiddenDim}, vocab ${i.vocab}. `
          + `Calibration: ${i.nsamples} × ${i.seqlen} tokens from ${i.calibrationTokens} (sha256 ${i.calibrationSha256.slice(0, 12)}); evaluation: ${i.evalTokens} tokens. Threads: ${i.threads}.`;
        if (i.gguf) $('info').textContent += ` Output: GGUF ${i.gguf.mix}, codes by ${i.gguf.solver}.`;
        totalLayers = i.layers;
        shapes = i.shapes;
        renderChart(chart, rows, totalLayers, methodLabel, labels.base);
        break;
      }
      case 'eval':
        status(`${PPL_STAGE_LABEL[m.stage]}: window ${m.done} of ${m.total}`);
        break;
      case 'ppl': {
        const dd = $(`ppl-${m.stage}`);
        dd.textContent = m.result.ppl.toFixed(4);
        dd.dataset.value = String(m.result.ppl);
        dd.title = `${m.result.windows} windows of ${m.seqlen} tokens, ${m.result.count} predictions`;
        break;
      }
      case 'progress':
        onProgress(m.progress);
        break;
      case 'head':
        for (const l of m.layers) addRow({ block: l.block, name: l.name, rows: l.rows, cols: l.cols, base: l.baseLoss ?? undefined, loss: l.loss, seconds: l.seconds });
        renderChart(chart, rows, Math.max(totalLayers, rows.length), methodLabel, labels.base);
        break;
      case 'done':
        finish();
        $<HTMLProgressElement>('bar').value = 1;
        status(`Done in ${m.seconds.toFixed(1)} s: ${methodLabel} loss is ${((m.report.totals.loss / m.report.totals.loss_rtn!) * 100).toFixed(1)}% of ${gguf ? 'llama.cpp\'s reference rounding' : 'RTN\'s'} over all layers.`);
        if (gguf) offerGguf(m.files, m.report);
        else offerDownloads(m.files, m.report);
        setState('done');
        break;
      case 'error':
        finish();
        fail(`${m.code}: ${m.message}`);
        break;
    }
  };
  const onProgress = (p: LayerProgress) => {
    $<HTMLProgressElement>('bar').value = (p.layersDone + (p.stage === 'done' ? 0 : p.rowsDone / Math.max(1, p.rows))) / p.layers;
    if (p.stage !== 'done') {
      status(`Quantizing block ${p.block} ${p.name}: rows ${p.rowsDone} of ${p.rows} (layer ${p.layersDone + 1} of ${p.layers}, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      return;
    }
    const shape = shapes[p.name];
    addRow({
      block: p.block, name: p.name, rows: shape?.[0] ?? p.rows, cols: shape?.[1], base: p.rtnLoss ?? undefined, loss: p.loss!, seconds: p.seconds ?? 0,
      // The chart's GPTQ bars are the comparison solves; a GPTQ run's own loss fills the column.
      gptq: p.compare?.gptq, gptqCell: p.compare?.gptq ?? (request.options.method === 'gptq' ? p.loss : undefined),
    });
    renderChart(chart, rows, Math.max(totalLayers, p.layers), methodLabel, labels.base);
  };
  /** A finished layer: a table row (the GPTQ column only for GPTQ-checkpoint runs) and a chart entry. */
  const addRow = (l: { block: number; name: string; rows: number; cols?: number; base?: number; gptq?: number; gptqCell?: number; loss: number; seconds: number }) => {
    rows.push({ block: l.block, name: l.name, rtn: l.base!, ...(l.gptq !== undefined ? { gptq: l.gptq } : {}), method: l.loss });
    const tr = document.createElement('tr');
    const cells = [String(l.block), l.name, l.cols !== undefined ? `${l.rows}×${l.cols}` : `${l.rows} rows`, fmt(l.base), ...(gguf ? [] : [fmt(l.gptqCell)]), fmt(l.loss),
      l.base ? `${((l.loss / l.base) * 100).toFixed(1)}%` : '–', l.seconds.toFixed(3)];
    tr.replaceChildren(...cells.map((c, i) => Object.assign(document.createElement(i === 1 ? 'th' : 'td'), i === 1 ? { textContent: c, scope: 'row' } : { textContent: c })));
    tbody.append(tr);
    const wrap = tbody.closest('.table-wrap')!;
    wrap.scrollTop = wrap.scrollHeight; // follow the newest layer (without scrolling the page)
  };
  // Fetched bytes are moved, not copied; Files (Blobs) go by reference.
  const buffers = [...request.model.flatMap((f) => (f.bytes ? [f.bytes.buffer as ArrayBuffer] : [])), ...request.tokenizer.map((f) => f.bytes.buffer as ArrayBuffer)];
  w.postMessage(request, [...new Set(buffers)]);
}

function link(label: string, name: string, data: Uint8Array | string, type = 'application/octet-stream', primary = false): HTMLAnchorElement {
  const url = URL.createObjectURL(new Blob([data as BlobPart], { type }));
  objectUrls.push(url);
  const a = Object.assign(document.createElement('a'), { href: url, download: name, textContent: label });
  if (primary) a.className = 'primary';
  return a;
}

function offerDownloads(files: OutputFile[], report: JobReport) {
  const stem = `${(report.model.split('/').pop() ?? 'model').replace(/\.bin$/, '')}-${report.method}-${report.bits}bit`;
  const mtime = Math.floor(Date.now() / 1000);
  const gptq = files.filter((f) => f.path.startsWith('gptq/'));
  const dequantized = files.filter((f) => f.path.startsWith('dequantized/'));
  const tar = writeTar(gptq.map((f) => ({ name: `${stem}-gptq/${f.path.slice('gptq/'.length)}`, data: f.data })), mtime);
  const box = $('downloads');
  const p1 = document.createElement('p');
  p1.append(link(`GPTQ checkpoint (${stem}-gptq.tar, ${(tar.length / 1024).toFixed(0)} KiB)`, `${stem}-gptq.tar`, tar, 'application/x-tar', true));
  p1.querySelector('a')!.id = 'download-tar';
  const p2 = document.createElement('p');
  p2.append('Or one by one: ', ...gptq.map((f) => link(f.path.slice('gptq/'.length), f.path.slice('gptq/'.length), f.data, f.path.endsWith('.json') ? 'application/json' : 'application/octet-stream')));
  const p3 = document.createElement('p');
  p3.append(
    link(dequantized.length === 1 ? 'Dequantized model (llama2.c .bin)' : 'Dequantized model (.tar)', dequantized.length === 1 ? `${stem}.bin` : `${stem}-dequantized.tar`,
      dequantized.length === 1 ? dequantized[0].data : writeTar(dequantized.map((f) => ({ name: `${stem}-dequantized/${f.path.slice('dequantized/'.length)}`, data: f.data })), mtime)),
    link('report.json', `${stem}-report.json`, JSON.stringify(report, null, 2), 'application/json'),
  );
  const note = Object.assign(document.createElement('p'), { className: 'hint', textContent: `Format ${report.gptq_format}${report.gptq_dense_layers?.length ? `; ${report.gptq_dense_layers.length} layers whose shape GPTQ kernels cannot pack are stored dense` : ''}. The bytes equal what cdquant quantize writes for the same options.` });
  box.replaceChildren(p1, p2, p3, note);
}

/** GGUF output: NAME-MIX.gguf (as llama.cpp's own files are named) and the report. */
function offerGguf(files: OutputFile[], report: JobReport) {
  const file = files.find((f) => f.path === 'model.gguf');
  const mix = report.gguf?.split('/')[0] ?? 'gguf';
  const stem = `${(report.model.split('/').pop() ?? 'model').replace(/\.bin$/, '')}-${mix}`;
  const box = $('downloads');
  if (!file) {
    box.replaceChildren('The job wrote no model.gguf.');
    return;
  }
  const p1 = document.createElement('p');
  const a = link(`GGUF for llama.cpp (${stem}.gguf, ${(file.data.length / 1024).toFixed(0)} KiB)`, `${stem}.gguf`, file.data, 'application/octet-stream', true);
  a.id = 'download-gguf';
  p1.append(a, link('report.json', `${stem}-report.json`, JSON.stringify(report, null, 2), 'application/json'));
  const types = Object.entries(report.gguf_types ?? {}).map(([t, c]) => `${c.tensors} ${t} (${(c.bytes / 1024).toFixed(1)} KiB)`).join(', ');
  const note = Object.assign(document.createElement('p'), {
    className: 'hint', id: 'gguf-types',
    textContent: `${report.gguf_bytes ?? file.data.length} bytes; tensors by type: ${types}. Codes by ${report.gguf?.split('/')[1]}. The bytes equal what cdquant quantize --gguf ${mix} writes for the same options; llama.cpp (llama-cli, llama-server, and what builds on it) loads the file.`,
  });
  box.replaceChildren(p1, note);
}

function cancel() {
  if (!worker) return;
  worker.terminate();
  worker = null;
  status('Cancelled.');
  setState('cancelled');
}

// ---------------------------------------------------------------------------------------

$('isolation').textContent = isolated
  ? 'This page is cross-origin isolated: layers can be solved on several threads (Web Workers sharing memory).'
  : 'This page is not cross-origin isolated (served without COOP/COEP headers): every layer is solved on one thread. Results are the same bits either way.';
const threads = input('threads');
threads.disabled = !isolated;
$('threads-hint').textContent = isolated
  ? `Empty: automatic (${navigator.hardwareConcurrency} cores, for layers large enough to gain). Any number of threads gives the same bits.`
  : 'One thread: threads need a cross-origin isolated page.';
applyOutputChoice();
$('job').addEventListener('submit', (e) => void start(e as SubmitEvent));
$('cancel').addEventListener('click', cancel);
setState('idle');
loadExamples().then(() => (document.body.dataset.ready = 'true'));
