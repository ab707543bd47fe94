export {
  parseSafetensors, readTensorF32, readTensorRaw, writeSafetensors, DTYPE_SIZE, MAX_HEADER_BYTES,
  type SafetensorsDtype, type SafetensorsFile, type TensorInfo, type TensorToWrite, type WritableDtype, type RawTensor,
} from './safetensors.js';
export { readTokenizer, loadTextTokenizer, BOS, EOS, type Tokenizer, type TextTokenizer, type EncodeOptions, type TokenizerFiles } from './tokenizer.js';
export { HfTokenizer, readHfTokenizer, MAX_TOKEN_ID, type HfTokenizerFiles, type AddedTokenEntry } from './hf-tokenizer.js';
export {
  ggufVocabMetadata, bpePreTokenizer, preTokenizerHash, looksSpecial, TOKEN_TYPE, PRE_TOKENIZER_CHECK_TEXT, KNOWN_PRE_TOKENIZERS, LATE_PIECE_SCORE, type GgufVocabOptions,
} from './gguf-vocab.js';
export { packGptq, unpackGptq, gptqTensors, quantizeConfig, GPTQ_BITS, type GptqFormat, type GptqLayer, type PackedGptq, type QuantizeConfigOptions } from './gptq.js';
export { f32ToF16Bits, f16BitsToF32, f32ToBf16Bits, bf16BitsToF32 } from './half.js';
export { sha256Hex } from './digest.js';
