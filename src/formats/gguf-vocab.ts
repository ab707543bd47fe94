// The `tokenizer.*` metadata of a GGUF file, derived from a Hugging Face tokenizer the way
// llama.cpp's convert_hf_to_gguf.py writes it (conversion/base.py: get_vocab_base,
// get_vocab_base_pre, _set_vocab_gpt2, _create_vocab_sentencepiece; gguf-py/gguf/vocab.py:
// SpecialVocab; the Llama and Gemma 3 model classes), so llama.cpp's tokenizer reading it
// gives Hugging Face's token ids.
//
// Two vocabulary kinds:
// - byte-level BPE (Llama 3, Qwen2/2.5/3): "gpt2" with tokens, types and merges, and a
//   pre-tokenizer name found by hashing the ids of a fixed check text;
// - SentencePiece BPE with byte fallback (Llama 2, Mistral, Gemma 3): "llama" with tokens,
//   scores and types. The converter reads those from tokenizer.model; here they are recovered
//   from tokenizer.json (see sentencePieceScores for the one field that is inferred).
import { FormatError, OptionError } from '../core/errors.js';
import { sha256Hex } from './digest.js';
import { GGUF_TOKEN_TYPE, type GgufMetadata, type GgufValue } from './gguf-types.js';
import { type HfTokenizer, type JsonObject, isJsonObject, tokenContent, configVocabSize } from './hf-tokenizer.js';

/** The text the converter tokenizes to fingerprint a BPE pre-tokenizer (get_vocab_base_pre's chktxt). */
export const PRE_TOKENIZER_CHECK_TEXT =
  '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL';

/**
 * Entries of the converter's chkhsh -> tokenizer.ggml.pre table for the model families this
 * package converts (the test checks each against conversion/base.py). A hash not listed here is
 * refused rather than guessed: llama.cpp splits text by the pre-tokenizer name, and a wrong one
 * silently gives other token ids.
 */
export const KNOWN_PRE_TOKENIZERS: ReadonlyArray<{ readonly chkhsh: string; readonly pre: string; readonly ref: string }> = [
  { chkhsh: '0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5', pre: 'llama-bpe', ref: 'meta-llama/Meta-Llama-3-8B' },
  // Llama 3's first tokenizer.json (no TemplateProcessing, so no BOS in the ids): the
  // converter files it under Smaug, which kept that file.
  { chkhsh: 'c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d', pre: 'smaug-bpe', ref: 'abacusai/Smaug-Llama-3-70B-Instruct' },
  { chkhsh: 'e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea', pre: 'qwen2', ref: 'Qwen/Qwen1.5-7B' },
  { chkhsh: 'd4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c', pre: 'qwen2', ref: 'Qwen/Qwen3-Embedding-0.6B' },
  { chkhsh: 'b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5', pre: 'deepseek-r1-qwen', ref: 'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B' },
  { chkhsh: '855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249', pre: 'smollm', ref: 'HuggingFaceTB/SmolLM-135M' },
  { chkhsh: '63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e', pre: 'tekken', ref: 'mistralai/Mistral-Nemo-Base-2407' },
];

/** Score given to SentencePiece pieces that HF's merges order after every other merge: Llama 2's
 * tokenizer.model scores its 15 whitespace runs ("▁▁", "▁▁▁▁", ...) so (llama.cpp's
 * ggml-vocab-llama-spm.gguf). */
export const LATE_PIECE_SCORE = -1e9;

/** Options for ggufVocabMetadata. */
export interface GgufVocabOptions {
  /** config.json's architectures[0] by default; decides the converter's per-family keys. */
  architecture?: string;
  /** chat_template.jinja, used when tokenizer_config.json has no chat_template. */
  chatTemplateJinja?: string;
}

/** The converter's fingerprint of a tokenizer: SHA-256 of Python's str() of the ids that
 * transformers' `tokenizer.encode(chktxt)` gives (special tokens included). */
export async function preTokenizerHash(tok: HfTokenizer): Promise<string> {
  const ids = Array.from(tok.encode(PRE_TOKENIZER_CHECK_TEXT));
  return sha256Hex(new TextEncoder().encode(`[${ids.join(', ')}]`));
}

