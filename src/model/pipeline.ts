// Sequential quantization of a Llama-family model, as GPTQ does it: block after block, the
// inputs of each linear layer are collected from the calibration set *with every earlier layer
// already quantized*, their Hessians streamed (never all activations at once), the layers
// quantized in the reference order (q/k/v, o, gate/up, down), and the block re-run with its
// quantized weights to produce the next block's inputs.
import { AbortError, OptionError } from '../core/errors.js';
import { Kernel, defaultKernel } from '../core/kernel.js';
import { HessianAccumulator } from '../core/hessian.js';
import { dequantize } from '../core/merge.js';
import { prepareLayer } from '../core/prepare.js';
import { solverOptionsOf, type Method, type SolverOptions, type SolverSpec } from '../core/options.js';
import type { LayerResult, QuantizedWeights } from '../core/types.js';
import { WorkerPool } from '../parallel/pool.js';
import { workersAvailable } from '../core/runtime.js';
import { quantizeLayer, quantizePrepared, splitOptions, type RunOptions } from '../quantize.js';
import { LlamaRunner, type HiddenState } from './forward.js';
import { type LinearName, type LlamaModel } from './types.js';
import { linearShape, quantStages } from './arch.js';

/** The stages of a Llama block: layers sharing one input are quantized from one Hessian (every
 * family's: `quantStages(config)` in arch.ts). */
export const STAGES: readonly (readonly LinearName[])[] = [
  ['q_proj', 'k_proj', 'v_proj'],
  ['o_proj'],
  ['gate_proj', 'up_proj'],
  ['down_proj'],
];

/** A quantized layer of a model, as the exporters and the report need it. */
export interface QuantizedLinear extends QuantizedWeights {
  block: number;
  name: LinearName;
  loss: number;
  rtnLoss: number;
  seconds: number;
  dampUsed: number | null;
  /** Mean CD/BCD moves per row, when descent ran. */
  movesPerRow: number | null;
  /** Losses of the `compareMethods` solves of this layer (reporting only). */
  compare?: Partial<Record<Method, number>>;
}

export interface LayerProgress {
  block: number;
  name: LinearName;
  /** Layers finished so far and in all. */
  layersDone: number;
  layers: number;
  rowsDone: number;
  rows: number;
  stage: 'calibrate' | 'quantize' | 'done';
  loss?: number;
  rtnLoss?: number;
  seconds?: number;
  compare?: Partial<Record<Method, number>>;
}

export type ModelQuantizeOptions = SolverOptions & ModelRunOptions;

/** How a model run goes: none of these changes a result. */
export interface ModelRunOptions extends Omit<RunOptions, 'onProgress'> {
  onProgress?: (progress: LayerProgress) => void;
  /** Called when a block is finished, with its layers: the place to persist progress. */
  onBlockDone?: (block: number, layers: QuantizedLinear[]) => void | Promise<void>;
  /** Blocks finished by an earlier, interrupted run (from onBlockDone), to skip. */
  resume?: QuantizedLinear[][];
  kernel?: Kernel;
  /** Also solve every layer with these methods on the same Hessian, for reporting their loss
   * only (QuantizedLinear.compare); the model is quantized with `method` alone. Off by default. */
  compareMethods?: Method[];
}

export interface QuantizedModel {
  /** The model with every linear layer replaced by its dequantized quantized weights. */
  model: LlamaModel;
  layers: QuantizedLinear[];
}

function summarize(block: number, name: LinearName, res: LayerResult, seconds: number): QuantizedLinear {
  let moves = 0;
  if (res.moves) for (const m of res.moves) moves += m;
  return {
    block,
    name,
    rows: res.rows,
    cols: res.cols,
    bits: res.bits,
    groups: res.groups,
    codes: res.codes,
    scales: res.scales,
    zeros: res.zeros,
    gIdx: res.gIdx,
    loss: res.loss,
    rtnLoss: res.rtnLoss,
    seconds,
    dampUsed: res.dampUsed,
    movesPerRow: res.moves ? moves / res.rows : null,
  };
}

function cloneModel(model: LlamaModel): LlamaModel {
  return {
    config: { ...model.config },
    embedding: model.embedding,
    finalNorm: model.finalNorm,
    classifier: model.classifier,
    ...(model.llama2cRope ? { llama2cRope: model.llama2cRope } : {}),
    blocks: model.blocks.map((b) => ({ ...b, linear: { ...b.linear } })),
  };
}

/**
 * Quantizes every linear layer of `model` with the layer solver options, calibrating on
 * `samples` (token windows). The input model is not modified.
 */
