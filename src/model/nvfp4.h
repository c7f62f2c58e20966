/* nvfp4.h - NVFP4 (E2M1 + E4M3 block scale) layout constants, shared by C and CUDA.
 *
 * Layout (compressed-tensors "nvfp4-pack-quantized" and ModelOpt NVFP4, see
 * shared/docs/nvfp4-format.md 1.3-1.6, 5), for a Linear weight W [N, K]:
 *   weight_packed  U8      [N, K/2]   two E2M1 codes per byte along K;
 *                                     element 2j in the LOW nibble, 2j+1 in the HIGH nibble
 *   weight_scale   F8_E4M3 [N, K/16]  one E4M3FN scale per NVFP4_BLOCK consecutive k
 *   weight_global_scale F32 [1]       compressed-tensors: a DIVISOR
 *   (ModelOpt: weight_scale_2 F32 [] is the reciprocal, a multiplier)
 *   w[n,k] = e2m1(code) * (fp8(weight_scale[n,k/16]) / weight_global_scale)
 *
 * E2M1 code s e1 e0 m: bias 1, subnormal (e == 0) is m * 0.5, max 6.
 * Usage: C   static const float *t = nvfp4_e2m1_lut;   or NVFP4_E2M1_INIT
 *        CUDA  __constant__ float c_e2m1[16] = NVFP4_E2M1_INIT;
 * This header has no dependencies and no functions with external linkage. */
#ifndef G4_NVFP4_H
#define G4_NVFP4_H

#define NVFP4_BLOCK           16      /* E2M1 values per E4M3 block scale */
#define NVFP4_VALUES_PER_BYTE 2       /* low nibble = even element */
#define NVFP4_E2M1_MAX        6.0f
#define NVFP4_E4M3_MAX        448.0f  /* E4M3FN max normal, code 0x7E */
#define NVFP4_E4M3_NAN        0x7F    /* and 0xFF; E4M3FN has no infinities */
/* amax(|W|) / NVFP4_SCALE_DENOM is ModelOpt's weight_scale_2 (= 1 / global_scale) */
#define NVFP4_SCALE_DENOM     (NVFP4_E2M1_MAX * NVFP4_E4M3_MAX)   /* 2688 */

/* Index = 4-bit code; sign is bit 3, magnitude index = code & 7. */
#define NVFP4_E2M1_INIT { 0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f, \
                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f }

#ifdef __cplusplus
#define NVFP4_STATIC_ASSERT(c, msg) static_assert(c, msg)
#else
#define NVFP4_STATIC_ASSERT(c, msg) _Static_assert(c, msg)
#endif

NVFP4_STATIC_ASSERT(NVFP4_BLOCK % NVFP4_VALUES_PER_BYTE == 0, "a block must cover whole bytes");
NVFP4_STATIC_ASSERT(NVFP4_BLOCK == 16, "NVFP4 block size is 16");
NVFP4_STATIC_ASSERT(sizeof(float) == 4, "float must be IEEE binary32");

/* Host-side table. Device code cannot read it: build a __constant__ (or local)
 * copy from NVFP4_E2M1_INIT instead. */
static const float nvfp4_e2m1_lut[16] = NVFP4_E2M1_INIT;

#endif
