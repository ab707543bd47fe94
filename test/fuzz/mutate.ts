// Structured mutation for the fuzz suite: a seeded generator, and mutators that know what a
// format is made of (integer fields of a binary header, JSON values, sections of bytes), so
// most cases get past the first check and reach the deep ones. Everything follows from the
// seed: a case is reproduced from (target, seed, index) alone.

/** mulberry32 with helpers; the same sequence on every runtime. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** One of `choices` with probability proportional to its weight. */
  weighted<T>(choices: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of choices) total += w;
    let x = this.next() * total;
    for (const [w, v] of choices) if ((x -= w) < 0) return v;
    return choices[choices.length - 1][1];
  }
}

/** A case's seed from the run's seed, the target and the case index. */
export function caseSeed(seed: number, target: string, index: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < target.length; i++) h = Math.imul(h ^ target.charCodeAt(i), 0x01000193) >>> 0;
  return Math.imul(h ^ index, 0x85ebca6b) >>> 0;
}

// ------------------------------------------------------------------------- integer values

/** Values that break size arithmetic: zero, one, sign and width boundaries, off-by-ones. */
export const INTERESTING: readonly number[] = [
  0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024, 4096, 65535, 65536,
  -1, -2, -128, -32768, 0x7fffffff, -0x80000000, 0x80000000, 0xffffffff, 0x100000000,
  2 ** 40, 2 ** 52, 2 ** 53 - 1, 2 ** 53, 2 ** 62, 2 ** 63, 2 ** 64 - 1,
];

/** A value for an integer field of `bytes` width: an interesting one, or the old one nudged. */
export function mutateInteger(rng: Rng, old: bigint, bytes: number, signed: boolean): bigint {
  const bits = BigInt(bytes * 8);
  const mod = 1n << bits;
  let v: bigint;
  switch (rng.int(4)) {
    case 0: v = BigInt(rng.pick(INTERESTING)); break;
    case 1: v = old + BigInt(rng.pick([1, -1, 2, -2, 4, -4, 8, 16, 1024])); break;
    case 2: v = old * BigInt(rng.pick([2, 3, 16, 1024, 65536])); break;
    default: v = old ^ (1n << BigInt(rng.int(bytes * 8))); break;
  }
  v = ((v % mod) + mod) % mod; // wrap to the field's width, as the bytes will hold it
  return signed && v >= mod / 2n ? v - mod : v;
}

/** Interesting float32 values: non-finite, extreme, subnormal, signed zero. */
export const INTERESTING_FLOATS: readonly number[] = [
  NaN, Infinity, -Infinity, 3.4028234663852886e38, -3.4028234663852886e38, 1e38, 1.4e-45, -1.4e-45, 1.1754943508222875e-38, -0, 0, 1, -1, 65504, 1e-20,
];

// --------------------------------------------------------------------------- binary fields

/** A field of a binary format: where it is and how to read it. */
export interface Field {
  offset: number;
  bytes: 1 | 2 | 4 | 8;
  kind: 'int' | 'uint' | 'float';
  /** What it is, for failure reports. */
  what: string;
}

function readField(view: DataView, f: Field): bigint {
  if (f.kind === 'float') return 0n;
  switch (f.bytes) {
    case 1: return BigInt(f.kind === 'int' ? view.getInt8(f.offset) : view.getUint8(f.offset));
    case 2: return BigInt(f.kind === 'int' ? view.getInt16(f.offset, true) : view.getUint16(f.offset, true));
    case 4: return BigInt(f.kind === 'int' ? view.getInt32(f.offset, true) : view.getUint32(f.offset, true));
    case 8: return f.kind === 'int' ? view.getBigInt64(f.offset, true) : view.getBigUint64(f.offset, true);
  }
}

function writeField(view: DataView, f: Field, v: bigint): void {
  switch (f.bytes) {
    case 1: view.setUint8(f.offset, Number(BigInt.asUintN(8, v))); break;
    case 2: view.setUint16(f.offset, Number(BigInt.asUintN(16, v)), true); break;
    case 4: view.setUint32(f.offset, Number(BigInt.asUintN(32, v)), true); break;
    case 8: view.setBigUint64(f.offset, BigInt.asUintN(64, v), true); break;
  }
}

