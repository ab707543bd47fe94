// Test harness: llama.cpp's own quantizers and dequantizers (ggml/src/ggml-quants.c, compiled
// unchanged next to this file) behind a tiny stdin/stdout protocol, so the tests can compare
// cdquant's wasm codecs with ggml byte for byte. Built and cached by test/helpers/ggml-ref.ts.
//
// stdin: five little-endian int32 (mode, ggml type id, rows, cols, has_imatrix), then
//   mode 1 (quantize):   rows*cols f32, then cols f32 importance weights if has_imatrix
//                        -> stdout: the quantized rows, then their dequantization (rows*cols f32)
//   mode 2 (dequantize): rows * row_size bytes -> stdout: rows*cols f32
//   mode 3 (layout):     nothing -> stdout: one line per type: id block_elems block_bytes,
//                        then the byte offset of each field of its ggml-common.h struct
//
// Quantization dispatches exactly as ggml_quantize_chunk (ggml.c) does for start = 0:
// quantize_<type>(src, dst, rows, cols, imatrix) for block types, the ggml-impl.h row
// conversions for F16 and BF16, a copy for F32. ggml.c itself is not compiled (it needs the
// whole backend); the four symbols ggml-quants.c takes from it are defined below from the
// block structs in ggml-common.h.
#define GGML_COMMON_DECL_C
#include "ggml-common.h"
#include "ggml-quants.h"
#include "ggml-impl.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { int type; const char * name; int64_t blck; size_t size; } TYPES[] = {
    { GGML_TYPE_F32,  "f32",  1,     sizeof(float) },
    { GGML_TYPE_F16,  "f16",  1,     sizeof(ggml_half) },
    { GGML_TYPE_BF16, "bf16", 1,     sizeof(ggml_bf16_t) },
    { GGML_TYPE_Q4_0, "q4_0", QK4_0, sizeof(block_q4_0) },
    { GGML_TYPE_Q4_1, "q4_1", QK4_1, sizeof(block_q4_1) },
    { GGML_TYPE_Q5_0, "q5_0", QK5_0, sizeof(block_q5_0) },
    { GGML_TYPE_Q5_1, "q5_1", QK5_1, sizeof(block_q5_1) },
    { GGML_TYPE_Q8_0, "q8_0", QK8_0, sizeof(block_q8_0) },
    { GGML_TYPE_Q2_K, "q2_K", QK_K,  sizeof(block_q2_K) },
    { GGML_TYPE_Q3_K, "q3_K", QK_K,  sizeof(block_q3_K) },
    { GGML_TYPE_Q4_K, "q4_K", QK_K,  sizeof(block_q4_K) },
    { GGML_TYPE_Q5_K, "q5_K", QK_K,  sizeof(block_q5_K) },
    { GGML_TYPE_Q6_K, "q6_K", QK_K,  sizeof(block_q6_K) },
};
#define NTYPES ((int)(sizeof(TYPES) / sizeof(TYPES[0])))

static int type_index(int type) {
    for (int i = 0; i < NTYPES; i++) if (TYPES[i].type == type) return i;
    return -1;
}

// The ggml.c symbols ggml-quants.c links against.
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt);
    exit(3);
}
size_t ggml_type_size(enum ggml_type type) { int i = type_index(type); if (i < 0) ggml_abort(__FILE__, __LINE__, "type"); return TYPES[i].size; }
int64_t ggml_blck_size(enum ggml_type type) { int i = type_index(type); if (i < 0) ggml_abort(__FILE__, __LINE__, "type"); return TYPES[i].blck; }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { return ggml_type_size(type) * ne / ggml_blck_size(type); }
const char * ggml_type_name(enum ggml_type type) { int i = type_index(type); return i < 0 ? "?" : TYPES[i].name; }

static void * read_exact(size_t n) {
    void * p = malloc(n ? n : 1);
    if (!p || fread(p, 1, n, stdin) != n) { fprintf(stderr, "ggml-ref: short input (wanted %zu bytes)\n", n); exit(2); }
    return p;
}

static void write_all(const void * p, size_t n) {
    if (fwrite(p, 1, n, stdout) != n) { fprintf(stderr, "ggml-ref: write failed\n"); exit(2); }
}