/** tokenizer.ggml.pre of a byte-level BPE tokenizer; FormatError for a fingerprint the table lacks. */
export async function bpePreTokenizer(tok: HfTokenizer): Promise<string> {
  const chkhsh = await preTokenizerHash(tok);
  const known = KNOWN_PRE_TOKENIZERS.find((e) => e.chkhsh === chkhsh);
  if (!known) {
    throw new FormatError(
      `tokenizer.json: unknown BPE pre-tokenizer (chkhsh ${chkhsh}); llama.cpp's convert_hf_to_gguf.py does not recognize it either unless its table lists this hash, ` +
        `and a guessed tokenizer.ggml.pre would give other token ids`,
    );
  }
  return known.pre;
}

/** The converter's does_token_look_special: added tokens some models forget to mark special. */
export function looksSpecial(token: string): boolean {
  return (
    token === '<pad>' || token === '<mask>' || token === '<2mass>' || token === '[@BOS@]' ||
    (token.startsWith('<|') && token.endsWith('|>')) ||
    (token.startsWith('<｜') && token.endsWith('｜>')) ||
    (token.startsWith('<unused') && token.endsWith('>'))
  );
}

const SPIECE_SPACE = '\u2581';
const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;

const str = (value: string): GgufValue => ({ type: 'string', value });
const u32 = (value: number): GgufValue => ({ type: 'u32', value });
const bool = (value: boolean): GgufValue => ({ type: 'bool', value });

interface AddedInfo { content: string; special: boolean; normalized: boolean }

/** tokenizer_config.json's added_tokens_decoder ({"id": {content, special, ...}}), checked. */
function addedTokensDecoder(tc: JsonObject | null): Map<number, AddedInfo> | null {
  if (!tc || tc.added_tokens_decoder === undefined) return null;
  const dec = tc.added_tokens_decoder;
  if (!isJsonObject(dec)) throw new FormatError('tokenizer_config.json: added_tokens_decoder is not an object');
  const out = new Map<number, AddedInfo>();
  for (const [key, value] of Object.entries(dec)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(id)) throw new FormatError(`tokenizer_config.json: added_tokens_decoder key ${JSON.stringify(key)} is not a token id`);
    if (!isJsonObject(value) || typeof value.content !== 'string') throw new FormatError(`tokenizer_config.json: added_tokens_decoder["${key}"] has no string "content"`);
    out.set(id, { content: value.content, special: value.special === true, normalized: value.normalized === true });
  }
  return out;
}

/** Architecture-specific keys the converter's model classes add around the vocabulary. */
function family(architecture: string | undefined): 'llama' | 'gemma3' | 'other' {
  if (!architecture) return 'other';
  if (/^(LLaMAForCausalLM|LlamaForCausalLM|MistralForCausalLM|MixtralForCausalLM|LlamaModel)$/.test(architecture)) return 'llama';
  if (/^Gemma3(ForCausalLM|ForConditionalGeneration|TextModel)$/.test(architecture)) return 'gemma3';
  return 'other';
}

/**
 * The whole `tokenizer.*` metadata llama.cpp needs for `tok`, in the order the converter
 * writes it. Byte-level BPE models get "gpt2" (needs a known pre-tokenizer fingerprint), BPE
 * with byte fallback gets "llama" (SentencePiece-style); other models are refused.
 */
export async function ggufVocabMetadata(tok: HfTokenizer, options: GgufVocabOptions = {}): Promise<GgufMetadata> {
  const model = tok.tokenizerJson.model as JsonObject;
  const architectures = tok.modelConfig?.architectures;
  const architecture = options.architecture ?? (Array.isArray(architectures) && typeof architectures[0] === 'string' ? architectures[0] : undefined);
  const fam = family(architecture);
  const md: GgufMetadata = new Map();
  // LlamaModel.set_vocab writes tokenizer_config.json's add_prefix_space before the vocabulary.
  const prefixSpace = tok.tokenizerConfig?.add_prefix_space;
  if (fam === 'llama' && typeof prefixSpace === 'boolean') md.set('tokenizer.ggml.add_space_prefix', bool(prefixSpace));

  if (model.type !== 'BPE') throw new OptionError(`tokenizer.json: no GGUF vocabulary for model type ${JSON.stringify(model.type)} (BPE only)`);
  if (model.byte_fallback === true) {
    const { tokens, scores, types } = sentencePieceVocab(tok);
    md.set('tokenizer.ggml.model', str('llama'));
    md.set('tokenizer.ggml.pre', str('default'));
    md.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens });
    md.set('tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: scores });
    md.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types });
    specialVocab(tok, md, tokens.length, false, options);
    if (fam === 'gemma3') md.set('tokenizer.ggml.add_space_prefix', bool(false));
    // Deviation for correctness: llama.cpp prepends a space to SentencePiece text unless told
    // otherwise; when the converter's keys leave that disagreeing with tokenizer.json, say
    // what tokenizer.json does.
    const written = md.get('tokenizer.ggml.add_space_prefix');
    const llamaCppPrefixes = written ? (written.value as boolean) : true;
    const hfPrefixes = prependsSpace(tok.tokenizerJson);
    if (llamaCppPrefixes !== hfPrefixes) md.set('tokenizer.ggml.add_space_prefix', bool(hfPrefixes));
  } else {
    const { tokens, types } = byteLevelVocab(tok);
    const pre = await bpePreTokenizer(tok);
    md.set('tokenizer.ggml.model', str('gpt2'));
    md.set('tokenizer.ggml.pre', str(pre));
    md.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens });
    md.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types });
    specialVocab(tok, md, null, true, options);
  }
  return md;
}

