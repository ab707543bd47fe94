// llama.cpp itself (node-llama-cpp's prebuilt CPU binary) as the outside reader of our GGUF
// files: load a file, get its logits at every position of a token sequence, tokenize text.
// Settings that keep llama.cpp's arithmetic plain and repeatable: CPU only, flash attention
// off, F32 KV cache (the default F16 cache would round K and V), one thread, one sequence,
// the whole sequence in one batch. No downloads and no builds: the binary in node_modules is
// used as it is, or the tests fail.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, type ControlledEvaluateInputItem, type Llama, type LlamaModel as NodeLlamaModel, type Token } from 'node-llama-cpp';

// esbuild bundles each test file with its own copy of this module while uvu runs them all in
// one process, so the instance lives on globalThis to stay one per process.
const KEY = Symbol.for('cdquant.test.llamaCpp');
const shared = globalThis as unknown as Record<symbol, Promise<Llama> | undefined>;

/** The process's one Llama instance (CPU, no downloads, no builds). */
export function llamaCpp(): Promise<Llama> {
  shared[KEY] ??= getLlama({
    gpu: false,
    build: 'never',
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
    maxThreads: 1,
  });
  return shared[KEY];
}

/** Disposes the Llama instance (after a file's last llama.cpp test; the next use makes a new one). */
export async function disposeLlamaCpp(): Promise<void> {
  const p = shared[KEY];
  shared[KEY] = undefined;
  if (p) await (await p).dispose();
}

export interface LlamaCppModel {
  readonly model: NodeLlamaModel;
  /** Logits [tokens.length, vocab] row-major: row t is llama.cpp's prediction after tokens[0..t]
   * (vocab = the number of logits llama.cpp returns per position). */
  logits(tokens: ArrayLike<number>): Promise<Float32Array>;
  /** llama.cpp's tokenization of `text` (no BOS; special-token text is plain text). */
  tokenize(text: string): number[];
  dispose(): Promise<void>;
}

/** Loads the GGUF file at `path` into llama.cpp. */
export async function loadGgufPath(path: string): Promise<LlamaCppModel> {
  const llama = await llamaCpp();
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: false, defaultContextFlashAttention: false });
  return {
    model,
    async logits(tokens) {
      const T = tokens.length;
      const context = await model.createContext({
        // Room beyond T: a full context makes node-llama-cpp shift it before the last token.
        contextSize: T + 32,
        batchSize: Math.max(T, 32),
        sequences: 1,
        threads: 1,
        flashAttention: false,
        experimentalKvCacheKeyType: 'F32',
        experimentalKvCacheValueType: 'F32',
      });
      try {
        const sequence = context.getSequence();
        const input: ControlledEvaluateInputItem[] = Array.from(tokens, (t) => [t as Token, { generateNext: { logits: true } }]);
        const results = await sequence.controlledEvaluate(input);
        let vocab = 0;
        const rows: Map<number, number>[] = [];
        for (let t = 0; t < T; t++) {
          const row = results[t]?.next.logits;
          if (!row) throw new Error(`llama.cpp returned no logits for position ${t}`);
          rows.push(row);
          vocab = Math.max(vocab, row.size);
        }
        const out = new Float32Array(T * vocab);
        rows.forEach((row, t) => {
          if (row.size !== vocab) throw new Error(`llama.cpp returned ${row.size} logits at position ${t}, ${vocab} elsewhere`);
          for (const [token, value] of row) out[t * vocab + token] = value;
        });
        return out;
      } finally {
        await context.dispose();
      }
    },
    tokenize: (text) => Array.from(model.tokenize(text, false)),
    dispose: () => model.dispose(),
  };
}

/** Writes `bytes` to a temporary file, loads it, and removes the file once llama.cpp has it. */
export async function loadGgufBytes(bytes: Uint8Array, label = 'model'): Promise<LlamaCppModel> {
  const dir = mkdtempSync(join(tmpdir(), 'cdquant-gguf-'));
  const path = join(dir, `${label}.gguf`);
  try {
    writeFileSync(path, bytes);
    return await loadGgufPath(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
