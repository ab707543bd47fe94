// GPTQ checkpoint tensors in the AutoGPTQ / GPTQModel layout.
//
// Codes and zero points are packed as one little-endian bit stream per output row (qweight,
// along the input dimension) or per group (qzeros, along the output dimension): value k
// occupies bits [k*bits, (k+1)*bits) of consecutive int32 words. For 2/4/8 bits that is the
// usual 32/bits values per word; for 3 bits it is exactly AutoGPTQ's pack(): 32 values fill
// three words, values 10 and 21 straddling a word boundary (2+1 and 1+2 bits).
//
// Shapes: the loaders allocate qweight as [in // 32 * bits, out] and qzeros as
// [groups, out // 32 * bits] (floor division), so a checkpoint only loads when both in and out
// are multiples of 32; every GPTQ kernel in AutoGPTQ, GPTQModel and vLLM also asserts
// that. Padding the packed tensors cannot fix it (the loader's buffers would still be the
// floor size), so by default such a layer is refused with a ShapeError: leave it unquantized,
// or pad the model's dimensions before quantizing. `pad: true` packs anyway, padding with zero
// codes up to a multiple of 32 (ceil size), for consumers of our own that unpack with
// unpackGptq; stock loaders will not accept those tensors.
import { NonFiniteError, OptionError, ShapeError } from '../core/errors.js';
import { f16BitsToF32, f32ToF16Bits } from './half.js';
import type { TensorToWrite } from './safetensors.js';
import type { QuantizedWeights } from '../core/types.js';

export type GptqFormat = 'gptq' | 'gptq_v2';
export const GPTQ_BITS = [2, 3, 4, 8] as const;

/** A quantized layer as packing sees it: the core's one quantized-weights type. */
export type GptqLayer = QuantizedWeights;

export interface PackedGptq {
  /** I32 [ceil(cols / 32) * bits, rows]. */
  qweight: Int32Array;
  /** I32 [groups, ceil(rows / 32) * bits]; v1 ('gptq') holds zero - 1, v2 holds zero. */
  qzeros: Int32Array;
  /** F16 bit patterns, [groups, rows]. */
  scales: Uint16Array;
  /** I32 [cols]. */
  g_idx: Int32Array;
  /** Shapes to write into safetensors, in the same order as the fields above. */
  shapes: { qweight: [number, number]; qzeros: [number, number]; scales: [number, number]; g_idx: [number] };
}

const wordsFor = (n: number, bits: number) => Math.ceil(n / 32) * bits;

