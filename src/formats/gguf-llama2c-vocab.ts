// tokenizer.ggml.* metadata for a llama2.c tokenizer.bin, so llama.cpp tokenizes with its
// SentencePiece ("llama") tokenizer what llama2.c tokenizes with run.c's encoder. Follows
// llama.cpp's own examples/convert-llama2c-to-ggml: ids 0/1/2 are <unk>/<s>/</s> (llama2.c
// stores BOS/EOS as "\n<s>\n" / "\n</s>\n"), "<0xXX>" pieces are byte tokens, empty pieces
// control tokens, and spaces become SentencePiece's U+2581 (llama2.c's export turned them into
// plain spaces; llama.cpp escapes spaces in the input before looking pieces up).
import { FormatError, OptionError } from '../core/errors.js';
import { GGUF_TOKEN_TYPE, type GgufMetadata } from './gguf-types.js';
import { BOS, EOS, type Tokenizer } from './tokenizer.js';

export const UNK = 0;

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The tokenizer.ggml.* entries for `tokenizer` (a llama2.c tokenizer.bin), in convert_hf_to_gguf's order. */
export function llama2cVocabMetadata(tokenizer: Tokenizer): GgufMetadata {
  const n = tokenizer?.vocabSize;
  if (!Number.isSafeInteger(n) || n <= EOS) throw new OptionError(`llama2c vocab: needs at least ${EOS + 1} pieces (unk, BOS, EOS), got ${String(n)}`);
  const tokens: string[] = [];
  const types = new Int32Array(n);
  const scores = Float32Array.from(tokenizer.scores);
  for (let id = 0; id < n; id++) {
    let text: string;
    try {
      text = utf8.decode(tokenizer.pieces[id]);
    } catch {
      throw new FormatError(`llama2c vocab: piece ${id} is not valid UTF-8 (GGUF token strings must be)`);
    }
    let type: number = GGUF_TOKEN_TYPE.normal;
    if (id === UNK) {
      text = '<unk>';
      type = GGUF_TOKEN_TYPE.unknown;
    } else if (id === BOS || id === EOS) {
      text = id === BOS ? '<s>' : '</s>';
      type = GGUF_TOKEN_TYPE.control;
    } else if (text.length === 0) {
      type = GGUF_TOKEN_TYPE.control;
    } else if (BYTE_PIECE.test(text)) {
      type = GGUF_TOKEN_TYPE.byte;
    }
    tokens.push(text.replaceAll(' ', '\u2581'));
    types[id] = type;
  }
  return new Map([
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'default' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: scores }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: BOS }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: EOS }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: UNK }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
    // run.c always prepends the " " piece to non-empty text: SentencePiece's dummy prefix.
    ['tokenizer.ggml.add_space_prefix', { type: 'bool', value: true }],
  ]);
}
