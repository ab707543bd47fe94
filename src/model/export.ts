// Checkpoints out of a quantized model: a GPTQ checkpoint in the Hugging Face Llama layout
// (qweight/qzeros/scales/g_idx per packable linear layer, quantization_config in config.json,
// quantize_config.json), and reading such a checkpoint back into a dense model.
import { FormatError, OptionError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { packGptq, unpackGptq, gptqTensors, quantizeConfig, type GptqFormat } from '../formats/gptq.js';
import { hfConfigJson, hfTensors, permuteRopeRows, readHfModel, slotArray, type HfDtype } from './checkpoint/hf.js';
import { parseSafetensors, readTensorRaw, writeSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { dequantize } from '../core/merge.js';
import type { QuantizedLinear } from './pipeline.js';
import type { LinearName, LlamaModel } from './types.js';
import { resolveArch } from './arch.js';

export const VERSION = '0.1.0';

/** What produced a checkpoint: written to safetensors __metadata__ and the quantize config. */
export interface Provenance {
  method: string;
  bits: number;
  groupSize: number;
  sym: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  damp: number;
  clip: string;
  init: string | null;
  refit: number;
  calibrationSha256: string;
  nsamples: number;
  seqlen: number;
}

/** GPTQ kernels in every common loader need in and out features divisible by 32. */
export function isPackable(rows: number, cols: number): boolean {
  return rows % 32 === 0 && cols % 32 === 0;
}

/** Row order that takes a llama2.c (interleaved RoPE) q/k layer to Hugging Face's layout. */
function ropeRowOrder(nHeads: number, rows: number): Int32Array {
  const index = Float32Array.from({ length: rows }, (_, i) => i);
  return Int32Array.from(permuteRopeRows(index, nHeads, rows, 1, 'toHalf'));
}

function permuteRows<T extends Uint8Array | Float32Array>(m: T, width: number, order: Int32Array): T {
  const out = m.slice() as T;
  for (let i = 0; i < order.length; i++) out.set(m.subarray(order[i] * width, (order[i] + 1) * width), i * width);
  return out;
}

export interface GptqCheckpoint {
  safetensors: Uint8Array;
  /** config.json text (with quantization_config). */
  config: string;
  /** quantize_config.json text. */
  quantizeConfig: string;
  format: GptqFormat;
  /** Layers stored as dense (dequantized) weights because loaders cannot pack their shape. */
  dense: string[];
}

/**
 * Builds the GPTQ checkpoint of a quantized model. `model` supplies the tensors that are not
 * quantized (embeddings, norms); `layers` the quantized linear layers. Dense tensors are
 * written in `dtype`. Layers whose shape GPTQ kernels cannot take are written as their
 * dequantized weights and left out of `modules_in_block_to_quantize`, so loaders keep them as
 * ordinary linear layers holding exactly the quantized values.
 */
export function gptqCheckpoint(kernel: Kernel, model: LlamaModel, layers: QuantizedLinear[], provenance: Provenance, dtype: HfDtype = 'F32'): GptqCheckpoint {
  const c = model.config;
  const byName = new Map(layers.map((l) => [`${l.block}.${l.name}`, l]));
  const needsV2 = layers.some((l) => isPackable(l.rows, l.cols) && l.zeros.some((z) => z === 0));
  const format: GptqFormat = needsV2 ? 'gptq_v2' : 'gptq';
  const arch = resolveArch(c);
  const toHalf = c.ropeStyle === 'interleaved';
  const tensors: TensorToWrite[] = [];
  const dense: string[] = [];
  const packed = new Set<LinearName>();
  const add = (name: string, shape: number[], data: Float32Array) => tensors.push({ name, dtype, shape, data });
  // the family's own layout; only the linear weights are replaced by their packed tensors
  for (const t of hfTensors(c)) {
    const slot = t.slot;
    if (slot.kind !== 'linear') {
      add(t.name, t.shape, slotArray(model, slot)!);
      continue;
    }
    const { layer: block, name } = slot;
    const layer = byName.get(`${block}.${name}`);
    if (!layer) throw new OptionError(`gptqCheckpoint: layer ${block}.${name} was not quantized`);
    const weightName = t.name;
    const prefix = weightName.slice(0, -'.weight'.length);
    let { codes, scales, zeros } = layer;
    const groups = scales.length / layer.rows;
    const heads = name === 'q_proj' ? c.nHeads : name === 'k_proj' ? c.nKvHeads : 0;
    if (toHalf && heads) {
      const order = ropeRowOrder(heads, name === 'q_proj' ? arch.qDim : arch.kvDim);
      codes = permuteRows(codes, layer.cols, order);
      scales = permuteRows(scales, groups, order);
      zeros = permuteRows(zeros, groups, order);
    }
    const oriented = { ...layer, codes, scales, zeros };
    if (isPackable(layer.rows, layer.cols)) {
      const p = packGptq({ codes, scales, zeros, gIdx: layer.gIdx, rows: layer.rows, cols: layer.cols, bits: provenance.bits, groups }, format);
      tensors.push(...gptqTensors(prefix, p));
      packed.add(name);
    } else {
      add(weightName, t.shape, dequantize(kernel, oriented));
      dense.push(weightName);
    }
  }
  const qc = quantizeConfig({
    bits: provenance.bits,
    groupSize: provenance.groupSize,
    descAct: provenance.actOrder,
    sym: provenance.sym,
    trueSequential: true,
    dampPercent: provenance.damp,
    staticGroups: provenance.staticGroups,
    format,
    extra: {
      quantizer: `cdquant ${VERSION}`,
      cdquant_method: provenance.method,
      cdquant_clip: provenance.clip,
      cdquant_init: provenance.init,
      cdquant_refit: provenance.refit,
      ...(dense.length ? { modules_in_block_to_quantize: [arch.linears.filter((l) => packed.has(l.name)).map((l) => `${l.module}.${l.name}`)], dense_modules: dense } : {}),
    },
  });
  const config = JSON.parse(hfConfigJson(c, dtype));
  config.quantization_config = qc;
  const metadata: Record<string, string> = {
    format: 'pt',
    quantizer: `cdquant ${VERSION}`,
    checkpoint_format: format,
    ...Object.fromEntries(Object.entries(provenance).map(([k, v]) => [`cdquant.${k}`, String(v)])),
  };
  return {
    safetensors: writeSafetensors(tensors, metadata),
    config: JSON.stringify(config, null, 2),
    quantizeConfig: JSON.stringify(qc, null, 2),
    format,
    dense,
  };
}

/**
 * Reads a GPTQ checkpoint (as written above, or by AutoGPTQ/GPTQModel for a Llama model) into a
 * dense model whose linear layers hold the dequantized weights (scales as stored, float16).
 */
export function readGptqCheckpoint(kernel: Kernel, files: { config: string; safetensors: Uint8Array }): LlamaModel {
  let config: Record<string, any>;
  try {
    config = JSON.parse(files.config);
  } catch {
    throw new FormatError('config.json is not valid JSON');
  }
  const qc = config.quantization_config;
  if (!qc || qc.quant_method !== 'gptq') throw new FormatError('config.json has no GPTQ quantization_config');
  const bits = qc.bits;
  const format: GptqFormat = qc.checkpoint_format === 'gptq_v2' ? 'gptq_v2' : 'gptq';
  const file = parseSafetensors(files.safetensors);
  const dense: TensorToWrite[] = [];
  const hf = { ...config };
  delete hf.quantization_config;
  for (const [name, info] of file.tensors) {
    if (name.endsWith('.qweight')) {
      const prefix = name.slice(0, -'.qweight'.length);
      const need = (suffix: string) => {
        const t = file.tensors.get(`${prefix}.${suffix}`);
        if (!t) throw new FormatError(`GPTQ checkpoint: ${prefix}.${suffix} is missing`);
        return readTensorRaw(file, files.safetensors, `${prefix}.${suffix}`);
      };
      const gIdx = need('g_idx') as Int32Array;
      const scales = need('scales') as Uint16Array;
      const rows = info.shape[1];
      const cols = gIdx.length;
      const groups = scales.length / rows;
      if (!Number.isInteger(groups)) throw new FormatError(`GPTQ checkpoint: ${prefix}.scales does not hold whole groups of ${rows} rows`);
      const layer = unpackGptq(
        { qweight: need('qweight') as Int32Array, qzeros: need('qzeros') as Int32Array, scales, g_idx: gIdx },
        { rows, cols, bits, groups },
        format,
      );
      dense.push({ name: `${prefix}.weight`, dtype: 'F32', shape: [rows, cols], data: dequantize(kernel, layer) });
    } else if (!/\.(qzeros|scales|g_idx)$/.test(name)) {
      const raw = readTensorRaw(file, files.safetensors, name);
      dense.push({ name, dtype: info.dtype as TensorToWrite['dtype'], shape: info.shape, data: raw as TensorToWrite['data'] });
    }
  }
  return readHfModel({ config: JSON.stringify(hf), safetensors: writeSafetensors(dense) });
}