/** Sets one field to a mutated value (a float field to an interesting float); returns what. */
export function mutateField(rng: Rng, bytes: Uint8Array, f: Field): string {
  if (f.offset + f.bytes > bytes.length) return 'field past the end';
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (f.kind === 'float') {
    const v = rng.pick(INTERESTING_FLOATS);
    if (f.bytes === 4) view.setFloat32(f.offset, v, true);
    else if (f.bytes === 8) view.setFloat64(f.offset, v, true);
    return `${f.what} := ${v}`;
  }
  const v = mutateInteger(rng, readField(view, f), f.bytes, f.kind === 'int');
  writeField(view, f, v);
  return `${f.what} := ${v}`;
}

// ----------------------------------------------------------------------------- raw bytes

/** An unstructured change: truncation, extension, bit flips, overwrites, copied and swapped
 * chunks. Cuts favour `boundaries` (section starts the format knows about). */
export function mutateBytes(rng: Rng, bytes: Uint8Array, boundaries: readonly number[] = []): { bytes: Uint8Array; what: string } {
  const n = bytes.length;
  const cut = () => (boundaries.length && rng.chance(0.6) ? Math.max(0, Math.min(n, rng.pick(boundaries) + rng.pick([0, 0, -1, 1, -4, 4, -8]))) : rng.int(n + 1));
  switch (rng.int(7)) {
    case 0: {
      const at = cut();
      return { bytes: bytes.slice(0, at), what: `truncated to ${at} bytes` };
    }
    case 1: {
      const extra = rng.pick([1, 3, 4, 8, 64, 4096]);
      const out = new Uint8Array(n + extra);
      out.set(bytes);
      for (let i = n; i < out.length; i++) out[i] = rng.int(256);
      return { bytes: out, what: `extended by ${extra} bytes` };
    }
    case 2: {
      const out = bytes.slice();
      const flips = 1 + rng.int(8);
      for (let k = 0; k < flips && n > 0; k++) out[rng.int(n)] ^= 1 << rng.int(8);
      return { bytes: out, what: `${flips} bits flipped` };
    }
    case 3: {
      const out = bytes.slice();
      const at = cut();
      const len = Math.min(n - at, 1 + rng.int(16));
      out.fill(rng.pick([0, 0xff, 0x7f, 0x80]), at, at + Math.max(0, len));
      return { bytes: out, what: `${len} bytes overwritten at ${at}` };
    }
    case 4: {
      // A chunk copied over another place (duplicated records, shifted fields).
      const out = bytes.slice();
      const from = cut(), to = cut();
      const len = Math.min(n - from, n - to, 1 + rng.int(64));
      if (len > 0) out.copyWithin(to, from, from + len);
      return { bytes: out, what: `${Math.max(0, len)} bytes copied from ${from} to ${to}` };
    }
    case 5: {
      // Two sections swapped (the same length, so offsets stay plausible).
      const out = bytes.slice();
      const a = cut(), b = cut();
      const len = Math.min(Math.abs(b - a), n - Math.max(a, b), 1 + rng.int(256));
      if (len > 0) {
        const tmp = out.slice(a, a + len);
        out.copyWithin(a, b, b + len);
        out.set(tmp, b);
      }
      return { bytes: out, what: `sections of ${Math.max(0, len)} bytes at ${a} and ${b} swapped` };
    }
    default: {
      // A chunk removed: everything after it shifts.
      const at = cut();
      const len = Math.min(n - at, 1 + rng.int(8));
      const out = new Uint8Array(n - len);
      out.set(bytes.subarray(0, at));
      out.set(bytes.subarray(at + len), at);
      return { bytes: out, what: `${len} bytes removed at ${at}` };
    }
  }
}

// ---------------------------------------------------------------------------------- JSON

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** JSON values that break readers: wrong types, signs, sizes, empty containers. */
export const INTERESTING_JSON: readonly Json[] = [
  null, true, false, 0, -1, 1, 2, 3, 0.5, -0.5, 1.5, 1e9, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, 1e-300,
  '', 'x', '1', 'NaN', 'F32', 'F16', 'BF16', 'I32', 'U8', 'I64', 'F64', 'BOOL', 'llama', 'gptq', 'gptq_v2', 'linear', 'longrope',
  [], [0], [-1], [1, 2], [2 ** 53], [[]], {}, { a: 1 },
];

