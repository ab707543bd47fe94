// A minimal POSIX ustar writer (and the reader the tests use): regular files only, names up
// to 100 bytes (or 255 with a prefix), no dependency. Enough to hand a checkpoint folder to the
// user as one download that `tar xf` and every archive tool opens.

export interface TarEntry {
  name: string;
  data: Uint8Array | string;
}

const BLOCK = 512;
const utf8 = new TextEncoder();

function octal(value: number, width: number): string {
  // width - 1 digits and a NUL, as tar expects for numeric fields.
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function putString(header: Uint8Array, offset: number, width: number, text: string): void {
  const bytes = utf8.encode(text);
  if (bytes.length > width) throw new Error(`tar: "${text}" does not fit a ${width}-byte field`);
  header.set(bytes, offset);
}

function splitName(name: string): [prefix: string, name: string] {
  if (utf8.encode(name).length <= 100) return ['', name];
  // ustar: prefix (<= 155 bytes) + '/' + name (<= 100 bytes).
  for (let i = name.indexOf('/'); i > 0; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (utf8.encode(prefix).length <= 155 && utf8.encode(rest).length <= 100) return [prefix, rest];
  }
  throw new Error(`tar: file name too long: ${name}`);
}

/** The bytes of a tar archive holding `entries` (mode 0644, modification time `mtime` in seconds). */
export function writeTar(entries: TarEntry[], mtime = 0): Uint8Array {
  const files = entries.map((e) => ({ name: e.name, data: typeof e.data === 'string' ? utf8.encode(e.data) : e.data }));
  const size = files.reduce((n, f) => n + BLOCK + Math.ceil(f.data.length / BLOCK) * BLOCK, 2 * BLOCK);
  const out = new Uint8Array(size);
  let at = 0;
  for (const f of files) {
    const header = out.subarray(at, at + BLOCK);
    const [prefix, name] = splitName(f.name);
    putString(header, 0, 100, name);
    putString(header, 100, 8, octal(0o644, 8));
    putString(header, 108, 8, octal(0, 8));
    putString(header, 116, 8, octal(0, 8));
    putString(header, 124, 12, octal(f.data.length, 12));
    putString(header, 136, 12, octal(Math.floor(mtime), 12));
    putString(header, 148, 8, '        '); // checksum counted as spaces
    header[156] = 0x30; // '0': regular file
    putString(header, 257, 6, 'ustar\0');
    putString(header, 263, 2, '00');
    putString(header, 345, 155, prefix);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += header[i];
    putString(header, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
    out.set(f.data, at + BLOCK);
    at += BLOCK + Math.ceil(f.data.length / BLOCK) * BLOCK;
  }
  return out; // ends with two zero blocks
}

/** Reads the regular files of a ustar archive (as written above). */
export function readTar(bytes: Uint8Array): TarEntry[] {
  const text = new TextDecoder();
  const field = (h: Uint8Array, offset: number, width: number) => {
    const raw = h.subarray(offset, offset + width);
    const end = raw.indexOf(0);
    return text.decode(end < 0 ? raw : raw.subarray(0, end));
  };
  const entries: TarEntry[] = [];
  for (let at = 0; at + BLOCK <= bytes.length;) {
    const h = bytes.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (sum !== parseInt(field(h, 148, 8).trim(), 8)) throw new Error(`tar: bad header checksum at byte ${at}`);
    const prefix = field(h, 345, 155);
    const name = (prefix ? prefix + '/' : '') + field(h, 0, 100);
    const size = parseInt(field(h, 124, 12).trim(), 8);
    const type = String.fromCharCode(h[156] || 0x30);
    if (type === '0') entries.push({ name, data: bytes.slice(at + BLOCK, at + BLOCK + size) });
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return entries;
}
