// Bounded memory on the real shapes (issue 10): `cdquant quantize` on synthetic Hugging Face
// checkpoints with the dimensions of TinyLlama-1.1B and Llama-2-7B (random BF16 weights, a
// chosen number of blocks), run as a child process per case; prints peak RSS, wall seconds and
// seconds per block, where the peak memory sits (wasm memory, JS heap, external buffers), and
// the calibration forward pass of one block in GFLOP/s. Figures only, never asserted.
//
//   node bench/scale.mjs [--cases LIST] [--windows 8] [--seqlen 256] [--threads 1]
//                        [--forward-runs 3] [--forward-threads 1,2] [--no-forward] [--no-quantize] [--full]
//                        [--forward-only]
//                        [--shard-mb 256] [--json FILE] [--keep DIR [--generate-only]] [--gc]
//
// LIST is comma-separated SHAPE:BLOCKS:METHOD[:THREADS] (shapes: tinyllama, llama2-7b; methods:
// gptq, cd, both 4-bit with groups of 128; THREADS defaults to --threads). --full adds the
// long cases (see FULL_CASES). --forward-only is the quick mode: no quantization, the forward
// bench alone, at TinyLlama's shape unless --cases names shapes (a minute or so here).
// The forward bench runs one block at 1 thread (this thread, no pool) and on a shared-memory
// WorkerPool of each other count in --forward-threads (runBlock's `threads`: products and
// attention heads shared; the same bits), and prints GFLOP/s and the speed-up over 1 thread.
// Run after `node scripts/build.mjs` (it runs build/cli.js and imports build/index.js).
//
// The checkpoints are generated into a temporary folder (deleted at the end, kept under DIR
// with --keep) as transformers' save_pretrained writes them: config.json, BF16 tensors in
// model-0000i-of-0000N.safetensors shards and model.safetensors.index.json; they are streamed
// to disk a chunk at a time, never held whole. Weights ~ N(0, 0.02), norm weights ~ N(1, 0.05)
// (the scale of trained Llama weights; the distribution only has to keep activations finite
// and give the solvers ordinary work: memory does not depend on the values). Tensor values
// depend only on the tensor's name, so block 0 is the same in a 2- and a 4-block checkpoint.
// Calibration: uniformly random token ids, WINDOWS consecutive windows of SEQLEN tokens
// (--nsamples 0), 8 x 256 by default: the real default of 128 x 256 would take about an hour
// per 7B block on this machine (16 x the forward passes and Hessian updates). The calibration
// states are then small (8 x 256 x 4096 x 4 bytes = 34 MB for 7B) and H has rank at most 2048,
// below the 4096 / 11008 input features of 7B layers (GPTQ's damping makes it definite; CD
// made 100-800 moves per row here, fewer than its cap of one per column).
//
// Memory is measured from outside and inside the child: the bench polls /proc/PID/status, and
// a preload (node --import, written next to the checkpoints) reads VmHWM when the child exits
// (the exact peak RSS of the process, all threads) and samples process.memoryUsage(), the size
// of every kernel's wasm memory and the bytes its allocations hold (the kernel's alloc/free
// are wrapped) at allocations and on a timer, by stage of the run.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { endianness, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    cases: { type: 'string' },
    windows: { type: 'string', default: '8' },
    seqlen: { type: 'string', default: '256' },
    threads: { type: 'string', default: '1' },
    'forward-runs': { type: 'string', default: '3' },
    'forward-threads': { type: 'string', default: '1,2' },
    'forward-only': { type: 'boolean' },
    'no-forward': { type: 'boolean' },
    'no-quantize': { type: 'boolean' },
    'generate-only': { type: 'boolean' },
    gc: { type: 'boolean' },
    full: { type: 'boolean' },
    'shard-mb': { type: 'string', default: '256' },
    json: { type: 'string' },
    keep: { type: 'string' },
  },
});

/** The real configs' dimensions (TinyLlama/TinyLlama-1.1B-Chat-v1.0 and meta-llama/Llama-2-7b-hf
 * config.json); the number of layers is the case's. */
const SHAPES = {
  tinyllama: {
    label: 'TinyLlama-1.1B',
    config: {
      hidden_size: 2048, intermediate_size: 5632, num_attention_heads: 32, num_key_value_heads: 4,
      vocab_size: 32000, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000.0,
    },
  },
  'llama2-7b': {
    label: 'Llama-2-7B',
    config: {
      hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_key_value_heads: 32,
      vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000.0,
    },
  },
};

