// llama.cpp's own quantizers as a test oracle: the llama.cpp source that node-llama-cpp ships
// (node_modules/node-llama-cpp/llama/gitRelease.bundle) is cloned, and ggml/src/ggml-quants.c
// is compiled with test/helpers/ggml-ref.c (-O2, scalar reference code, no fast-math, no
// contraction) into a small executable. Cached under out/ggml-ref/, keyed by the bundle's tag
// and commit, the driver source and the flags, so only the first run compiles (~10 s).
// Missing git or cc is an error with a clear message, never a skip.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = process.cwd();
const LLAMA = join(ROOT, 'node_modules', 'node-llama-cpp', 'llama');
const BUNDLE = join(LLAMA, 'gitRelease.bundle');
const DRIVER = join(ROOT, 'test', 'helpers', 'ggml-ref.c');
// Release-build semantics (NDEBUG, as llama.cpp's CMake Release), IEEE float32 throughout:
// no -ffast-math, and no FMA contraction (-ffp-contract=off; on x86-64 without -march the
// compiler has no FMA anyway).
const CFLAGS = ['-O2', '-std=gnu11', '-ffp-contract=off', '-fno-fast-math', '-DNDEBUG'];

function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...options });
  if (r.error) throw new Error(`ggml reference: could not run ${cmd} (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`);
  if (r.status !== 0) throw new Error(`ggml reference: ${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** Throws a clear error unless `git` and `cc` run (env: for testing this very check). */
export function requireTools(env: NodeJS.ProcessEnv = process.env): void {
  for (const tool of ['git', 'cc']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8', env });
    if (r.error || r.status !== 0) {
      throw new Error(`the ggml reference tests need \`${tool}\` on PATH to build llama.cpp's ggml-quants.c (${tool} --version: ${r.error ? (r.error as NodeJS.ErrnoException).code : `exit ${r.status}`}); install it (e.g. apt-get install -y ${tool === 'cc' ? 'gcc' : 'git'})`);
    }
  }
}

let built: string | undefined;

/** Path of the compiled reference executable, building it on first use. */
export function ggmlRefBinary(): string {
  if (built) return built;
  requireTools();
  if (!existsSync(BUNDLE)) throw new Error(`ggml reference: ${BUNDLE} is missing (node-llama-cpp not installed?)`);
  const tag = JSON.parse(readFileSync(join(LLAMA, 'llama.cpp.info.json'), 'utf8')).tag as string;
  const head = run('git', ['bundle', 'list-heads', BUNDLE]).trim().split(/\s+/)[0];
  const key = createHash('sha256').update(readFileSync(DRIVER)).update(CFLAGS.join(' ')).update(head).digest('hex').slice(0, 12);
  const dir = join(ROOT, 'out', 'ggml-ref', `${tag}-${head.slice(0, 12)}-${key}`);
  const bin = join(dir, 'ggml-ref');
  if (existsSync(bin)) return (built = bin);
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const src = join(work, 'llama.cpp');
    run('git', ['clone', '--quiet', '--no-checkout', BUNDLE, src]);
    run('git', ['-c', 'advice.detachedHead=false', 'checkout', '--quiet', head, '--',
      'ggml/include', 'ggml/src/ggml-quants.c', ':(glob)ggml/src/*.h', ':(glob)ggml/src/ggml-cpu/*.h'], { cwd: src });
    run('cc', [...CFLAGS, '-I', join(src, 'ggml/include'), '-I', join(src, 'ggml/src'),
      join(src, 'ggml/src/ggml-quants.c'), DRIVER, '-lm', '-o', join(work, 'ggml-ref')]);
    rmSync(src, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    renameSync(work, dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return (built = bin);
}

function call(mode: number, type: number, rows: number, cols: number, payload: Uint8Array[], hasImatrix = false): Buffer {
  const header = new Int32Array([mode, type, rows, cols, hasImatrix ? 1 : 0]);
  const input = Buffer.concat([Buffer.from(header.buffer), ...payload.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))]);
  const r = spawnSync(ggmlRefBinary(), [], { input, maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0) throw new Error(`ggml reference failed (${r.error?.message ?? r.status}): ${r.stderr?.toString()}`);
  return r.stdout;
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** ggml_quantize_chunk + dequantize_row_* of rows x cols (imatrix: cols weights, optional). */
export function ggmlQuantize(type: number, rows: number, cols: number, data: Float32Array, rowBytes: number, imatrix?: Float32Array): { bytes: Uint8Array; dequant: Float32Array } {
  const out = call(1, type, rows, cols, imatrix ? [bytesOf(data), bytesOf(imatrix)] : [bytesOf(data)], !!imatrix);
  const n = rows * rowBytes;
  if (out.length !== n + rows * cols * 4) throw new Error(`ggml reference: ${out.length} bytes back, expected ${n + rows * cols * 4}`);
  const copy = new Uint8Array(out);
  return { bytes: copy.slice(0, n), dequant: new Float32Array(copy.slice(n).buffer) };
}

/** dequantize_row_* of rows x cols stored as `type`. */
export function ggmlDequantize(type: number, rows: number, cols: number, bytes: Uint8Array): Float32Array {
  const out = call(2, type, rows, cols, [bytes]);
  return new Float32Array(new Uint8Array(out).buffer);
}

/** Per type id: [block elements, block bytes, { field: byte offset }] from sizeof/offsetof. */
export function ggmlLayout(): Map<number, { blockElems: number; blockBytes: number; fields: Record<string, number> }> {
  const text = call(3, 0, 0, 1, []).toString('utf8');
  const map = new Map<number, { blockElems: number; blockBytes: number; fields: Record<string, number> }>();
  for (const line of text.trim().split('\n')) {
    const [id, blockElems, blockBytes, ...fields] = line.trim().split(/\s+/);
    map.set(Number(id), {
      blockElems: Number(blockElems), blockBytes: Number(blockBytes),
      fields: Object.fromEntries(fields.map((f) => { const [k, v] = f.split('='); return [k, Number(v)]; })),
    });
  }
  return map;
}

/**
 * round_f32(n * 2^-24) for an integer n: IEEE round to nearest, ties to even, computed in
 * integers (no float arithmetic), for checking that a decoded value is the one rounding of
 * its exact real expression. Every fp16 value, and every product of one with an integer, is
 * an integer multiple of 2^-24, and these magnitudes stay far inside float32's normal range.
 */
export function roundF32Times2m24(n: bigint): number {
  if (n === 0n) return 0;
  const neg = n < 0n;
  let m = neg ? -n : n;
  const bits = m.toString(2).length;
  let shift = 0;
  if (bits > 24) {
    shift = bits - 24;
    const q = m >> BigInt(shift);
    const rem = m - (q << BigInt(shift));
    const half = 1n << BigInt(shift - 1);
    m = rem > half || (rem === half && (q & 1n) === 1n) ? q + 1n : q;
  }
  const v = Number(m) * 2 ** (shift - 24);
  return neg ? -v : v;
}
