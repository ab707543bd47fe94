// Node file helpers for the CLI: finding and reading models and tokenizers, writing outputs.
// (The core stays free of Node built-ins; only the CLI imports this.)
import { readFile, readdir, stat, writeFile, rename, mkdir } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { FormatError, OptionError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import { readTokenizer, type Tokenizer } from '../formats/tokenizer.js';
import { hfSource, llama2cSource, type ModelSource } from '../model/job.js';

export type { ModelKind } from '../model/job.js';

export interface LoadedModel extends ModelSource {
  path: string;
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
    return { ...llama2cSource(await readBytes(path)), path };
  }
  const config = new TextDecoder().decode(await readBytes(join(path, 'config.json')));
  const shardNames = (await readdir(path)).filter((f) => f.endsWith('.safetensors')).sort();
  if (shardNames.length === 0) throw new FormatError(`${path} has a config.json but no .safetensors files`);
  const shards = await Promise.all(shardNames.map((f) => readBytes(join(path, f))));
  return { ...hfSource(config, shards, kernel, join(path, 'config.json')), path };
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
