// Perplexity table on the example model: every method at 4, 3 and 2 bits, per-channel and
// group 32, with the summed layer loss and the time each took. Calibration and evaluation use
// disjoint parts of the example text. Prints a Markdown table (the README's).
// Usage: node bench/model.mjs [--data DIR] [--bits 4,3,2] [--groups -1,32] [--eval-paragraphs A:B] [--json FILE]
import { readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Kernel, LlamaRunner, perplexity, quantizeModel, calibrationWindows, readLlama2c, readTokenizer,
  splitParagraphs, paragraphRange, tokenizeParagraphs,
} from '../build/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    data: { type: 'string', default: join(root, '..', 'shared', 'data') },
    bits: { type: 'string', default: '4,3,2' },
    groups: { type: 'string', default: '-1,32' },
    'calib-paragraphs': { type: 'string', default: '0:1600' },
    'eval-paragraphs': { type: 'string', default: '1600:' },
    nsamples: { type: 'string', default: '128' },
    seqlen: { type: 'string', default: '256' },
    methods: { type: 'string' },
    json: { type: 'string' },
  },
});

const METHODS = {
  'RTN': { method: 'rtn' },
  'RTN-OWC': { method: 'rtn', clip: 'owc' },
  'GPTQ': { method: 'gptq' },
  'GPTQ-OWC': { method: 'gptq', clip: 'owc' },
  'CD (GPTQ init)': { method: 'cd', init: 'gptq' },
  'BCD (GPTQ init)': { method: 'bcd', init: 'gptq' },
  'CD (OWC)': { method: 'cd', init: 'owc' },
  'BCD (OWC)': { method: 'bcd', init: 'owc' },
  'CD (OWC) + refit 2': { method: 'cd', init: 'owc', refit: 2 },
};

const data = values.data;
const model = readLlama2c(new Uint8Array(readFileSync(join(data, 'stories260K.bin'))));
const tokenizer = readTokenizer(new Uint8Array(readFileSync(join(data, 'tok512.bin'))), model.config.vocabSize);
const paragraphs = splitParagraphs(readFileSync(join(data, 'tinystories-valid-a.txt'), 'utf8'));
const seqlen = Number(values.seqlen);
const [c0, c1] = paragraphRange(values['calib-paragraphs'], paragraphs.length);
const [e0, e1] = paragraphRange(values['eval-paragraphs'], paragraphs.length);
const samples = calibrationWindows(tokenizeParagraphs(tokenizer, paragraphs.slice(c0, c1)), seqlen, Number(values.nsamples), 0);
const evalTokens = tokenizeParagraphs(tokenizer, paragraphs.slice(e0, e1));
const kernel = await Kernel.create();

function ppl(m) {
  const runner = new LlamaRunner(kernel, m);
  try {
    return perplexity(runner, evalTokens, seqlen).ppl;
  } finally {
    runner.free();
  }
}

const methods = values.methods ? values.methods.split(',').map((s) => s.trim()) : Object.keys(METHODS);
const rows = [];
const fp = ppl(model);
console.error(`fp32 perplexity ${fp.toFixed(3)} (calibration paragraphs ${c0}:${c1}, ${samples.length} x ${seqlen} tokens; evaluation paragraphs ${e0}:${e1}, ${evalTokens.length} tokens)`);
for (const bits of values.bits.split(',').map(Number))
  for (const groupSize of values.groups.split(',').map(Number))
    for (const name of methods) {
      const t0 = performance.now();
      const q = await quantizeModel(model, samples, { ...METHODS[name], bits, groupSize, kernel });
      const seconds = (performance.now() - t0) / 1000;
      const loss = q.layers.reduce((s, l) => s + l.loss, 0);
      const row = { bits, group: groupSize, method: name, ppl: ppl(q.model), loss, seconds };
      rows.push(row);
      console.error(`${bits}-bit g${groupSize} ${name.padEnd(18)} ppl ${row.ppl.toFixed(3)}  loss ${loss.toExponential(4)}  ${seconds.toFixed(1)}s`);
    }

console.log(`| bits | group | method | perplexity | summed layer loss | seconds |`);
console.log(`|---:|---:|---|---:|---:|---:|`);
console.log(`| 32 | - | fp32 | ${fp.toFixed(3)} | 0 | - |`);
for (const r of rows) {
  console.log(`| ${r.bits} | ${r.group === -1 ? 'channel' : r.group} | ${r.method} | ${r.ppl.toFixed(3)} | ${r.loss.toExponential(3)} | ${r.seconds.toFixed(1)} |`);
}
// Issue check: CD's summed layer loss below GPTQ's at every setting.
for (const bits of new Set(rows.map((r) => r.bits)))
  for (const group of new Set(rows.map((r) => r.group))) {
    const at = (m) => rows.find((r) => r.bits === bits && r.group === group && r.method === m);
    const g = at('GPTQ');
    for (const m of ['CD (GPTQ init)', 'CD (OWC)', 'CD (OWC) + refit 2']) {
      const c = at(m);
      if (g && c) console.error(`${bits}-bit g${group}: ${m} loss / GPTQ loss = ${(c.loss / g.loss).toFixed(3)}`);
    }
  }
if (values.json) writeFileSync(values.json, JSON.stringify({ fp32: fp, rows }, null, 2));
