// GGUF tokenizer.* metadata against what llama.cpp's converter wrote itself: its
// ggml-vocab-{llama-bpe,qwen2,llama-spm}.gguf (read by node-llama-cpp), its chkhsh table and
// check text (conversion/base.py), plus the properties llama.cpp's tokenizer relies on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { FormatError, OptionError } from '../src/core/errors.js';
import { HfTokenizer } from '../src/formats/hf-tokenizer.js';
import {
  ggufVocabMetadata, preTokenizerHash, bpePreTokenizer, looksSpecial, KNOWN_PRE_TOKENIZERS, PRE_TOKENIZER_CHECK_TEXT, LATE_PIECE_SCORE,
} from '../src/formats/gguf-vocab.js';
import { GGUF_TOKEN_TYPE, GGUF_VALUE_TYPE, type GgufMetadata, type GgufValue } from '../src/formats/gguf-types.js';
import { readDataText } from './helpers/util.js';
import { LLAMA_CPP, lenml, lenmlFiles, llama3WithTemplate, llama2TokenizerJson, llamaCppVocabGguf, llamaCppVocabTests, tinyByteLevelJson, LLAMA2_TOKENIZER_CONFIG } from './helpers/hf-tokenizers.js';

const CONVERTER = readFileSync(join(LLAMA_CPP, 'conversion', 'base.py'), 'utf8');
const value = (md: GgufMetadata, key: string) => {
  const v = md.get(key);
  if (!v) throw new Error(`no ${key}`);
  return v.value;
};
const list = (md: GgufMetadata, key: string) => Array.from(value(md, key) as ArrayLike<unknown>);
/** Indices where two arrays differ (lengths must match). */
function differences(a: ArrayLike<unknown>, b: ArrayLike<unknown>, what: string): number[] {
  assert.is(a.length, b.length, `${what}: length`);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}
// Each real tokenizer loads once per file (Gemma 3's takes seconds).
const once = <T>(make: () => T) => { let v: T | undefined; return () => (v ??= make()); };
/** Qwen/Qwen3-0.6B's config.json (the fields read here). */
const qwen3 = once(() => new HfTokenizer({ ...lenmlFiles('qwen3'), config: JSON.stringify({ architectures: ['Qwen3ForCausalLM'], vocab_size: 151936, bos_token_id: 151643, eos_token_id: 151645 }) }));
/** google/gemma-3-4b-it's config.json: the embedding has 262208 rows. */
const gemma3 = once(() => new HfTokenizer({ ...lenmlFiles('gemma3'), config: JSON.stringify({ architectures: ['Gemma3ForConditionalGeneration'], text_config: { vocab_size: 262208 } }) }));
/** Llama 2 rebuilt from ggml-vocab-llama-spm.gguf, without tokenizer_config.json, and with
 * meta-llama/Llama-2-7b-hf's. */
const llama2 = once(async () => new HfTokenizer({ tokenizerJson: await llama2TokenizerJson() }));
const llama2Configured = once(async () => new HfTokenizer({ tokenizerJson: await llama2TokenizerJson(), tokenizerConfig: JSON.stringify(LLAMA2_TOKENIZER_CONFIG) }));
const gemma3Metadata = once(() => ggufVocabMetadata(gemma3()));

async function rejects(p: Promise<unknown>, Type: new (...a: never[]) => Error, match: RegExp) {
  try {
    await p;
  } catch (e) {
    assert.instance(e, Type);
    assert.match((e as Error).message, match);
    return;
  }
  assert.unreachable(`expected ${Type.name}`);
}

test("the check text and every hash -> name entry are the converter's", () => {
  // chktxt is a Python literal in get_vocab_base_pre; undo its escapes.
  const literal = /\n\s*chktxt = '((?:[^'\\]|\\.)*)'\n/.exec(CONVERTER);
  assert.ok(literal, 'chktxt in conversion/base.py');
  const chktxt = literal![1].replace(/\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)/g, (_, e: string) =>
    e.length > 1 ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', t: '\t', r: '\r' } as Record<string, string>)[e] ?? e);
  assert.is(PRE_TOKENIZER_CHECK_TEXT, chktxt);
  const table = new Map<string, { pre: string; ref: string }>();
  for (const m of CONVERTER.matchAll(/if chkhsh == "([0-9a-f]{64})":\s*\n\s*# ref: https:\/\/huggingface\.co\/(\S+)\s*\n\s*res = "([^"]+)"/g)) table.set(m[1], { ref: m[2], pre: m[3] });
  assert.ok(table.size > 50, `parsed ${table.size} table entries`);
  for (const e of KNOWN_PRE_TOKENIZERS) assert.equal(table.get(e.chkhsh), { pre: e.pre, ref: e.ref }, e.pre);
});

