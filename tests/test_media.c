/* test_media.c - media decoding and preprocessing against the Hugging Face processors.
 *
 * Fixtures: tests/fixtures/media/ from tools/make_media_fixtures.py (manifest.json lists
 * the cases). Checks:
 *   images: decoded with g4's decoders, patched with the real geometry (48-px patches, the
 *     case's budget): token count, target size, (x, y) positions identical; pixel values
 *     within 2/255 of transformers' (whole resized image for six cases, per-patch channel
 *     sums for the rest: |diff| <= 2 * 48 * 48); tiny geometry (4-px patches, budget 70):
 *     every pixel value within 2/255 and positions identical. The number of values that
 *     differ at all is printed (the resize aims to be bit-exact).
 *   audio: 16 kHz mono waveform (decode + downmix + soxr HQ) within 1e-3 per sample,
 *     same length, same token count ceil(n / 640).
 *   video: sampled indices, timestamps text and per-frame token counts identical; tiny
 *     geometry pixel values of all 32 frames within 2/255; first/last frame of the real
 *     geometry within 2/255.
 *   error paths: truncated / garbage bytes fail with a message, never crash. */
#include "harness.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/npy.h"
#include "media/preprocess.h"
#include "g4.h"

#include <math.h>
#include <stdlib.h>

static json_doc *manifest(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/media/manifest.json", t_fixtures());
    char *txt = NULL;
    size_t len = 0;
    g4_error err = {0};
    if (read_file_all(p, 1 << 24, &txt, &len, &err)) return NULL;
    json_doc *d = NULL;
    json_parse(txt, len, "manifest.json", NULL, &d, &err);
    free(txt);
    return d;
}

static int64_t iget(const json_value *o, const char *k) {
    int64_t v = -1;
    json_get_i64(json_get(o, k), &v);
    return v;
}

static bool load_file(const char *rel, uint8_t **d, size_t *n) {
    char p[600];
    snprintf(p, sizeof p, "%s/media/%s", t_fixtures(), rel);
    g4_error err = {0};
    return read_file_all(p, 1 << 26, (char **)d, n, &err) == G4_OK;
}

static bool load_npy(const char *rel, npy_array *a) {
    char p[600];
    snprintf(p, sizeof p, "%s/media/%s", t_fixtures(), rel);
    g4_error err = {0};
    return npy_read(p, a, &err) == G4_OK;
}

static bool decode_image(const char *rel, mimg *img) {
    uint8_t *d;
    size_t n;
    if (!load_file(rel, &d, &n)) return false;
    g4_error err = {0};
    g4_status st = img_decode(d, n, 0, img, &err);
    free(d);
    if (st) t_fail(__FILE__, __LINE__, "%s: %s", rel, err.msg);
    return st == G4_OK;
}

/* compare positions npy [n,2] */
static int pos_mismatch(const mm_patches *p, const npy_array *pos) {
    if (pos->numel != (int64_t)p->n * 2) return -1;
    int bad = 0;
    for (int i = 0; i < 2 * p->n; i++) bad += p->pos[i] != ((const int32_t *)pos->data)[i];
    return bad;
}

