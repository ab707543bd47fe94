// Sequential quantization of a Llama-family model, as GPTQ does it: block after block, the
// inputs of each linear layer are collected from the calibration set *with every earlier layer
// already quantized*, their Hessians streamed (never all activations at once), the layers
// quantized in the reference order (q/k/v, o, gate/up, down), and the block re-run with its
// quantized weights to produce the next block's inputs.
import { AbortError, OptionError } from '../core/errors.js';
import { Kernel, defaultKernel } from '../core/kernel.js';
import { HessianAccumulator } from '../core/hessian.js';
import { dequantize, dequantizeInto } from '../core/merge.js';
import { prepareResident } from '../core/prepare.js';
import type { LayerSession } from '../core/session.js';
import type { ParallelRunner } from '../core/runner.js';
import { solverOptionsOf, type Method, type SolverOptions, type SolverSpec } from '../core/options.js';
import type { LayerResult, QuantizedWeights } from '../core/types.js';
import { WorkerPool } from '../parallel/pool.js';
import type { BandSolver } from '../parallel/bands.js';
import { workersAvailable } from '../core/runtime.js';
import { quantizeLayer, quantizePrepared, splitOptions, type RunOptions } from '../quantize.js';
import { LlamaRunner, type RunBlockOptions } from './forward.js';
import type { LinearName, LlamaBlock, LlamaConfig, LlamaModel } from './types.js';
import { checkRows, f32Embedding, memoryModel, type EmbeddingTable, type LazyModel } from './source.js';
import { GGUF_LINEAR, ggufBlockName } from './gguf.js';
import { mixTypes, type GgufMix, type MixTensor } from './gguf-mix.js';
import { dequantizeRows, quantizeRows, type GgufBlockTypeName } from '../formats/gguf-blocks.js';
import { runLayerGguf, type GgufLayerResult, type GgufSolver } from '../quantize-gguf.js';
import { linearShape, quantStages, resolveArch } from './arch.js';
import { hfTensors } from './checkpoint/hf.js';

/** A quantized layer of a model, as the exporters and the report need it. Layers quantized to
 * a GGUF block type carry their bytes (`gguf`) instead of integer codes (empty arrays). */
export interface QuantizedLinear extends QuantizedWeights {
  block: number;
  name: LinearName | 'classifier' | 'embedding';
  gguf?: { type: GgufBlockTypeName; bytes: Uint8Array };
  loss: number;
  /** The baseline's loss, when computed: round-to-nearest on min-max grids (asked for with
   * compareMethods 'rtn' or `baseline`), or llama.cpp's own rounding for a GGUF layer. */
  rtnLoss: number | null;
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
  rtnLoss?: number | null;
  seconds?: number;
  compare?: Partial<Record<Method, number>>;
}

export type ModelQuantizeOptions = SolverOptions & ModelRunOptions;

/** How a model run goes: none of these changes a result. */
export interface ModelRunOptions extends Omit<RunOptions, 'onProgress'> {
  onProgress?: (progress: LayerProgress) => void;
  /** Called when a block is finished, with its layers: the place to persist progress. */
  onBlockDone?: (block: number, layers: QuantizedLinear[]) => void | Promise<void>;
  /** The layers of a block an earlier, interrupted run finished (from onBlockDone), to skip;
   * undefined for blocks to quantize. */
  resume?: QuantizedLinear[][] | ((block: number) => Promise<QuantizedLinear[] | undefined>);
  /** Also solve every layer with these methods on the same Hessian, for reporting their loss
   * only (QuantizedLinear.compare); the model is quantized with `method` alone. 'rtn' is the
   * baseline (round-to-nearest on min-max grids, also QuantizedLinear.rtnLoss). Off by default. */
  compareMethods?: Method[];
  /** Keep every layer's codes and grids in the result (default true). A large model's codes
   * are a quarter of its float32 weights: runs that persist them in onBlockDone pass false,
   * and the result then holds each layer's report only (empty arrays). */
  keepLayers?: boolean;
  /** Bound on the calibration hidden states kept between blocks (samples x seqlen x dim x 4
   * bytes). Default: no bound. */
  maxStateBytes?: number;
  /** Quantize to GGUF block types instead of integer grids: llama.cpp's named mix chooses each
   * tensor's type, `solver` its codes (quantize-gguf.ts). The classifier (and the embedding)
   * are quantized too, as llama-quantize does: the classifier from the final hidden states'
   * H, an untied embedding by llama.cpp's reference rounding (it has no inputs to weigh). */
  gguf?: { mix: GgufMix; solver: GgufSolver };
}