test('pre-tokenizer fingerprints: Llama 3 -> llama-bpe (smaug-bpe for its first file), Qwen3 -> qwen2; unknown ones refused', async () => {
  assert.is(await bpePreTokenizer(llama3WithTemplate()), 'llama-bpe');
  assert.is(await bpePreTokenizer(lenml('llama3')), 'smaug-bpe');
  assert.is(await bpePreTokenizer(qwen3()), 'qwen2');
  // Gemma 3's ids on the check text hash to the table's entry for
  // ibm-granite/granite-embedding-311m-multilingual-r2, a model that reuses Gemma 3's
  // tokenizer: transformers produced exactly our ids for that text.
  const gemmaHash = await preTokenizerHash(gemma3());
  assert.match(CONVERTER, new RegExp(`if chkhsh == "${gemmaHash}":\\s*\\n\\s*# ref: https://huggingface.co/ibm-granite/granite-embedding-311m-multilingual-r2`));
  // A byte-level tokenizer the table does not know.
  const odd = new HfTokenizer({ tokenizerJson: tinyByteLevelJson(['h e', 'l l']) });
  await rejects(bpePreTokenizer(odd), FormatError, /unknown BPE pre-tokenizer \(chkhsh [0-9a-f]{64}\)/);
  await rejects(ggufVocabMetadata(odd), FormatError, /unknown BPE pre-tokenizer/);
});

test("Llama 3: tokens, types and merges equal the converter's ggml-vocab-llama-bpe.gguf (Meta-Llama-3-8B)", async () => {
  const md = await ggufVocabMetadata(llama3WithTemplate());
  const ref = await llamaCppVocabGguf('llama-bpe');
  assert.is(value(md, 'tokenizer.ggml.model'), 'gpt2');
  assert.is(value(md, 'tokenizer.ggml.pre'), 'llama-bpe');
  for (const k of ['tokens', 'token_type', 'merges']) assert.equal(differences(list(md, `tokenizer.ggml.${k}`), ref[k] as unknown[], k), [], k);
  assert.is(value(md, 'tokenizer.ggml.bos_token_id'), ref.bos_token_id);
  assert.is(value(md, 'tokenizer.ggml.eos_token_id'), ref.eos_token_id);
  // The template puts BOS first; its pair template has no separator (the converter's reading).
  assert.is(value(md, 'tokenizer.ggml.add_bos_token'), true);
  assert.is(value(md, 'tokenizer.ggml.add_sep_token'), false);
  assert.is(value(md, 'tokenizer.chat_template'), JSON.parse(lenmlFiles('llama3').tokenizerConfig).chat_template);
  // Written in the converter's order (_set_vocab_gpt2, then SpecialVocab.add_to_gguf).
  assert.equal([...md.keys()], [
    'tokenizer.ggml.model', 'tokenizer.ggml.pre', 'tokenizer.ggml.tokens', 'tokenizer.ggml.token_type', 'tokenizer.ggml.merges',
    'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.add_bos_token', 'tokenizer.ggml.add_sep_token', 'tokenizer.chat_template',
  ]);
  // Meta's first file: no template, so no add_* keys (llama.cpp then adds no BOS for smaug-bpe, as transformers).
  const old = await ggufVocabMetadata(lenml('llama3'));
  assert.is(value(old, 'tokenizer.ggml.pre'), 'smaug-bpe');
  assert.not.ok(old.has('tokenizer.ggml.add_bos_token'));
});