TEST(media_images_vs_hf) {
    json_doc *d = manifest();
    REQUIRE(d);
    const json_value *cases = json_get(json_root(d), "cases");
    int n_img = 0, exact = 0;
    double worst = 0;
    size_t n_diff = 0, n_vals = 0;
    for (size_t c = 0; c < cases->len; c++) {
        const json_value *cs = json_at(cases, c);
        if (strcmp(json_get_str(json_get(cs, "kind")), "image")) continue;
        const char *file = json_get_str(json_get(cs, "file"));
        mimg img;
        if (!decode_image(file, &img)) continue;
        n_img++;
        CHECK_MSG(img.w == iget(cs, "width") && img.h == iget(cs, "height"), "%s: decoded %dx%d, expected %lldx%lld",
                  file, img.w, img.h, (long long)iget(cs, "width"), (long long)iget(cs, "height"));
        /* real geometry */
        const json_value *r = json_get(cs, "real");
        mm_patches p;
        g4_error err = {0};
        g4_status st = mm_image_patches(&img, 16, 3, (int)iget(r, "budget"), &p, &err);
        CHECK_MSG(st == G4_OK, "%s: %s", file, err.msg);
        if (!st) {
            CHECK_MSG(p.n == iget(r, "tokens") && p.th == iget(r, "th") && p.tw == iget(r, "tw"),
                      "%s: %d tokens %dx%d, expected %lld tokens %lldx%lld", file, p.n, p.tw, p.th,
                      (long long)iget(r, "tokens"), (long long)iget(r, "tw"), (long long)iget(r, "th"));
            npy_array pos;
            if (load_npy(json_get_str(json_get(r, "pos")), &pos)) {
                CHECK_MSG(pos_mismatch(&p, &pos) == 0, "%s: real positions differ", file);
                npy_free(&pos);
            }
            bool same = true;
            const char *png = json_get_str(json_get(r, "png"));
            if (png && p.n == iget(r, "tokens")) {
                mimg ref;
                if (decode_image(png, &ref)) {
                    REQUIRE(ref.w == p.tw && ref.h == p.th);
                    int m = 48;
                    int gx = p.tw / m;
                    for (int i = 0; i < p.n; i++)
                        for (int k = 0; k < m * m * 3; k++) {
                            int row = k / (m * 3), col = (k / 3) % m, ch = k % 3;
                            int bx = i % gx, by = i / gx;
                            float want = ref.rgb[((size_t)(by * m + row) * p.tw + bx * m + col) * 3 + ch] * (float)(1.0 / 255.0);
                            double dd = fabs((double)p.pix[(size_t)i * m * m * 3 + k] - want);
                            if (dd > worst) worst = dd;
                            n_diff += dd > 0;
                            n_vals++;
                            same &= dd == 0;
                        }
                    mimg_free(&ref);
                }
            }
            const char *sums = json_get_str(json_get(r, "sums"));
            npy_array sa;
            if (sums && p.n == iget(r, "tokens") && load_npy(sums, &sa)) {
                for (int i = 0; i < p.n; i++)
                    for (int ch = 0; ch < 3; ch++) {
                        double s = 0;
                        for (int k = ch; k < 48 * 48 * 3; k += 3) s += rint(p.pix[(size_t)i * 48 * 48 * 3 + k] * 255.0);
                        double dd = fabs(s - ((const int32_t *)sa.data)[i * 3 + ch]);
                        CHECK_MSG(dd <= 2.0 * 48 * 48, "%s: patch %d channel %d sum off by %.0f", file, i, ch, dd);
                        same &= dd == 0;
                    }
                npy_free(&sa);
            }
            exact += same;
        }
        mm_patches_free(&p);
        /* tiny geometry: every value */
        const json_value *ty = json_get(cs, "tiny");
        st = mm_image_patches(&img, 2, 2, 70, &p, &err);
        CHECK_MSG(st == G4_OK, "%s: %s", file, err.msg);
        npy_array pix, pos;
        if (!st && load_npy(json_get_str(json_get(ty, "pix")), &pix) && load_npy(json_get_str(json_get(ty, "pos")), &pos)) {
            CHECK_MSG(p.n == iget(ty, "tokens") && pix.numel == (int64_t)p.n * p.dim, "%s: tiny %d tokens, expected %lld",
                      file, p.n, (long long)iget(ty, "tokens"));
            if (pix.numel == (int64_t)p.n * p.dim) {
                CHECK_MSG(pos_mismatch(&p, &pos) == 0, "%s: tiny positions differ", file);
                for (int64_t k = 0; k < pix.numel; k++) {
                    double dd = fabs((double)p.pix[k] - ((const float *)pix.data)[k]);
                    if (dd > worst) worst = dd;
                    n_diff += dd > 0;
                    n_vals++;
                }
            }
            npy_free(&pix);
            npy_free(&pos);
        }
        mm_patches_free(&p);
        mimg_free(&img);
    }
    CHECK_MSG(n_img >= 20, "only %d images", n_img);
    CHECK_MSG(worst <= 2.0 / 255 + 1e-7, "worst pixel difference %.5f (> 2/255)", worst);
    printf("     %d images: worst pixel diff %.3g (%zu of %zu values differ), %d/%d real-geometry cases exact\n", n_img,
           worst, n_diff, n_vals, exact, n_img);
    json_doc_free(d);
}

