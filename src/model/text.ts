// Text for calibration and evaluation: paragraphs (separated by blank lines), each tokenized
// with the special tokens the tokenizer adds by default (BOS for llama2.c, Llama, Gemma; none
// for Qwen: as transformers' tokenizer(text)); a plain text file does not mark where one
// document ends and the next begins, so every paragraph starts fresh), concatenated.
import { OptionError } from '../core/errors.js';
import type { TextTokenizer } from '../formats/tokenizer.js';

export function splitParagraphs(text: string): string[] {
  return text
    .split(/\r?\n\s*\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Parses "A:B" (either side optional; B exclusive) into indices of `count` paragraphs. */
export function paragraphRange(spec: string | undefined, count: number): [number, number] {
  if (spec === undefined || spec === '') return [0, count];
  const m = /^(\d*):(\d*)$/.exec(spec);
  if (!m) throw new OptionError(`paragraph range must look like A:B, A: or :B, got "${spec}"`);
  const a = m[1] === '' ? 0 : Number(m[1]);
  const b = m[2] === '' ? count : Math.min(count, Number(m[2]));
  if (!(a < b)) throw new OptionError(`paragraph range ${spec} selects no paragraphs (the text has ${count})`);
  return [a, b];
}

export function tokenizeParagraphs(tokenizer: TextTokenizer, paragraphs: string[]): Int32Array {
  return concat(paragraphs.map((s) => tokenizer.encode(s)), Int32Array);
}

/** The arrays one after another, in one new array of type `Type`. */
export function concat<T extends Int32Array | Uint8Array>(parts: T[], Type: { new (n: number): T }): T {
  const out = new Type(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
