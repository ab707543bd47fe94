// Hugging Face tokenizers: tokenizer.json (+ tokenizer_config.json, + the model's config.json),
// run by @huggingface/tokenizers (pure JS), with the special tokens added the way transformers'
// `tokenizer(text)` adds them. File contents come in as strings: no file access here, so this
// runs in every runtime.
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { CdquantError, FormatError, OptionError } from '../core/errors.js';
import type { EncodeOptions, TextTokenizer } from './text-tokenizer.js';

/** The files of a Hugging Face model folder that describe its tokenizer, as text. */
export interface HfTokenizerFiles {
  /** tokenizer.json */
  tokenizerJson: string;
  /** tokenizer_config.json, when the folder has one. */
  tokenizerConfig?: string;
  /** The model's config.json, when the folder has one: its vocab_size bounds the token ids. */
  config?: string;
}

/** A parsed JSON object. */
export type JsonObject = Record<string, unknown>;

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedTokenEntry {
  readonly id: number;
  readonly content: string;
  readonly special: boolean;
  readonly normalized: boolean;
}

/**
 * Token ids must stay below this. Real vocabularies are well under a million; the bound keeps
 * a corrupt id from making anything downstream (GGUF token lists, embedding checks) allocate
 * billions of entries.
 */
export const MAX_TOKEN_ID = (1 << 24) - 1;

/** tokenizer_config.json `tokenizer_class`es whose transformers class rebuilds the
 * post-processor from add_bos_token (default true) / add_eos_token (default false), whatever
 * tokenizer.json says (LlamaTokenizerFast / GemmaTokenizerFast `update_post_processor`). */
const BOS_BY_DEFAULT_CLASSES = /^(Llama|CodeLlama|Gemma)Tokenizer(Fast)?$/;

export const isJsonObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parses one of the files, naming it in the error. */
export function parseJsonFile(text: string, file: string): JsonObject {
  if (typeof text !== 'string') throw new OptionError(`${file}: expected the file's text as a string`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!isJsonObject(value)) throw new FormatError(`${file}: the top level must be a JSON object`);
  return value;
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
export function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (isJsonObject(value) && typeof value.content === 'string') return value.content;
  return null;
}

/** config.json's vocab_size (multimodal configs keep it in text_config), or null. */
export function configVocabSize(config: JsonObject | null): number | null {
  if (!config) return null;
  const text = isJsonObject(config.text_config) ? config.text_config : null;
  const field = config.vocab_size !== undefined ? 'vocab_size' : text?.vocab_size !== undefined ? 'text_config.vocab_size' : null;
  if (field === null) return null;
  const v = field === 'vocab_size' ? config.vocab_size : text!.vocab_size;
  if (!Number.isSafeInteger(v) || (v as number) <= 0) throw new FormatError(`config.json: ${field} ${JSON.stringify(v)} is not a positive integer`);
  return v as number;
}

const checkId = (id: unknown, where: string): number => {
  if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) {
    throw new FormatError(`tokenizer.json: ${where} has id ${JSON.stringify(id)}, not an integer in 0..${MAX_TOKEN_ID}`);
  }
  return id as number;
};

/** Checks what the library would otherwise trip over (or silently accept), and returns the id
 * space sizes (largest id + 1) of the model's vocabulary and of it with the added tokens. */
