/* test_tc_layout.c - the NVFP4 tile layout of the tensor-core GEMV (src/cuda/tc_layout.h) on the
 * CPU: every (row, column) of odd-shaped weights gets its own bits, and the 11-operation decode
 * the kernel runs (tc_decode) turns each word into f16 values equal to e2m1 * 2^-14 at exactly
 * the A-fragment positions of mma.m16n8k16 (PTX ISA: register p of lane 4g + q holds rows
 * g + 8 (p & 1), columns 2q + 8 (p >> 1) + {0, 1}). The GPU repacker and kernel are checked
 * against the CPU matmul in test_cuda_ops.c; this pins the layout and decode arithmetic
 * themselves, on every machine. */
#include "harness.h"
#include "cuda/tc_layout.h"
#include "model/codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng = 12345;
static uint32_t rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

TEST(tc_layout_pack_decode_odd_shapes) {
    const int shapes[][2] = {{1, 16}, {17, 80}, {37, 144}, {16, 64}, {33, 208}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int n = shapes[si][0], k = shapes[si][1];
        const size_t kp = tc_kp((size_t)k), cb = tc_code_bytes((size_t)n, (size_t)k),
                     sbytes = tc_scale_bytes((size_t)n, (size_t)k);
        CHECK_EQ_INT(cb, tc_np((size_t)n) * kp / 2);
        CHECK_EQ_INT(sbytes, tc_np((size_t)n) * kp / 16);
        uint8_t *codes = malloc((size_t)n * k), *scales = malloc((size_t)n * (k / 16));
        uint8_t *w = calloc(cb, 1), *s = calloc(sbytes, 1), *seen = calloc(cb * 8, 1), *sseen = calloc(sbytes, 1);
        REQUIRE(codes && scales && w && s && seen && sseen);
        for (int i = 0; i < n * k; i++) codes[i] = (uint8_t)(rnd() & 15);
        for (int i = 0; i < n * (k / 16); i++) scales[i] = (uint8_t)(rnd() & 0x7F);
        /* pack from tc_locate: no bit and no scale byte may be claimed twice */
        bool clash = false;
        for (int r = 0; r < n; r++)
            for (int c = 0; c < k; c++) {
                size_t wo, so;
                int mb, sb;
                tc_locate((size_t)r, (size_t)c, kp, &wo, &mb, &sb, &so);
                REQUIRE(wo + 4 <= cb && so < sbytes);
                uint32_t word;
                memcpy(&word, w + wo, 4);
                const uint8_t code = codes[r * k + c];
                const int bits[4] = {mb, mb + 1, mb + 2, sb};
                for (int b = 0; b < 4; b++) {
                    if (seen[wo * 8 + bits[b]]++) clash = true;
                    if ((code >> b) & 1) word |= 1u << bits[b];
                }
                memcpy(w + wo, &word, 4);
                if (c % 16 == 0) {
                    if (sseen[so]++) clash = true;
                    s[so] = scales[r * (k / 16) + c / 16];
                }
            }
        CHECK_MSG(!clash, "[%d, %d]: two weights share a bit or a scale byte", n, k);
        /* decode every word as the kernel does and compare with the fragment positions */
        int bad = 0;
        const size_t tiles = tc_np((size_t)n) / 16, nch = kp / 64;
        for (size_t t = 0; t < tiles; t++)
            for (size_t ch = 0; ch < nch; ch++)
                for (int lane = 0; lane < 32; lane++)
                    for (int j = 0; j < 4; j++) {
                        const int g = lane >> 2, q = lane & 3;
                        uint32_t word, a[4];
                        memcpy(&word, w + (t * nch + ch) * 512 + (size_t)lane * 16 + (size_t)j * 4, 4);
                        tc_decode(word, a);
                        for (int p = 0; p < 4; p++)
                            for (int hb = 0; hb < 2; hb++) {
                                const size_t r = t * 16 + (size_t)g + 8 * (size_t)(p & 1);
                                const size_t c = ch * 64 + (size_t)j * 16 + 8 * (size_t)(p >> 1) + 2 * (size_t)q + (size_t)hb;
                                const float got = f16_to_f32((uint16_t)(a[p] >> (16 * hb))) * 16384.0f;
                                const float want = (r < (size_t)n && c < (size_t)k) ? e2m1_to_f32(codes[r * k + c]) : 0.0f;
                                if (got != want && bad++ < 5)
                                    t_fail(__FILE__, __LINE__, "[%d, %d] row %zu col %zu: decoded %g, want %g", n, k, r, c,
                                           got, want);
                            }
                        /* scale bytes of the quad: byte 2j = row g, 2j + 1 = row g + 8 */
                        for (int rh = 0; rh < 2; rh++) {
                            const size_t r = t * 16 + (size_t)g + 8 * (size_t)rh, grp = ch * 4 + (size_t)j;
                            const uint8_t got = s[(t * nch + ch) * 64 + (size_t)g * 8 + (size_t)j * 2 + (size_t)rh];
                            const uint8_t want = (r < (size_t)n && grp < (size_t)(k / 16)) ? scales[r * (k / 16) + grp] : 0;
                            if (got != want && bad++ < 5)
                                t_fail(__FILE__, __LINE__, "[%d, %d] scale row %zu group %zu: %d, want %d", n, k, r, grp,
                                       got, want);
                        }
                    }
        CHECK_EQ_INT(bad, 0);
        free(codes);
        free(scales);
        free(w);
        free(s);
        free(seen);
        free(sseen);
    }
}

/* e2m1 * 2^-14 times an E4M3 scale is exact in f16 for every code and every finite positive
 * scale (the kernel's HMUL2 must not round): <= 6 significant bits, >= 2^-24. */
TEST(tc_layout_scaled_weights_exact_in_f16) {
    int bad = 0;
    for (unsigned code = 0; code < 16; code++)
        for (unsigned sb = 0; sb < 0x7F; sb++) {
            const double v = fabs((double)e2m1_to_f32(code) * (double)e4m3_to_f32((uint8_t)sb) / 16384.0);
            /* f16: multiples of 2^-24 below 2^-14; 11 significant bits above; <= 65504 */
            const double m = v * 16777216.0;
            if (m != floor(m) || v > 65504.0) {
                bad++;
                continue;
            }
            uint64_t mi = (uint64_t)m;
            while (mi && !(mi & 1)) mi >>= 1;
            if (v >= 1.0 / 16384.0 && mi >= 2048) bad++;
        }
    CHECK_EQ_INT(bad, 0);
}