TEST(media_audio_vs_hf) {
    json_doc *d = manifest();
    REQUIRE(d);
    const json_value *cases = json_get(json_root(d), "cases");
    int n = 0;
    double worst = 0;
    for (size_t c = 0; c < cases->len; c++) {
        const json_value *cs = json_at(cases, c);
        if (strcmp(json_get_str(json_get(cs, "kind")), "audio")) continue;
        const char *file = json_get_str(json_get(cs, "file"));
        uint8_t *buf;
        size_t len;
        REQUIRE(load_file(file, &buf, &len));
        float *y = NULL;
        size_t ny = 0;
        int rate = 0, ch = 0;
        g4_error err = {0};
        g4_status st = audio_decode(buf, len, 0, &y, &ny, &rate, &ch, &err);
        free(buf);
        CHECK_MSG(st == G4_OK, "%s: %s", file, err.msg);
        if (st) continue;
        n++;
        CHECK_MSG(rate == iget(cs, "rate") && ch == iget(cs, "channels"), "%s: %d Hz x %d", file, rate, ch);
        npy_array ref;
        REQUIRE(load_npy(json_get_str(json_get(cs, "wave")), &ref));
        CHECK_MSG((int64_t)ny == ref.numel, "%s: %zu samples at 16 kHz, expected %lld", file, ny, (long long)ref.numel);
        CHECK_EQ_INT((ny + 639) / 640, iget(cs, "tokens"));
        double w = 0;
        for (size_t i = 0; i < ny && (int64_t)i < ref.numel; i++) {
            double dd = fabs((double)y[i] - ((const float *)ref.data)[i]);
            if (dd > w) w = dd;
        }
        CHECK_MSG(w <= 1e-3, "%s: worst sample difference %.3g", file, w);
        if (w > worst) worst = w;
        npy_free(&ref);
        free(y);
    }
    CHECK(n >= 10);
    printf("     %d audio files: worst sample diff after resampling %.3g\n", n, worst);
    json_doc_free(d);
}