function checkDims(what: string, rows: number, cols: number, bits: number, groups: number) {
  if (!(GPTQ_BITS as readonly number[]).includes(bits)) throw new OptionError(`${what}: bits must be 2, 3, 4 or 8, not ${bits}`);
  for (const [k, v] of [['rows', rows], ['cols', cols], ['groups', groups]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new ShapeError(`${what}: ${k} = ${v} must be a positive integer`);
  }
  if (groups > cols) throw new ShapeError(`${what}: ${groups} groups for ${cols} columns`);
}

function checkFormat(what: string, format: string) {
  if (format !== 'gptq' && format !== 'gptq_v2') throw new OptionError(`${what}: format must be "gptq" or "gptq_v2", not ${JSON.stringify(format)}`);
}

function putBits(words: Int32Array, base: number, stride: number, k: number, bits: number, v: number) {
  const pos = k * bits;
  const w = pos >>> 5;
  const s = pos & 31;
  words[base + w * stride] |= v << s;
  if (s + bits > 32) words[base + (w + 1) * stride] |= v >>> (32 - s);
}

function getBits(words: Int32Array, base: number, stride: number, k: number, bits: number): number {
  const pos = k * bits;
  const w = pos >>> 5;
  const s = pos & 31;
  const mask = (1 << bits) - 1;
  let v = (words[base + w * stride] >>> s) & mask;
  if (s + bits > 32) v |= (words[base + (w + 1) * stride] << (32 - s)) & mask;
  return v;
}

/** Packs one quantized linear layer into GPTQ checkpoint tensors (see the file comment for shapes). */
export function packGptq(layer: GptqLayer, format: GptqFormat, options: { pad?: boolean } = {}): PackedGptq {
  const { codes, scales, zeros, gIdx, rows, cols, bits, groups } = layer;
  checkDims('packGptq', rows, cols, bits, groups);
  checkFormat('packGptq', format);
  if (!options.pad && (cols % 32 !== 0 || rows % 32 !== 0)) {
    throw new ShapeError(
      `packGptq: a ${rows} x ${cols} layer cannot be stored as GPTQ: loaders need in (${cols}) and out (${rows}) ` +
        'to be multiples of 32. Leave this layer unquantized, pad the model, or pass { pad: true } for non-standard padded tensors',
    );
  }
  if (codes.length !== rows * cols) throw new ShapeError(`packGptq: codes has ${codes.length} values, expected ${rows} x ${cols}`);
  if (scales.length !== rows * groups) throw new ShapeError(`packGptq: scales has ${scales.length} values, expected ${rows} x ${groups}`);
  if (zeros.length !== rows * groups) throw new ShapeError(`packGptq: zeros has ${zeros.length} values, expected ${rows} x ${groups}`);
  if (gIdx.length !== cols) throw new ShapeError(`packGptq: gIdx has ${gIdx.length} values, expected ${cols}`);
  const maxq = (1 << bits) - 1;
  for (let c = 0; c < cols; c++) {
    const g = gIdx[c];
    if (!(g >= 0 && g < groups)) throw new OptionError(`packGptq: gIdx[${c}] = ${g} is not a group in [0, ${groups})`);
  }
  const wordsIn = wordsFor(cols, bits);
  const wordsOut = wordsFor(rows, bits);
  const qweight = new Int32Array(wordsIn * rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = codes[r * cols + c];
      if (v > maxq) throw new OptionError(`packGptq: code ${v} at row ${r}, column ${c} does not fit ${bits} bits`);
      putBits(qweight, r, rows, c, bits, v);
    }
  }
  // v1 stores zero - 1 in `bits` bits (loaders add the 1 back), so only 1..2^bits fit; v2 stores zero.
  const shift = format === 'gptq' ? 1 : 0;
  const qzeros = new Int32Array(groups * wordsOut);
  const scales16 = new Uint16Array(groups * rows);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const z = zeros[r * groups + g];
      const stored = z - shift;
      // A zero is a grid point, in [0, maxq]; one of 2^bits would not fit the field in v2 and
      // would be read back as another zero by loaders of v1.
      if (!Number.isInteger(z) || z > maxq || stored < 0) {
        if (format === 'gptq' && z === 0) {
          throw new OptionError(
            `packGptq: row ${r}, group ${g} has zero point 0, which checkpoint format "gptq" (v1, stores zero - 1) cannot hold; ` +
              'quantize symmetrically or write checkpoint_format "gptq_v2"',
          );
        }
        throw new OptionError(`packGptq: zero point ${z} at row ${r}, group ${g} is not an integer in [${shift}, ${maxq}]`);
      }
      putBits(qzeros, g * wordsOut, 1, r, bits, stored);
      const s = scales[r * groups + g];
      const h = f32ToF16Bits(s);
      if ((h & 0x7c00) === 0x7c00) throw new NonFiniteError(`packGptq: scale ${s} at row ${r}, group ${g} is not finite in float16`);
      scales16[g * rows + r] = h;
    }
  }
  return {
    qweight,
    qzeros,
    scales: scales16,
    g_idx: Int32Array.from(gIdx),
    shapes: { qweight: [wordsIn, rows], qzeros: [groups, wordsOut], scales: [groups, rows], g_idx: [cols] },
  };
}