test("Qwen3: its 151646 first tokens and all merges equal ggml-vocab-qwen2.gguf's (Qwen1.5-7B); added tokens and config.json's ids", async () => {
  const md = await ggufVocabMetadata(qwen3());
  const ref = await llamaCppVocabGguf('qwen2');
  const tokens = list(md, 'tokenizer.ggml.tokens') as string[];
  const types = list(md, 'tokenizer.ggml.token_type') as number[];
  assert.equal(differences(tokens.slice(0, 151646), (ref.tokens as string[]).slice(0, 151646), 'tokens'), []);
  assert.equal(differences(types.slice(0, 151646), (ref.token_type as number[]).slice(0, 151646), 'types'), []);
  assert.equal(differences(list(md, 'tokenizer.ggml.merges'), ref.merges as string[], 'merges'), []);
  assert.is(value(md, 'tokenizer.ggml.pre'), 'qwen2');
  // Qwen3's own added tokens: special ones are control, <think> (special: false) user-defined;
  // ids up to config.json's vocab_size that no token has are "[PADn]", unused.
  assert.is(tokens.length, 151936);
  const at = (s: string) => tokens.indexOf(s);
  assert.equal([types[at('<|im_start|>')], types[at('<tool_call>')], types[at('<think>')]], [GGUF_TOKEN_TYPE.control, GGUF_TOKEN_TYPE.userDefined, GGUF_TOKEN_TYPE.userDefined]);
  assert.equal([tokens[151669], types[151669], tokens[151935]], ['[PAD151669]', GGUF_TOKEN_TYPE.unused, '[PAD151935]']);
  // EOS and PAD from tokenizer_config.json; BOS (which it leaves null) from config.json.
  assert.equal([value(md, 'tokenizer.ggml.eos_token_id'), value(md, 'tokenizer.ggml.padding_token_id'), value(md, 'tokenizer.ggml.bos_token_id')], [151645, 151643, 151643]);
  assert.is(value(md, 'tokenizer.ggml.add_bos_token'), false);
  assert.equal(md.get('tokenizer.ggml.bos_token_id'), { type: 'u32', value: 151643 });
});

test("Llama 2: tokens, types and scores equal ggml-vocab-llama-spm.gguf's (tokenizer.model) except one unused score", async () => {
  const md = await ggufVocabMetadata(await llama2());
  const ref = await llamaCppVocabGguf('llama-spm');
  assert.is(value(md, 'tokenizer.ggml.model'), 'llama');
  assert.is(value(md, 'tokenizer.ggml.pre'), 'default');
  assert.equal(differences(list(md, 'tokenizer.ggml.tokens'), ref.tokens as string[], 'tokens'), []);
  // Without tokenizer_config.json the types are tokenizer.model's: unknown, control, 256 bytes, normal.
  assert.equal(differences(list(md, 'tokenizer.ggml.token_type'), ref.token_type as number[], 'types'), []);
  // Scores: -(id - 259) and -1e9 for 15 whitespace runs, all recovered from the merge order;
  // only "▁" (29871), a single character no merge makes, keeps a score tokenizer.json cannot show.
  const scores = value(md, 'tokenizer.ggml.scores') as Float32Array;
  assert.instance(scores, Float32Array);
  assert.equal(differences(scores, ref.scores as number[], 'scores'), [29871]);
  assert.is((ref.scores as number[])[29871], LATE_PIECE_SCORE);
  // With Llama-2-7b-hf's tokenizer_config.json the converter's added_tokens_decoder pass makes
  // <unk>, <s>, </s> control tokens scored -1000 (as ggml-vocab-phi-3.gguf, written by a newer
  // converter from the same pieces, has them), and names the special ids.
  const withConfig = await ggufVocabMetadata(await llama2Configured(), { architecture: 'LlamaForCausalLM' });
  const phi3 = await llamaCppVocabGguf('phi-3');
  assert.equal(list(withConfig, 'tokenizer.ggml.scores').slice(0, 3), (phi3.scores as number[]).slice(0, 3));
  assert.equal(list(withConfig, 'tokenizer.ggml.token_type').slice(0, 3), [3, 3, 3]);
  assert.equal(list(withConfig, 'tokenizer.ggml.scores').slice(3), list(md, 'tokenizer.ggml.scores').slice(3));
  assert.equal(
    ['bos_token_id', 'eos_token_id', 'unknown_token_id', 'add_bos_token', 'add_eos_token'].map((k) => value(withConfig, `tokenizer.ggml.${k}`)),
    [ref.bos_token_id, ref.eos_token_id, ref.unknown_token_id, ref.add_bos_token, ref.add_eos_token],
  );
  // llama.cpp's default (prepend a space, as SentencePiece does) already matches the Prepend normalizer.
  assert.not.ok(withConfig.has('tokenizer.ggml.add_space_prefix'));
});