TEST(media_video_vs_hf) {
    json_doc *d = manifest();
    REQUIRE(d);
    const json_value *cases = json_get(json_root(d), "cases");
    int done = 0;
    for (size_t c = 0; c < cases->len; c++) {
        const json_value *cs = json_at(cases, c);
        if (strcmp(json_get_str(json_get(cs, "kind")), "video")) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/media/%s", t_fixtures(), json_get_str(json_get(cs, "file")));
        mvideo v;
        g4_error err = {0};
        g4_status st = video_decode_file(path, 32, 0, &v, &err);
        if (st == G4_ERR_UNSUPPORTED && strstr(err.msg, "not found")) {
            json_doc_free(d);
            SKIP("the ffmpeg command is not installed");
        }
        CHECK_MSG(st == G4_OK, "%s", err.msg);
        if (st) continue;
        done++;
        const json_value *idx = json_get(cs, "indices");
        CHECK_EQ_INT(v.n_frames, iget(cs, "frames"));
        CHECK_EQ_INT(v.total_frames, iget(cs, "total_frames"));
        for (int i = 0; i < v.n_frames && i < (int)idx->len; i++) {
            int64_t want = -1;
            json_get_i64(json_at(idx, (size_t)i), &want);
            CHECK_EQ_INT(v.index[i], want);
        }
        int patch = (int)iget(cs, "patch"), k = (int)iget(cs, "k"), m = patch * k;
        /* the expansion text: timestamps + per-frame token counts */
        char *txt = NULL;
        {
            size_t cap = 1 << 20, len = 0;
            txt = malloc(cap);
            for (int f = 0; f < v.n_frames; f++) {
                mimg fr = {v.w, v.h, v.rgb + (size_t)f * v.w * v.h * 3};
                mm_patches p;
                REQUIRE(mm_image_patches(&fr, patch, k, 70, &p, &err) == G4_OK);
                CHECK_EQ_INT(p.n, iget(cs, "tokens_per_frame"));
                char ts[32];
                mm_timestamp(v.index[f] / v.fps, ts);
                len += (size_t)snprintf(txt + len, cap - len, "%s%s <|image>", f ? " " : "", ts);
                for (int j = 0; j < p.n && len + 16 < cap; j++) len += (size_t)snprintf(txt + len, cap - len, "<|video|>");
                len += (size_t)snprintf(txt + len, cap - len, "<image|>");
                const char *png = json_get_str(json_get(cs, f == 0 ? "png_first" : "png_last"));
                if (png && (f == 0 || f == v.n_frames - 1)) {
                    mimg ref;
                    if (decode_image(png, &ref)) {
                        double w = 0;
                        int gx = p.tw / m;
                        for (int i = 0; i < p.n; i++)
                            for (int q = 0; q < m * m * 3; q++) {
                                int row = q / (m * 3), col = (q / 3) % m, ch = q % 3;
                                float want = ref.rgb[((size_t)((i / gx) * m + row) * p.tw + (i % gx) * m + col) * 3 + ch] *
                                             (float)(1.0 / 255.0);
                                double dd = fabs((double)p.pix[(size_t)i * m * m * 3 + q] - want);
                                if (dd > w) w = dd;
                            }
                        CHECK_MSG(w <= 2.0 / 255, "video frame %d: pixel diff %.4f", f, w);
                        mimg_free(&ref);
                    }
                }
                const char *pixf = json_get_str(json_get(cs, "pix"));
                npy_array pix;
                if (pixf && load_npy(pixf, &pix)) {
                    double w = 0;
                    for (int64_t q = 0; q < (int64_t)p.n * p.dim && (int64_t)f * p.n * p.dim + q < pix.numel; q++) {
                        double dd = fabs((double)p.pix[q] - ((const float *)pix.data)[(int64_t)f * p.n * p.dim + q]);
                        if (dd > w) w = dd;
                    }
                    CHECK_MSG(w <= 2.0 / 255, "video frame %d (tiny geometry): pixel diff %.4f", f, w);
                    npy_free(&pix);
                }
                mm_patches_free(&p);
            }
            CHECK_STR(txt, json_get_str(json_get(cs, "text")));
            free(txt);
        }
        mvideo_free(&v);
    }
    CHECK(done == 2);
    json_doc_free(d);
}