function paths(v: Json, at: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) paths(v[k], [...at, k], out);
  return out;
}

function getAt(v: Json, path: Array<string | number>): Json {
  let x: any = v;
  for (const p of path) x = x[p];
  return x;
}

/** Strings the document holds (names, dtypes, types): swapping them keeps cases plausible. */
function strings(v: Json, out: string[] = []): string[] {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) v.forEach((x) => strings(x, out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) (out.push(k), strings(x, out));
  return out;
}

/** A changed copy of `doc`: 1-3 edits at random places (value replaced by an interesting or
 * nudged one, deleted, duplicated, swapped with another, key added or renamed). */
export function mutateJson(rng: Rng, doc: Json, extra: readonly Json[] = []): { doc: Json; what: string[] } {
  let root: Json = structuredClone(doc);
  const what: string[] = [];
  const edits = 1 + rng.int(3);
  for (let e = 0; e < edits; e++) {
    const all = paths(root);
    const path = rng.pick(all);
    const label = path.length ? path.join('.') : '(root)';
    const old = getAt(root, path);
    const pool = [...INTERESTING_JSON, ...extra, ...strings(root).slice(0, 200)];
    let value: Json | undefined = old;
    const op = rng.int(8);
    if (op === 0 || op === 1) value = structuredClone(rng.pick(pool));
    else if (op === 2 && typeof old === 'number') value = rng.pick([old + 1, old - 1, old * 2, -old, old / 2, old + 0.5, old * 1024]);
    else if (op === 3) value = undefined; // delete
    else if (op === 4) value = structuredClone(getAt(root, rng.pick(all)));
    else if (op === 5 && Array.isArray(old)) value = rng.chance(0.5) ? [...old, ...old] : old.slice(0, rng.int(old.length + 1));
    else if (op === 6 && old !== null && typeof old === 'object' && !Array.isArray(old)) {
      const keys = Object.keys(old);
      const copy: { [k: string]: Json } = { ...old };
      if (keys.length && rng.chance(0.5)) {
        const k = rng.pick(keys);
        copy[`${k}${rng.pick(['', '_', 'x', '.weight'])}${rng.int(3)}`] = copy[k];
        delete copy[k];
      } else {
        copy[String(rng.pick(pool))] = structuredClone(rng.pick(pool));
      }
      value = copy;
    } else value = structuredClone(rng.pick(pool));
    what.push(`${label} ${value === undefined ? 'deleted' : `:= ${JSON.stringify(value)?.slice(0, 60)}`}`);
    if (path.length === 0) {
      root = value === undefined ? null : value;
      continue;
    }
    const parent: any = getAt(root, path.slice(0, -1));
    const key = path[path.length - 1];
    if (value === undefined) {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
    } else parent[key] = value;
  }
  return { doc: root, what };
}

/** Text-level JSON damage a value mutation cannot make: a key given twice, truncation,
 * a stray character, a changed digit. */
export function mutateJsonText(rng: Rng, text: string): { text: string; what: string } {
  switch (rng.int(4)) {
    case 0: {
      // Duplicate a "key": value member right after itself.
      const re = /"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|-?[\d.eE+-]+|true|false|null)/g;
      const members = [...text.matchAll(re)];
      if (!members.length) return { text, what: 'no member to duplicate' };
      const m = rng.pick(members);
      const at = m.index! + m[0].length;
      return { text: `${text.slice(0, at)},${m[0]}${text.slice(at)}`, what: `member ${m[1]} given twice` };
    }
    case 1: {
      const at = rng.int(text.length + 1);
      return { text: text.slice(0, at), what: `JSON truncated at ${at}` };
    }
    case 2: {
      const at = rng.int(text.length + 1);
      const c = rng.pick(['{', '}', '[', ']', ',', '"', '\\', '\u0000', '\ud800', 'é', ' ']);
      return { text: text.slice(0, at) + c + text.slice(at), what: `${JSON.stringify(c)} inserted at ${at}` };
    }
    default: {
      const digits = [...text.matchAll(/\d/g)];
      if (!digits.length) return { text, what: 'no digit' };
      const m = rng.pick(digits);
      const d = String(rng.int(10));
      return { text: text.slice(0, m.index!) + d + text.slice(m.index! + 1), what: `digit at ${m.index} := ${d}` };
    }
  }
}