/** Every merge that first makes a normal piece, in tokenizer.json's order, must make a piece
 * scored no higher than the one before: llama.cpp merges by score, HF by merge rank. */
function assertScoresFollowMerges(tok: HfTokenizer, md: GgufMetadata, what: string): number {
  const model = tok.tokenizerJson.model as { vocab: Record<string, number>; merges: Array<string | string[]> };
  const scores = value(md, 'tokenizer.ggml.scores') as Float32Array;
  const types = value(md, 'tokenizer.ggml.token_type') as Int32Array;
  const seen = new Set<number>();
  let previous = Infinity, checked = 0;
  model.merges.forEach((m, rank) => {
    const id = model.vocab[typeof m === 'string' ? m.replace(' ', '') : m.join('')];
    if (id === undefined || seen.has(id) || types[id] !== GGUF_TOKEN_TYPE.normal) return;
    seen.add(id);
    if (!(scores[id] <= previous)) assert.unreachable(`${what}: merge ${rank} makes ${id} scored ${scores[id]} after a piece scored ${previous}`);
    previous = scores[id];
    checked++;
  });
  return checked;
}

test("SentencePiece scores follow HF's merge order (Llama 2, Mistral, Gemma 3)", async () => {
  const l2 = await llama2();
  assert.ok(assertScoresFollowMerges(l2, await ggufVocabMetadata(l2), 'Llama 2') > 28000);
  const mistral = lenml('llama2');
  const mm = await ggufVocabMetadata(mistral);
  assert.ok(assertScoresFollowMerges(mistral, mm, 'Mistral') > 28000);
  // Mistral's 14 whitespace runs are merged last by HF: -1e9, like Llama 2's.
  const ms = value(mm, 'tokenizer.ggml.scores') as Float32Array;
  const late = Array.from(ms.keys()).filter((i) => ms[i] === LATE_PIECE_SCORE);
  assert.equal(late, [259, 260, 273, 355, 359, 428, 558, 569, 756, 1417, 2287, 2600, 5390, 17422]);
  assert.ok(late.every((i) => /^▁+$/.test(mistral.idToToken(i)!)));
  const gemma = gemma3();
  const gm = await gemma3Metadata();
  assert.ok(assertScoresFollowMerges(gemma, gm, 'Gemma 3') > 230000);
  const gs = value(gm, 'tokenizer.ggml.scores') as Float32Array;
  // First normal piece 494 scores 0, the next -1; <unused6241> (an added token) -1000.
  assert.equal([gs[494], gs[495], gs[262143]], [0, -1, -1000]);
});

test('Gemma 3: the SentencePiece-style vocabulary the converter writes (types, sizes, ids, no space prefix)', async () => {
  const md = await gemma3Metadata();
  const tokens = list(md, 'tokenizer.ggml.tokens') as string[];
  const types = list(md, 'tokenizer.ggml.token_type') as number[];
  const scores = value(md, 'tokenizer.ggml.scores') as Float32Array;
  assert.is(tokens.length, 262208);
  const T = GGUF_TOKEN_TYPE;
  // pad/eos/bos/unk special; <mask> and <unusedN> look special; [multimodal], "\n", tabs and
  // HTML tags are user-defined added tokens, "▁▁" written with spaces; 256 byte pieces.
  assert.equal([0, 1, 2, 3, 4, 6, 105].map((i) => types[i]), [T.control, T.control, T.control, T.control, T.control, T.control, T.control]);
  assert.equal([5, 107, 138, 168, 255968].map((i) => types[i]), [T.userDefined, T.userDefined, T.userDefined, T.userDefined, T.userDefined]);
  assert.equal([tokens[138], tokens[107], tokens[255968]], ['  ', '\n', '\t']);
  assert.equal([scores[0], scores[138], scores[238]], [-1000, -1000, 0]);
  for (let i = 238; i < 494; i++) assert.is(types[i], T.byte, `byte ${i}`);
  assert.equal([tokens[238], tokens[493]], ['<0x00>', '<0xFF>']);
  assert.equal([tokens[262144], types[262144]], ['<image_soft_token>', T.control]);
  assert.equal([tokens[262145], types[262145], scores[262145]], ['[PAD262145]', T.unused, -10000]);
  assert.equal(
    ['bos_token_id', 'eos_token_id', 'unknown_token_id', 'padding_token_id', 'add_bos_token', 'add_eos_token', 'add_space_prefix'].map((k) => value(md, `tokenizer.ggml.${k}`)),
    [2, 106, 3, 0, true, false, false],
  );
  // Gemma3Model.set_vocab writes add_space_prefix last.
  assert.is([...md.keys()].at(-1), 'tokenizer.ggml.add_space_prefix');
  // Value types as gguf-py writes them: i32 types, f32 scores, u32 ids.
  const kinds = (key: string) => { const v = md.get(key)!; return v.type === 'array' ? `${v.type}<${v.itemType}>` : v.type; };
  assert.equal(['tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type', 'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.add_bos_token'].map(kinds),
    ['array<string>', 'array<f32>', 'array<i32>', 'u32', 'bool']);
});

