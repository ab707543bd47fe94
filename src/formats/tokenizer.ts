// The tokenizer interface the model code uses, a loader that picks the right tokenizer for a
// model folder, and llama2.c's tokenizer.bin with its encoder/decoder, reproduced token for
// token. llama2.c pieces are handled as byte strings (one char per byte, 0..255) so
// concatenation and lookup are byte-exact like the C code's strcmp, whatever the pieces hold.
import { FormatError, OptionError } from '../core/errors.js';
import { HfTokenizer, configVocabSize, parseJsonFile } from './hf-tokenizer.js';
import type { TextTokenizer } from './text-tokenizer.js';
import { PairHeap } from './pair-heap.js';

export const BOS = 1;
export const EOS = 2;

export type { EncodeOptions, TextTokenizer } from './text-tokenizer.js';

/** llama2.c's tokenizer.bin. */
export interface Tokenizer extends TextTokenizer {
  readonly kind: 'llama2c';
  readonly bosId: number;
  readonly eosId: number;
  readonly maxTokenLength: number;
  /** Piece bytes of each id. */
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
}

/** A model folder's tokenizer files, as found (text for JSON, bytes for tokenizer.bin). */
export interface TokenizerFiles {
  /** config.json */
  config?: string;
  /** tokenizer.json */
  tokenizerJson?: string;
  /** tokenizer_config.json */
  tokenizerConfig?: string;
  /** A llama2.c tokenizer.bin (the folder's, or one given by the user). */
  tokenizerBin?: Uint8Array;
  /** Pieces in tokenizer.bin when config.json does not say (a llama2.c checkpoint's header does). */
  vocabSize?: number;
}

/**
 * The tokenizer of a model folder: tokenizer.json (with tokenizer_config.json and config.json)
 * when present, else a llama2.c tokenizer.bin holding config.json's vocab_size pieces (or
 * `vocabSize`).
 */
export function loadTextTokenizer(files: TokenizerFiles): TextTokenizer {
  if (typeof files !== 'object' || files === null) throw new OptionError('loadTextTokenizer: expected an object of files');
  if (files.tokenizerJson !== undefined) {
    return new HfTokenizer({ tokenizerJson: files.tokenizerJson, tokenizerConfig: files.tokenizerConfig, config: files.config });
  }
  if (files.tokenizerBin !== undefined) {
    const fromConfig = files.config === undefined ? null : configVocabSize(parseJsonFile(files.config, 'config.json'));
    const vocabSize = files.vocabSize ?? fromConfig;
    if (vocabSize === null || vocabSize === undefined) throw new OptionError('tokenizer.bin: its piece count comes from config.json\'s vocab_size or the vocabSize option; neither was given');
    if (fromConfig !== null && files.vocabSize !== undefined && fromConfig !== files.vocabSize) {
      throw new FormatError(`config.json: vocab_size ${fromConfig} disagrees with the model's vocabulary of ${files.vocabSize}`);
    }
    return readTokenizer(files.tokenizerBin, vocabSize);
  }
  throw new FormatError('no tokenizer: the model folder has neither tokenizer.json nor a llama2.c tokenizer.bin');
}

const latin1 = (b: Uint8Array) => {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
};

/** Reads a llama2.c tokenizer.bin holding `vocabSize` pieces. */
export function readTokenizer(bytes: Uint8Array, vocabSize: number): Tokenizer {
  if (!Number.isSafeInteger(vocabSize) || vocabSize <= 0) throw new OptionError(`tokenizer: vocabSize ${vocabSize} must be a positive integer`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Every piece needs at least 8 bytes, so a bigger vocab cannot fit: checked before allocating.
  if (bytes.length < 4 + 8 * vocabSize) {
    throw new FormatError(`tokenizer: ${bytes.length} bytes cannot hold ${vocabSize} pieces (truncated, or wrong vocab size?)`);
  }
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength < 0) throw new FormatError(`tokenizer: max_token_length ${maxTokenLength} is negative`);
  const pieces: Uint8Array[] = [];
  const scores = new Float32Array(vocabSize);
  let p = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (p + 8 > bytes.length) throw new FormatError(`tokenizer: file ends inside the header of piece ${i}`);
    scores[i] = view.getFloat32(p, true);
    const len = view.getInt32(p + 4, true);
    p += 8;
    if (len < 0) throw new FormatError(`tokenizer: piece ${i} has negative length ${len}`);
    if (p + len > bytes.length) throw new FormatError(`tokenizer: piece ${i} (length ${len}) runs past the end of the file`);
    pieces.push(bytes.slice(p, p + len));
    p += len;
  }
  if (p !== bytes.length) throw new FormatError(`tokenizer: ${bytes.length - p} bytes left after ${vocabSize} pieces (wrong vocab size?)`);
  return new Llama2cTokenizer(pieces, scores, maxTokenLength);
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