function validateTokenizerJson(json: JsonObject): { pieceSpace: number; idSpace: number; added: AddedTokenEntry[] } {
  const model = json.model;
  if (!isJsonObject(model)) throw new FormatError('tokenizer.json: no "model" object');
  const vocab = model.vocab;
  let idSpace = 0;
  if (Array.isArray(vocab)) {
    // Unigram: [[piece, score], ...], ids are positions.
    vocab.forEach((entry, i) => {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number') {
        throw new FormatError(`tokenizer.json: model.vocab[${i}] is not a [piece, score] pair`);
      }
    });
    if (vocab.length > MAX_TOKEN_ID + 1) throw new FormatError(`tokenizer.json: model.vocab has ${vocab.length} entries (more than ${MAX_TOKEN_ID + 1})`);
    idSpace = vocab.length;
  } else if (isJsonObject(vocab)) {
    for (const [piece, id] of Object.entries(vocab)) idSpace = Math.max(idSpace, checkId(id, `model.vocab entry ${JSON.stringify(piece)}`) + 1);
  } else {
    throw new FormatError('tokenizer.json: model.vocab is missing or is neither an object nor an array');
  }
  if (model.type === 'BPE' || (model.type === undefined && 'merges' in model)) {
    if (!Array.isArray(model.merges)) throw new FormatError('tokenizer.json: model.merges is missing or not an array');
    model.merges.forEach((m, i) => {
      const ok = typeof m === 'string' ? m.indexOf(' ', 1) > 0 : Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string';
      if (!ok) throw new FormatError(`tokenizer.json: model.merges[${i}] is not "a b" or ["a", "b"]`);
    });
  }
  const pieceSpace = idSpace;
  const addedJson = json.added_tokens ?? [];
  if (!Array.isArray(addedJson)) throw new FormatError('tokenizer.json: added_tokens is not an array');
  const added = addedJson.map((t, i): AddedTokenEntry => {
    if (!isJsonObject(t) || typeof t.content !== 'string') throw new FormatError(`tokenizer.json: added_tokens[${i}] has no string "content"`);
    const id = checkId(t.id, `added_tokens[${i}] (${JSON.stringify(t.content)})`);
    idSpace = Math.max(idSpace, id + 1);
    return { id, content: t.content, special: t.special === true, normalized: t.normalized === true };
  });
  return { pieceSpace, idSpace, added };
}

/** Special tokens a post-processor puts around a single sequence. */
interface Wrap { prefix: number[]; suffix: number[] }

/**
 * What tokenizer.json's post-processor adds around one sequence (TemplateProcessing's `single`,
 * Roberta/Bert's cls...sep; a Sequence of processors wraps in order; ByteLevel adds nothing).
 */
function postProcessorWrap(pp: unknown, where = 'post_processor'): Wrap {
  if (pp === null || pp === undefined) return { prefix: [], suffix: [] };
  if (!isJsonObject(pp)) throw new FormatError(`tokenizer.json: ${where} is not an object`);
  switch (pp.type) {
    case 'ByteLevel':
      return { prefix: [], suffix: [] };
    case 'Sequence': {
      if (!Array.isArray(pp.processors)) throw new FormatError(`tokenizer.json: ${where}.processors is not an array`);
      const out: Wrap = { prefix: [], suffix: [] };
      pp.processors.forEach((p, i) => {
        const w = postProcessorWrap(p, `${where}.processors[${i}]`);
        out.prefix = [...w.prefix, ...out.prefix];
        out.suffix = [...out.suffix, ...w.suffix];
      });
      return out;
    }
    case 'RobertaProcessing':
    case 'BertProcessing': {
      const id = (f: 'cls' | 'sep') => {
        const v = pp[f];
        if (!Array.isArray(v) || !Number.isSafeInteger(v[1])) throw new FormatError(`tokenizer.json: ${where}.${f} is not a [token, id] pair`);
        return checkId(v[1], `${where}.${f}`);
      };
      return { prefix: [id('cls')], suffix: [id('sep')] };
    }
    case 'TemplateProcessing': {
      const single = pp.single;
      const specials = isJsonObject(pp.special_tokens) ? pp.special_tokens : {};
      if (!Array.isArray(single)) throw new FormatError(`tokenizer.json: ${where}.single is not an array`);
      const out: Wrap = { prefix: [], suffix: [] };
      let seen = 0;
      single.forEach((piece, i) => {
        if (isJsonObject(piece) && isJsonObject(piece.Sequence)) {
          seen++;
          return;
        }
        const name = isJsonObject(piece) && isJsonObject(piece.SpecialToken) ? piece.SpecialToken.id : undefined;
        const entry = typeof name === 'string' ? specials[name] : undefined;
        if (!isJsonObject(entry) || !Array.isArray(entry.ids)) throw new FormatError(`tokenizer.json: ${where}.single[${i}] names no special token listed in special_tokens`);
        const ids = entry.ids.map((id) => checkId(id, `${where}.special_tokens[${JSON.stringify(name)}]`));
        (seen === 0 ? out.prefix : out.suffix).push(...ids);
      });
      if (seen !== 1) throw new FormatError(`tokenizer.json: ${where}.single holds ${seen} sequences, expected 1`);
      return out;
    }
    default:
      throw new FormatError(`tokenizer.json: ${where} has unsupported type ${JSON.stringify(pp.type)}`);
  }
}