/** Whether tokenizer.json puts "▁" before the text (Prepend normalizer, or a Metaspace
 * pre-tokenizer that prepends), as SentencePiece's add_dummy_prefix does. */
function prependsSpace(json: JsonObject): boolean {
  const walk = (node: unknown, list: 'normalizers' | 'pretokenizers'): boolean => {
    if (!isJsonObject(node)) return false;
    if (node.type === 'Sequence' && Array.isArray(node[list])) return (node[list] as unknown[]).some((n) => walk(n, list));
    if (node.type === 'Prepend') return node.prepend === SPIECE_SPACE;
    if (node.type === 'Metaspace') return node.prepend_scheme === 'always' || node.prepend_scheme === 'first' || (node.prepend_scheme === undefined && node.add_prefix_space === true);
    return false;
  };
  return walk(json.normalizer, 'normalizers') || walk(json.pre_tokenizer, 'pretokenizers');
}

/** The converter's model vocab_size: config.json's, else the tokenizer's own size. */
function vocabRows(tok: HfTokenizer, fallback: number): number {
  return configVocabSize(tok.modelConfig) ?? fallback;
}

/** get_vocab_base: every id up to vocab_size, "[PADn]" for ids no token has. */
function byteLevelVocab(tok: HfTokenizer): { tokens: string[]; types: Int32Array } {
  const n = vocabRows(tok, tok.vocabSize);
  const beyond = tok.addedTokens.find((t) => t.id >= n);
  // get_vocab_base asserts every id is below vocab_size.
  if (beyond) throw new FormatError(`tokenizer.json: added token ${JSON.stringify(beyond.content)} has id ${beyond.id}, not below config.json's vocab_size ${n}`);
  const added = new Map<number, AddedInfo>(tok.addedTokens.map((t) => [t.id, t]));
  for (const [id, info] of addedTokensDecoder(tok.tokenizerConfig) ?? []) added.set(id, info);
  const addedContents = new Set(Array.from(added.values(), (t) => t.content));
  const tokens: string[] = new Array(n);
  const types = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let token = tok.idToToken(i);
    if (token === null) {
      tokens[i] = `[PAD${i}]`;
      types[i] = GGUF_TOKEN_TYPE.unused;
      continue;
    }
    if (addedContents.has(token)) {
      const info = added.get(i);
      if (!info) throw new FormatError(`tokenizer.json: token ${i} ${JSON.stringify(token)} repeats an added token's text under another id`);
      // llama.cpp takes control / user-defined tokens as already normalized; the converter
      // normalizes the ones the tokenizer does not by a round trip through it.
      if (!info.normalized) token = tok.decode(tok.encode(token, { bos: false, eos: false }));
      if (info.special || looksSpecial(token)) types[i] = GGUF_TOKEN_TYPE.control;
      else {
        token = token.replaceAll(SPIECE_SPACE, ' ');
        types[i] = GGUF_TOKEN_TYPE.userDefined;
      }
    } else {
      types[i] = GGUF_TOKEN_TYPE.normal;
    }
    tokens[i] = token;
  }
  return { tokens, types };
}

/** _create_vocab_sentencepiece, with tokenizer.model's pieces, types and scores recovered from
 * tokenizer.json. */