class Llama2cTokenizer implements Tokenizer {
  readonly kind = 'llama2c' as const;
  readonly bosId = BOS;
  readonly eosId = EOS;
  readonly vocabSize: number;
  private readonly strings: string[];
  private readonly lookup = new Map<string, number>();
  private readonly byteValue: Int16Array;

  constructor(readonly pieces: readonly Uint8Array[], readonly scores: Float32Array, readonly maxTokenLength: number) {
    this.vocabSize = pieces.length;
    this.strings = pieces.map(latin1);
    // With duplicate pieces run.c's bsearch may return either; we take the lowest id.
    this.strings.forEach((s, id) => { if (!this.lookup.has(s)) this.lookup.set(s, id); });
    this.byteValue = new Int16Array(this.vocabSize).fill(-1);
    this.strings.forEach((s, id) => {
      const m = BYTE_PIECE.exec(s);
      if (m) this.byteValue[id] = parseInt(m[1], 16);
    });
  }

  encode(text: string, { bos = true, eos = false }: { bos?: boolean; eos?: boolean } = {}): Int32Array {
    if (typeof text !== 'string') throw new OptionError('tokenizer: text must be a string');
    const utf8 = new TextEncoder().encode(text);
    const tokens: number[] = [];
    if (bos) tokens.push(BOS);
    if (utf8.length > 0) {
      // run.c pushes the id of " " unconditionally (-1 when absent, a bug); we skip it then.
      const space = this.lookup.get(' ');
      if (space !== undefined) tokens.push(space);
    }
    // One codepoint at a time, as run.c does: a lead byte starts a new buffer, continuation
    // bytes (10xxxxxx) extend it up to 4 bytes.
    let start = 0;
    for (let i = 0; i < utf8.length; i++) {
      if (i + 1 < utf8.length && (utf8[i + 1] & 0xc0) === 0x80 && i + 1 - start < 4) continue;
      const chunk = utf8.subarray(start, i + 1);
      const id = this.lookup.get(latin1(chunk));
      if (id !== undefined) tokens.push(id);
      else for (const b of chunk) tokens.push(b + 3);
      start = i + 1;
    }
    this.merge(tokens);
    if (eos) tokens.push(EOS);
    return Int32Array.from(tokens);
  }

  /**
   * Repeatedly merges the adjacent pair whose concatenation is the highest-scoring piece, the
   * leftmost on ties (run.c scans left to right with a strict >, from -1e10). run.c rescans
   * the whole sequence per merge; a heap over a linked list with lazy invalidation picks the
   * same pair each step in O(n log n).
   */
  private merge(tokens: number[]): void {
    const n = tokens.length;
    if (n < 2) return;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap<PairEntry>();
    const consider = (left: number) => {
      const right = next[left];
      if (left < 0 || right < 0) return;
      const a = this.strings[tokens[left]];
      const b = this.strings[tokens[right]];
      if (a === undefined || b === undefined) return;
      const id = this.lookup.get(a + b);
      if (id === undefined || !(this.scores[id] > -1e10)) return;
      heap.push({ score: this.scores[id], left, right, id, lv: version[left], rv: version[right] });
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    for (;;) {
      const top = heap.pop();
      if (!top) break;
      const { left, right } = top;
      if (version[left] !== top.lv || version[right] !== top.rv || next[left] !== right) continue;
      tokens[left] = top.id;
      version[left]++;
      version[right]++;
      const after = next[right];
      next[left] = after;
      if (after >= 0) prev[after] = left;
      next[right] = -1;
      // Entries for the pair ending at `left` went stale with version[left]; re-add both neighbours.
      consider(prev[left]);
      consider(left);
    }
    let k = 0;
    for (let i = 0; i >= 0; i = next[i]) tokens[k++] = tokens[i];
    tokens.length = k;
  }

  /** Concatenates pieces (byte pieces as raw bytes) and decodes the stream as UTF-8, invalid
   * sequences becoming U+FFFD. BOS and EOS give no text; a piece right after BOS loses its
   * leading space, as in run.c. */
  decode(tokens: ArrayLike<number>): string {
    const out: number[] = [];
    let prevTok = -1;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) throw new OptionError(`tokenizer: token ${t} at ${i} is not in the vocabulary`);
      if (t !== BOS && t !== EOS) {
        if (this.byteValue[t] >= 0) out.push(this.byteValue[t]);
        else {
          const piece = this.pieces[t];
          const from = prevTok === BOS && piece[0] === 0x20 ? 1 : 0;
          for (let j = from; j < piece.length; j++) out.push(piece[j]);
        }
      }
      prevTok = t;
    }
    return new TextDecoder('utf-8').decode(Uint8Array.from(out));
  }
}

interface PairEntry { score: number; left: number; right: number; id: number; lv: number; rv: number }
