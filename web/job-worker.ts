// The page's job worker: runs a whole quantization job off the main thread, so the page never
// freezes. It is the same job as `cdquant quantize` (src/model/job.ts), so the same options give
// the same checkpoint bytes (or, for GGUF output, the same model.gguf). Threads: when the page is cross-origin isolated, layers are solved
// on a WorkerPool (build/web/worker.js, SharedArrayBuffer); otherwise on this thread.
import {
  CdquantError, FormatError, OptionError, Kernel, blobSource, blockDecoders, bytesSource, ggufVocabFor, linearNames, linearShape, loadTextTokenizer, modelFromFiles, modelPerplexity, planJob,
  readGgufTokenizer, readGptqCheckpoint, readLlamaGguf, readTokenizer, runJob, textTokens,
  type LlamaModel, type LazyModel, type TextTokenizer,
} from '../src/index.js';
import type { JobMessage, JobRequest, PplStage } from './protocol.js';

const post = (m: JobMessage, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(m, transfer);

/** The tokenizer chosen (tokenizer.json (+ tokenizer_config.json) or a llama2.c tokenizer.bin),
 * else a GGUF model's own, else the model folder's tokenizer.json, with its config.json (as
 * cdquant's CLI finds it). */
async function pageTokenizer(req: JobRequest, source: LazyModel): Promise<TextTokenizer> {
  const { vocabSize } = source.config;
  const base = (n: string) => n.slice(n.lastIndexOf('/') + 1);
  const text = async (f: JobRequest['model'][number] | undefined) => (f ? (f.bytes ? new TextDecoder().decode(f.bytes) : await f.blob!.text()) : undefined);
  const bin = req.tokenizer.find((f) => f.name.endsWith('.bin'));
  if (bin) return readTokenizer(bin.bytes, vocabSize);
  if (!req.tokenizer.length && source.ggufVocabulary) {
    const t = readGgufTokenizer(source.ggufVocabulary);
    if (t.vocabSize > vocabSize) throw new FormatError(`the GGUF file's vocabulary has ${t.vocabSize} tokens, its embedding ${vocabSize} rows`);
    return t;
  }
  const files = req.tokenizer.length ? req.tokenizer : req.model;
  const pick = (name: string) => files.find((f) => base(f.name) === name);
  const tokenizerJson = await text(pick('tokenizer.json'));
  if (!tokenizerJson) throw new OptionError('no tokenizer: choose tokenizer.json (with tokenizer_config.json) or a llama2.c tokenizer.bin');
  const tokenizerConfig = await text(pick('tokenizer_config.json'));
  const config = await text(req.model.find((f) => base(f.name) === 'config.json'));
  const t = loadTextTokenizer({ tokenizerJson, ...(tokenizerConfig ? { tokenizerConfig } : {}), ...(config ? { config } : {}) });
  if (t.vocabSize > vocabSize) throw new FormatError(`the tokenizer has ${t.vocabSize} ids, the model's vocabulary ${vocabSize}`);
  return t;
}

async function run(req: JobRequest): Promise<void> {
  const t0 = performance.now();
  post({ type: 'status', text: 'Reading the model…' });
  const kernel = await Kernel.create();
  const source = await modelFromFiles(req.model.map((f) => ({ name: f.name, ...(f.blob ? { source: blobSource(f.blob) } : { bytes: f.bytes }) })), kernel);
  const { config } = source;
  const tokenizer = await pageTokenizer(req, source);
  const calibTokens = textTokens(tokenizer, req.text, req.calibParagraphs);
  const evalTokens = textTokens(tokenizer, req.text, req.evalParagraphs);
  const isolated = (self as any).crossOriginIsolated === true;
  const { threads: requested, ...solverOptions } = req.options;
  // Without cross-origin isolation there is no SharedArrayBuffer: solve on this thread.
  const threads = isolated ? requested : 1;
  const plan = await planJob(source, calibTokens, solverOptions, req.calibration, req.gguf);
  // A GGUF file carries the vocabulary (tokenizer.ggml.*): from the page's tokenizer, as the CLI.
  const ggufVocab = plan.gguf ? await ggufVocabFor(tokenizer, config) : undefined;
  post({
    type: 'model',
    info: {
      kind: source.kind, dtype: source.dtype, blocks: config.nLayers, dim: config.dim, hiddenDim: config.hiddenDim, vocab: config.vocabSize,
      calibrationTokens: calibTokens.length, evalTokens: evalTokens.length, nsamples: plan.provenance.nsamples, seqlen: plan.seqlen,
      calibrationSha256: plan.provenance.calibrationSha256,
      layers: config.nLayers * linearNames(config).length + (plan.gguf ? (config.tiedEmbeddings ? 1 : 2) : 0),
      shapes: Object.fromEntries(linearNames(config).map((n) => [n, linearShape(config, n)])),
      threads: !isolated ? '1 (page not cross-origin isolated)' : threads === undefined ? 'automatic' : String(threads),
      gguf: plan.gguf,
    },
  });

  const evaluate = async (stage: PplStage, model: LazyModel | LlamaModel) => {
    const result = await modelPerplexity(kernel, model, evalTokens, req.evalSeqlen, {
      ...(req.maxWindows ? { maxWindows: req.maxWindows } : {}),
      onWindow: (done, total) => post({ type: 'eval', stage, done, total }),
    });
    post({ type: 'ppl', stage, result, seqlen: req.evalSeqlen });
  };
  post({ type: 'status', text: 'Perplexity of the original model…' });
  await evaluate('before', source);

  post({ type: 'status', text: 'Quantizing…' });
  const job = await runJob(source, plan, {
    kernel,
    threads,
    modelName: req.modelName,
    // The page always shows the RTN baseline beside the method (cheap at the page's model sizes).
    // GGUF runs always report theirs, llama.cpp's reference rounding, and compare with nothing else.
    ...(plan.gguf ? { ggufVocab } : { compareMethods: req.compareGptq ? ['rtn', 'gptq'] : ['rtn'] }),
    onProgress: (progress) => post({ type: 'progress', progress }),
    // The classifier (and an untied embedding) of a GGUF run are solved after the blocks, with
    // no progress of their own: shown when their pseudo-block is done.
    onBlockDone: (block, layers) => {
      if (block >= config.nLayers) post({ type: 'head', layers: layers.map((l) => ({ block: l.block, name: l.name, rows: l.rows, cols: l.cols, loss: l.loss, baseLoss: l.rtnLoss, seconds: l.seconds })) });
    },
  });

  post({ type: 'status', text: 'Perplexity of the quantized model…' });
  await evaluate('after', job.quantized);
  if (job.gptq) {
    post({ type: 'status', text: 'Perplexity of the GPTQ checkpoint, read back…' });
    const gptqFile = (path: string) => job.files.find((f) => f.path === `gptq/${path}`)!.data as Uint8Array;
    await evaluate('gptq', readGptqCheckpoint(kernel, { config: job.gptq.config, safetensors: gptqFile('model.safetensors') }));
  }
  if (job.gguf) {
    // The file as llama.cpp would get it, decoded by our reader (llama.cpp's dequantizers).
    post({ type: 'status', text: 'Perplexity of model.gguf, read back…' });
    const file = job.files.find((f) => f.path === 'model.gguf');
    if (!file || typeof file.data === 'string') throw new FormatError('the job wrote no model.gguf');
    await evaluate('gguf', await readLlamaGguf(bytesSource(file.data), { decoders: blockDecoders(kernel), kernel }));
  }

  // Hand over the files' buffers rather than copying them (only buffers a file owns whole).
  const transfer = job.files.flatMap((f) => (typeof f.data !== 'string' && f.data.byteOffset === 0 && f.data.byteLength === f.data.buffer.byteLength ? [f.data.buffer as ArrayBuffer] : []));
  post({ type: 'done', report: job.report, files: job.files, seconds: (performance.now() - t0) / 1000 }, [...new Set(transfer)]);
}

self.onmessage = (e: MessageEvent<JobRequest>) => {
  if (e.data?.type !== 'run') return;
  run(e.data).catch((err: unknown) => {
    const code = err instanceof CdquantError ? err.code : 'INTERNAL';
    const message = err instanceof Error ? err.message : String(err);
    if (!(err instanceof CdquantError)) console.error(err);
    post({ type: 'error', code, message });
  });
};