test('add_space_prefix: the converter per family, corrected where llama.cpp would then differ from tokenizer.json', async () => {
  // A tokenizer.json that does not prepend "▁" (Mistral's without its Prepend normalizer, as
  // Gemma's) filed as a Llama model: the converter writes nothing, llama.cpp would prepend a
  // space; so false is written.
  const mistral = lenmlFiles('llama2');
  const noPrepend = JSON.parse(mistral.tokenizerJson);
  noPrepend.normalizer = noPrepend.normalizer.normalizers[1];
  const asLlama = await ggufVocabMetadata(new HfTokenizer({ ...mistral, tokenizerJson: JSON.stringify(noPrepend) }), { architecture: 'LlamaForCausalLM' });
  assert.is(value(asLlama, 'tokenizer.ggml.add_space_prefix'), false);
  // Mistral (Prepend normalizer) filed as Gemma 3: the converter's false is turned to true.
  const asGemma = await ggufVocabMetadata(lenml('llama2'), { architecture: 'Gemma3ForCausalLM' });
  assert.is(value(asGemma, 'tokenizer.ggml.add_space_prefix'), true);
  // tokenizer_config.json's add_prefix_space goes first for Llama models.
  const files = lenmlFiles('llama2');
  const tok = new HfTokenizer({ ...files, tokenizerConfig: JSON.stringify({ ...JSON.parse(files.tokenizerConfig), add_prefix_space: true }) });
  const md = await ggufVocabMetadata(tok, { architecture: 'MistralForCausalLM' });
  assert.is([...md.keys()][0], 'tokenizer.ggml.add_space_prefix');
});

test("SpecialVocab details: eos moved to eot by a template ending in another token, Roberta flags, named chat templates, normalizer flags", async () => {
  const files = lenmlFiles('llama2');
  const json = JSON.parse(files.tokenizerJson);
  const config = JSON.parse(files.tokenizerConfig);
  const { add_bos_token: _b, add_eos_token: _e, ...noFlags } = config;
  // A template "<s> $A <unk>": EOS becomes <unk>, the configured </s> becomes EOT.
  json.post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<unk>', type_id: 0 } }],
    pair: [],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] }, '<unk>': { id: '<unk>', ids: [0], tokens: ['<unk>'] } },
  };
  json.normalizer = { type: 'Sequence', normalizers: [json.normalizer, { type: 'Lowercase' }] };
  const tok = new HfTokenizer({ tokenizerJson: JSON.stringify(json), tokenizerConfig: JSON.stringify({ ...noFlags, tokenizer_class: 'PreTrainedTokenizerFast', chat_template: [{ name: 'default', template: 'D' }, { name: 'tool use', template: 'T' }] }) });
  assert.is(Array.from(tok.encode('a')).at(-1), 0);
  const md = await ggufVocabMetadata(tok);
  assert.equal([value(md, 'tokenizer.ggml.eos_token_id'), value(md, 'tokenizer.ggml.eot_token_id')], [0, 2]);
  assert.equal([value(md, 'tokenizer.ggml.add_bos_token'), value(md, 'tokenizer.ggml.add_eos_token')], [true, true]);
  assert.equal([value(md, 'tokenizer.chat_template'), value(md, 'tokenizer.chat_template.tool_use'), list(md, 'tokenizer.chat_templates')], ['D', 'T', ['tool_use']]);
  assert.is(value(md, 'tokenizer.ggml.normalizer.lowercase'), true);
  // RobertaProcessing: add bos, eos and sep.
  json.post_processor = { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 1], trim_offsets: true, add_prefix_space: false };
  const roberta = await ggufVocabMetadata(new HfTokenizer({ tokenizerJson: JSON.stringify(json), tokenizerConfig: JSON.stringify({ ...noFlags, tokenizer_class: 'PreTrainedTokenizerFast' }) }));
  assert.equal(['add_bos_token', 'add_eos_token', 'add_sep_token'].map((k) => value(roberta, `tokenizer.ggml.${k}`)), [true, true, true]);
  // chat_template.jinja stands in for a missing chat_template.
  const jinja = await ggufVocabMetadata(lenml('llama2'), { chatTemplateJinja: '{{ messages }}' });
  assert.is(value(jinja, 'tokenizer.chat_template'), '{{ messages }}');
});

