// llama2.c tokenizer: encode must match run.c token for token; decode must invert it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FormatError, OptionError } from '../src/core/errors.js';
import { readTokenizer } from '../src/formats/tokenizer.js';
import { readData, readDataText, rng, throwsType, sameArray, outcome } from './helpers/util.js';

const tokBytes = readData('tok512.bin');
const tok = readTokenizer(tokBytes, 512);

/** run.c's encode() transcribed literally: O(n^2) rescans, strict > from -1e10, leftmost wins. */
function bruteEncode(text: string, bos: boolean, eos: boolean): number[] {
  const vocab = tok.pieces.map((p) => Array.from(p, (b) => String.fromCharCode(b)).join(''));
  const index = new Map<string, number>();
  for (let i = vocab.length - 1; i >= 0; i--) index.set(vocab[i], i);
  const lookup = (s: string) => index.get(s) ?? -1;
  const bytes = new TextEncoder().encode(text);
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (bytes.length) tokens.push(lookup(' '));
  let buf: number[] = [];
  for (let c = 0; c < bytes.length; c++) {
    if ((bytes[c] & 0xc0) !== 0x80) buf = [];
    buf.push(bytes[c]);
    if (c + 1 < bytes.length && (bytes[c + 1] & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup(String.fromCharCode(...buf));
    if (id !== -1) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  for (;;) {
    let best = -1e10, bestId = -1, bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup(vocab[tokens[i]] + vocab[tokens[i + 1]]);
      if (id !== -1 && tok.scores[id] > best) { best = tok.scores[id]; bestId = id; bestIdx = i; }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

const piece = (s: string) => tok.pieces.findIndex((p) => new TextDecoder().decode(p) === s);

test('reads tok512.bin', () => {
  assert.is(tok.vocabSize, 512);
  assert.is(tok.maxTokenLength, 7);
  assert.is(new TextDecoder().decode(tok.pieces[1]), '\n<s>\n');
  assert.is(new TextDecoder().decode(tok.pieces[3]), '<0x00>');
  assert.is(tok.scores[260], -1);
  throwsType(() => readTokenizer(tokBytes, 511), FormatError, /left after/);
  throwsType(() => readTokenizer(tokBytes, 513), FormatError);
  throwsType(() => readTokenizer(tokBytes, 1e9), FormatError, /cannot hold/);
  throwsType(() => readTokenizer(tokBytes, 0), OptionError);
  for (let cut = 0; cut < tokBytes.length; cut += 37) assert.is(outcome(() => readTokenizer(tokBytes.subarray(0, cut), 512)), 'BAD_FILE');
  const negLen = tokBytes.slice();
  new DataView(negLen.buffer).setInt32(8, -1, true);
  throwsType(() => readTokenizer(negLen, 512), FormatError, /negative/);
});

test('hand-checked encodings', () => {
  const sp = piece(' '), a = piece(' a'), he = piece('he'), she = piece(' he');
  assert.ok(sp > 0 && a > 0 && he > 0 && she > 0);
  assert.equal(Array.from(tok.encode('')), [1]);
  assert.equal(Array.from(tok.encode('', { bos: false })), []);
  assert.equal(Array.from(tok.encode('', { eos: true })), [1, 2]);
  // " " + "a" -> " a"
  assert.equal(Array.from(tok.encode('a')), [1, a]);
  // [" ", "h", "e"]: "he" (-1) beats " h" (-11), then " " + "he" -> " he"
  assert.equal(Array.from(tok.encode('he', { eos: true })), [1, she, 2]);
  // "é" is a piece, "日" is not: its UTF-8 bytes E6 97 A5 become ids byte + 3
  assert.ok(piece('é') > 258 && piece('日') === -1);
  assert.equal(Array.from(tok.encode('é', { bos: false })), [sp, piece('é')]);
  assert.equal(Array.from(tok.encode('日', { bos: false })), [sp, 0xe6 + 3, 0x97 + 3, 0xa5 + 3]);
  assert.equal(Array.from(tok.encode('\n')), [1, sp, 0x0a + 3]);
  // ties go to the leftmost pair: "aaaa" -> " a" first (leftmost), then the rest
  sameArray(tok.encode('aaaa aaaa'), bruteEncode('aaaa aaaa', true, false), 'aaaa');
});

test('decode inverts encode (ASCII, non-ASCII, byte fallback, controls)', () => {
  const texts = [
    'Once upon a time, there was a little girl named Lily.',
    'naïve café — 日本語 😀',
    'tab\there\nnew line\r\n and  double  spaces ',
    '   leading spaces',
    '\u0001\u007f~{}|<0x41>',
    'ünïcödé ß ẞ Ω ∑ 🙂🙃 𝄞',
  ];
  for (const t of texts) {
    const ids = tok.encode(t);
    assert.is(tok.decode(ids), t, JSON.stringify(t));
    sameArray(ids, bruteEncode(t, true, false), `brute ${JSON.stringify(t)}`);
  }
  assert.is(tok.decode(tok.encode('x', { eos: true })), 'x');
  // without BOS the dummy-prefix space stays, as in run.c
  assert.is(tok.decode(tok.encode('hi', { bos: false })), ' hi');
  // byte tokens that do not form UTF-8 decode to U+FFFD
  assert.is(tok.decode([0xff + 3]), '\ufffd');
  throwsType(() => tok.decode([512]), OptionError);
  throwsType(() => tok.decode([-1]), OptionError);
});

test('matches a literal run.c transcription on 300 random strings', () => {
  const r = rng(99);
  const alphabet = [...'abcdefghijklmnopqrstuvwxyz     ,.!?\'"\nTHESO', 'é', 'ü', '—', '日', '本', '😀', '\t', '0', '9'];
  for (let i = 0; i < 300; i++) {
    let s = '';
    const n = Math.floor(r() * 40);
    for (let k = 0; k < n; k++) s += alphabet[Math.floor(r() * alphabet.length)];
    const bos = r() < 0.8, eos = r() < 0.3;
    sameArray(tok.encode(s, { bos, eos }), bruteEncode(s, bos, eos), JSON.stringify(s));
    if (bos) assert.is(tok.decode(tok.encode(s, { bos, eos })), s);
  }
});

test('first story of tinystories-valid-a.txt: brute-force agreement and round trip', () => {
  const text = readDataText('tinystories-valid-a.txt');
  // The file opens with the tail of a story (two paragraphs) before the next "Once upon a time".
  const first = text.slice(0, text.indexOf('\n\nOnce upon a time'));
  assert.ok(first.length > 300 && first.includes('\n\n'), `${first.length}`);
  const ids = tok.encode(first);
  sameArray(ids, bruteEncode(first, true, false), 'first story');
  assert.ok(ids.length < first.length * 0.7, `compresses: ${ids.length} tokens for ${first.length} chars`);
  assert.is(tok.decode(ids), first);
  // a longer stretch (many stories, newlines included) round-trips too
  const mid = text.slice(0, 6000);
  sameArray(tok.encode(mid), bruteEncode(mid, true, true).slice(0, -1), '6000 chars');
  const long = text.slice(0, 60000);
  assert.is(tok.decode(tok.encode(long)), long);
});

test.run();
