// GPTQ checkpoints of quantized models: the in-memory form of the streaming writer
// (outputs.ts writeGptqCheckpoint) for small models and tests, and the reader that turns a
// checkpoint back into a dense model (scales as stored, float16).
import { FormatError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { unpackGptq, type GptqFormat } from '../formats/gptq.js';
import { readHfModel } from './checkpoint/hf.js';
import { parseSafetensors, readTensorRaw, writeSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { dequantize } from '../core/merge.js';
import type { QuantizedLinear } from './pipeline.js';
import type { LlamaModel } from './types.js';
import { memorySink, writeGptqCheckpoint, type Provenance } from './outputs.js';
import { memoryModel } from './source.js';

export { VERSION, isPackable, type Provenance } from './outputs.js';

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

/** The GPTQ checkpoint of a quantized model in memory, as one shard (see writeGptqCheckpoint:
 * `model` supplies the tensors that are not quantized, `layers` the quantized ones). */
export async function gptqCheckpoint(kernel: Kernel, model: LlamaModel, layers: readonly QuantizedLinear[], provenance: Provenance): Promise<GptqCheckpoint> {
  const sink = memorySink();
  const summary = await writeGptqCheckpoint(sink, 'gptq', memoryModel(model, 'hf', 'F32', async () => ''), async (b) => layers.filter((l) => l.block === b), provenance, kernel, Infinity);
  const safetensors = sink.files.find((f) => f.path === 'gptq/model.safetensors')!.data as Uint8Array;
  return { safetensors, config: summary.config, quantizeConfig: summary.quantizeConfig, format: summary.format, dense: summary.dense };
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
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new FormatError('config.json is not a JSON object');
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