function sentencePieceVocab(tok: HfTokenizer): { tokens: string[]; scores: Float32Array; types: Int32Array } {
  const model = tok.tokenizerJson.model as JsonObject;
  const vocab = model.vocab as Record<string, number>;
  const pieceCount = Object.keys(vocab).length;
  const n = vocabRows(tok, pieceCount);
  const tokens: string[] = Array.from({ length: n }, (_, i) => `[PAD${i}]`);
  const scores = new Float32Array(n).fill(-10000);
  const types = new Int32Array(n).fill(GGUF_TOKEN_TYPE.unused);
  // tokenizer.json's added tokens inside the piece range are tokenizer.model's control
  // (special) and user-defined pieces; SentencePiece scores those, bytes and unk 0.
  const addedIn = new Map(tok.addedTokens.map((t) => [t.id, t]));
  const unk = typeof model.unk_token === 'string' ? vocab[model.unk_token] : undefined;
  const normal: number[] = [];
  for (const [piece, id] of Object.entries(vocab)) {
    if (id >= n) throw new FormatError(`tokenizer.json: piece ${id} is beyond config.json's vocab_size ${n}`);
    tokens[id] = piece;
    scores[id] = 0;
    const added = addedIn.get(id);
    if (id === unk) types[id] = GGUF_TOKEN_TYPE.unknown;
    else if (added) types[id] = added.special ? GGUF_TOKEN_TYPE.control : GGUF_TOKEN_TYPE.userDefined;
    else if (BYTE_PIECE.test(piece)) types[id] = GGUF_TOKEN_TYPE.byte;
    else {
      types[id] = GGUF_TOKEN_TYPE.normal;
      normal.push(id);
    }
  }
  normal.sort((a, b) => a - b);
  for (const [id, score] of sentencePieceScores(tok, vocab, normal)) scores[id] = score;
  // The converter then applies tokenizer_config.json's added_tokens_decoder.
  for (const [id, info] of addedTokensDecoder(tok.tokenizerConfig) ?? []) {
    if (id >= n) continue;
    let token = info.content;
    if (info.special || looksSpecial(token)) types[id] = GGUF_TOKEN_TYPE.control;
    else {
      token = token.replaceAll(SPIECE_SPACE, ' ');
      types[id] = GGUF_TOKEN_TYPE.userDefined;
    }
    scores[id] = -1000;
    tokens[id] = token;
  }
  return { tokens, scores, types };
}

/**
 * SentencePiece scores of the normal pieces, which tokenizer.json does not keep. What it keeps
 * is their order: HF's converter sorts merges by the score of the piece they make, highest
 * first (ties in id order), and llama.cpp's SentencePiece tokenizer merges the highest-scoring
 * piece first, so scores in that order tokenize alike. For the values: a BPE-trained
 * tokenizer.model scores its n-th normal piece -n (Llama 2: -(id - 259)); pieces whose merges
 * HF puts after those of higher ids must score below all of them, which Llama 2's file does with
 * -1e9 (its whitespace runs; Mistral's tokenizer.json shows 14 such runs, given the same score
 * here, unverified against its tokenizer.model). When those two rules do not reproduce
 * HF's merge order, the scores are minus the position in that order instead. Not derivable: the
 * score of a piece no merge makes (Llama 2 gives "▁" -1e9), which no tokenizer ever uses.
 */
function sentencePieceScores(tok: HfTokenizer, vocab: Record<string, number>, normal: number[]): Map<number, number> {
  const merges = (tok.tokenizerJson.model as JsonObject).merges as Array<string | [string, string]>;
  const firstMerge = new Map<number, number>();
  merges.forEach((m, rank) => {
    const piece = typeof m === 'string' ? m.replace(' ', '') : m[0] + m[1];
    const id = vocab[piece];
    if (id !== undefined && !firstMerge.has(id)) firstMerge.set(id, rank);
  });
  // HF's merge order over the pieces merges make. The others (single characters, and pieces no
  // two pieces concatenate to) are never a merge's result in either tokenizer: their scores
  // only need to be SentencePiece's.
  const merged = normal.filter((id) => firstMerge.has(id)).sort((a, b) => firstMerge.get(a)! - firstMerge.get(b)!);
  const scores = new Map<number, number>();
  if (normal.length === 0) return scores;
  const base = normal[0];
  for (const id of normal) scores.set(id, base - id);
  let highest = -1;
  for (const id of merged) {
    if (id < highest) scores.set(id, LATE_PIECE_SCORE);
    else highest = id;
  }
  const keepsOrder = merged.every((id, k) => k === 0 || scores.get(id)! <= scores.get(merged[k - 1])!);
  if (!keepsOrder) {
    merged.forEach((id, k) => scores.set(id, -k));
    normal.filter((id) => !firstMerge.has(id)).forEach((id, k) => scores.set(id, -(merged.length + k)));
  }
  return scores;
}