TEST(media_errors) {
    g4_error err = {0};
    mimg img;
    /* truncate every image fixture at several points: errors, never crashes */
    const char *files[] = {"images/rgb_64x48.jpg", "images/rgba_40x40.png", "images/palette_45x30.gif",
                           "images/lossy_50x50.webp", "images/rgb24_37x23.bmp"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        uint8_t *d;
        size_t n;
        REQUIRE(load_file(files[f], &d, &n));
        for (size_t cut = 1; cut < n; cut = cut * 2 + 7) {
            g4_status st = img_decode(d, cut, 0, &img, &err);
            if (st == G4_OK) mimg_free(&img);   /* libjpeg pads truncated scans: allowed */
            else CHECK_MSG(err.msg[0], "%s cut at %zu: empty message", files[f], cut);
        }
        free(d);
    }
    const uint8_t junk[] = "this is not an image at all";
    CHECK(img_decode(junk, sizeof junk, 0, &img, &err) == G4_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "unrecognized format") != NULL);
    /* a BMP header claiming a huge image */
    uint8_t bmp[54] = {'B', 'M'};
    bmp[10] = 54; bmp[14] = 40; bmp[18] = 0xFF; bmp[19] = 0xFF; bmp[21] = 0x7F; bmp[22] = 0xFF; bmp[23] = 0xFF;
    bmp[26] = 1; bmp[28] = 24;
    CHECK(img_decode(bmp, sizeof bmp, 0, &img, &err) != G4_OK);
    float *y;
    size_t ny;
    CHECK(audio_decode(junk, sizeof junk, 0, &y, &ny, NULL, NULL, &err) == G4_ERR_FORMAT);
    /* Ogg Vorbis whose headers libvorbis rejects (found by fuzz_audio): refused before libsndfile,
     * whose error path would leak ~5.7 KB of libvorbis state (LeakSanitizer under make asan); the
     * same stream cut inside its header pages likewise; whole valid Vorbis and Opus streams still
     * decode */
    {
        size_t bl = 0;
        uint8_t *bd = NULL;
        REQUIRE(load_file("audio/bad_vorbis_headers.ogg", &bd, &bl));
        CHECK(audio_decode(bd, bl, 0, &y, &ny, NULL, NULL, &err) == G4_ERR_FORMAT);
        CHECK(strstr(err.msg, "malformed Ogg stream") != NULL);
        free(bd);
        REQUIRE(load_file("audio/tone_44k_mono.ogg", &bd, &bl) && bl > 200);
        CHECK(audio_decode(bd, 200, 0, &y, &ny, NULL, NULL, &err) == G4_ERR_FORMAT);
        REQUIRE(audio_decode(bd, bl, 0, &y, &ny, NULL, NULL, &err) == G4_OK);
        CHECK(ny > 1000);
        free(y);
        free(bd);
        REQUIRE(load_file("audio/tone_48k_mono.opus", &bd, &bl));
        REQUIRE(audio_decode(bd, bl, 0, &y, &ny, NULL, NULL, &err) == G4_OK);
        CHECK(ny > 1000);
        free(y);
        free(bd);
        /* "OggS" then something else (a WAV body) */
        REQUIRE(load_file("audio/tone_8k_mono.wav", &bd, &bl) && bl > 64);
        memcpy(bd, "OggS", 4);
        CHECK(audio_decode(bd, bl, 0, &y, &ny, NULL, NULL, &err) == G4_ERR_FORMAT);
        free(bd);
    }
    /* public API: wrong budget, missing file */
    g4_media *m = NULL;
    g4_media_options o = {.image_tokens = 100};
    char p[600];
    snprintf(p, sizeof p, "%s/media/images/rgb_64x48.jpg", t_fixtures());
    CHECK(g4_media_load_file(p, G4_MEDIA_IMAGE, &o, &m, &err) == G4_ERR_INVALID_ARG);
    CHECK(g4_media_load_file("/nonexistent.png", G4_MEDIA_IMAGE, NULL, &m, &err) != G4_OK);
    CHECK(g4_media_load_memory(junk, sizeof junk, G4_MEDIA_IMAGE, "png", NULL, &m, &err) == G4_ERR_UNSUPPORTED);
    CHECK(strncmp(err.msg, "image:", 6) == 0);
    /* cap: 0.1 s of a 0.7 s file */
    snprintf(p, sizeof p, "%s/media/audio/tone_16k_mono.wav", t_fixtures());
    g4_media_options ao = {.audio_max_seconds = 0.1};
    REQUIRE(g4_media_load_file(p, G4_MEDIA_AUTO, &ao, &m, &err) == G4_OK);
    CHECK(g4_media_get_kind(m) == G4_MEDIA_AUDIO);
    CHECK_EQ_INT(g4_media_length(m), 1600);
    g4_media_free(m);
    /* EXIF orientation parsing */
    const uint8_t tiff_le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0};
    CHECK_EQ_INT(img_exif_orientation_tiff(tiff_le, sizeof tiff_le), 6);
    CHECK_EQ_INT(img_exif_orientation_tiff(tiff_le, 15), 1);   /* truncated entry */
    char ts[32];
    mm_timestamp(61.99, ts);
    CHECK_STR(ts, "01:01");
    mm_timestamp(3600.5, ts);
    CHECK_STR(ts, "60:00");
}
