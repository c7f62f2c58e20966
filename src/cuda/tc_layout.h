/* tc_layout.h - the device layout of NVFP4 weights: tiles of A fragments of the tensor-core
 * instruction mma.sync.m16n8k16 (f16), so that the decode GEMV (gemv_tc.cu) reads every weight
 * with one coalesced 16-byte load per lane and turns 8 codes into the 4 f16x2 A registers with
 * 11 integer operations and no tables. Written once at load (cu_nvfp4_to_tc, gemv_tc.cu, from
 * the checkpoint's row-major bytes), read by gemv_tc.cu and by the prefill dequantizer (gemm.cu).
 * Host and device code share this header so that there is one definition of the layout.
 *
 * W [n, k] (NVFP4: E2M1 codes, E4M3 scale per 16 values of a row) with n padded to np = 16 x
 * tiles and k to kp = 64 x chunks (zero codes, zero scales). Tile t (rows 16t..16t+15), chunk c
 * (columns 64c..64c+63) = 512 code bytes at (t * kp/64 + c) * 512 and 64 scale bytes at
 * (t * kp/64 + c) * 64 of the scale array.
 *
 * Codes: lane L = 4g + q (g = L / 4, q = L % 4) owns the 16 bytes at + 16L: word j (0..3) holds
 * its A fragment for the k16 step j (columns 64c + 16j ..): 4 pairs p, pair p = register a_p
 * of the PTX fragment: a0 = row g, columns 2q, 2q+1; a1 = row g+8, same columns; a2 = row g,
 * columns 2q+8, 2q+9; a3 = row g+8, columns 2q+8, 2q+9. The even column goes to the low 16-bit
 * half of the word, the odd one to the high half (same bit positions + 16). In a half, code
 * bits m, e0, e1 (E2M1 = s e1 e0 m) of pair p sit at tc_mag_lo(p) + 0, 1, 2 and s at tc_sign(p).
 * The positions were searched so that every pair becomes f16 bits s<<15 | e1e0m<<9 with one or
 * two shifts and masks (11 operations per word, see tc_decode): those bits are exactly the E2M1
 * value times 2^-14 as an f16 (e = 0 codes land on the f16 subnormals, linearly). No layout
 * puts all four pairs one shift from place (the 4-bit pattern {0,1,2,6} does not tile 16 bits).
 *
 * Scales: lane (g, q) reads the 8 bytes at + 8g: byte 2j = scale of row g for step j (the
 * 16-value group 4c + j), byte 2j+1 = row g+8; the four lanes of a quad read the same bytes. */
#ifndef G4_CUDA_TC_LAYOUT_H
#define G4_CUDA_TC_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define TC_HD __host__ __device__ __forceinline__
#else
#define TC_HD static inline
#endif

enum { TC_ROWS = 16, TC_KCH = 64, TC_CHUNK_BYTES = 512, TC_SCALE_BYTES = 64 };

TC_HD int tc_mag_lo(int p) { return p == 0 ? 12 : p == 1 ? 9 : p == 2 ? 5 : 2; }
TC_HD int tc_sign(int p) { return p == 0 ? 1 : p == 1 ? 15 : p == 2 ? 0 : 8; }

TC_HD size_t tc_np(size_t n) { return (n + TC_ROWS - 1) / TC_ROWS * TC_ROWS; }
TC_HD size_t tc_kp(size_t k) { return (k + TC_KCH - 1) / TC_KCH * TC_KCH; }
/* bytes of codes / scales of the tile layout of an [n, k] weight */
TC_HD size_t tc_code_bytes(size_t n, size_t k) { return tc_np(n) / TC_ROWS * (tc_kp(k) / TC_KCH) * TC_CHUNK_BYTES; }
TC_HD size_t tc_scale_bytes(size_t n, size_t k) { return tc_np(n) / TC_ROWS * (tc_kp(k) / TC_KCH) * TC_SCALE_BYTES; }

/* Where weight (r, c) lives: byte offset of its 32-bit word, the bit of m (e0, e1 follow) and of s,
 * and the byte offset of its group scale. kp = tc_kp(k). */
TC_HD void tc_locate(size_t r, size_t c, size_t kp, size_t *word_off, int *mag_bit, int *sign_bit,
                     size_t *scale_off) {
    const size_t tile = r >> 4, chunk = c >> 6;
    const int rr = (int)(r & 15), g = rr & 7, rh = rr >> 3;
    const int j = (int)((c >> 4) & 3), cc = (int)(c & 15), ch = cc >> 3, q = (cc & 7) >> 1, hb = cc & 1;
    const int p = ch * 2 + rh, lane = g * 4 + q;
    const size_t base = tile * (kp >> 6) + chunk;
    *word_off = base * TC_CHUNK_BYTES + (size_t)lane * 16 + (size_t)j * 4;
    *mag_bit = tc_mag_lo(p) + 16 * hb;
    *sign_bit = tc_sign(p) + 16 * hb;
    *scale_off = base * TC_SCALE_BYTES + (size_t)g * 8 + (size_t)j * 2 + (size_t)rh;
}

/* The 4 f16x2 A registers of one word: f16 bits of e2m1 * 2^-14 (see above). */
TC_HD void tc_decode(uint32_t w, uint32_t a[4]) {
    a[0] = ((w >> 3) & 0x0E000E00u) | ((w << 14) & 0x80008000u);
    a[1] = w & 0x8E008E00u;
    a[2] = ((w << 4) & 0x0E000E00u) | ((w << 15) & 0x80008000u);
    a[3] = (w << 7) & 0x8E008E00u;
}

#endif
