/* test_codec.c - E2M1 / E4M3FN / BF16 / F16 codecs and NVFP4 / FP8 row dequant,
 * each checked against an independently written computation. */
#include "harness.h"
#include "model/codec.h"
#include "model/nvfp4.h"

#include <math.h>
#include <stdlib.h>

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
/* same value and same sign of zero */
static bool same(float a, float b) { return (isnan(a) && isnan(b)) || fbits(a) == fbits(b); }

TEST(codec_e2m1_all_codes) {
    /* nvfp4-format.md 1.5, literally */
    static const float doc[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    for (unsigned c = 0; c < 16; c++) {
        /* independent: s e1 e0 m, bias 1, subnormal m * 0.5 */
        unsigned s = c >> 3, e = (c >> 1) & 3, m = c & 1;
        double v = e == 0 ? m * 0.5 : (1.0 + m / 2.0) * pow(2.0, (double)e - 1.0);
        if (s) v = -v;
        CHECK_MSG(same(e2m1_to_f32(c), (float)v), "e2m1 code %u: %g vs %g", c, e2m1_to_f32(c), v);
        CHECK_MSG(same(e2m1_to_f32(c), doc[c]), "e2m1 code %u vs doc table", c);
        CHECK(same(nvfp4_e2m1_lut[c], doc[c]));
        CHECK(same(e2m1_to_f32(c | 0xF0), doc[c]));   /* high bits ignored */
    }
    CHECK(signbit(e2m1_to_f32(8)) && e2m1_to_f32(8) == 0.0f);
    CHECK_EQ_INT((int)NVFP4_SCALE_DENOM, 2688);
}

/* Independent E4M3FN decoder: assemble the binary32 bit pattern directly for
 * normals, divide for subnormals. */
static float ref_e4m3(unsigned b) {
    unsigned s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) return NAN;
    float v;
    if (e == 0) v = (float)m / 512.0f;
    else v = bitsf(((e - 7 + 127) << 23) | (m << 20));
    return s ? -v : v;
}

TEST(codec_e4m3_decode_all_256) {
    for (unsigned b = 0; b < 256; b++) {
        float got = e4m3_to_f32((uint8_t)b), want = ref_e4m3(b);
        CHECK_MSG(same(got, want), "e4m3 0x%02X: %.9g vs %.9g", b, got, want);
        CHECK_MSG(isnan(got) == ((b & 0x7F) == 0x7F), "e4m3 0x%02X NaN-ness", b);
    }
    CHECK(e4m3_to_f32(0x20) == 0.125f);
    CHECK(e4m3_to_f32(0x38) == 1.0f);
    CHECK(e4m3_to_f32(0x6B) == 88.0f);
    CHECK(e4m3_to_f32(0x7E) == 448.0f);
    CHECK(e4m3_to_f32(0xFE) == -448.0f);
    CHECK(e4m3_to_f32(0x01) == ldexpf(1.0f, -9));
    CHECK(e4m3_to_f32(0x07) == 7.0f / 512.0f);
    CHECK(e4m3_to_f32(0x08) == ldexpf(1.0f, -6));  /* min normal */
    CHECK(isnan(e4m3_to_f32(0x7F)) && isnan(e4m3_to_f32(0xFF)));
    CHECK(e4m3_to_f32(0x80) == 0.0f && signbit(e4m3_to_f32(0x80)));
    CHECK(e4m3_to_f32(0x00) == 0.0f && !signbit(e4m3_to_f32(0x00)));
    /* monotonic over the positive finite codes */
    for (unsigned b = 1; b < 0x7F; b++) CHECK(e4m3_to_f32((uint8_t)b) > e4m3_to_f32((uint8_t)(b - 1)));
}

/* Brute-force reference encoder: nearest finite code, ties to the even code, saturating. */
static uint8_t ref_to_e4m3(float x) {
    if (isnan(x)) return signbit(x) ? 0xFF : 0x7F;
    uint8_t sign = signbit(x) ? 0x80 : 0;
    double a = fabs((double)x);
    if (a >= 448.0) return 0x7E | sign;
    unsigned best = 0;
    double bd = INFINITY;
    for (unsigned c = 0; c < 0x7F; c++) {
        double d = fabs((double)ref_e4m3(c) - a);
        if (d < bd || (d == bd && !(c & 1))) { bd = d; best = c; }
    }
    return (uint8_t)(best | sign);
}

