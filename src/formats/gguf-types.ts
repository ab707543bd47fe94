// GGUF metadata values as the container stores them (llama.cpp's gguf.h / gguf-py's
// GGUFValueType). Shared by the container reader/writer (gguf.ts) and the producers of
// metadata (architecture fields, tokenizer vocabularies), so both speak one type.

/** GGUF value types, with their numeric ids in the file. */
export const GGUF_VALUE_TYPE = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;

export type GgufScalarType = Exclude<keyof typeof GGUF_VALUE_TYPE, 'array'>;

/** One metadata value. Integers that may exceed 2^53 (u64/i64) are bigints. */
export type GgufValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'string'; value: readonly string[] }
  | { type: 'array'; itemType: 'bool'; value: readonly boolean[] }
  | { type: 'array'; itemType: 'u64' | 'i64'; value: readonly bigint[] }
  | { type: 'array'; itemType: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: ArrayLike<number> };

/** Metadata in file order (a Map keeps insertion order). */
export type GgufMetadata = Map<string, GgufValue>;

/** llama.cpp's token types (gguf-py TokenType; tokenizer.ggml.token_type values). */
export const GGUF_TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;
