// Node file helpers for the CLI: models read lazily from disk, tokenizers, and the output
// contract. (The core stays free of Node built-ins; only the CLI imports this.)
//
// The output contract of `cdquant quantize --out OUT`:
// - Nothing is written to OUT until the run is complete: the work happens in OUT.partial/
//   beside it (the finished blocks, a lock, the outputs being written), and the finished
//   outputs are renamed into place as a whole at the end. An interrupted run leaves OUT as it
//   was; running the same job again resumes from OUT.partial/.
// - An existing OUT is never mixed with new files: it is refused, or replaced whole with
//   --force. OUT.partial/ of a different job is refused too (or discarded with --force).
// - A lock file in OUT.partial/ stops a second run on the same OUT while the first one lives.
// - Before any work: OUT's parent must be an existing folder, OUT a folder or absent (never a
//   file or a device), and neither OUT nor OUT.partial/ may be or contain an input, or lie
//   inside an input folder. Inputs are only ever opened for reading.
import { open, readFile, readdir, stat, lstat, mkdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join, basename, resolve, relative, sep, isAbsolute } from 'node:path';
import { FormatError, OptionError } from '../core/errors.js';
import type { Kernel } from '../core/kernel.js';
import type { ByteSource } from '../formats/bytes.js';
import { loadTextTokenizer, readTokenizer, type TextTokenizer } from '../formats/tokenizer.js';
import { readGgufTokenizer } from '../formats/gguf-tokenizer.js';
import type { GgufMetadata } from '../formats/gguf-types.js';
import { parseSafetensors, readTensorF32, readTensorRaw, writeSafetensors } from '../formats/safetensors.js';
import { modelFromFiles, type ModelFile, type QuantizedStore } from '../model/job.js';
import type { OutputSink, OutputWriter } from '../model/outputs.js';
import type { QuantizedLinear } from '../model/pipeline.js';
import type { LazyModel } from '../model/source.js';

export interface LoadedModel {
  model: LazyModel;
  path: string;
  /** Every file the model was read from (never to be written). */
  inputs: string[];
}

async function statOrNull(path: string) {
  try {
    return await stat(path);
  } catch {
    return null;
  }
}

export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw new OptionError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Read-only handles of the input files, closed by closeInputs() when the command ends. */
const openHandles = new Set<FileHandle>();

export async function closeInputs(): Promise<void> {
  for (const h of openHandles) await h.close().catch(() => {});
  openHandles.clear();
}

/** A regular file read at offsets (opened read-only, once). */
export async function fileSource(path: string): Promise<ByteSource> {
  const info = await statOrNull(path);
  if (!info) throw new OptionError(`cannot read ${path}: no such file`);
  if (!info.isFile()) throw new OptionError(`${path} is not a regular file`);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
    openHandles.add(handle);
  } catch (e) {
    throw new OptionError(`cannot read ${path}: ${(e as Error).message}`);
  }
  const size = info.size;
  return {
    size,
    async read(offset, length) {
      const buf = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === length ? buf : buf.subarray(0, done);
    },
  };
}

const MODEL_FILE = /(^config\.json$|\.safetensors$|^model\.safetensors\.index\.json$)/;

/** A llama2.c .bin or .gguf file, or a Hugging Face folder (config.json + *.safetensors,
 * sharded or not; a GPTQ checkpoint too), opened lazily. */
export async function loadModel(path: string, kernel: Kernel): Promise<LoadedModel> {
  const info = await statOrNull(path);
  if (!info) throw new OptionError(`cannot read ${path}: no such file or folder`);
  if (!info.isDirectory()) {
    const model = await modelFromFiles([{ name: basename(path), source: await fileSource(path) }], kernel);
    return { model, path, inputs: [resolve(path)] };
  }
  const names = (await readdir(path)).filter((f) => MODEL_FILE.test(f)).sort();
  if (!names.includes('config.json')) throw new OptionError(`${path} is a folder without config.json (a Hugging Face model folder holds config.json and *.safetensors)`);
  const files: ModelFile[] = [];
  for (const name of names) {
    const full = join(path, name);
    files.push(name.endsWith('.safetensors') ? { name: full, source: await fileSource(full) } : { name: full, bytes: await readBytes(full) });
  }
  return { model: await modelFromFiles(files, kernel), path, inputs: [resolve(path), ...names.map((n) => resolve(path, n))] };
}