test('looksSpecial is the converter rule; unsupported models refused; byte-level ids must fit vocab_size', async () => {
  assert.ok(['<pad>', '<mask>', '<|eot_id|>', '<｜end▁of▁sentence｜>', '<unused12>'].every(looksSpecial));
  assert.not.ok(['<s>', '<think>', '[multimodal]', '<table>'].some(looksSpecial));
  const wordPiece = JSON.stringify({ normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: 'WordPiece', vocab: { '[UNK]': 0, a: 1 }, unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100 } });
  await rejects(ggufVocabMetadata(new HfTokenizer({ tokenizerJson: wordPiece })), OptionError, /model type "WordPiece"/);
  // A byte-level model whose config.json is smaller than its added tokens: the converter asserts.
  const tok = new HfTokenizer({ tokenizerJson: tinyByteLevelJson(['a b'], [{ content: '<|end|>', special: true }]), config: JSON.stringify({ vocab_size: 257 }) });
  assert.is(tok.vocabSize, 257);
  await rejects(ggufVocabMetadata(tok), FormatError, /added token "<\|end\|>" has id 257, not below config\.json's vocab_size 257/);
});

/**
 * A vocabulary-only GGUF v3 file: the header, `md`, no tensors (gguf.h's layout, written
 * directly). A stand-in until this branch meets the GGUF container's writer.
 */
function vocabOnlyGguf(md: GgufMetadata): Uint8Array {
  let buf = new Uint8Array(1 << 20);
  let view = new DataView(buf.buffer);
  let at = 0;
  const room = (n: number) => {
    if (at + n <= buf.length) return;
    const bigger = new Uint8Array(Math.max(buf.length * 2, at + n));
    bigger.set(buf);
    buf = bigger;
    view = new DataView(buf.buffer);
  };
  const enc = new TextEncoder();
  const u32 = (v: number) => { room(4); view.setUint32(at, v, true); at += 4; };
  const u64 = (v: number) => { room(8); view.setBigUint64(at, BigInt(v), true); at += 8; };
  const text = (s: string) => {
    const b = enc.encode(s);
    u64(b.length);
    room(b.length);
    buf.set(b, at);
    at += b.length;
  };
  const scalar = (type: string, v: unknown) => {
    if (type === 'string') text(v as string);
    else if (type === 'u32') u32(v as number);
    else if (type === 'i32') { room(4); view.setInt32(at, v as number, true); at += 4; }
    else if (type === 'f32') { room(4); view.setFloat32(at, v as number, true); at += 4; }
    else if (type === 'bool') { room(1); buf[at++] = v ? 1 : 0; }
    else throw new Error(`stand-in writer: no ${type}`);
  };
  for (const c of enc.encode('GGUF')) { room(1); buf[at++] = c; }
  u32(3);
  u64(0);
  u64(md.size);
  for (const [key, v] of md as Map<string, GgufValue>) {
    text(key);
    u32(GGUF_VALUE_TYPE[v.type]);
    if (v.type !== 'array') scalar(v.type, v.value);
    else {
      u32(GGUF_VALUE_TYPE[v.itemType]);
      u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) scalar(v.itemType, (v.value as ArrayLike<unknown>)[i]);
    }
  }
  const end = at + ((32 - (at % 32)) % 32);
  room(end - at);
  return buf.slice(0, end);
}

