// The tokenizer a GGUF file carries in its tokenizer.ggml.* metadata, so a GGUF model needs
// no other tokenizer file: text is tokenized as llama.cpp tokenizes it (src/llama-vocab.cpp,
// llama_vocab::impl::tokenize with parse_special off, as llama.cpp's tools call it for plain
// text): user-defined tokens are matched in the text first, control tokens are not.
//
// Two vocabulary kinds, the two this package writes:
// - "llama" (SentencePiece with byte fallback: llama2.c, Llama 2, Mistral, Gemma 3): llama.cpp's
//   SPM tokenizer, reproduced here (llm_tokenizer_spm_session);
// - "gpt2" (byte-level BPE: Llama 3, Qwen2/2.5/3) with a pre-tokenizer llama.cpp names: the
//   tokens and merges run through @huggingface/tokenizers with that pre-tokenizer's split
//   pattern (the pattern of the tokenizer.json that llama.cpp's converter fingerprinted under
//   that name).
import { FormatError, OptionError } from '../core/errors.js';
import { GGUF_TOKEN_TYPE, type GgufMetadata, type GgufValue } from './gguf-types.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { PairHeap } from './pair-heap.js';
import type { EncodeOptions, TextTokenizer } from './text-tokenizer.js';

/**
 * The split pattern of each byte-level BPE pre-tokenizer read here, by llama.cpp's name for it
 * (llama-vocab.cpp maps the names to the same patterns, rewritten for its own regex engine).
 * Another name is refused: splitting by a guessed pattern silently gives other token ids.
 */
