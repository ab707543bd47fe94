// Writers take models built by any pipeline stage, so they check lengths before laying out bytes.
import { ShapeError, assertFinite } from '../../core/errors.js';
import type { LlamaModel } from '../types.js';
import { resolveArch } from '../arch.js';

/** Checks every array of `model` has the length its config implies (ShapeError otherwise). */
export function checkModelShapes(model: LlamaModel): void {
  const c = model.config;
  const want = (what: string, a: ArrayLike<number> | undefined, n: number) => {
    if (!a || a.length !== n) throw new ShapeError(`model: ${what} has ${a?.length ?? 'no'} values, expected ${n}`);
  };
  want('embedding', model.embedding, c.vocabSize * c.dim);
  want('classifier', model.classifier, c.vocabSize * c.dim);
  want('finalNorm', model.finalNorm, c.dim);
  if (model.blocks.length !== c.nLayers) throw new ShapeError(`model: ${model.blocks.length} blocks, config says ${c.nLayers}`);
  const a = resolveArch(c);
  model.blocks.forEach((b, l) => {
    want(`blocks[${l}].attnNorm`, b.attnNorm, c.dim);
    want(`blocks[${l}].ffnNorm`, b.ffnNorm, c.dim);
    if (a.sandwichNorms) {
      want(`blocks[${l}].postAttnNorm`, b.postAttnNorm, c.dim);
      want(`blocks[${l}].postFfnNorm`, b.postFfnNorm, c.dim);
    }
    if (a.qkNorm) {
      want(`blocks[${l}].qNorm`, b.qNorm, a.head);
      want(`blocks[${l}].kNorm`, b.kNorm, a.head);
    }
    for (const spec of a.linears) {
      want(`blocks[${l}].${spec.name}`, b.linear[spec.name], spec.rows * spec.cols);
      if (spec.bias) want(`blocks[${l}].bias.${spec.name}`, b.bias?.[spec.name], spec.rows);
    }
  });
}

/** Throws NonFiniteError naming the tensor (as `where` reads it) if any weight of `model` is
 * NaN or infinite: readers refuse such a checkpoint rather than hand on numbers every later
 * step (forward pass, quantization, perplexity) would turn into NaN. */
export function checkModelValues(model: LlamaModel, where: string): void {
  const check = (a: Float32Array | undefined, what: string) => {
    if (a) assertFinite(a, `${where}: ${what}`);
  };
  check(model.embedding, 'embedding');
  if (model.classifier !== model.embedding) check(model.classifier, 'classifier');
  check(model.finalNorm, 'final norm');
  model.blocks.forEach((b, l) => {
    for (const field of ['attnNorm', 'ffnNorm', 'postAttnNorm', 'postFfnNorm', 'qNorm', 'kNorm'] as const) check(b[field], `layer ${l} ${field}`);
    for (const [name, w] of Object.entries(b.linear)) check(w, `layer ${l} ${name}`);
    for (const [name, w] of Object.entries(b.bias ?? {})) check(w, `layer ${l} ${name} bias`);
  });
}