// One llama.cpp per process (shared with other test files through globalThis).
const LLAMA_KEY = Symbol.for('cdquant.test.llamaCpp');
const llamaCpp = () => ((globalThis as unknown as Record<symbol, Promise<Llama>>)[LLAMA_KEY] ??= getLlama({
  gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.fatal, maxThreads: 1,
}));

test("llama.cpp's own tokenizer, reading our metadata, gives transformers' ids (and adds BOS when transformers does)", async () => {
  const llama = await llamaCpp();
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-vocab-'));
  const stories = readDataText('tinystories-valid-a.txt').split('\n\n').slice(0, 12);
  const extra = [
    'Hello world', "Hello, y'all! 1234567 ünïcödé", '   leading', 'trailing   ', 'a\n\n\nb\t\tc', '           grabbed',
    '<s>\n', ' </s> test </s> ', '<|im_start|>user\nHi<|im_end|>', '<start_of_turn>user\nHi<end_of_turn>\n', 'x<think>y</think>', '生活的真谛是', '🦙Ꙋ',
  ];
  // Texts where llama.cpp itself departs from transformers, whatever the metadata: the
  // converter files Meta's first Llama 3 file under smaug-bpe, which does not skip merges for
  // whole-word pieces (convert_hf_to_gguf_update.py notes "Cửa Việt" fails); llama.cpp makes
  // any token spelled "</s>" a control token, which Qwen's vocabulary has as plain text.
  const known: Record<string, string[]> = { 'llama3 (first file)': ['Cửa Việt'], qwen3: [' </s> test </s> '] };
  const cases: Array<[string, HfTokenizer, string]> = [
    ['llama3', llama3WithTemplate(), 'llama-bpe'],
    ['llama3 (first file)', lenml('llama3'), 'llama-bpe'],
    ['qwen3', qwen3(), 'qwen2'],
    ['llama2', await llama2Configured(), 'llama-spm'],
    ['mistral', lenml('llama2'), 'llama-spm'],
    ['gemma3', gemma3(), 'llama-spm'],
  ];
  try {
    for (const [name, tok, tests] of cases) {
      const md = tok === gemma3() ? await gemma3Metadata() : await ggufVocabMetadata(tok);
      const rows = (value(md, 'tokenizer.ggml.tokens') as string[]).length;
      // The least llama.cpp reads for a vocabulary-only load: an architecture and its sizes.
      const u32 = (v: number): GgufValue => ({ type: 'u32', value: v });
      const file: GgufMetadata = new Map<string, GgufValue>([
        ['general.architecture', { type: 'string', value: 'llama' }],
        ['llama.block_count', u32(1)], ['llama.context_length', u32(512)], ['llama.embedding_length', u32(64)], ['llama.feed_forward_length', u32(128)],
        ['llama.attention.head_count', u32(1)], ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }], ['llama.vocab_size', u32(rows)],
        ...md,
      ]);
      const path = join(dir, `${name.replace(/\W+/g, '-')}.gguf`);
      writeFileSync(path, vocabOnlyGguf(file));
      const model = await llama.loadModel({ modelPath: path, vocabOnly: true });
      try {
        const differing: string[] = [];
        for (const t of [...llamaCppVocabTests(tests).map((c) => c.text), ...extra, ...stories]) {
          // transformers always splits added-token strings out of the text: llama.cpp's parse_special.
          const ours = Array.from(tok.encode(t, { bos: false, eos: false }));
          if (ours.join() !== model.tokenize(t, true).join()) differing.push(t);
        }
        assert.equal(differing, known[name] ?? [], name);
        // llama.cpp puts BOS first exactly when transformers puts it first.
        assert.is(model.tokens.shouldPrependBosToken, tok.specialPrefix.length > 0, `${name}: adds BOS`);
        if (tok.specialPrefix.length > 0) assert.equal([model.tokens.bos], tok.specialPrefix, `${name}: BOS id`);
        assert.is(model.tokens.eos, tok.eosId, `${name}: EOS id`);
      } finally {
        await model.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