/** The pseudo-block holding the embedding's and the classifier's GGUF tensors. */
export const HEAD_BLOCK = (config: LlamaConfig) => config.nLayers;

export interface QuantizedModel {
  /** The model with every linear layer replaced by its dequantized quantized weights (when
   * the input was a LlamaModel in memory; quantizedView gives it for any model). */
  model: LlamaModel | null;
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

/** A layer's report without its arrays. */
function withoutArrays(l: QuantizedLinear): QuantizedLinear {
  return { ...l, codes: new Uint8Array(0), scales: new Float32Array(0), zeros: new Float32Array(0), gIdx: new Int32Array(0) };
}

/** The values a quantized layer holds: its codes on its grid, or its GGUF bytes decoded. */
export function layerValues(kernel: Kernel, l: QuantizedLinear): Float32Array {
  return l.gguf ? dequantizeRows(kernel, l.gguf.type, l.gguf.bytes, l.rows, l.cols) : dequantize(kernel, l);
}

/** Puts a quantized layer's values into the runner's block, computed in the kernel where
 * they stay (integer grids; a GGUF layer's are decoded through JS): the same bits as
 * setLinear(layerValues(l)). */
function putQuantized(kernel: Kernel, runner: LlamaRunner, block: number, l: QuantizedLinear): void {
  const name = l.name as LinearName;
  if (l.gguf) runner.setLinear(block, name, layerValues(kernel, l));
  else runner.fillLinear(block, name, (ptr) => dequantizeInto(kernel, l, ptr));
}

/** Rows [r0, r1) of a quantized layer's values: the same bits as those rows of layerValues
 * (a value depends on its own row's codes and grid only; a GGUF row is whole blocks). */
export function layerRows(kernel: Kernel, l: QuantizedLinear, r0: number, r1: number): Float32Array {
  const n = r1 - r0;
  if (l.gguf) {
    const rowBytes = l.gguf.bytes.length / l.rows;
    return dequantizeRows(kernel, l.gguf.type, l.gguf.bytes.subarray(r0 * rowBytes, r1 * rowBytes), n, l.cols);
  }
  const { cols, groups } = l;
  return dequantize(kernel, {
    ...l,
    rows: n,
    codes: l.codes.subarray(r0 * cols, r1 * cols),
    scales: l.scales.subarray(r0 * groups, r1 * groups),
    zeros: l.zeros.subarray(r0 * groups, r1 * groups),
  });
}

/** Block `layer` of `block` with its linear layers replaced by the dequantized `layers`
 * (a new object: the source's arrays are not touched). */
export function withQuantized(kernel: Kernel, block: LlamaBlock, layers: readonly QuantizedLinear[]): LlamaBlock {
  const out: LlamaBlock = { ...block, linear: { ...block.linear } };
  for (const l of layers) out.linear[l.name] = layerValues(kernel, l);
  return out;
}

/** `source` as it reads once quantized: each block's linear layers dequantized from
 * `layersOf(block)`, every other tensor the source's own. Lazy, like the source. */
export function quantizedView(source: LazyModel, layersOf: (block: number) => Promise<readonly QuantizedLinear[]>, kernel: Kernel): LazyModel {
  const { config } = source;
  // GGUF runs quantize the classifier and the embedding too (HEAD_BLOCK).
  const head = async (name: 'classifier' | 'embedding') => (await layersOf(HEAD_BLOCK(config)).catch(() => [])).find((l) => l.name === name);
  const classifier = async () => {
    const l = await head('classifier');
    return l ? layerValues(kernel, l) : source.classifier();
  };
  const embedding = async (): Promise<EmbeddingTable> => {
    const l = (await head('embedding')) ?? (config.tiedEmbeddings ? await head('classifier') : undefined);
    return l ? f32Embedding(layerValues(kernel, l), config.vocabSize, config.dim) : source.embedding();
  };
  const view: LazyModel = {
    ...source,
    embedding,
    classifier,
    block: async (layer) => withQuantized(kernel, await source.block(layer), await layersOf(layer)),
    async tensor(slot, rows) {
      // A quantized tensor from its codes alone: the source's values are not read.
      const l = slot.kind === 'linear' ? (await layersOf(slot.layer)).find((x) => x.name === slot.name)
        : slot.kind === 'classifier' ? await head('classifier')
        : slot.kind === 'embedding' ? (await head('embedding')) ?? (config.tiedEmbeddings ? await head('classifier') : undefined)
        : undefined;
      if (!l) return source.tensor(slot, rows);
      if (!rows) return layerValues(kernel, l);
      return layerRows(kernel, l, ...checkRows(rows, l.rows, `quantized ${l.block}.${l.name}`));
    },
    async load() {
      const base = await source.load();
      const blocks: LlamaBlock[] = [];
      for (let l = 0; l < config.nLayers; l++) blocks.push(withQuantized(kernel, base.blocks[l], await layersOf(l)));
      const cls = await head('classifier');
      const emb = await head('embedding');
      const embeddingValues = emb ? layerValues(kernel, emb) : config.tiedEmbeddings && cls ? layerValues(kernel, cls) : base.embedding;
      const classifierValues = config.tiedEmbeddings ? embeddingValues : cls ? layerValues(kernel, cls) : base.classifier;
      return { ...base, config: { ...config }, blocks, embedding: embeddingValues, classifier: classifierValues };
    },
  };
  return view;
}

const isLazy = (m: LazyModel | LlamaModel): m is LazyModel => typeof (m as LazyModel).block === 'function';

/**
 * Quantizes every linear layer of `model` with the layer solver options, calibrating on
 * `samples` (token windows). Block by block: only one block's weights, the current stage's H
 * and its solver scratch are in the kernel; the calibration hidden states wait in JS memory
 * between blocks. The input model is not modified.
 */
export async function quantizeModel(model: LazyModel | LlamaModel, samples: Int32Array[], options: ModelQuantizeOptions = {}): Promise<QuantizedModel> {
  if (samples.length === 0) throw new OptionError('quantizeModel needs at least one calibration sample');
  const { onProgress, onBlockDone, resume, compareMethods, keepLayers = true, maxStateBytes, gguf, ...rest } = options;
  // A model's grids are written as checkpoints store them: fp16 scales unless asked otherwise.
  const { solver, run } = splitOptions({ ...rest, scales: rest.scales ?? 'f16' });
  const source = isLazy(model) ? model : memoryModel(model, 'hf', 'F32', async () => '');
  const { config } = source;
  const stages = quantStages(config);
  const types = gguf ? ggufModelTypes(config, gguf.mix, gguf.solver !== 'ref') : null;
  const stateBytes = samples.reduce((n, s) => n + s.length * config.dim * 4, 0);
  if (maxStateBytes !== undefined && stateBytes > maxStateBytes) {
    throw new OptionError(`the calibration hidden states need ${stateBytes} bytes (${samples.length} samples x their tokens x dim ${config.dim} x 4), over the ${maxStateBytes}-byte budget: use fewer or shorter samples, or raise the budget`);
  }
  const resumed = async (block: number) => (typeof resume === 'function' ? resume(block) : resume?.[block]);
  // One pool for the whole model, so workers start once rather than per layer.
  const ownPool = !run.pool && run.threads !== undefined && run.threads > 1 && workersAvailable()
    ? new WorkerPool({ threads: run.threads })
    : null;
  const pool = run.pool ?? ownPool ?? undefined;
  // With a shared-memory pool the whole run lives in the pool's memory: the forward pass here,
  // H's bands accumulated and its factorization shared by the workers, bands solved in place.
  const shared = pool instanceof WorkerPool && !options.kernel && !gguf ? await pool.memoryKernel() : null;
  const kernel = options.kernel ?? shared ?? (await defaultKernel());
  /** Runs `body` in a parallel region of the pool when the run is in its memory (else on this
   * thread, without a runner). */
  const region = async <T>(body: (runner?: ParallelRunner) => T): Promise<T> => {
    if (shared && pool instanceof WorkerPool) {
      const done = await pool.parallel((k, runner) => (k === kernel ? { value: body(runner) } : null), signal);
      if (done?.value) return done.value.value;
    }
    return body();
  };
  const { signal } = run;
  // The embedding is needed only to embed the samples, below: the runner reads it through
  // `table`, dropped once they are embedded (a 7B vocabulary is 0.26-0.52 GB).
  let table: EmbeddingTable | null = await source.embedding();
  const embedding: EmbeddingTable = {
    vocab: table.vocab,
    dim: table.dim,
    row: (id, out) => {
      if (!table) throw new OptionError('quantizeModel: the embedding is released once the samples are embedded');
      table.row(id, out);
    },
  };
  const runner = new LlamaRunner(kernel, { config, embedding, finalNorm: await source.finalNorm() }, { blocks: 'none', classifier: false });
  const layers: QuantizedLinear[] = [];
  const total = config.nLayers * stages.flat().length;
  try {
    // The residual stream of every sample, between blocks: in JS memory, not in the kernel.
    const states = samples.map((s) => {
      const st = runner.embed(s);
      try {
        return runner.readState(st);
      } finally {
        runner.freeState(st);
      }
    });
    table = null;
    /** Reads block `block` into the kernel one tensor at a time (a 7B block is 0.8 GB as
     * float32: never whole in JS), a finished block with its quantized layers. */
    const loadBlock = async (block: number, done: QuantizedLinear[] | undefined) => {
      const small: Omit<LlamaBlock, 'linear'> = { attnNorm: new Float32Array(0), ffnNorm: new Float32Array(0) };
      for (const t of hfTensors(config)) {
        const s = t.slot;
        if (s.kind === 'norm' && s.layer === block) small[s.field] = await source.tensor(s);
        else if (s.kind === 'bias' && s.layer === block) (small.bias ??= {})[s.name] = await source.tensor(s);
      }
      runner.loadBlock(block, small, { linears: 'released' });
      for (const spec of resolveArch(config).linears) {
        const q = done?.find((l) => l.name === spec.name);
        if (q) putQuantized(kernel, runner, block, q);
        else {
          // a chunk of rows at a time (16 MB of float32)
          const step = Math.max(1, Math.floor((1 << 22) / spec.cols));
          for (let r0 = 0; r0 < spec.rows; r0 += step) {
            runner.setLinearRows(block, spec.name, r0, await source.tensor({ kind: 'linear', layer: block, name: spec.name }, [r0, Math.min(spec.rows, r0 + step)]));
          }
        }
      }
    };
    /** Runs block `block` on every sample; with `stopAfter`, for its captures only (unless
     * `toMid` leaves the states at the block's midpoint). */
    const pass = (block: number, opts: RunBlockOptions) => {
      for (const values of states) {
        const st = runner.stateFrom(values);
        try {
          runner.runBlock(block, st, opts);
          if (!opts.stopAfter || opts.toMid) runner.readState(st, values);
        } finally {
          runner.freeState(st);
        }
      }
    };
    /** The layers whose inputs come from a block's midpoint h (its MLP half). */
    const mlpLayers = new Set(resolveArch(config).stages.filter((s) => s.point === 'mlp_in' || s.point === 'down_in').flatMap((s) => s.names));
    for (let block = 0; block < config.nLayers; block++) {
      if (signal?.aborted) throw new AbortError();
      let atMid = false;
      const done = await resumed(block);
      // A finished block from an earlier run is loaded with its quantized layers.
      await loadBlock(block, done);
      if (done) {
        layers.push(...(keepLayers ? done : done.map(withoutArrays)));
      } else {
        const blockLayers: QuantizedLinear[] = [];
        // The first MLP stage's pass leaves the states at the block's midpoint h (its
        // attention half quantized by then, so h is final); the later stages and the block's
        // output start from h instead of recomputing q/k/v, attention and o_proj (the same
        // bits: the same operations on the same values).
        for (const stage of stages) {
          if (signal?.aborted) throw new AbortError();
          const cols = linearShape(config, stage[0])[1];
          const acc = new HessianAccumulator(cols, kernel);
          let session: LayerSession | null = null;
          try {
            const last = stage[stage.length - 1];
            const inMlp = mlpLayers.has(last);
            const toMid = inMlp && !atMid;
            await region((threads) => pass(block, {
              stopAfter: last,
              threads,
              toMid,
              from: atMid ? 'mid' : 'input',
              captureResident: (names, ptr, rows) => {
                if (names[0] === stage[0]) acc.addResident(kernel, ptr, rows, threads);
              },
            }));
            if (toMid) atMid = true;
            // The block's layers quantized in earlier stages are not needed again until the
            // block's final pass: their kernel memory is given to this stage's preparation
            // (GPTQ's factor of down_proj's 11008^2 H fits where gate/up/q/k/v/o were) and
            // they are rebuilt from their codes after the stage. A layer being solved is a
            // copy in JS (the solvers take W as an array): in a stage of one layer (o_proj,
            // down_proj, the largest H) the layer's kernel memory is released once it is
            // copied, before the preparation; in a stage of several layers (q/k/v, gate/up)
            // each stays in the kernel while its copy is solved, one copy at a time.
            for (const l of blockLayers) runner.releaseLinear(block, l.name as LinearName);
            const copied = new Map<LinearName, Float32Array>();
            if (stage.length === 1) {
              copied.set(stage[0], runner.getLinear(block, stage[0]));
              runner.releaseLinear(block, stage[0]);
            }
            // Comparison solves start from H as accumulated (the preparation changes it).
            // ('rtn' is the baseline, solved with the layer's own bands: no H of its own.)
            const hessian = compareMethods?.some((m) => m !== 'rtn') ? acc.hessian() : null;
            // One preparation (symmetrize, dead columns, act-order, GPTQ's factor) per stage:
            // the layers of a stage share their input, hence H, which stays in the kernel.
            // With a shared-memory pool, H is prepared in the pool's memory (GPTQ's factor and
            // the PSD check shared among its workers), where the workers read it in place.
            const taken = acc.take();
            session = await region((runner) => prepareResident(kernel, taken.h, cols, solver, runner));
            for (const name of stage) {
              const [rows] = linearShape(config, name);
              const w = { data: copied.get(name) ?? runner.getLinear(block, name), rows, cols };
              copied.delete(name);
              const base = { block, name, layersDone: layers.length, layers: total, rows };
              onProgress?.({ ...base, rowsDone: 0, stage: 'quantize' });
              const t0 = performance.now();
              if (types) {
                const result = await runLayerGguf(session, w, types.get(ggufBlockName(block, GGUF_LINEAR[name]))!, gguf!.solver, {
                  signal, pool, threads: run.threads, ...(solver.iters !== null ? { iters: solver.iters } : {}),
                  onProgress: (p) => onProgress?.({ ...base, rowsDone: p.rowsDone, stage: 'quantize' }),
                });
                const summary = ggufSummary(block, name, result, t0);
                putQuantized(kernel, runner, block, summary);
                blockLayers.push(summary);
                layers.push(keepLayers ? summary : withoutArrays(summary));
                onProgress?.({ ...base, layersDone: layers.length, rowsDone: rows, stage: 'done', loss: summary.loss, rtnLoss: summary.rtnLoss, seconds: summary.seconds });
                continue;
              }
              const res = await quantizePrepared(w, session, {
                threads: run.threads,
                pool,
                kernel,
                signal,
                baseline: run.baseline || compareMethods?.includes('rtn'),
                onProgress: (p) => onProgress?.({ ...base, rowsDone: p.rowsDone, stage: 'quantize' }),
              });
              const summary = summarize(block, name, res, (performance.now() - t0) / 1000);
              if (compareMethods?.length) {
                summary.compare = {};
                for (const method of compareMethods) {
                  summary.compare[method] = method === 'rtn'
                    ? res.rtnLoss!
                    : method === res.method
                      ? res.loss
                      : (await quantizeLayer(w, hessian!, { ...compareOptions(solver, method), threads: run.threads, pool, kernel, signal })).loss;
                }
              }
              // res.dequantize()'s values, computed where the next pass reads them
              putQuantized(kernel, runner, block, summary);
              blockLayers.push(summary);
              layers.push(keepLayers ? summary : withoutArrays(summary));
              onProgress?.({ ...base, layersDone: layers.length, rowsDone: rows, stage: 'done', loss: res.loss, rtnLoss: res.rtnLoss, seconds: summary.seconds, compare: summary.compare });
            }
          } finally {
            // A pool whose workers failed has dropped its memory whole (see holdsMemory).
            if (!shared || (pool as WorkerPool).holdsMemory(kernel)) {
              session?.free();
              acc.free();
            }
          }
          // The released layers back, one at a time, computed again from their codes (same bits).
          for (const l of blockLayers) if (!stage.includes(l.name as LinearName)) putQuantized(kernel, runner, block, l);
        }
        await onBlockDone?.(block, blockLayers);
      }
      await region((threads) => pass(block, { threads, from: atMid ? 'mid' : 'input' }));
      runner.unloadBlock(block);
    }
    if (types) {
      // The classifier (and an untied embedding), GGUF runs only: see ModelRunOptions.gguf.
      const head = HEAD_BLOCK(config);
      const done = await resumed(head);
      if (done) layers.push(...(keepLayers ? done : done.map(withoutArrays)));
      else {
        const headLayers = await quantizeHead(kernel, runner, states, source, types, gguf!.solver, { pool, threads: run.threads, signal });
        await onBlockDone?.(head, headLayers);
        layers.push(...(keepLayers ? headLayers : headLayers.map(withoutArrays)));
      }
    }
  } finally {
    if (!shared || (pool as WorkerPool).holdsMemory(kernel)) runner.free();
    ownPool?.terminate();
  }
  const byBlock = (block: number) => Promise.resolve(layers.filter((l) => l.block === block));
  return { model: !isLazy(model) && keepLayers ? await quantizedView(source, byBlock, kernel).load() : null, layers };
}

/** The GGUF type of every linear layer, the classifier and the embedding of `config` under a
 * llama.cpp mix, by llama.cpp tensor name. */
export function ggufModelTypes(config: LlamaConfig, mix: GgufMix, imatrix: boolean): Map<string, GgufBlockTypeName> {
  const arch = resolveArch(config);
  const tensors: MixTensor[] = [{ name: 'token_embd.weight', rowLength: config.dim, dims: 2 }];
  for (let l = 0; l < config.nLayers; l++) {
    for (const spec of arch.linears) tensors.push({ name: ggufBlockName(l, GGUF_LINEAR[spec.name]), rowLength: spec.cols, dims: 2 });
  }
  if (!config.tiedEmbeddings) tensors.push({ name: 'output.weight', rowLength: config.dim, dims: 2 });
  return mixTypes(mix, tensors, { layers: config.nLayers, gqa: config.nHeads / config.nKvHeads, tiedEmbeddings: config.tiedEmbeddings }, imatrix);
}

function ggufSummary(block: number, name: QuantizedLinear['name'], r: GgufLayerResult, t0: number): QuantizedLinear {
  return {
    block,
    name,
    rows: r.rows,
    cols: r.cols,
    bits: 0,
    groups: 0,
    codes: new Uint8Array(0),
    scales: new Float32Array(0),
    zeros: new Float32Array(0),
    gIdx: new Int32Array(0),
    gguf: { type: r.type, bytes: r.bytes },
    loss: r.loss,
    rtnLoss: r.refLoss,
    seconds: (performance.now() - t0) / 1000,
    dampUsed: null,
    movesPerRow: r.movesPerRow,
  };
}

/** GGUF runs: the classifier quantized with the H of the final normed hidden states (the
 * classifier's inputs), and an untied embedding by llama.cpp's reference rounding. */
async function quantizeHead(
  kernel: Kernel, runner: LlamaRunner, states: Float32Array[], source: LazyModel, types: Map<string, GgufBlockTypeName>, solver: GgufSolver,
  run: { pool?: BandSolver; threads?: number; signal?: AbortSignal },
): Promise<QuantizedLinear[]> {
  const { config } = source;
  const head = HEAD_BLOCK(config);
  const out: QuantizedLinear[] = [];
  const classifierName = config.tiedEmbeddings ? 'token_embd.weight' : 'output.weight';
  const acc = new HessianAccumulator(config.dim, kernel);
  let session: LayerSession | null = null;
  try {
    for (const values of states) {
      const st = runner.stateFrom(values, config.nLayers);
      try {
        runner.finalNormed(st, (ptr, rows) => acc.addResident(kernel, ptr, rows));
      } finally {
        runner.freeState(st);
      }
    }
    session = prepareResident(kernel, acc.take().h, config.dim, { method: 'rtn' });
    const t0 = performance.now();
    const w = { data: await source.classifier(), rows: config.vocabSize, cols: config.dim };
    out.push(ggufSummary(head, 'classifier', await runLayerGguf(session, w, types.get(classifierName)!, solver, run), t0));
  } finally {
    session?.free();
    acc.free();
  }
  if (!config.tiedEmbeddings) {
    const table = await source.embedding();
    const values = new Float32Array(config.vocabSize * config.dim);
    for (let id = 0; id < config.vocabSize; id++) table.row(id, values.subarray(id * config.dim, (id + 1) * config.dim));
    const type = types.get('token_embd.weight')!;
    const t0 = performance.now();
    const bytes = quantizeRows(kernel, type, values, config.vocabSize, config.dim);
    // No inputs to weigh it by: its loss is not defined (0 in the report).
    out.push(ggufSummary(head, 'embedding', { type, rows: config.vocabSize, cols: config.dim, bytes, values, loss: 0, refLoss: 0, movesPerRow: null }, t0));
  }
  return out;
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