async function textOrUndefined(path: string): Promise<string | undefined> {
  return (await statOrNull(path))?.isFile() ? new TextDecoder().decode(await readBytes(path)) : undefined;
}

/**
 * The tokenizer given (`explicit`: a tokenizer.json, or a llama2.c tokenizer.bin), else a GGUF
 * model's own (`ggufVocabulary`), else the one found next to the model: its folder's
 * tokenizer.json (with tokenizer_config.json and config.json, as transformers reads them),
 * else tokenizer.bin or tok<vocab>.bin in the model's folder or its parent.
 */
export async function loadTokenizer(modelPath: string, vocabSize: number, explicit?: string, ggufVocabulary?: GgufMetadata): Promise<TextTokenizer> {
  const folder = (await statOrNull(modelPath))?.isDirectory() ? modelPath : dirname(modelPath);
  const config = await textOrUndefined(join(folder, 'config.json'));
  const hf = async (json: string) => {
    const tokenizerConfig = await textOrUndefined(join(dirname(json), 'tokenizer_config.json'));
    return loadTextTokenizer({ tokenizerJson: new TextDecoder().decode(await readBytes(json)), ...(tokenizerConfig ? { tokenizerConfig } : {}), ...(config ? { config } : {}) });
  };
  const checked = (t: TextTokenizer, where: string) => {
    if (t.vocabSize > vocabSize) throw new FormatError(`${where}: the tokenizer has ${t.vocabSize} ids, the model's vocabulary ${vocabSize}`);
    return t;
  };
  if (explicit) return checked(explicit.endsWith('.json') ? await hf(explicit) : readTokenizer(await readBytes(explicit), vocabSize), explicit);
  if (ggufVocabulary) return checked(readGgufTokenizer(ggufVocabulary), modelPath);
  const json = join(folder, 'tokenizer.json');
  if ((await statOrNull(json))?.isFile()) return checked(await hf(json), json);
  const candidates = [folder, dirname(folder)].flatMap((d) => [join(d, 'tokenizer.bin'), join(d, `tok${vocabSize}.bin`)]);
  for (const c of candidates) {
    if ((await statOrNull(c))?.isFile()) return readTokenizer(await readBytes(c), vocabSize);
  }
  throw new OptionError(`no tokenizer found for ${basename(modelPath)} (looked for ${[json, ...candidates].join(', ')}); pass --tokenizer FILE`);
}

// ------------------------------------------------------------------------------------------
// The output contract

/** Whether `inner` is `outer` or lies inside it. */
function within(inner: string, outer: string): boolean {
  const rel = relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && rel.split(sep)[0] !== '..');
}

/** Checks an output path against the inputs before any work: refuses devices, files where a
 * folder goes, missing parents, and any overlap with an input. */
export async function checkOutputPath(out: string, inputs: readonly string[], kind: 'folder' | 'file'): Promise<string> {
  const target = resolve(out);
  const parent = dirname(target);
  const parentInfo = await statOrNull(parent);
  if (!parentInfo?.isDirectory()) throw new OptionError(`--out ${out}: its parent ${parent} is not an existing folder (create it first)`);
  const existing = await lstat(target).catch(() => null);
  if (existing) {
    if (existing.isSymbolicLink()) throw new OptionError(`--out ${out} is a symbolic link; give the real path`);
    if (kind === 'folder' && !existing.isDirectory()) throw new OptionError(`--out ${out} exists and is not a folder`);
    if (kind === 'file' && !existing.isFile()) throw new OptionError(`--out ${out} exists and is not a regular file`);
  }
  for (const input of inputs) {
    const i = resolve(input);
    for (const candidate of [target, `${target}.partial`]) {
      if (within(i, candidate)) throw new OptionError(`--out ${out} would replace the input ${input} (inputs are never overwritten)`);
      if (within(candidate, i) && i !== candidate) throw new OptionError(`--out ${out} lies inside the input ${input} (inputs are never overwritten)`);
    }
  }
  return target;
}