static void quantize(int type, const float * src, void * dst, int64_t rows, int64_t cols, const float * imatrix) {
    const int64_t n = rows * cols;
    switch (type) {
        case GGML_TYPE_Q4_0: quantize_q4_0(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q4_1: quantize_q4_1(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q5_0: quantize_q5_0(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q5_1: quantize_q5_1(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q8_0: quantize_q8_0(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q2_K: quantize_q2_K(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q3_K: quantize_q3_K(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q4_K: quantize_q4_K(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q5_K: quantize_q5_K(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_Q6_K: quantize_q6_K(src, dst, rows, cols, imatrix); break;
        case GGML_TYPE_F16: for (int64_t i = 0; i < n; i++) ((ggml_half *)dst)[i] = GGML_FP32_TO_FP16(src[i]); break;
        case GGML_TYPE_BF16: for (int64_t i = 0; i < n; i++) ((ggml_bf16_t *)dst)[i] = GGML_FP32_TO_BF16(src[i]); break;
        case GGML_TYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
        default: ggml_abort(__FILE__, __LINE__, "quantize: type");
    }
}

static void dequantize(int type, const void * src, float * dst, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    switch (type) {
        case GGML_TYPE_Q4_0: dequantize_row_q4_0(src, dst, n); break;
        case GGML_TYPE_Q4_1: dequantize_row_q4_1(src, dst, n); break;
        case GGML_TYPE_Q5_0: dequantize_row_q5_0(src, dst, n); break;
        case GGML_TYPE_Q5_1: dequantize_row_q5_1(src, dst, n); break;
        case GGML_TYPE_Q8_0: dequantize_row_q8_0(src, dst, n); break;
        case GGML_TYPE_Q2_K: dequantize_row_q2_K(src, dst, n); break;
        case GGML_TYPE_Q3_K: dequantize_row_q3_K(src, dst, n); break;
        case GGML_TYPE_Q4_K: dequantize_row_q4_K(src, dst, n); break;
        case GGML_TYPE_Q5_K: dequantize_row_q5_K(src, dst, n); break;
        case GGML_TYPE_Q6_K: dequantize_row_q6_K(src, dst, n); break;
        case GGML_TYPE_F16: for (int64_t i = 0; i < n; i++) dst[i] = GGML_FP16_TO_FP32(((const ggml_half *)src)[i]); break;
        case GGML_TYPE_BF16: for (int64_t i = 0; i < n; i++) dst[i] = GGML_BF16_TO_FP32(((const ggml_bf16_t *)src)[i]); break;
        case GGML_TYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
        default: ggml_abort(__FILE__, __LINE__, "dequantize: type");
    }
}

#define FIELD(T, f) printf(" %s=%zu", #f, offsetof(T, f))

static void layout(void) {
    for (int i = 0; i < NTYPES; i++) {
        printf("%d %lld %zu", TYPES[i].type, (long long)TYPES[i].blck, TYPES[i].size);
        switch (TYPES[i].type) {
            case GGML_TYPE_Q4_0: FIELD(block_q4_0, d); FIELD(block_q4_0, qs); break;
            case GGML_TYPE_Q4_1: FIELD(block_q4_1, d); FIELD(block_q4_1, m); FIELD(block_q4_1, qs); break;
            case GGML_TYPE_Q5_0: FIELD(block_q5_0, d); FIELD(block_q5_0, qh); FIELD(block_q5_0, qs); break;
            case GGML_TYPE_Q5_1: FIELD(block_q5_1, d); FIELD(block_q5_1, m); FIELD(block_q5_1, qh); FIELD(block_q5_1, qs); break;
            case GGML_TYPE_Q8_0: FIELD(block_q8_0, d); FIELD(block_q8_0, qs); break;
            case GGML_TYPE_Q2_K: FIELD(block_q2_K, scales); FIELD(block_q2_K, qs); FIELD(block_q2_K, d); FIELD(block_q2_K, dmin); break;
            case GGML_TYPE_Q3_K: FIELD(block_q3_K, hmask); FIELD(block_q3_K, qs); FIELD(block_q3_K, scales); FIELD(block_q3_K, d); break;
            case GGML_TYPE_Q4_K: FIELD(block_q4_K, d); FIELD(block_q4_K, dmin); FIELD(block_q4_K, scales); FIELD(block_q4_K, qs); break;
            case GGML_TYPE_Q5_K: FIELD(block_q5_K, d); FIELD(block_q5_K, dmin); FIELD(block_q5_K, scales); FIELD(block_q5_K, qh); FIELD(block_q5_K, qs); break;
            case GGML_TYPE_Q6_K: FIELD(block_q6_K, ql); FIELD(block_q6_K, qh); FIELD(block_q6_K, scales); FIELD(block_q6_K, d); break;
            default: break;
        }
        printf("\n");
    }
}

int main(void) {
    int32_t * h = read_exact(5 * sizeof(int32_t));
    const int mode = h[0], type = h[1], has_imatrix = h[4];
    const int64_t rows = h[2], cols = h[3];
    if (mode == 3) { layout(); return 0; }
    const int ti = type_index(type);
    if (ti < 0 || rows < 0 || cols <= 0 || cols % TYPES[ti].blck) { fprintf(stderr, "ggml-ref: bad header\n"); return 2; }
    const size_t row_size = ggml_row_size(type, cols);
    float * out = malloc(rows * cols * sizeof(float) + 1);
    if (mode == 1) {
        float * src = read_exact(rows * cols * sizeof(float));
        float * imatrix = has_imatrix ? read_exact(cols * sizeof(float)) : NULL;
        void * q = malloc(rows * row_size + 1);
        quantize(type, src, q, rows, cols, imatrix);
        dequantize(type, q, out, rows, cols);
        write_all(q, rows * row_size);
    } else if (mode == 2) {
        void * q = read_exact(rows * row_size);
        dequantize(type, q, out, rows, cols);
    } else {
        fprintf(stderr, "ggml-ref: bad mode %d\n", mode);
        return 2;
    }
    write_all(out, rows * cols * sizeof(float));
    return 0;
}