/**
 * A Hugging Face tokenizer. `encode(text)` gives transformers' `tokenizer(text)["input_ids"]`;
 * `encode(text, { bos: false, eos: false })` gives it with `add_special_tokens=False`.
 */
export class HfTokenizer implements TextTokenizer {
  readonly kind = 'huggingface' as const;
  /** Size of the id space: the largest id in the vocabulary or the added tokens, plus one, but
   * no more than config.json's vocab_size (added tokens past it are refused by encode). */
  readonly vocabSize: number;
  /** config.json's vocab_size (the embedding's rows), when given. */
  readonly modelVocabSize: number | null;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly padId: number | null;
  /** Special ids transformers puts before / after the text by default. */
  readonly specialPrefix: readonly number[];
  readonly specialSuffix: readonly number[];
  /** tokenizer.json's added tokens, as the file lists them. */
  readonly addedTokens: readonly AddedTokenEntry[];
  /** The parsed files (for the GGUF vocabulary, which needs the merges, the post-processor,
   * the chat template...). Treat as read-only. */
  readonly tokenizerJson: JsonObject;
  readonly tokenizerConfig: JsonObject | null;
  readonly modelConfig: JsonObject | null;
  /** tokenizer_config.json's clean_up_tokenization_spaces (transformers' default: false). */
  readonly cleanUpSpaces: boolean;
  private readonly lib: HfLibTokenizer;
  private readonly idToPiece: Map<number, string>;
  private readonly specialIds: Set<number>;