// The default cases take 15-25 minutes on this shared 2-core machine: TinyLlama at 2 and 4
// blocks with GPTQ (peak RSS must not grow with blocks), 2 blocks with CD, and one Llama-2-7B
// block with GPTQ (the largest H, 11008 x 11008, and GPTQ's factor). --full adds what takes
// hours here: CD on a 7B block (about 10 minutes of solves), 2 blocks of 7B, 7B with 2
// threads, and the whole 22-block TinyLlama.
const DEFAULT_CASES = 'tinyllama:2:gptq,tinyllama:4:gptq,tinyllama:2:cd,llama2-7b:1:gptq';
const FULL_CASES = 'llama2-7b:1:cd,llama2-7b:2:gptq,llama2-7b:1:gptq:2,tinyllama:22:gptq';
const METHOD_FLAGS = {
  gptq: ['--method', 'gptq', '--bits', '4', '--group', '128'],
  cd: ['--method', 'cd', '--bits', '4', '--group', '128'],
};

const usage = (message) => {
  process.stderr.write(`bench/scale.mjs: ${message}\n`);
  process.exit(2);
};
const positiveInt = (name) => {
  const n = Number(values[name]);
  if (!Number.isSafeInteger(n) || n < 1) usage(`--${name} needs a positive whole number, got ${values[name]}`);
  return n;
};
const windows = positiveInt('windows');
const seqlen = positiveInt('seqlen');
const forwardRuns = positiveInt('forward-runs');
const forwardThreads = values['forward-threads'].split(',').map((t) => Number(t));
if (!forwardThreads.every((t) => Number.isSafeInteger(t) && t >= 1)) usage(`--forward-threads needs positive whole numbers, got ${values['forward-threads']}`);
if (values['forward-only']) {
  values['no-quantize'] = true;
  values.cases ??= 'tinyllama:1:gptq';
}
const shardBytes = positiveInt('shard-mb') * 1e6; // transformers' "256MB" is 256e6 bytes
const defaultThreads = positiveInt('threads');
const cases = (values.cases ?? DEFAULT_CASES + (values.full ? `,${FULL_CASES}` : '')).split(',').filter(Boolean).map((spec) => {
  const [shape, blocks, method, threads] = spec.trim().split(':');
  if (!SHAPES[shape]) usage(`case ${spec}: unknown shape ${shape} (${Object.keys(SHAPES).join(', ')})`);
  if (!METHOD_FLAGS[method]) usage(`case ${spec}: unknown method ${method} (${Object.keys(METHOD_FLAGS).join(', ')})`);
  const n = Number(blocks), t = Number(threads ?? defaultThreads);
  if (!Number.isSafeInteger(n) || n < 1 || !Number.isSafeInteger(t) || t < 1) usage(`case ${spec}: blocks and threads must be positive whole numbers`);
  return { shape, blocks: n, method, threads: t };
});
if (values['generate-only'] && !values.keep) usage('--generate-only needs --keep DIR (where the checkpoints stay)');
if (endianness() !== 'LE') throw new Error('the checkpoint writer assumes a little-endian host');

const MiB = 2 ** 20;
const GB = 1e9;
const log = (s) => process.stderr.write(`${s}\n`);
const tty = !!process.stderr.isTTY;
const median = (xs) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// ------------------------------------------------------------------------------------------
// Random numbers: integer PRNG (mulberry32), normals from a table of 65536 quantiles