/** Inverse of packGptq: codes, float32 scales (exactly the stored float16 values), zeros, gIdx. */
export function unpackGptq(
  packed: Pick<PackedGptq, 'qweight' | 'qzeros' | 'scales' | 'g_idx'>,
  dims: { rows: number; cols: number; bits: number; groups: number },
  format: GptqFormat,
): GptqLayer {
  const { rows, cols, bits, groups } = dims;
  checkDims('unpackGptq', rows, cols, bits, groups);
  checkFormat('unpackGptq', format);
  const wordsIn = wordsFor(cols, bits);
  const wordsOut = wordsFor(rows, bits);
  const want = (what: string, got: number, n: number) => {
    if (got !== n) throw new ShapeError(`unpackGptq: ${what} has ${got} values, expected ${n}`);
  };
  want('qweight', packed.qweight.length, wordsIn * rows);
  want('qzeros', packed.qzeros.length, groups * wordsOut);
  want('scales', packed.scales.length, groups * rows);
  want('g_idx', packed.g_idx.length, cols);
  const codes = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) codes[r * cols + c] = getBits(packed.qweight, r, rows, c, bits);
  }
  const shift = format === 'gptq' ? 1 : 0;
  const zeros = new Float32Array(rows * groups);
  const scales = new Float32Array(rows * groups);
  for (let g = 0; g < groups; g++) {
    for (let r = 0; r < rows; r++) {
      zeros[r * groups + g] = getBits(packed.qzeros, g * wordsOut, 1, r, bits) + shift;
      scales[r * groups + g] = f16BitsToF32(packed.scales[g * rows + r]);
    }
  }
  for (let c = 0; c < cols; c++) {
    const g = packed.g_idx[c];
    if (!(g >= 0 && g < groups)) throw new OptionError(`unpackGptq: g_idx[${c}] = ${g} is not a group in [0, ${groups})`);
  }
  return { codes, scales, zeros, gIdx: Int32Array.from(packed.g_idx), rows, cols, bits, groups };
}

/** The four tensors of one packed layer, named as loaders expect (`<prefix>.qweight`, ...), ready for writeSafetensors. */
export function gptqTensors(prefix: string, packed: PackedGptq): TensorToWrite[] {
  return [
    { name: `${prefix}.qweight`, dtype: 'I32', shape: [...packed.shapes.qweight], data: packed.qweight },
    { name: `${prefix}.qzeros`, dtype: 'I32', shape: [...packed.shapes.qzeros], data: packed.qzeros },
    { name: `${prefix}.scales`, dtype: 'F16', shape: [...packed.shapes.scales], data: packed.scales },
    { name: `${prefix}.g_idx`, dtype: 'I32', shape: [...packed.shapes.g_idx], data: packed.g_idx },
  ];
}

export interface QuantizeConfigOptions {
  bits: number;
  /** -1 for one group per output channel. */
  groupSize: number;
  descAct: boolean;
  sym: boolean;
  trueSequential?: boolean;
  dampPercent?: number;
  staticGroups?: boolean;
  format?: GptqFormat;
  /** Extra fields (e.g. the CD/BCD method and its settings); may not shadow the standard keys. */
  extra?: Record<string, unknown>;
}

/** The quantize_config.json object AutoGPTQ and GPTQModel read. */
export function quantizeConfig(o: QuantizeConfigOptions): Record<string, unknown> {
  if (!(GPTQ_BITS as readonly number[]).includes(o.bits)) throw new OptionError(`quantizeConfig: bits must be 2, 3, 4 or 8, not ${o.bits}`);
  if (!(o.groupSize === -1 || (Number.isSafeInteger(o.groupSize) && o.groupSize > 0))) {
    throw new OptionError(`quantizeConfig: group_size must be -1 or a positive integer, not ${o.groupSize}`);
  }
  const format = o.format ?? 'gptq';
  checkFormat('quantizeConfig', format);
  const base: Record<string, unknown> = {
    bits: o.bits,
    group_size: o.groupSize,
    desc_act: o.descAct,
    sym: o.sym,
    true_sequential: o.trueSequential ?? true,
    damp_percent: o.dampPercent ?? 0.01,
    static_groups: o.staticGroups ?? false,
    quant_method: 'gptq',
    checkpoint_format: format,
  };
  for (const k of Object.keys(o.extra ?? {})) {
    if (k in base) throw new OptionError(`quantizeConfig: extra field "${k}" would overwrite a standard field`);
  }
  return { ...base, ...o.extra };
}