const BPE_PRE_TOKENIZERS: Readonly<Record<string, { pattern: string; ignoreMerges: boolean; addBos: boolean }>> = {
  // Llama 3's tokenizer.json (smaug-bpe: its first release, the same pattern).
  'llama-bpe': { pattern: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", ignoreMerges: true, addBos: true },
  'smaug-bpe': { pattern: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", ignoreMerges: false, addBos: false },
  // Qwen2/2.5/3 (deepseek-r1-qwen: the distilled models' copy): digits one by one.
  qwen2: { pattern: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", ignoreMerges: false, addBos: false },
  'deepseek-r1-qwen': { pattern: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", ignoreMerges: false, addBos: false },
};

/** A GGUF file's tokenizer. `metadata` holds its tokenizer.* entries, which a GGUF written from
 * this model carries over unchanged. */
export interface GgufTokenizer extends TextTokenizer {
  readonly kind: 'gguf';
  /** tokenizer.ggml.model: "llama" or "gpt2". */
  readonly model: string;
  readonly metadata: GgufMetadata;
}

/** The tokenizer.* entries of a GGUF file's metadata, in file order. */
export function ggufTokenizerMetadata(md: GgufMetadata): GgufMetadata {
  return new Map([...md].filter(([key]) => key.startsWith('tokenizer.')));
}

/**
 * The tokenizer of a GGUF file's metadata (the whole metadata or its tokenizer.* entries).
 * `encode(text)` gives llama.cpp's `llama_tokenize(text, add_special = true, parse_special =
 * false)`; `{ bos: false }` / `{ eos: false }` leave the special tokens out. A vocabulary this
 * package cannot tokenize exactly as llama.cpp does is a FormatError naming the key.
 */
export function readGgufTokenizer(md: GgufMetadata): GgufTokenizer {
  const metadata = ggufTokenizerMetadata(md);
  const model = stringKey(metadata, 'tokenizer.ggml.model');
  const tokens = stringArray(metadata, 'tokenizer.ggml.tokens');
  if (tokens.length === 0) throw new FormatError('GGUF: tokenizer.ggml.tokens is empty');
  const types = numberArray(metadata, 'tokenizer.ggml.token_type', tokens.length, true) ?? new Float64Array(tokens.length).fill(GGUF_TOKEN_TYPE.normal);
  const flag = (key: string, fallback: boolean) => {
    const v = metadata.get(`tokenizer.ggml.${key}`);
    if (v === undefined) return fallback;
    if (v.type !== 'bool') throw new FormatError(`GGUF: tokenizer.ggml.${key} is a ${v.type}, expected a bool`);
    return v.value;
  };
  const special = {
    bos: tokenId(metadata, 'tokenizer.ggml.bos_token_id', tokens.length),
    eos: tokenId(metadata, 'tokenizer.ggml.eos_token_id', tokens.length),
  };
  if (model === 'llama') {
    const scores = numberArray(metadata, 'tokenizer.ggml.scores', tokens.length, false) ?? new Float64Array(tokens.length);
    return new SpmTokenizer(metadata, tokens, scores, types, special, {
      addBos: flag('add_bos_token', true),
      addEos: flag('add_eos_token', false),
      spacePrefix: flag('add_space_prefix', true),
    });
  }
  if (model === 'gpt2') {
    const pre = metadata.has('tokenizer.ggml.pre') ? stringKey(metadata, 'tokenizer.ggml.pre') : '';
    const known = BPE_PRE_TOKENIZERS[pre];
    if (!known) {
      throw new FormatError(
        `GGUF: tokenizer.ggml.pre ${JSON.stringify(pre)} is not a byte-level BPE pre-tokenizer read here (${Object.keys(BPE_PRE_TOKENIZERS).join(', ')}); pass the model's tokenizer.json with --tokenizer`,
      );
    }
    const merges = stringArray(metadata, 'tokenizer.ggml.merges');
    return new BpeTokenizer(metadata, tokens, merges, types, special, known, {
      addBos: flag('add_bos_token', known.addBos),
      addEos: flag('add_eos_token', false),
    });
  }
  throw new FormatError(`GGUF: tokenizer.ggml.model ${JSON.stringify(model)} is not read here ("llama" or "gpt2"); pass the model's tokenizer file with --tokenizer`);
}

interface SpecialIds {
  bos: number | null;
  eos: number | null;
}

/** What both kinds share: the special tokens around the text, and the user-defined tokens
 * matched in the text before it is split (llama.cpp's tokenizer_st_partition). */
abstract class GgufTokenizerBase implements GgufTokenizer {
  readonly kind = 'gguf' as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Token text -> id; a text listed twice maps to its last id, as llama.cpp's token_to_id. */
  protected readonly ids = new Map<string, number>();
  /** User-defined tokens, longest first (llama.cpp's cache_special_tokens without the control
   * and unknown tokens, which parse_special off leaves in the text). */
  private readonly userDefined: string[];

  constructor(
    readonly metadata: GgufMetadata,
    readonly model: string,
    protected readonly tokens: readonly string[],
    protected readonly types: ArrayLike<number>,
    special: SpecialIds,
    private readonly add: { addBos: boolean; addEos: boolean },
  ) {
    this.vocabSize = tokens.length;
    tokens.forEach((t, id) => this.ids.set(t, id));
    this.bosId = special.bos;
    this.eosId = special.eos;
    if (add.addBos && special.bos === null) throw new FormatError('GGUF: tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing');
    if (add.addEos && special.eos === null) throw new FormatError('GGUF: tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing');
    const utf8 = new TextEncoder();
    this.userDefined = tokens
      .filter((t, id) => types[id] === GGUF_TOKEN_TYPE.userDefined && t.length > 0)
      .map((t) => ({ t, bytes: utf8.encode(t).length }))
      .sort((a, b) => b.bytes - a.bytes)
      .map((e) => e.t);
  }

  encode(text: string, { bos, eos }: EncodeOptions = {}): Int32Array {
    if (typeof text !== 'string') throw new OptionError('tokenizer: text must be a string');
    const out: number[] = [];
    const side = (flag: boolean | undefined, byDefault: boolean, id: number | null, name: string) => {
      if (!(flag ?? byDefault)) return;
      if (id === null) throw new OptionError(`tokenizer: this GGUF vocabulary has no ${name} token`);
      out.push(id);
    };
    side(bos, this.add.addBos, this.bosId, 'BOS');
    if (text.length > 0) this.encodeFragments(this.partition(wellFormed(text)), out);
    side(eos, this.add.addEos, this.eosId, 'EOS');
    return Int32Array.from(out);
  }

  /** The text as raw-text pieces (strings) and user-defined tokens (ids), in order. */
  private partition(text: string): Array<string | number> {
    let fragments: Array<string | number> = [text];
    for (const token of this.userDefined) {
      const id = this.ids.get(token)!;
      fragments = fragments.flatMap((f) => {
        if (typeof f !== 'string' || !f.includes(token)) return [f];
        const parts: Array<string | number> = [];
        f.split(token).forEach((raw, i) => {
          if (i > 0) parts.push(id);
          if (raw.length > 0) parts.push(raw);
        });
        return parts;
      });
    }
    return fragments;
  }

  protected abstract encodeFragments(fragments: Array<string | number>, out: number[]): void;

  /** Text of `ids`: control tokens give none (as llama.cpp's detokenizer without special). */
  abstract decode(ids: ArrayLike<number>): string;

  protected checkIds(ids: ArrayLike<number>): number[] {
    const list: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i];
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) throw new OptionError(`tokenizer: token ${t} at ${i} is not in the vocabulary`);
      list.push(t);
    }
    return list;
  }
}

/** One symbol of llm_tokenizer_spm_session: a run of the text, linked to its neighbours. */
interface SpmSymbol {
  text: string;
  prev: number;
  next: number;
}

interface SpmBigram {
  left: number;
  right: number;
  score: number;
  /** Length of the merged text: an entry whose symbols no longer add up to it is stale. */
  size: number;
}

/** llama.cpp's SentencePiece tokenizer ("llama" vocabularies). */
class SpmTokenizer extends GgufTokenizerBase {
  constructor(
    metadata: GgufMetadata, tokens: readonly string[], private readonly scores: ArrayLike<number>, types: ArrayLike<number>,
    special: SpecialIds, private readonly options: { addBos: boolean; addEos: boolean; spacePrefix: boolean },
  ) {
    super(metadata, 'llama', tokens, types, special, options);
  }

  protected encodeFragments(fragments: Array<string | number>, out: number[]): void {
    // A space goes before the first raw text and before raw text that follows a token.
    let afterToken = true;
    for (const f of fragments) {
      if (typeof f === 'number') {
        out.push(f);
        afterToken = true;
        continue;
      }
      const text = (this.options.spacePrefix && afterToken ? ' ' : '') + f;
      this.tokenize(text.replaceAll(' ', '\u2581'), out);
      afterToken = false;
    }
  }

  /**
   * llm_tokenizer_spm_session::tokenize: the text as one symbol per character, then the
   * adjacent pair whose concatenation is the highest-scoring token merged (the leftmost on
   * ties) until no pair forms a token; symbols that are not tokens become byte tokens. (A
   * merged symbol is always a token, so llama.cpp's resegment never splits one here.)
   */
  private tokenize(text: string, out: number[]): void {
    const chars = Array.from(text);
    const symbols: SpmSymbol[] = chars.map((c, i) => ({ text: c, prev: i - 1, next: i + 1 < chars.length ? i + 1 : -1 }));
    // llm_bigram_spm::comparator's order: the highest score, then the leftmost.
    const queue = new PairHeap<SpmBigram>();
    const tryAdd = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const merged = symbols[left].text + symbols[right].text;
      const id = this.ids.get(merged);
      if (id === undefined) return;
      queue.push({ left, right, score: this.scores[id], size: merged.length });
    };
    for (let i = 1; i < symbols.length; i++) tryAdd(i - 1, i);
    for (let top = queue.pop(); top; top = queue.pop()) {
      const left = symbols[top.left];
      const right = symbols[top.right];
      if (left.text.length === 0 || right.text.length === 0 || left.text.length + right.text.length !== top.size) continue;
      left.text += right.text;
      right.text = '';
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.left;
      tryAdd(left.prev, top.left);
      tryAdd(top.left, left.next);
    }
    for (let i = 0; i >= 0 && i < symbols.length; i = symbols[i].next) {
      const id = this.ids.get(symbols[i].text);
      if (id !== undefined) out.push(id);
      else for (const b of new TextEncoder().encode(symbols[i].text)) out.push(this.byteToken(b));
    }
  }

  /** llama_vocab::byte_to_token for SentencePiece: "<0xXX>", else the byte's own one-char token. */
  private byteToken(byte: number): number {
    const id = this.ids.get(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`) ?? (byte < 0x80 ? this.ids.get(String.fromCharCode(byte)) : undefined);
    if (id === undefined) throw new FormatError(`GGUF: the text needs the byte token <0x${byte.toString(16).toUpperCase().padStart(2, '0')}>, which the vocabulary lacks`);
    return id;
  }

  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    const enc = new TextEncoder();
    for (const id of this.checkIds(ids)) {
      const type = this.types[id];
      if (type === GGUF_TOKEN_TYPE.control || type === GGUF_TOKEN_TYPE.unknown || type === GGUF_TOKEN_TYPE.unused) continue;
      const byte = type === GGUF_TOKEN_TYPE.byte ? /^<0x([0-9A-Fa-f]{2})>$/.exec(this.tokens[id]) : null;
      if (byte) bytes.push(parseInt(byte[1], 16));
      else bytes.push(...enc.encode(type === GGUF_TOKEN_TYPE.userDefined ? this.tokens[id] : this.tokens[id].replaceAll('\u2581', ' ')));
    }
    const text = new TextDecoder().decode(Uint8Array.from(bytes));
    // The space the encoder put before the text.
    return this.options.spacePrefix && text.startsWith(' ') ? text.slice(1) : text;
  }
}

/** Byte-level BPE ("gpt2" vocabularies) through @huggingface/tokenizers. */
class BpeTokenizer extends GgufTokenizerBase {
  private readonly hf: HfTokenizer;

  constructor(
    metadata: GgufMetadata, tokens: readonly string[], merges: readonly string[], types: ArrayLike<number>, special: SpecialIds,
    pre: { pattern: string; ignoreMerges: boolean }, add: { addBos: boolean; addEos: boolean },
  ) {
    super(metadata, 'gpt2', tokens, types, special, add);
    const vocab: Record<string, number> = {};
    tokens.forEach((t, id) => { vocab[t] = id; });
    const json = {
      version: '1.0',
      // User-defined tokens are matched in the text here (GgufTokenizerBase.partition).
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: pre.pattern }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
        ],
      },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: pre.ignoreMerges, vocab, merges },
    };
    this.hf = new HfTokenizer({ tokenizerJson: JSON.stringify(json) });
  }

  protected encodeFragments(fragments: Array<string | number>, out: number[]): void {
    for (const f of fragments) {
      if (typeof f === 'number') out.push(f);
      else for (const id of this.hf.encode(f, { bos: false, eos: false })) out.push(id);
    }
  }

  decode(ids: ArrayLike<number>): string {
    const kept = this.checkIds(ids).filter((id) => this.types[id] !== GGUF_TOKEN_TYPE.control && this.types[id] !== GGUF_TOKEN_TYPE.unused);
    return this.hf.decode(kept);
  }
}

/** The text with lone surrogates as U+FFFD, as its UTF-8 encoding (the tokenizer's input) has them. */
function wellFormed(s: string): string {
  return new TextDecoder().decode(new TextEncoder().encode(s));
}


function stringKey(md: GgufMetadata, key: string): string {
  const v = md.get(key);
  if (v === undefined) throw new FormatError(`GGUF: metadata "${key}" is missing: the file carries no tokenizer; pass one with --tokenizer`);
  if (v.type !== 'string') throw new FormatError(`GGUF: metadata "${key}" is a ${v.type}, expected a string`);
  return v.value;
}

function stringArray(md: GgufMetadata, key: string): readonly string[] {
  const v = md.get(key);
  if (v === undefined) throw new FormatError(`GGUF: metadata "${key}" is missing`);
  if (v.type !== 'array' || v.itemType !== 'string') throw new FormatError(`GGUF: metadata "${key}" is not an array of strings`);
  return v.value as readonly string[];
}

/** A numeric array of at least `length` entries (llama.cpp reads the first `length`). */
function numberArray(md: GgufMetadata, key: string, length: number, integer: boolean): ArrayLike<number> | null {
  const v: GgufValue | undefined = md.get(key);
  if (v === undefined) return null;
  const ok = v.type === 'array' && (integer ? v.itemType === 'i32' : v.itemType === 'f32' || v.itemType === 'i32');
  if (!ok) throw new FormatError(`GGUF: metadata "${key}" is not an array of ${integer ? 'int32' : 'float32 or int32'}`);
  const values = v.value as ArrayLike<number>;
  if (values.length < length) throw new FormatError(`GGUF: metadata "${key}" has ${values.length} entries for ${length} tokens`);
  return values;
}

function tokenId(md: GgufMetadata, key: string, vocab: number): number | null {
  const v = md.get(key);
  if (v === undefined) return null;
  if (v.type !== 'u32' && v.type !== 'i32') throw new FormatError(`GGUF: metadata "${key}" is a ${v.type}, expected a u32 token id`);
  if (!Number.isInteger(v.value) || v.value < 0 || v.value >= vocab) throw new FormatError(`GGUF: metadata "${key}" = ${v.value} is not a token id (the vocabulary has ${vocab})`);
  return v.value;
}