function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** FNV-1a of a string: each tensor's stream is seeded by its name. */
function hashName(name) {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(p) {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.383577518672690e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const tail = (q) => (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** mean + std * z at the 65536 midpoint quantiles, as float32 and as BF16 bits: a sample is a
 * 16-bit random index (BF16 keeps 8 significant bits, far coarser than the table's steps). */
function normalTable(mean, std) {
  const f32 = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) f32[i] = mean + std * normalQuantile((i + 0.5) / 65536);
  const bits = new Uint32Array(f32.buffer);
  const bf16 = new Uint16Array(65536);
  // round to nearest even on the upper 16 bits (no NaN or infinity in the table)
  for (let i = 0; i < 65536; i++) bf16[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16;
  return { f32, bf16 };
}
const WEIGHT = normalTable(0, 0.02);
const NORM = normalTable(1, 0.05);

/** Fills `out` (Uint16Array of BF16 bits or Float32Array) with samples of `table`. */
function fillFrom(table, out, rng) {
  const src = out instanceof Float32Array ? table.f32 : table.bf16;
  let i = 0;
  for (; i + 1 < out.length; i += 2) {
    const r = rng();
    out[i] = src[r & 0xffff];
    out[i + 1] = src[r >>> 16];
  }
  if (i < out.length) out[i] = src[rng() & 0xffff];
}

// ------------------------------------------------------------------------------------------
// Synthetic Hugging Face checkpoints

function hfConfig(shape, layers) {
  return {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: 'silu',
    initializer_range: 0.02,
    ...SHAPES[shape].config,
    mlp_bias: false,
    model_type: 'llama',
    num_hidden_layers: layers,
    pretraining_tp: 1,
    rope_scaling: null,
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
    transformers_version: '4.44.2',
    use_cache: true,
  };
}

/** LlamaForCausalLM's state dict, in its order: [name, shape, table]. */
function stateDict(shape, layers) {
  const c = SHAPES[shape].config;
  const dim = c.hidden_size, hidden = c.intermediate_size;
  const kvDim = (dim / c.num_attention_heads) * c.num_key_value_heads;
  const out = [['model.embed_tokens.weight', [c.vocab_size, dim], WEIGHT]];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      [`${p}.self_attn.q_proj.weight`, [dim, dim], WEIGHT],
      [`${p}.self_attn.k_proj.weight`, [kvDim, dim], WEIGHT],
      [`${p}.self_attn.v_proj.weight`, [kvDim, dim], WEIGHT],
      [`${p}.self_attn.o_proj.weight`, [dim, dim], WEIGHT],
      [`${p}.mlp.gate_proj.weight`, [hidden, dim], WEIGHT],
      [`${p}.mlp.up_proj.weight`, [hidden, dim], WEIGHT],
      [`${p}.mlp.down_proj.weight`, [dim, hidden], WEIGHT],
      [`${p}.input_layernorm.weight`, [dim], NORM],
      [`${p}.post_attention_layernorm.weight`, [dim], NORM],
    );
  }
  out.push(['model.norm.weight', [dim], NORM], ['lm_head.weight', [c.vocab_size, dim], WEIGHT]);
  return out;
}

const CHUNK = 1 << 20; // values generated and written at a time

/**
 * Writes a checkpoint into `dir` as save_pretrained does: tensors in state-dict order, a new
 * shard when the next tensor would take the current one past `maxShard` bytes (a larger tensor
 * gets a shard of its own), model.safetensors.index.json with total_size and the sorted
 * weight_map. Returns the files' total size.
 */
function writeCheckpoint(dir, shape, layers, maxShard) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfig(shape, layers), null, 2) + '\n');
  const tensors = stateDict(shape, layers).map(([name, dims, table]) => ({ name, dims, table, bytes: dims.reduce((a, b) => a * b, 1) * 2 }));
  const shards = [[]];
  let used = 0;
  for (const t of tensors) {
    if (used > 0 && used + t.bytes > maxShard) {
      shards.push([]);
      used = 0;
    }
    shards[shards.length - 1].push(t);
    used += t.bytes;
  }
  const n = shards.length;
  const names = n === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`);
  const weightMap = {};
  let total = 0, fileBytes = 0;
  const buf = new Uint16Array(CHUNK);
  for (let s = 0; s < n; s++) {
    const header = { __metadata__: { format: 'pt' } };
    let at = 0;
    for (const t of shards[s]) {
      header[t.name] = { dtype: 'BF16', shape: t.dims, data_offsets: [at, at + t.bytes] };
      at += t.bytes;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8); // the header is padded to 8 bytes with spaces
    const prefix = Buffer.alloc(8 + json.length);
    prefix.writeBigUInt64LE(BigInt(json.length), 0);
    prefix.write(json, 8, 'latin1');
    const fd = openSync(join(dir, names[s]), 'w');
    try {
      writeSync(fd, prefix);
      for (const t of shards[s]) {
        const rng = mulberry32(hashName(t.name));
        for (let left = t.bytes / 2; left > 0; left -= CHUNK) {
          const part = left >= CHUNK ? buf : buf.subarray(0, left);
          fillFrom(t.table, part, rng);
          writeSync(fd, new Uint8Array(part.buffer, 0, part.length * 2));
        }
        weightMap[t.name] = names[s];
        total += t.bytes;
      }
    } finally {
      closeSync(fd);
    }
    fileBytes += prefix.length + at;
  }
  if (n > 1) {
    const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2) + '\n');
  }
  return { shards: n, bytes: fileBytes };
}

/** `count` uniformly random token ids in [3, vocab) (past llama's unk/bos/eos), int32 LE. */
function writeTokens(file, count, vocab, seed) {
  const rng = mulberry32(seed);
  const ids = new Int32Array(count);
  for (let i = 0; i < count; i++) ids[i] = 3 + (rng() % (vocab - 3));
  writeFileSync(file, new Uint8Array(ids.buffer));
}

// ------------------------------------------------------------------------------------------
// The child's memory: a preload (node --import) in the quantize process samples every thread's
// wasm memories, its JS heap and external buffers, and reads the kernel's high-water mark
// (VmHWM: the exact peak RSS of the whole process, all threads) when the process exits.

const PROBE = String.raw`
import { writeFileSync, readFileSync } from 'node:fs';
import { isMainThread, threadId } from 'node:worker_threads';
const out = process.env.CDQUANT_SCALE_PROBE;
// Every kernel instance: its memory, and its live allocations (alloc/free wrapped, so "live"
// is what the kernel holds, "wasm" the memory it grew to, which never shrinks).
const kernels = [];
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async function (...args) {
  const r = await instantiate.apply(this, args);
  const instance = r instanceof WebAssembly.Instance ? r : r.instance;
  const ex = instance.exports;
  if (!(ex.memory instanceof WebAssembly.Memory) || typeof ex.alloc !== 'function' || typeof ex.free !== 'function') return r;
  const k = { memory: ex.memory, live: 0, top: 0, sizes: new Map() };
  kernels.push(k);
  const wrapped = Object.assign(Object.create(null), ex);
  wrapped.alloc = (bytes) => {
    const ptr = ex.alloc(bytes);
    k.sizes.set(ptr, bytes);
    k.live += bytes;
    k.top = Math.max(k.top, ptr + bytes);
    // a new high of live kernel bytes is always sampled; other allocations at most every 5 ms
    const live = liveBytes();
    if (live > (liveMax[stage] ?? 0)) {
      liveMax[stage] = live;
      collect();
      sample();
    } else sampleSoon();
    return ptr;
  };
  wrapped.free = (ptr) => {
    const n = k.sizes.get(ptr);
    if (n !== undefined) {
      k.live -= n;
      k.sizes.delete(ptr);
    }
    sampleSoon();
    return ex.free(ptr);
  };
  const tracked = { exports: Object.freeze(wrapped) };
  return r instanceof WebAssembly.Instance ? tracked : { module: r.module, instance: tracked };
};
const wasmBytes = () => kernels.reduce((n, k) => n + k.memory.buffer.byteLength, 0);
const liveBytes = () => kernels.reduce((n, k) => n + k.live, 0);
// The highest address an allocation reached: the kernel's pages that can have been touched
// (the allocator grows memory by doubling it, so most of a grown memory may never be).
const topBytes = () => kernels.reduce((n, k) => n + k.top, 0);
const status = (key) => {
  const m = new RegExp('^' + key + ':\\s+(\\d+) kB', 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : null;
};
// --gc: a full collection before the samples at stage ends, at new highs of live kernel bytes
// and at new highs of a stage's RSS, so that JS buffers count only what is still referenced
// (node --expose-gc; a diagnosis: it changes when memory is released).
const gcMode = !!process.env.CDQUANT_SCALE_GC && typeof globalThis.gc === 'function';
// V8 frees the buffers of dead ArrayBuffers on a background thread after the collection:
// wait (up to 1 s) until the count stops falling.
const collect = !gcMode ? () => {} : () => {
  globalThis.gc();
  let before = process.memoryUsage().arrayBuffers;
  for (let waited = 0; waited < 1000; waited += 20) {
    const t = performance.now();
    while (performance.now() - t < 20);
    const now = process.memoryUsage().arrayBuffers;
    if (now >= before) break;
    before = now;
  }
};
let stage = 0;
const liveMax = {}; // stage -> largest live kernel bytes (exact: updated on every allocation)
let lastT = -1;
let lastSample = 0;
const max = { rss: 0, heapUsed: 0, external: 0, arrayBuffers: 0, wasm: 0, top: 0, live: 0 };
const peak = { rss: 0 };
const phases = {};
const timeline = [];
const t0 = performance.now();
function sample() {
  let m = process.memoryUsage();
  if (gcMode && m.rss > (phases[stage]?.rss ?? 0)) {
    // a new high of the stage: count only what survives a full collection
    collect();
    m = process.memoryUsage();
  }
  const now = performance.now();
  lastSample = now;
  const s = { t: (now - t0) / 1000, rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, wasm: wasmBytes(), top: topBytes(), live: liveBytes(), stage };
  for (const k of Object.keys(max)) max[k] = Math.max(max[k], s[k]);
  if (s.rss > peak.rss) Object.assign(peak, s);
  const ph = phases[stage];
  if (!ph || s.rss > ph.rss) phases[stage] = s;
  if (s.t - lastT >= 1) { timeline.push(s); lastT = s.t; }
  return s;
}
// Allocations and frees happen between kernel calls, also inside long synchronous stretches
// where timers cannot fire: sample there too, at most every 5 ms.
function sampleSoon() {
  if (performance.now() - lastSample >= 5) sample();
}
if (isMainThread) {
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (chunk, ...rest) => {
    // the stage: how many layers were reported finished (the parent names it by the next one)
    if (/\d+\/\d+ block \d+ \S+/.test(String(chunk))) stage++;
    collect();
    sample();
    return write(chunk, ...rest);
  };
  setInterval(sample, 25).unref();
  process.on('exit', () => {
    sample();
    writeFileSync(out, JSON.stringify({ vmHWM: status('VmHWM'), vmRSS: status('VmRSS'), max, peak, phases, liveMax, timeline }));
  });
} else {
  // Workers: their kernels and heaps, rewritten whenever a maximum grows.
  let written = '';
  setInterval(() => {
    sample();
    const text = JSON.stringify({ threadId, max });
    if (text !== written) { writeFileSync(out + '.worker-' + threadId, text); written = text; }
  }, 100).unref();
}
`;

/** /proc/PID/status of a live child: VmRSS and VmHWM in bytes (null once it is gone). */
function procStatus(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    const s = { rss: get('VmRSS'), hwm: get('VmHWM') };
    return Number.isFinite(s.rss) && Number.isFinite(s.hwm) ? s : null; // a zombie has no Vm* lines
  } catch {
    return null;
  }
}

/** Runs `cdquant quantize` on one case; returns its report, timings and memory. */
async function runQuantize(work, c, modelDir, tokensFile) {
  const out = join(work, `out-${c.shape}-${c.blocks}-${c.method}-${c.threads}`);
  const probeFile = join(work, `probe-${process.pid}-${Date.now()}.json`);
  const args = [
    ...(values.gc ? ['--expose-gc'] : []),
    '--import', pathToFileURL(join(work, 'probe.mjs')).href, join(root, 'build', 'cli.js'), 'quantize', modelDir,
    '--calib-tokens', tokensFile, '--nsamples', '0', '--seqlen', String(seqlen),
    ...METHOD_FLAGS[c.method], '--threads', String(c.threads), '--out', out, '--json',
  ];
  const t0 = performance.now();
  const env = { ...process.env, CDQUANT_SCALE_PROBE: probeFile, ...(values.gc ? { CDQUANT_SCALE_GC: '1' } : {}) };
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout = [];
  const lines = []; // [seconds since start, line]
  let pending = '';
  child.stdout.on('data', (d) => stdout.push(d));
  child.stderr.on('data', (d) => {
    const t = (performance.now() - t0) / 1000;
    pending += d;
    const parts = pending.split('\n');
    pending = parts.pop();
    for (const line of parts) {
      lines.push([t, line]);
      if (tty && /^\[[#.]+\]/.test(line)) process.stderr.write(`\r  ${line.slice(0, 110).padEnd(110)}`);
    }
  });
  // The parent's own view of RSS, every 100 ms (the child's exit-time VmHWM is the exact peak).
  let polledHwm = 0;
  const rssTrace = [];
  const poll = setInterval(() => {
    const s = procStatus(child.pid);
    if (!s) return;
    polledHwm = Math.max(polledHwm, s.hwm);
    rssTrace.push([(performance.now() - t0) / 1000, s.rss]);
  }, 100);
  const code = await new Promise((done) => child.on('close', done));
  clearInterval(poll);
  if (tty) process.stderr.write('\r'.padEnd(114) + '\r');
  const wall = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`cdquant quantize failed (exit ${code}):\n${lines.map((l) => l[1]).join('\n')}`);
  const report = JSON.parse(Buffer.concat(stdout).toString('utf8'));
  const probe = existsSync(probeFile) ? JSON.parse(readFileSync(probeFile, 'utf8')) : null;
  const workers = [];
  for (let id = 1; id < 64; id++) {
    const f = `${probeFile}.worker-${id}`;
    if (existsSync(f)) workers.push(JSON.parse(readFileSync(f, 'utf8')));
  }
  rmSync(out, { recursive: true, force: true });
  rmSync(`${out}.partial`, { recursive: true, force: true });

  // Seconds per block: from the progress line of each block's last layer (the wall time of a
  // block: its capture passes, Hessians, solves, and the previous block's output pass), and the
  // solves alone from the report's per-layer seconds.
  const start = lines.find(([, l]) => l.startsWith('method '))?.[0] ?? 0;
  const ends = [];
  // Stage k is the work that ends when the k-th layer is reported finished: capturing that
  // layer's input (for a block's q_proj: also the previous block's output pass and reading
  // this block), its Hessian and solve; after the last layer, the final pass and the outputs.
  const done = []; // [time, label] of each finished layer
  for (const [t, l] of lines) {
    const m = /^\[[#.]+\] (\d+)\/(\d+) block (\d+) (\S+)/.exec(l);
    if (!m) continue;
    ends[Number(m[3])] = t;
    done.push([t, `block ${m[3]} ${m[4]}`]);
  }
  const stageLabel = (k) => (k < done.length ? done[k][1] : 'outputs');
  const stageAtTime = (t) => stageLabel(done.filter(([td]) => td <= t).length);
  // The parent's polls: the largest RSS of each stage.
  const byStage = new Map();
  for (const [t, rss] of rssTrace) {
    const label = stageAtTime(t);
    byStage.set(label, Math.max(byStage.get(label) ?? 0, rss));
  }
  const polledPeak = rssTrace.reduce((best, s) => (s[1] > best[1] ? s : best), [0, 0]);
  if (probe) {
    probe.peak.stage = stageLabel(probe.peak.stage);
    probe.phases = Object.fromEntries(Object.entries(probe.phases).map(([k, v]) => [stageLabel(Number(k)), { ...v, stage: stageLabel(Number(k)), liveMax: probe.liveMax[k] ?? 0 }]));
  }
  const blockWall = ends.map((t, b) => t - (b === 0 ? start : ends[b - 1]));
  const solve = [];
  for (const l of report.layers) solve[l.block] = (solve[l.block] ?? 0) + l.seconds;
  return {
    ...c,
    wall,
    quantizeSeconds: report.totals.seconds,
    blockWall,
    solve,
    outputsSeconds: wall - (ends[ends.length - 1] ?? wall),
    peakRss: probe?.vmHWM ?? polledHwm,
    polledHwm,
    polledPeakStage: stageAtTime(polledPeak[0]),
    rssByStage: Object.fromEntries(byStage),
    probe,
    workers,
    rssTrace,
    loss: report.totals.loss,
    lossRtn: report.totals.loss_rtn,
    layers: report.layers.map((l) => ({ block: l.block, layer: l.layer, rows: l.rows, cols: l.cols, seconds: l.seconds, movesPerRow: l.moves_per_row })),
  };
}

// ------------------------------------------------------------------------------------------
// Forward GFLOP/s: one block's calibration forward (LlamaRunner.runBlock) on one window

async function forwardBench(shape) {
  const { Kernel, LlamaRunner, WorkerPool, parseHfConfig } = await import(pathToFileURL(join(root, 'build', 'index.js')).href);
  const config = parseHfConfig(JSON.stringify(hfConfig(shape, 1)));
  const { dim, hiddenDim: hidden, nHeads, nKvHeads } = config;
  const qDim = dim, kvDim = (dim / nHeads) * nKvHeads;
  const shapes = { q_proj: [qDim, dim], k_proj: [kvDim, dim], v_proj: [kvDim, dim], o_proj: [dim, qDim], gate_proj: [hidden, dim], up_proj: [hidden, dim], down_proj: [dim, hidden] };
  const tensor = (name, n, table) => {
    const a = new Float32Array(n);
    fillFrom(table, a, mulberry32(hashName(name)));
    return a;
  };
  const linear = Object.fromEntries(Object.entries(shapes).map(([name, [r, c]]) => [name, tensor(name, r * c, WEIGHT)]));
  const params = Object.values(shapes).reduce((n, [r, c]) => n + r * c, 0);
  const block = { attnNorm: tensor('attn', dim, NORM), ffnNorm: tensor('ffn', dim, NORM), linear };
  // no embedding lookups: the state comes from stateFrom
  const embedding = { vocab: config.vocabSize, dim, row: (_id, out) => out.fill(0) };
  const input = tensor('state', seqlen * dim, NORM); // a residual stream of ~unit scale
  // matmuls 2 x params x T; causal attention: token t scores t + 1 keys and sums t + 1 values,
  // 2 x head flops each, per head: 2 x qDim x T(T + 1) in all
  const flops = 2 * params * seqlen + 2 * qDim * seqlen * (seqlen + 1);
  /** Median wall and CPU seconds (the whole process: every thread) of runBlock on `kernel`
   * (with `threads`, shared); the output. On a loaded machine the wall ratio says little; CPU
   * seconds that do not grow with the threads say the split costs no extra work. */
  const timeOn = (kernel, threads) => {
    const runner = new LlamaRunner(kernel, { config, embedding, finalNorm: tensor('norm', dim, NORM) }, { blocks: 'none', classifier: false });
    try {
      runner.loadBlock(0, block);
      const times = [];
      const cpu = [];
      let out = null;
      for (let r = 0; r < forwardRuns + 1; r++) {
        const state = runner.stateFrom(input);
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        runner.runBlock(0, state, { threads });
        const t = (performance.now() - t0) / 1000;
        const c = process.cpuUsage(c0);
        out ??= runner.readState(state);
        runner.freeState(state);
        if (r > 0) {
          // the first run warms up (tier-up, memory growth)
          times.push(t);
          cpu.push((c.user + c.system) / 1e6);
        }
      }
      return { seconds: median(times), cpuSeconds: median(cpu), out };
    } finally {
      runner.free();
    }
  };
  const byThreads = [];
  let serialOut = null;
  for (const threads of forwardThreads) {
    let run;
    if (threads === 1) {
      run = timeOn(await Kernel.create());
      serialOut = run.out;
    } else {
      const pool = new WorkerPool({ threads });
      try {
        const done = await pool.parallel((kernel, runner) => timeOn(kernel, runner));
        if (!done) throw new Error('no shared-memory pool in this runtime');
        run = done.value;
      } finally {
        pool.terminate();
      }
    }
    // the same bits whatever the threads (test/forward-threads.test.ts); checked here in passing
    const same = serialOut ? Buffer.from(run.out.buffer).equals(Buffer.from(serialOut.buffer)) : null;
    byThreads.push({ threads, seconds: run.seconds, cpuSeconds: run.cpuSeconds, gflops: flops / run.seconds / 1e9, sameBits: same });
    log(`  ${threads} thread(s): ${run.seconds.toFixed(2)} s (CPU ${run.cpuSeconds.toFixed(2)} s), ${(flops / run.seconds / 1e9).toFixed(1)} GFLOP/s${same === false ? ' (DIFFERENT BITS from 1 thread)' : ''}`);
  }
  const one = byThreads.find((b) => b.threads === 1) ?? byThreads[0];
  return { shape, params, tokens: seqlen, flops, seconds: one.seconds, gflops: one.gflops, runs: forwardRuns, byThreads };
}

// ------------------------------------------------------------------------------------------

const fmtGB = (b) => (b / GB).toFixed(2);
const fmtS = (s) => (Number.isFinite(s) ? s.toFixed(1) : '-');

function printTables(results, forward, meta) {
  console.log(`\nCalibration ${meta.windows} windows x ${meta.seqlen} tokens of random ids; 4-bit, groups of 128; peak RSS = the child's VmHWM (1 GB = 1e9 bytes).`);
  if (results.length) {
    console.log('\n| shape | blocks | method | threads | peak RSS GB | wall s | s/block (median) | solve s/block | outputs s | checkpoint GB |');
    console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of results) {
      console.log(`| ${SHAPES[r.shape].label} | ${r.blocks} | ${r.method.toUpperCase()} | ${r.threads} | ${fmtGB(r.peakRss)} | ${fmtS(r.wall)} | ${fmtS(median(r.blockWall))} | ${fmtS(median(r.solve))} | ${fmtS(r.outputsSeconds)} | ${fmtGB(r.checkpointBytes)} |`);
    }
    console.log('\nWhere the peak sits. "Peak stage": the stage of the largest RSS the bench polled (every 100 ms); a stage "block B NAME" is the work that ends when that layer is reported (its capture pass, Hessian and solve; for q_proj also the previous block\'s output pass and reading block B), "outputs" the last block\'s output pass and writing the checkpoints. The rest is the child\'s own sample of largest RSS (taken between its synchronous kernel calls, at allocations and timers): wasm = linear memory of the main thread\'s kernel (it never shrinks; the allocator grows it by doubling), wasm reached = the highest address any of its allocations reached (the pages that can have been touched, and stay resident), live wasm = bytes its allocations hold, wasm workers = the workers\' largest memories, JS buffers = arrayBuffers (ArrayBuffers outside wasm, garbage not yet collected included; process.memoryUsage() counts wasm memory in "external", not here), JS heap = heapUsed; the last column is exact (every allocation is counted).');
    console.log('\n| shape | blocks | method | threads | peak stage | sampled RSS GB | its stage | wasm GB | wasm reached GB | live wasm GB | wasm workers GB | JS buffers GB | JS heap GB | largest live wasm GB, its stage |');
    console.log('|---|---:|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|');
    for (const r of results) {
      const p = r.probe?.peak;
      if (!p) continue;
      const w = r.workers.reduce((n, x) => n + x.max.wasm, 0);
      const [liveStage, live] = Object.entries(r.probe.phases).reduce((best, [k, v]) => (v.liveMax > best[1] ? [k, v.liveMax] : best), ['-', 0]);
      console.log(`| ${SHAPES[r.shape].label} | ${r.blocks} | ${r.method.toUpperCase()} | ${r.threads} | ${r.polledPeakStage} | ${fmtGB(p.rss)} | ${p.stage} | ${fmtGB(p.wasm)} | ${fmtGB(p.top ?? 0)} | ${fmtGB(p.live)} | ${fmtGB(w)} | ${fmtGB(p.arrayBuffers)} | ${fmtGB(p.heapUsed)} | ${fmtGB(live)}, ${liveStage} |`);
    }
  }
  if (forward.length) {
    console.log(`\nForward pass of one block over one ${meta.seqlen}-token window (LlamaRunner.runBlock; flops = 2 x params x T + causal attention 2 x q_dim x T(T+1)), median of ${meta.forwardRuns}:`);
    console.log('\n| shape | block params | GFLOP | threads | seconds | GFLOP/s | x 1 thread | CPU s (all threads) | same bits |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const f of forward) {
      const one = f.byThreads.find((b) => b.threads === 1);
      for (const b of f.byThreads) {
        const ratio = one ? (one.seconds / b.seconds).toFixed(2) : '-';
        console.log(`| ${SHAPES[f.shape].label} | ${(f.params / 1e6).toFixed(1)}M | ${(f.flops / 1e9).toFixed(1)} | ${b.threads} | ${b.seconds.toFixed(2)} | ${b.gflops.toFixed(1)} | ${ratio} | ${b.cpuSeconds.toFixed(2)} | ${b.sameBits === null ? '-' : b.sameBits ? 'yes' : 'NO'} |`);
      }
    }
  }
}

