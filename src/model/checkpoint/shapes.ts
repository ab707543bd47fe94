// Writers take models built by any pipeline stage, so they check lengths before laying out bytes.
import { ShapeError } from '../../core/errors.js';
import { LINEAR_NAMES, linearShape, type LlamaModel } from '../types.js';

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
  model.blocks.forEach((b, l) => {
    want(`blocks[${l}].attnNorm`, b.attnNorm, c.dim);
    want(`blocks[${l}].ffnNorm`, b.ffnNorm, c.dim);
    for (const name of LINEAR_NAMES) {
      const [r, k] = linearShape(c, name);
      want(`blocks[${l}].${name}`, b.linear[name], r * k);
    }
  });
}
