/* codec.h - exact CPU scalar codecs for the checkpoint number formats.
 *
 * All conversions are bit-exact references (the CUDA kernels and the
 * quantizer are tested against them):
 *   E2M1 (FP4)   : 16-entry table, see nvfp4.h.
 *   E4M3FN (FP8) : bias 7, no infinities, 0x7F/0xFF NaN, max 448 (0x7E),
 *                  subnormals m * 2^-9.
 *   BF16         : upper half of binary32; f32 -> bf16 rounds to nearest even.
 *   F16          : IEEE binary16 (decode only).
 * Inputs that come from untrusted files are plain bytes; these functions never
 * read past the lengths they are given. */
#ifndef G4_CODEC_H
#define G4_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/nvfp4.h"

/* E2M1 nibble (only the low 4 bits are used) -> float. */
float e2m1_to_f32(unsigned code);

/* E4M3FN byte -> float; 0x7F and 0xFF give NaN, 0x80 gives -0.0. */
float e4m3_to_f32(uint8_t b);

/* float -> E4M3FN, round to nearest, ties to even (torch's float8_e4m3fn cast
 * for |x| <= 448), saturating: |x| > 448 and +-Inf give +-448 (0x7E / 0xFE),
 * like CUDA's __NV_SATFINITE. NaN gives 0x7F | sign (0x7F or 0xFF), as torch
 * does. Subnormal results are rounded the same way (min 2^-9, code 0x01);
 * values <= 2^-10 round to +-0 (2^-10 exactly is a tie -> 0). */
uint8_t f32_to_e4m3(float x);

/* BF16 bits -> float (exact). */
float bf16_to_f32(uint16_t h);
/* float -> BF16 bits, round to nearest even; overflow rounds to +-Inf like an
 * IEEE cast; NaN stays NaN (quiet bit forced, sign and top payload kept). */
uint16_t f32_to_bf16(float x);
/* F16 bits -> float (exact, incl. subnormals, Inf, NaN). */
float f16_to_f32(uint16_t h);

/* NVFP4 row dequantization (compressed-tensors CPU decompress, nvfp4-format.md 1.6):
 *   scale_f32 = (float)e4m3(scales[i / 16]) / global_scale_divisor   (rounded to fp32)
 *   out[i]    = e2m1(code_i) * scale_f32                              (fp32 multiply)
 * packed holds ceil(k/2) bytes (code_i = low nibble of packed[i/2] when i is even,
 * high nibble when odd), scales holds ceil(k/16) bytes. k is normally a multiple
 * of 16. For a ModelOpt checkpoint pass 1 / weight_scale_2 as the divisor only if
 * bit-exactness with ModelOpt is not required (it multiplies instead). */
void nvfp4_dequant_row(const uint8_t *packed, const uint8_t *scales, float global_scale_divisor,
                       int64_t k, float *out);

/* FP8-dynamic ("float-quantized", per-channel) row: out[i] = e4m3(w[i]) * scale.
 * The product is exact in fp32 (4 x 8 significant bits for a BF16 scale). */
void fp8_dequant_row(const uint8_t *w, float scale, int64_t k, float *out);

/* Whole [n, k] FP8 weight with its [n] or [n, 1] weight_scale in F32
 * (scales_bf16 = false) or BF16 (true). scales may be unaligned (mmap views). */
void fp8_dequant_rows(const uint8_t *w, const void *scales, bool scales_bf16, int64_t n, int64_t k,
                      float *out);

#endif