TEST(codec_e4m3_encode_rne_saturate) {
    /* exact codes round-trip */
    for (unsigned b = 0; b < 256; b++) {
        if ((b & 0x7F) == 0x7F) continue;
        CHECK_MSG(f32_to_e4m3(e4m3_to_f32((uint8_t)b)) == b, "round trip 0x%02X", b);
    }
    /* midpoints (ties) and just either side of them */
    for (unsigned c = 0; c + 1 < 0x7F; c++) {
        float lo = ref_e4m3(c), hi = ref_e4m3(c + 1);
        float mid = (float)(((double)lo + hi) / 2);     /* exact in fp32 */
        unsigned even = (c & 1) ? c + 1 : c;
        CHECK_MSG(f32_to_e4m3(mid) == even, "tie %g between 0x%02X/0x%02X -> 0x%02X", mid, c, c + 1,
                  f32_to_e4m3(mid));
        CHECK(f32_to_e4m3(-mid) == (even | 0x80));
        CHECK(f32_to_e4m3(nextafterf(mid, 0)) == c);
        CHECK(f32_to_e4m3(nextafterf(mid, 1000)) == c + 1);
    }
    /* random values over the whole range (and a bit beyond) vs brute force */
    srand(12345);
    for (int i = 0; i < 20000; i++) {
        double e = (rand() / (double)RAND_MAX) * 24.0 - 14.0;   /* 2^-14 .. 2^10 */
        float x = (float)(ldexp(1.0 + rand() / (double)RAND_MAX, (int)floor(e)));
        if (rand() & 1) x = -x;
        uint8_t got = f32_to_e4m3(x), want = ref_to_e4m3(x);
        if (got != want) { CHECK_MSG(got == want, "f32_to_e4m3(%.9g) = 0x%02X, want 0x%02X", x, got, want); break; }
    }
    /* saturation, Inf, NaN, tiny */
    CHECK(f32_to_e4m3(448.0f) == 0x7E);
    CHECK(f32_to_e4m3(463.99f) == 0x7E);
    CHECK(f32_to_e4m3(464.0f) == 0x7E);
    CHECK(f32_to_e4m3(500.0f) == 0x7E);
    CHECK(f32_to_e4m3(1e30f) == 0x7E);
    CHECK(f32_to_e4m3(-1e30f) == 0xFE);
    CHECK(f32_to_e4m3(INFINITY) == 0x7E);
    CHECK(f32_to_e4m3(-INFINITY) == 0xFE);
    CHECK(f32_to_e4m3(NAN) == 0x7F);
    CHECK(f32_to_e4m3(-NAN) == 0xFF);
    CHECK(f32_to_e4m3(ldexpf(1, -10)) == 0x00);              /* tie between 0 and 2^-9 -> 0 */
    CHECK(f32_to_e4m3(nextafterf(ldexpf(1, -10), 1)) == 0x01);
    CHECK(f32_to_e4m3(ldexpf(3, -10)) == 0x02);              /* 1.5 * 2^-9 tie -> 2 (even) */
    CHECK(f32_to_e4m3(1e-30f) == 0x00);
    CHECK(f32_to_e4m3(-1e-30f) == 0x80);
    CHECK(f32_to_e4m3(89.90625f) == 0x6B);                   /* nvfp4-format.md 1.7 step 3 */
    CHECK(f32_to_e4m3(92.0f) == 0x6C);                       /* tie 88|96 -> 96 (0x6C even) */
}

TEST(codec_bf16_round_trip) {
    /* every BF16 pattern decodes and re-encodes to itself (NaN stays NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        CHECK(fbits(f) == h << 16);
        uint16_t back = f32_to_bf16(f);
        if (isnan(f)) CHECK_MSG(isnan(bf16_to_f32(back)) && (back & 0x8000) == (h & 0x8000), "NaN 0x%04X", h);
        else if (back != h) { CHECK_MSG(back == h, "bf16 0x%04X -> 0x%04X", h, back); break; }
    }
    /* ties to even */
    CHECK(f32_to_bf16(bitsf(0x3F808000u)) == 0x3F80);   /* 1 + 2^-8: tie, keep even 0x3F80 */
    CHECK(f32_to_bf16(bitsf(0x3F818000u)) == 0x3F82);   /* tie, round up to even */
    CHECK(f32_to_bf16(bitsf(0x3F808001u)) == 0x3F81);   /* just above tie */
    CHECK(f32_to_bf16(bitsf(0x3F807FFFu)) == 0x3F80);   /* just below */
    CHECK(f32_to_bf16(bitsf(0xBF818000u)) == 0xBF82);   /* negative tie */
    CHECK(f32_to_bf16(0.1f) == 0x3DCD);                  /* 0.1 -> 0.10009765625 */
    CHECK(bf16_to_f32(0x3DCD) == 0.10009765625f);
    /* Inf, NaN, overflow, zero signs, subnormals */
    CHECK(f32_to_bf16(INFINITY) == 0x7F80);
    CHECK(f32_to_bf16(-INFINITY) == 0xFF80);
    CHECK(f32_to_bf16(bitsf(0x7F7FFFFFu)) == 0x7F80);   /* FLT_MAX rounds up to Inf */
    CHECK(f32_to_bf16(bitsf(0x7F7F7FFFu)) == 0x7F7F);
    uint16_t sn = f32_to_bf16(bitsf(0x7F800001u));      /* signalling NaN must not become Inf */
    CHECK(isnan(bf16_to_f32(sn)));
    CHECK(isnan(bf16_to_f32(f32_to_bf16(bitsf(0xFFC00000u)))) && (f32_to_bf16(bitsf(0xFFC00000u)) & 0x8000));
    CHECK(f32_to_bf16(bitsf(0x7FFFFFFFu)) == 0x7FFF);
    CHECK(f32_to_bf16(-0.0f) == 0x8000);
    CHECK(f32_to_bf16(bitsf(0x00018000u)) == 0x0002);   /* subnormal tie -> even */
}