  constructor(files: HfTokenizerFiles) {
    if (!isJsonObject(files) || typeof files.tokenizerJson !== 'string') throw new OptionError('HfTokenizer: files.tokenizerJson (the text of tokenizer.json) is required');
    const json = parseJsonFile(files.tokenizerJson, 'tokenizer.json');
    const tc = files.tokenizerConfig === undefined ? null : parseJsonFile(files.tokenizerConfig, 'tokenizer_config.json');
    const config = files.config === undefined ? null : parseJsonFile(files.config, 'config.json');
    const { pieceSpace, idSpace, added } = validateTokenizerJson(json);
    const modelVocab = configVocabSize(config);
    // An embedding may have more rows than the tokenizer has ids, never fewer for its pieces.
    // Added tokens past the end are tolerated (every Gemma 3 tokenizer has <image_soft_token>
    // at 262144, also for the text-only models with 262144 rows) but never produced.
    if (modelVocab !== null && modelVocab < pieceSpace) {
      throw new FormatError(`config.json: vocab_size ${modelVocab} is smaller than tokenizer.json's vocabulary (its largest piece id is ${pieceSpace - 1}); the embedding would have no row for some tokens`);
    }
    this.modelVocabSize = modelVocab;
    this.tokenizerJson = json;
    this.tokenizerConfig = tc;
    this.modelConfig = config;
    this.addedTokens = added;
    this.vocabSize = modelVocab === null ? idSpace : Math.min(idSpace, modelVocab);
    this.cleanUpSpaces = tc?.clean_up_tokenization_spaces === true;
    // Checked before the library sees it, so a bad post-processor is named as such.
    const fromFile = postProcessorWrap(json.post_processor);
    for (const key of ['normalizer', 'pre_tokenizer', 'decoder'] as const) checkPatterns(json[key], key);
    try {
      // The library mutates nothing it is given, but reads `added_tokens` unconditionally.
      this.lib = new HfLibTokenizer({ ...json, added_tokens: json.added_tokens ?? [] }, tc ?? {});
    } catch (e) {
      throw new FormatError(`tokenizer.json: ${(e as Error).message}`);
    }
    this.idToPiece = new Map();
    const vocab = (json.model as JsonObject).vocab;
    if (Array.isArray(vocab)) vocab.forEach((entry, id) => this.idToPiece.set(id, entry[0] as string));
    else for (const [piece, id] of Object.entries(vocab as JsonObject)) this.idToPiece.set(id as number, piece);
    for (const t of added) this.idToPiece.set(t.id, t.content);
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));

    const wrap = this.defaultWrap(fromFile, tc);
    const named = (field: string): number | null => {
      const content = tc ? tokenContent(tc[field]) : null;
      if (content === null) return null;
      const id = this.tokenToId(content);
      if (id === null) throw new FormatError(`tokenizer_config.json: ${field} ${JSON.stringify(content)} is not a token of tokenizer.json`);
      return id;
    };
    // Without a tokenizer_config.json naming them, a template's lone leading / trailing token is
    // taken as BOS / EOS (as llama.cpp's converter does).
    this.bosId = named('bos_token') ?? (!tc && wrap.prefix.length === 1 ? wrap.prefix[0] : null);
    this.eosId = named('eos_token') ?? (!tc && wrap.suffix.length === 1 ? wrap.suffix[0] : null);
    this.unkId = named('unk_token') ?? (typeof (json.model as JsonObject).unk_token === 'string' ? this.tokenToId((json.model as JsonObject).unk_token as string) : null);
    this.padId = named('pad_token');
    for (const id of [...wrap.prefix, ...wrap.suffix]) {
      if (id >= this.vocabSize) throw new FormatError(`tokenizer.json: the special token ${id} added around every text has no row in the model's embedding (config.json vocab_size ${modelVocab})`);
    }
    this.specialPrefix = wrap.prefix;
    this.specialSuffix = wrap.suffix;
  }

  /**
   * The special tokens transformers adds around a text. The Llama / Gemma tokenizer classes
   * rebuild the post-processor from tokenizer_config.json's add_bos_token (default true) and
   * add_eos_token (default false); transformers v5's TokenizersBackend does so for any class
   * when either key is present (the other then false). Otherwise tokenizer.json's
   * post-processor stands. (A flag asking for a token the config does not name is a FormatError
   * here; v4 raises too, v5 drops the flag.)
   */
  private defaultWrap(fromFile: Wrap, tc: JsonObject | null): Wrap {
    const boolOr = (v: unknown, d: boolean | undefined) => (typeof v === 'boolean' ? v : d);
    const bosDefault = BOS_BY_DEFAULT_CLASSES.test(String(tc?.tokenizer_class ?? ''));
    const addBos = boolOr(tc?.add_bos_token, bosDefault ? true : undefined);
    const addEos = boolOr(tc?.add_eos_token, bosDefault ? false : undefined);
    if (addBos === undefined && addEos === undefined) return fromFile;
    const need = (field: 'bos_token' | 'eos_token') => {
      const content = tokenContent(tc?.[field]);
      const id = content === null ? null : this.tokenToId(content);
      if (id === null) throw new FormatError(`tokenizer_config.json: add_${field} is true but ${field} ${content === null ? 'is not set' : `${JSON.stringify(content)} is not a token`}`);
      return id;
    };
    return { prefix: addBos ? [need('bos_token')] : [], suffix: addEos ? [need('eos_token')] : [] };
  }

  /** The id of a token string (vocabulary or added token), or null. */
  tokenToId(token: string): number | null {
    return this.lib.token_to_id(token) ?? null;
  }

  /** The token string of an id, or null for an id no token has. */
  idToToken(id: number): string | null {
    return this.idToPiece.get(id) ?? null;
  }

  /** Whether `id` is an added token marked special (skipped by `decode(..., { skipSpecialTokens })`). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /**
   * Token ids of `text`. Special-token strings in the text (e.g. "<|im_start|>") become their
   * ids, as in transformers. `bos` / `eos` left undefined add what transformers adds by
   * default (`specialPrefix` / `specialSuffix`); true adds exactly `bosId` / `eosId` (an
   * OptionError when the tokenizer has none); false adds nothing on that side.
   */
  encode(text: string, { bos, eos }: EncodeOptions = {}): Int32Array {
    if (typeof text !== 'string') throw new OptionError('tokenizer: text must be a string');
    const body = library('encoding a text', () => this.lib.encode(text, { add_special_tokens: false }).ids);
    const side = (flag: boolean | undefined, byDefault: readonly number[], id: number | null, name: string): readonly number[] => {
      if (flag === undefined) return byDefault;
      if (!flag) return [];
      if (id === null) throw new OptionError(`tokenizer: this tokenizer has no ${name} token (tokenizer_config.json names none)`);
      return [id];
    };
    const prefix = side(bos, this.specialPrefix, this.bosId, 'BOS');
    const suffix = side(eos, this.specialSuffix, this.eosId, 'EOS');
    const out = new Int32Array(prefix.length + body.length + suffix.length);
    out.set(prefix, 0);
    for (let i = 0; i < body.length; i++) {
      const id = body[i];
      // A BPE without byte fallback and without unk_token has no id for an unseen symbol.
      if (id === undefined || id === null) throw new FormatError(`tokenizer.json: the vocabulary has no token for a piece of the text and no unk_token to stand for it`);
      if (id >= this.vocabSize) {
        throw new OptionError(`tokenizer: the text contains ${JSON.stringify(this.idToToken(id))} (id ${id}), which has no row in the model's embedding (config.json vocab_size ${this.modelVocabSize})`);
      }
      out[prefix.length + i] = id;
    }
    out.set(suffix, prefix.length + body.length);
    return out;
  }

  /** Text of `ids`, as transformers' `decode(ids)` (special tokens kept unless asked; spaces
   * cleaned up only when tokenizer_config.json says clean_up_tokenization_spaces). */
  decode(ids: ArrayLike<number>, { skipSpecialTokens = false }: { skipSpecialTokens?: boolean } = {}): string {
    const list: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const t = ids[i];
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize || !this.idToPiece.has(t)) throw new OptionError(`tokenizer: token ${t} at ${i} is not in the vocabulary`);
      list.push(t);
    }
    if (list.length === 0) return '';
    return library('decoding ids', () => this.lib.decode(list, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: this.cleanUpSpaces }));
  }
}