const work = values.keep ? resolve(values.keep) : mkdtempSync(join(tmpdir(), 'cdquant-scale-'));
mkdirSync(work, { recursive: true });
const cleanup = () => {
  if (!values.keep) rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
writeFileSync(join(work, 'probe.mjs'), PROBE);

const results = [];
const forward = [];
try {
  if (!values['no-quantize']) {
    // one checkpoint per shape and block count, shared by its methods
    const byModel = new Map();
    for (const c of cases) {
      const key = `${c.shape}-${c.blocks}`;
      if (!byModel.has(key)) byModel.set(key, []);
      byModel.get(key).push(c);
    }
    const tokensFile = join(work, 'calib.i32');
    writeTokens(tokensFile, windows * seqlen, 32000, 1234);
    for (const [key, group] of byModel) {
      const { shape, blocks } = group[0];
      const dir = join(work, `model-${key}`);
      const t0 = performance.now();
      const ck = writeCheckpoint(dir, shape, blocks, shardBytes);
      log(`${SHAPES[shape].label}, ${blocks} blocks: ${ck.shards} shards, ${fmtGB(ck.bytes)} GB written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      if (values['generate-only']) {
        log(`  kept in ${dir}`);
        continue;
      }
      for (const c of group) {
        log(`  quantize ${c.method} 4-bit g128, ${c.threads} thread(s), ${windows} x ${seqlen} tokens`);
        const r = await runQuantize(work, c, dir, tokensFile);
        r.checkpointBytes = ck.bytes;
        results.push(r);
        log(`  peak RSS ${fmtGB(r.peakRss)} GB, wall ${fmtS(r.wall)} s, per block ${r.blockWall.map(fmtS).join(' ')} s (solves ${r.solve.map(fmtS).join(' ')} s)`);
        log(`  largest RSS by stage (GB): ${Object.entries(r.rssByStage).map(([k, v]) => `${k} ${fmtGB(v)}`).join(', ')}`);
      }
      if (!values.keep) rmSync(dir, { recursive: true, force: true });
    }
  }
  if (!values['no-forward'] && !values['generate-only']) {
    for (const shape of [...new Set([...(values.cases ? cases.map((c) => c.shape) : Object.keys(SHAPES))])]) {
      log(`forward: ${SHAPES[shape].label} block, ${seqlen} tokens`);
      forward.push(await forwardBench(shape));
    }
  }
  const meta = { windows, seqlen, forwardRuns };
  if (!values['generate-only']) printTables(results, forward, meta);
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ meta, results: results.map(({ rssTrace, ...r }) => r), forward }, null, 2));
  }
} finally {
  cleanup();
}