TEST(codec_f16_decode) {
    for (uint32_t h = 0; h < 65536; h++) {
        unsigned s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        double v;
        if (e == 31) v = m ? NAN : INFINITY;
        else if (e == 0) v = ldexp((double)m, -24);
        else v = ldexp(1024.0 + m, (int)e - 25);
        if (s) v = -v;
        float got = f16_to_f32((uint16_t)h);
        if (!same(got, (float)v)) { CHECK_MSG(0, "f16 0x%04X: %.9g vs %.9g", h, got, v); break; }
    }
    CHECK(f16_to_f32(0x3C00) == 1.0f);
    CHECK(f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(f16_to_f32(0x8000) == 0.0f && signbit(f16_to_f32(0x8000)));
    CHECK(isinf(f16_to_f32(0x7C00)) && isinf(f16_to_f32(0xFC00)) && f16_to_f32(0xFC00) < 0);
    CHECK(isnan(f16_to_f32(0x7E00)) && isnan(f16_to_f32(0x7C01)));
    CHECK(f16_to_f32(0x4248) == 3.140625f);
}

TEST(codec_nvfp4_worked_example) {
    /* nvfp4-format.md 1.7: packed D7 02 68 4F E2 A7 94 E6, scale 0x6B (88), global 5376 */
    const uint8_t packed[8] = {0xD7, 0x02, 0x68, 0x4F, 0xE2, 0xA7, 0x94, 0xE6};
    const uint8_t scale[1] = {0x6B};
    static const float codes[16] = {6, -3, 1, 0, -0.0f, 4, -6, 2, 1, -4, 6, -1, 2, -0.5f, 4, -4};
    float out[16];
    nvfp4_dequant_row(packed, scale, 5376.0f, 16, out);
    const float eff = 88.0f / 5376.0f;   /* fp32-rounded effective scale */
    for (int i = 0; i < 16; i++) CHECK_MSG(same(out[i], codes[i] * eff), "elem %d: %.9g vs %.9g", i, out[i], codes[i] * eff);
    CHECK_NEAR(out[0], 0.098214, 1e-6);
    CHECK_NEAR(out[1], -0.049107, 1e-6);
    CHECK(signbit(out[4]) && out[4] == 0.0f);

    /* two blocks with different scales; verify nibble order and block indexing */
    uint8_t p2[16], s2[2] = {0x38 /* 1.0 */, 0x20 /* 0.125 */};
    for (int j = 0; j < 16; j++) p2[j] = (uint8_t)(((j + 1) & 15) << 4 | (j & 15));
    float o2[32];
    nvfp4_dequant_row(p2, s2, 2.0f, 32, o2);
    for (int i = 0; i < 32; i++) {
        unsigned code = (i & 1) ? ((unsigned)(i / 2 + 1) & 15) : ((unsigned)(i / 2) & 15);
        float sc = (i < 16 ? 1.0f : 0.125f) / 2.0f;
        CHECK_MSG(same(o2[i], nvfp4_e2m1_lut[code] * sc), "block elem %d", i);
    }
    /* a divisor that makes the scale inexact: must round scale to fp32 first */
    float o3[16];
    nvfp4_dequant_row(packed, scale, 3.0f, 16, o3);
    float sc3 = 88.0f / 3.0f;
    for (int i = 0; i < 16; i++) CHECK(same(o3[i], codes[i] * sc3));
}

TEST(codec_fp8_dequant_rows) {
    const uint8_t w[6] = {0x38, 0xB8, 0x7E, 0x01, 0x20, 0x80};   /* 1, -1, 448, 2^-9, 0.125, -0 */
    /* unaligned scales: BF16 [2,1] at offset 1 */
    uint8_t sb[5] = {0xAA, 0, 0, 0, 0};
    uint16_t s0 = f32_to_bf16(0.5f), s1 = f32_to_bf16(0.0078125f);
    memcpy(sb + 1, &s0, 2);
    memcpy(sb + 3, &s1, 2);
    float out[6];
    fp8_dequant_rows(w, sb + 1, true, 2, 3, out);
    CHECK(out[0] == 0.5f && out[1] == -0.5f && out[2] == 224.0f);
    CHECK(out[3] == ldexpf(1, -16) && out[4] == 0.0009765625f && out[5] == 0.0f && signbit(out[5]));
    uint8_t sf[9] = {0};
    float f0 = 2.0f, f1 = 3.0f;
    memcpy(sf + 1, &f0, 4);
    memcpy(sf + 5, &f1, 4);
    fp8_dequant_rows(w, sf + 1, false, 2, 3, out);
    CHECK(out[0] == 2.0f && out[2] == 896.0f && out[4] == 0.375f);
    float r[3];
    fp8_dequant_row(w, 4.0f, 3, r);
    CHECK(r[0] == 4.0f && r[1] == -4.0f && r[2] == 1792.0f);
}
