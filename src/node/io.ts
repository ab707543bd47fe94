// Node file helpers for the CLI: finding and reading models and tokenizers, writing outputs.
// (The core stays free of Node built-ins; only the CLI imports this.)
import { readFile, readdir, stat, writeFile, rename, mkdir } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { FormatError, OptionError } from '../errors.js';
import type { Kernel } from '../kernel.js';
import { readLlama2c } from '../formats/llama2c.js';
import { readHfLlama, type HfDtype } from '../formats/hf.js';
import { parseSafetensors } from '../formats/safetensors.js';
import { readTokenizer, type Tokenizer } from '../formats/tokenizer.js';
import { readGptqCheckpoint } from '../model/export.js';
import type { LlamaModel } from '../model/types.js';
import { concat } from '../model/text.js';

export type ModelKind = 'llama2c' | 'hf' | 'gptq';

export interface LoadedModel {
  model: LlamaModel;
  kind: ModelKind;
  /** Dtype of the Hugging Face tensors (F32 for llama2.c). */
  dtype: HfDtype;
  path: string;
  /** Bytes the model came from (for provenance hashes). */
  bytes: Uint8Array;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    throw new OptionError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new OptionError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** A llama2.c .bin file, a Hugging Face Llama directory, or a GPTQ checkpoint directory. */
export async function loadModel(path: string, kernel: Kernel): Promise<LoadedModel> {
  if (!(await isDirectory(path))) {
    const bytes = await readBytes(path);
    return { model: readLlama2c(bytes), kind: 'llama2c', dtype: 'F32', path, bytes };
  }
  const config = new TextDecoder().decode(await readBytes(join(path, 'config.json')));
  const shardNames = (await readdir(path)).filter((f) => f.endsWith('.safetensors')).sort();
  if (shardNames.length === 0) throw new FormatError(`${path} has a config.json but no .safetensors files`);
  const shards = await Promise.all(shardNames.map((f) => readBytes(join(path, f))));
  const first = parseSafetensors(shards[0]);
  const dtypes = new Set([...first.tensors.values()].map((t) => t.dtype));
  const dtype: HfDtype = dtypes.has('BF16') ? 'BF16' : dtypes.has('F16') ? 'F16' : 'F32';
  const bytes = shards.length === 1 ? shards[0] : concat(shards);
  let parsedConfig: Record<string, unknown>;
  try {
    parsedConfig = JSON.parse(config);
  } catch {
    throw new FormatError(`${join(path, 'config.json')} is not valid JSON`);
  }
  if (parsedConfig.quantization_config) {
    if (shards.length !== 1) throw new FormatError('sharded GPTQ checkpoints are not supported yet');
    return { model: readGptqCheckpoint(kernel, { config, safetensors: shards[0] }), kind: 'gptq', dtype: 'F32', path, bytes };
  }
  return { model: readHfLlama({ config, safetensors: shards }), kind: 'hf', dtype, path, bytes };
}


/** The tokenizer given, or one found next to the model (tokenizer.bin, tok<vocab>.bin, in the
 * model's folder or its parent). */
export async function loadTokenizer(modelPath: string, vocabSize: number, explicit?: string): Promise<Tokenizer> {
  if (explicit) return readTokenizer(await readBytes(explicit), vocabSize);
  const folder = (await isDirectory(modelPath)) ? modelPath : dirname(modelPath);
  const candidates = [folder, dirname(folder)].flatMap((d) => [join(d, 'tokenizer.bin'), join(d, `tok${vocabSize}.bin`)]);
  for (const c of candidates) {
    try {
      if ((await stat(c)).isFile()) return readTokenizer(await readBytes(c), vocabSize);
    } catch {
      // not there; try the next
    }
  }
  throw new OptionError(`no tokenizer found for ${basename(modelPath)} (looked for ${candidates.join(', ')}); pass --tokenizer FILE`);
}

/** Writes via a temporary file and rename, so an interrupted run never leaves half a file. */
export async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
