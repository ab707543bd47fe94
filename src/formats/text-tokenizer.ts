// What the model code needs from a tokenizer, whichever file it came from: llama2.c's
// tokenizer.bin (./tokenizer.ts), Hugging Face's tokenizer.json (./hf-tokenizer.ts) or a GGUF
// file's vocabulary (./gguf-tokenizer.ts).

/** Which special tokens `encode` adds. Undefined: what the tokenizer adds by default (llama2.c:
 * BOS; Hugging Face: what transformers' `tokenizer(text)` adds). true: exactly `bosId` /
 * `eosId` on that side. false: nothing on that side. */
export interface EncodeOptions {
  bos?: boolean;
  eos?: boolean;
}

/** What the model code needs from a tokenizer, whichever file it came from. */
export interface TextTokenizer {
  readonly kind: 'llama2c' | 'huggingface' | 'gguf';
  /** Every id `encode` can return is below this. */
  readonly vocabSize: number;
  /** The beginning / end of text token, or null when the tokenizer has none (e.g. Qwen's BOS). */
  readonly bosId: number | null;
  readonly eosId: number | null;
  encode(text: string, options?: EncodeOptions): Int32Array;
  decode(ids: ArrayLike<number>): string;
}