export async function quantizeModel(model: LlamaModel, samples: Int32Array[], options: ModelQuantizeOptions = {}): Promise<QuantizedModel> {
  if (samples.length === 0) throw new OptionError('quantizeModel needs at least one calibration sample');
  const kernel = options.kernel ?? (await defaultKernel());
  const { onProgress, onBlockDone, resume, compareMethods, ...rest } = options;
  const { solver, run } = splitOptions(rest);
  // One pool for the whole model, so workers start once rather than per layer.
  const ownPool = !run.pool && run.threads !== undefined && run.threads > 1 && workersAvailable()
    ? new WorkerPool({ threads: run.threads })
    : null;
  const pool = run.pool ?? ownPool ?? undefined;
  const { signal } = run;
  const out = cloneModel(model);
  const runner = new LlamaRunner(kernel, model);
  const layers: QuantizedLinear[] = [];
  const stages = quantStages(model.config);
  const total = model.config.nLayers * stages.flat().length;
  const states: HiddenState[] = [];
  try {
    for (const s of samples) states.push(runner.embed(s));
    for (let block = 0; block < model.config.nLayers; block++) {
      const done = resume?.[block];
      if (done) {
        // A finished block from an earlier run: its layers, then its quantized outputs.
        for (const layer of done) {
          const weights = dequantize(kernel, layer);
          runner.setLinear(block, layer.name, weights);
          out.blocks[block].linear[layer.name] = weights;
          layers.push(layer);
        }
      } else {
        const blockLayers: QuantizedLinear[] = [];
        for (const stage of stages) {
          if (signal?.aborted) throw new AbortError();
          const last = stage[stage.length - 1];
          const cols = linearShape(model.config, stage[0])[1];
          const acc = new HessianAccumulator(cols, kernel);
          for (const state of states) {
            runner.runBlock(block, state, {
              stopAfter: last,
              capture: (name, inputs, rows) => {
                if (name === stage[0]) acc.addWith(kernel, inputs, rows);
              },
            });
          }
          const hessian = acc.hessian();
          acc.free();
          // One preparation (symmetrize, dead columns, act-order, GPTQ's factor) per stage:
          // the layers of a stage share their input, hence H.
          const prepared = await prepareLayer(hessian, cols, solver, kernel);
          for (const name of stage) {
            const [rows] = linearShape(model.config, name);
            const weights = { data: runner.getLinear(block, name), rows, cols };
            const base = { block, name, layersDone: layers.length, layers: total, rows };
            onProgress?.({ ...base, rowsDone: 0, stage: 'quantize' });
            const t0 = performance.now();
            const res = await quantizePrepared(weights, prepared, {
              threads: run.threads,
              pool,
              kernel,
              signal,
              onProgress: (p) => onProgress?.({ ...base, rowsDone: p.rowsDone, stage: 'quantize' }),
            });
            const summary = summarize(block, name, res, (performance.now() - t0) / 1000);
            if (compareMethods?.length) {
              summary.compare = {};
              for (const method of compareMethods) {
                summary.compare[method] = method === res.method
                  ? res.loss
                  : (await quantizeLayer(weights, hessian, { ...compareOptions(solver, method), threads: run.threads, pool, kernel, signal })).loss;
              }
            }
            const q = res.dequantize();
            runner.setLinear(block, name, q);
            out.blocks[block].linear[name] = q;
            layers.push(summary);
            blockLayers.push(summary);
            onProgress?.({ ...base, layersDone: layers.length, rowsDone: rows, stage: 'done', loss: res.loss, rtnLoss: res.rtnLoss, seconds: summary.seconds, compare: summary.compare });
          }
        }
        await onBlockDone?.(block, blockLayers);
      }
      for (const state of states) runner.runBlock(block, state);
    }
  } finally {
    runner.free();
    ownPool?.terminate();
  }
  return { model: out, layers };
}

/** Options of a comparison solve with `method`: the grid and GPTQ settings of the run (bits,
 * group, sym, act-order, static groups, damp, an explicitly chosen clip), without the CD/BCD
 * settings; an OWC grid is kept only for CD/BCD, so GPTQ compares on its own min-max grid. */
function compareOptions(spec: SolverSpec, method: Method): SolverOptions {
  const { init: _init, iters: _iters, blockSize: _block, refit: _refit, clip, ...grid } = solverOptionsOf(spec);
  const descent = method === 'cd' || method === 'bcd';
  // An OWC grid is kept only for CD/BCD (started from it); GPTQ and RTN compare on their own
  // min-max grid. Other clips carry over, descent then starting from RTN on that grid.
  if (clip === 'owc') return { ...grid, method, ...(descent ? { clip } : {}) };
  return { ...grid, method, clip, ...(descent ? { init: 'rtn' as const } : {}) };
}

/** Splits a token stream into `count` windows of `seqLen` at seeded random offsets (like
 * GPTQ's calibration loaders), or into consecutive windows when count is 0. */
export function calibrationWindows(tokens: Int32Array, seqLen: number, count: number, seed: number): Int32Array[] {
  if (!Number.isInteger(seqLen) || seqLen < 2) throw new OptionError(`seqlen must be an integer >= 2, got ${seqLen}`);
  if (tokens.length < seqLen) throw new OptionError(`calibration text has ${tokens.length} tokens, fewer than one window of ${seqLen}`);
  if (!Number.isInteger(count) || count < 0) throw new OptionError(`nsamples must be a non-negative integer, got ${count}`);
  const windows: Int32Array[] = [];
  if (count === 0) {
    for (let i = 0; i + seqLen <= tokens.length; i += seqLen) windows.push(tokens.slice(i, i + seqLen));
    return windows;
  }
  let state = seed >>> 0;
  const next = () => {
    // mulberry32: integer arithmetic only, identical in every engine.
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const span = tokens.length - seqLen + 1;
  for (let i = 0; i < count; i++) {
    const start = next() % span;
    windows.push(tokens.slice(start, start + seqLen));
  }
  return windows;
}