/** Runs a call into the tokenizer library: what fails inside it on a file that passed our
 * checks (a component of an unexpected shape) is a FormatError about tokenizer.json, not the
 * library's TypeError. */
function library<T>(what: string, call: () => T): T {
  try {
    return call();
  } catch (e) {
    if (e instanceof CdquantError) throw e;
    throw new FormatError(`tokenizer.json: the tokenizer failed ${what} (${(e as Error)?.message ?? String(e)}): a component of the file is malformed`);
  }
}

/** Every `pattern` in a pipeline component must be { String } or { Regex } holding a string,
 * and Replace and Split steps must have one: the library warns about any other and drops the
 * step, which would tokenize unlike transformers. */
function checkPatterns(v: unknown, path: string): void {
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkPatterns(x, `${path}[${i}]`));
    return;
  }
  if (!isJsonObject(v)) return;
  // Replace and Split steps match their pattern; without one the library drops the step.
  if ((v.type === 'Replace' || v.type === 'Split') && !('pattern' in v)) throw new FormatError(`tokenizer.json: ${path} is a ${v.type} with no pattern`);
  for (const [key, x] of Object.entries(v)) {
    if (key === 'pattern') {
      const p = x as JsonObject;
      const ok = isJsonObject(p) && Object.keys(p).length === 1 && (typeof p.String === 'string' || typeof p.Regex === 'string');
      if (!ok) throw new FormatError(`tokenizer.json: ${path}.pattern ${JSON.stringify(x)?.slice(0, 80)} must be {"String": ...} or {"Regex": ...}`);
    } else checkPatterns(x, `${path}.${key}`);
  }
}

/** Reads a Hugging Face tokenizer from its files' text. */
export function readHfTokenizer(files: HfTokenizerFiles): HfTokenizer {
  return new HfTokenizer(files);
}