/** gguf-py's SpecialVocab: merges, special token ids, add_*_token flags, chat template,
 * normalizer flags, reading tokenizer.json, tokenizer_config.json and config.json. */
function specialVocab(tok: HfTokenizer, md: GgufMetadata, nVocab: number | null, loadMerges: boolean, options: GgufVocabOptions): void {
  const json = tok.tokenizerJson;
  const types = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'];
  const ids = new Map<string, number>();
  const add = new Map<string, boolean>();
  const setId = (typ: string, id: unknown) => {
    if (!Number.isSafeInteger(id)) return;
    if ((id as number) < 0) throw new FormatError(`invalid id ${id} for the ${typ} token`);
    if ((nVocab === null || (id as number) < nVocab) && !ids.has(typ)) ids.set(typ, id as number);
  };

  if (loadMerges) {
    const merges = (json.model as JsonObject).merges as Array<string | [string, string]>;
    // Pairs (transformers >= 4.45) are joined with a space; a space inside a part becomes
    // U+0120, as in the byte-level alphabet.
    const asText = merges.map((m) => (typeof m === 'string' ? m : m.map((part) => part.replaceAll(' ', '\u0120')).join(' ')));
    if (asText.length > 0) md.set('tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: asText });
  }

  // Special token names as tokenizer_config.json gives them; the post-processor may fill gaps.
  // (An empty tokenizer_config.json counts as none, as in Python.)
  const config = tok.tokenizerConfig && Object.keys(tok.tokenizerConfig).length > 0 ? tok.tokenizerConfig : null;
  const tc: Record<string, string | null> | null = config ? {} : null;
  if (tc) for (const typ of [...types, 'eot', 'eom']) tc[typ] = tokenContent(config![`${typ}_token`]);
  let bos = tc?.bos ?? null, cls = tc?.cls ?? null, eos = tc?.eos ?? null, sep = tc?.sep ?? null;
  if (!bos && cls && tc) tc.bos = bos = cls;
  if (!eos && sep && tc) tc.eos = eos = sep;
  const pp = json.post_processor;
  const processors = isJsonObject(pp) ? (Array.isArray(pp.processors) ? pp.processors : [pp]) : [];
  const specialId = (piece: unknown): string | null => (isJsonObject(piece) && isJsonObject(piece.SpecialToken) && typeof piece.SpecialToken.id === 'string' ? piece.SpecialToken.id : null);
  const sequenceId = (piece: unknown): string | null => (isJsonObject(piece) && isJsonObject(piece.Sequence) && typeof piece.Sequence.id === 'string' ? piece.Sequence.id : null);
  for (const p of processors) {
    if (!isJsonObject(p)) continue;
    if (p.type === 'RobertaProcessing') {
      add.set('bos', true).set('eos', true).set('sep', true);
      if (!cls && tc) tc.cls = cls = (Array.isArray(p.cls) && typeof p.cls[0] === 'string' ? p.cls[0] : bos);
      if (!sep && tc) tc.sep = sep = (Array.isArray(p.sep) && typeof p.sep[0] === 'string' ? p.sep[0] : eos);
      continue;
    }
    if (p.type !== 'TemplateProcessing') continue;
    // The converter's own "crude" reading of templates, reproduced: a leading special token
    // means add_bos, a trailing one add_eos, one between A and B in the pair template add_sep.
    const single = Array.isArray(p.single) ? p.single : [];
    let pair: unknown[] = Array.isArray(p.pair) ? p.pair : [];
    let first: string | null = null, last: string | null = null;
    if (single.length > 1) {
      first = specialId(single[0]);
      if (first) {
        if (!tc) bos = first;
        else if (first !== bos && first !== cls) {
          if (!bos) tc.bos = bos = first;
          if (!cls) tc.cls = cls = first;
        }
        add.set('bos', first === bos || first === cls);
      }
      last = specialId(single[single.length - 1]);
      if (last) {
        if (!tc) eos = last;
        else if (last !== eos) {
          // A template ending in another token than EOS: the old EOS becomes EOT (or EOM).
          if (!types.includes('eot')) { types.push('eot'); tc.eot = eos; }
          else if (!types.includes('eom')) { types.push('eom'); tc.eom = eos; }
          tc.eos = eos = last;
        }
        add.set('eos', last === eos);
      }
    }
    if (pair.length > 0) {
      const start = first && specialId(pair[0]) === first ? 1 : 0;
      const stop = last && specialId(pair[pair.length - 1]) === last ? pair.length - 1 : pair.length;
      pair = pair.slice(start, stop);
      if (pair.length > 0 && sequenceId(pair[0]) === 'A' && sequenceId(pair[pair.length - 1]) === 'B') {
        const middle = pair.slice(1, -1);
        if (middle.length > 0) {
          let addSep = false;
          const entry = specialId(middle[0]);
          if (entry && (entry === sep || entry === eos) && !last) addSep = true;
          if (middle.length === 2) {
            const second = specialId(middle[1]);
            if (second && (second === sep || second === eos)) addSep = true;
          }
          add.set('sep', addSep);
          if (addSep && !sep && tc) tc.sep = eos;
        }
      }
    }
  }

  let template: unknown = null;
  if (config) {
    // chat_template.jinja only stands in when tokenizer_config.json has no chat_template key.
    template = 'chat_template' in config ? config.chat_template : options.chatTemplateJinja;
    const added = (json.added_tokens as Array<{ id: unknown; content: unknown }> | undefined) ?? [];
    for (const typ of types) {
      const flag = config[`add_${typ}_token`];
      if (typeof flag === 'boolean') add.set(typ, flag);
      const content = tc![typ];
      if (content === null || content === undefined) continue;
      // Only added tokens count, first match (as the converter looks them up).
      setId(typ, added.find((t) => t.content === content)?.id);
    }
  }
  // config.json's *_token_id (or text_config's) fill what is still unset.
  const cfg = tok.modelConfig;
  if (cfg) {
    const text = isJsonObject(cfg.text_config) ? cfg.text_config : null;
    for (const typ of types) setId(typ, cfg[`${typ}_token_id`] ?? text?.[`${typ}_token_id`]);
  }

  const idKey: Record<string, string> = {
    bos: 'bos_token_id', eos: 'eos_token_id', unk: 'unknown_token_id', sep: 'seperator_token_id',
    pad: 'padding_token_id', mask: 'mask_token_id', eot: 'eot_token_id', eom: 'eom_token_id',
  };
  for (const [typ, id] of ids) if (idKey[typ]) md.set(`tokenizer.ggml.${idKey[typ]}`, u32(id));
  for (const [typ, value] of add) if (typ === 'bos' || typ === 'eos' || typ === 'sep') md.set(`tokenizer.ggml.add_${typ}_token`, bool(value));
  chatTemplate(template, md);
  normalizerFlags(json.normalizer, md);
}

/** tokenizer.chat_template (a list of named templates: the default one plus one key each). */
function chatTemplate(template: unknown, md: GgufMetadata): void {
  if (template === undefined || template === null) return;
  if (typeof template === 'string') {
    md.set('tokenizer.chat_template', str(template));
    return;
  }
  if (!Array.isArray(template)) throw new FormatError('tokenizer_config.json: chat_template is neither a string nor a list of {name, template}');
  let fallback: string | null = null;
  const names: string[] = [];
  for (const choice of template) {
    if (!isJsonObject(choice)) continue;
    const name = String(choice.name ?? '').replace(/[^A-Za-z0-9]/g, '_');
    if (!name || typeof choice.template !== 'string') continue;
    if (name === 'default') fallback = choice.template;
    else {
      if (!names.includes(name)) names.push(name);
      md.set(`tokenizer.chat_template.${name}`, str(choice.template));
    }
  }
  if (names.length > 0) md.set('tokenizer.chat_templates', { type: 'array', itemType: 'string', value: names });
  if (fallback !== null) md.set('tokenizer.chat_template', str(fallback));
}

/** Lowercase / StripAccents / BertNormalizer flags in tokenizer.json's normalizer. */
function normalizerFlags(normalizer: unknown, md: GgufMetadata): void {
  let lowercase: boolean | null = null, stripAccents: boolean | null = null;
  const walk = (n: unknown) => {
    if (!isJsonObject(n)) return;
    if (n.type === 'Lowercase') lowercase = true;
    else if (n.type === 'StripAccents') stripAccents = true;
    else if (n.type === 'BertNormalizer') {
      if (typeof n.lowercase === 'boolean') lowercase = n.lowercase;
      if (typeof n.strip_accents === 'boolean') stripAccents = n.strip_accents;
    } else if (n.type === 'Sequence' && Array.isArray(n.normalizers)) n.normalizers.forEach(walk);
  };
  walk(normalizer);
  if (lowercase !== null) md.set('tokenizer.ggml.normalizer.lowercase', bool(lowercase));
  if (stripAccents !== null) md.set('tokenizer.ggml.normalizer.strip_accents', bool(stripAccents));
}