export interface OutputRun {
  /** OUT itself. */
  target: string;
  /** OUT.partial: lock, run.json, blocks/, out/. */
  partial: string;
  /** Finished blocks, kept for resuming. */
  store: QuantizedStore;
  /** Where the outputs are written before they are moved into place. */
  sink: OutputSink;
  /** Blocks an earlier run of the same job finished. */
  resumed: number[];
  /** Moves the finished outputs into place (replacing OUT whole with --force) and cleans up. */
  commit(): Promise<void>;
  /** Releases the lock (the partial work stays for a resume). */
  release(): Promise<void>;
}

interface RunManifest {
  key: string;
  blocks: number[];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Opens the work of `cdquant quantize --out OUT` under the output contract (see the file
 * comment): checks, the lock, the resume state for job `key`, the store and the staging sink.
 */
export async function openOutputRun(out: string, inputs: readonly string[], key: string, force: boolean, log: (s: string) => void): Promise<OutputRun> {
  const target = await checkOutputPath(out, inputs, 'folder');
  const existing = await statOrNull(target);
  if (existing && (await readdir(target)).length > 0 && !force) {
    throw new OptionError(`--out ${out} already holds files; choose a new folder, or pass --force to replace it whole when this run completes`);
  }
  const partial = `${target}.partial`;
  try {
    await mkdir(partial);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new OptionError(`cannot create ${partial}: ${(e as Error).message}`);
    if (!(await statOrNull(partial))?.isDirectory()) throw new OptionError(`${partial} exists and is not a folder`);
  }
  // The lock: created exclusively; a lock left by a process that is gone is taken over.
  const lock = join(partial, 'lock');
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw new OptionError(`cannot lock ${partial}: ${(e as Error).message}`);
      const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw new OptionError(`another cdquant run (pid ${holder}) is writing ${out}; wait for it, or stop it first`);
      }
      await rm(lock, { force: true });
    }
  }
  const release = () => rm(lock, { force: true });
  try {
    const manifestPath = join(partial, 'run.json');
    let manifest: RunManifest = { key, blocks: [] };
    const old = await readFile(manifestPath, 'utf8').then((t) => JSON.parse(t) as RunManifest, () => null);
    if (old && old.key !== key) {
      if (!force) throw new OptionError(`${partial} holds an interrupted run of a different job (other model, data or options); pass --force to discard it`);
      log(`discarding the interrupted run of a different job in ${partial}`);
    } else if (old) {
      manifest = old;
      if (manifest.blocks.length) log(`resuming: blocks ${manifest.blocks.join(', ')} already done`);
    }
    const blocksDir = join(partial, 'blocks');
    const stagingDir = join(partial, 'out');
    if (!old || old.key !== key) {
      await rm(blocksDir, { recursive: true, force: true });
      await writeAtomic(manifestPath, JSON.stringify(manifest));
    }
    await rm(stagingDir, { recursive: true, force: true });
    await mkdir(blocksDir, { recursive: true });
    await mkdir(stagingDir);
    const store: QuantizedStore = {
      async put(block, layers) {
        const meta = layers.map(({ codes, scales, zeros, gIdx, gguf, ...rest }) => ({ ...rest, ...(gguf ? { gguf: { type: gguf.type } } : {}) }));
        await writeAtomic(join(blocksDir, `block-${block}.safetensors`), writeSafetensors(layerTensors(layers)));
        await writeAtomic(join(blocksDir, `block-${block}.json`), JSON.stringify(meta));
        if (!manifest.blocks.includes(block)) manifest.blocks.push(block);
        await writeAtomic(manifestPath, JSON.stringify(manifest));
      },
      async get(block) {
        if (!manifest.blocks.includes(block)) return undefined;
        const meta = JSON.parse(await readFile(join(blocksDir, `block-${block}.json`), 'utf8')) as QuantizedLinear[];
        return layersFromTensors(await readBytes(join(blocksDir, `block-${block}.safetensors`)), meta);
      },
    };
    return {
      target,
      partial,
      store,
      sink: folderSink(stagingDir),
      resumed: [...manifest.blocks],
      release,
      async commit() {
        const previous = (await statOrNull(target)) ? `${target}.replaced-${process.pid}` : null;
        if (previous) await rename(target, previous);
        await rename(stagingDir, target);
        if (previous) await rm(previous, { recursive: true, force: true });
        await rm(partial, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await release();
    throw e;
  }
}

/** A block's layers as safetensors: integer codes and grids, or a GGUF layer's block bytes. */
function layerTensors(layers: QuantizedLinear[]) {
  return layers.flatMap((l) => {
    const p = `${l.block}.${l.name}`;
    if (l.gguf) return [{ name: `${p}.gguf`, dtype: 'U8' as const, shape: [l.gguf.bytes.length], data: l.gguf.bytes }];
    return [
      { name: `${p}.codes`, dtype: 'U8' as const, shape: [l.rows, l.cols], data: l.codes },
      { name: `${p}.scales`, dtype: 'F32' as const, shape: [l.rows, l.groups], data: l.scales },
      { name: `${p}.zeros`, dtype: 'F32' as const, shape: [l.rows, l.groups], data: l.zeros },
      { name: `${p}.g_idx`, dtype: 'I32' as const, shape: [l.cols], data: l.gIdx },
    ];
  });
}

function layersFromTensors(bytes: Uint8Array, meta: QuantizedLinear[]): QuantizedLinear[] {
  const file = parseSafetensors(bytes);
  return meta.map((m) => {
    const p = `${m.block}.${m.name}`;
    if (m.gguf) {
      const empty = { codes: new Uint8Array(0), scales: new Float32Array(0), zeros: new Float32Array(0), gIdx: new Int32Array(0) };
      return { ...m, ...empty, gguf: { type: m.gguf.type, bytes: readTensorRaw(file, bytes, `${p}.gguf`) as Uint8Array } };
    }
    return {
      ...m,
      codes: readTensorRaw(file, bytes, `${p}.codes`) as Uint8Array,
      scales: readTensorF32(file, bytes, `${p}.scales`),
      zeros: readTensorF32(file, bytes, `${p}.zeros`),
      gIdx: readTensorRaw(file, bytes, `${p}.g_idx`) as Int32Array,
    };
  });
}

/** A sink writing files under `dir` (made by us, so creating its subfolders is safe). */
export function folderSink(dir: string): OutputSink {
  return {
    async open(path: string): Promise<OutputWriter> {
      if (path.split('/').some((part) => part === '..' || part === '')) throw new FormatError(`output path ${path} is not a plain relative path`);
      const full = join(dir, ...path.split('/'));
      await mkdir(dirname(full), { recursive: true });
      const handle = await open(full, 'wx');
      return {
        async write(chunk) {
          await handle.write(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
        },
        close: () => handle.close(),
      };
    },
  };
}

/** Writes a file via a temporary file and rename, so an interrupted run never leaves half a
 * file. The folder must exist. */
export async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data, { flag: 'w' });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new OptionError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

/** `cdquant layer --out FILE`: checked like a folder output, written to FILE.partial-PID and
 * renamed into place whole. */
export async function writeOutputFile(out: string, inputs: readonly string[], data: Uint8Array, force: boolean): Promise<void> {
  const target = await checkOutputPath(out, inputs, 'file');
  if ((await statOrNull(target)) && !force) throw new OptionError(`--out ${out} exists; choose another path, or pass --force to replace it`);
  await writeAtomic(target, data);
}
