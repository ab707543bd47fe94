// Perplexity of a model read lazily, block by block: the windows' hidden states wait in JS
// memory while one block at a time is in the kernel, so a model of any size is evaluated in
// the memory of one block (plus the classifier). Each window is computed exactly as the
// window-at-a-time forward pass computes it (LlamaRunner.nll), and the sums are added in
// window order: the same bits.
import { OptionError, ShapeError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { LlamaRunner, type PerplexityResult } from './forward.js';
import { memoryModel, type LazyModel } from './source.js';
import type { LlamaModel } from './types.js';

export interface PerplexityOptions {
  /** Score at most this many windows. */
  maxWindows?: number;
  onWindow?: (done: number, total: number) => void;
  /** Hidden states held at once (windows x seqLen x dim x 4 bytes); more windows are run in
   * groups, each reading the blocks again. Default 512 MiB. */
  maxStateBytes?: number;
}

const isLazy = (m: LazyModel | LlamaModel): m is LazyModel => typeof (m as LazyModel).block === 'function';

/** Perplexity as in the usual WikiText-2 evaluation: `tokens` is cut into non-overlapping
 * windows of `seqLen` tokens (the final partial window is dropped); each window is scored on
 * its own from position 0, and all its seqLen - 1 next-token predictions count. */
export async function modelPerplexity(kernel: Kernel, model: LazyModel | LlamaModel, tokens: Int32Array, seqLen: number, options: PerplexityOptions = {}): Promise<PerplexityResult> {
  const source = isLazy(model) ? model : memoryModel(model, 'hf', 'F32', async () => '');
  const { config } = source;
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new OptionError(`seqLen must be an integer >= 2, got ${seqLen}`);
  if (seqLen > config.maxSeqLen) throw new ShapeError(`seqLen ${seqLen} exceeds maxSeqLen ${config.maxSeqLen}`);
  if (!(tokens instanceof Int32Array)) throw new ShapeError('tokens must be an Int32Array');
  let windows = Math.floor(tokens.length / seqLen);
  if (options.maxWindows !== undefined) {
    if (!Number.isInteger(options.maxWindows) || options.maxWindows < 1) throw new OptionError(`maxWindows must be a positive integer, got ${options.maxWindows}`);
    windows = Math.min(windows, options.maxWindows);
  }
  if (windows === 0) throw new ShapeError(`${tokens.length} tokens do not fill one window of ${seqLen}${tokens.length === 0 ? ' (the text is empty, or the paragraph range selects nothing)' : ''}`);
  const budget = options.maxStateBytes ?? 512 * 2 ** 20;
  const perGroup = Math.max(1, Math.floor(budget / (seqLen * config.dim * 4)));
  const runner = new LlamaRunner(kernel, { config, embedding: await source.embedding(), finalNorm: await source.finalNorm(), classifier: await source.classifier() }, { blocks: 'none' });
  let nll = 0;
  let count = 0;
  try {
    for (let w0 = 0; w0 < windows; w0 += perGroup) {
      const group = Array.from({ length: Math.min(perGroup, windows - w0) }, (_, i) => tokens.subarray((w0 + i) * seqLen, (w0 + i + 1) * seqLen));
      const states = group.map((t) => {
        const st = runner.embed(t);
        try {
          return runner.readState(st);
        } finally {
          runner.freeState(st);
        }
      });
      for (let l = 0; l < config.nLayers; l++) {
        runner.loadBlock(l, await source.block(l));
        for (const values of states) {
          const st = runner.stateFrom(values, l);
          try {
            runner.runBlock(l, st);
            runner.readState(st, values);
          } finally {
            runner.freeState(st);
          }
        }
        runner.unloadBlock(l);
      }
      group.forEach((t, i) => {
        const st = runner.stateFrom(states[i], config.nLayers);
        try {
          const r = runner.nllFrom(st, t);
          nll += r.sum;
          count += r.count;
        } finally {
          runner.freeState(st);
        }
        options.onWindow?.(w0 + i + 1, windows);
      });
    }
    return { ppl: runner.exp(nll / count), nll, count, windows };
  } finally {
    runner.free();
  }
}
