/* media.c - the public media API (include/g4.h "media"): loading, the processor's
 * preprocessing (patches, audio frames), placeholder expansion and the prompt build.
 *
 * A g4_media owns its decoded content (RGB8 image, sampled RGB8 video frames with
 * their indices and fps, or 16 kHz mono float audio) and the budgets it was loaded
 * with. g4_mm_prompt_build expands placeholders at the TEXT level, exactly as the
 * Hugging Face processor does before tokenizing, so the tokenization of the text
 * around the media (video timestamps) is the reference's. */
#include "media/preprocess.h"
#include "engine/engine.h"
#include "base/mapfile.h"
#include "base/status.h"
#include "base/strbuf.h"
#include "cpu/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MEDIA_MAX_FILE (512u << 20)

struct g4_media {
    g4_media_kind kind;
    g4_media_options opt;
    double decode_s;
    int w, h;
    mimg img;                   /* image */
    mvideo vid;                 /* video */
    float *audio;               /* audio: [n_audio] 16 kHz mono */
    size_t n_audio;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool mm_budget_valid(int b) { return b == 70 || b == 140 || b == 280 || b == 560 || b == 1120; }

void mm_patches_free(mm_patches *p) {
    free(p->pix);
    free(p->pos);
    memset(p, 0, sizeof *p);
}

g4_status mm_image_patches(const mimg *img, int patch, int k, int budget, mm_patches *out, g4_error *err) {
    memset(out, 0, sizeof *out);
    if (!mm_budget_valid(budget))
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "image token budget %d: must be 70, 140, 280, 560 or 1120", budget);
    int th, tw;
    g4_status st = img_target_size(img->h, img->w, patch, k, budget, &th, &tw, err);
    if (st) return st;
    mimg rs = {0};
    const mimg *src = img;
    if (th != img->h || tw != img->w) {
        if ((st = img_resize_bicubic_aa(img, tw, th, &rs, err))) return st;
        src = &rs;
    }
    int m = patch * k, gx = tw / m, gy = th / m, dim = m * m * 3;
    out->n = gx * gy;
    out->dim = dim;
    out->th = th;
    out->tw = tw;
    out->pix = malloc((size_t)out->n * dim * sizeof *out->pix);
    out->pos = malloc((size_t)out->n * 2 * sizeof *out->pos);
    if (!out->pix || !out->pos) {
        mimg_free(&rs);
        mm_patches_free(out);
        return G4_FAIL(err, G4_ERR_NOMEM, "image: out of memory for %d patches", gx * gy);
    }
    const float s = (float)(1.0 / 255.0);
    for (int by = 0; by < gy; by++)
        for (int bx = 0; bx < gx; bx++) {
            int i = by * gx + bx;
            float *o = out->pix + (size_t)i * dim;
            for (int r = 0; r < m; r++) {
                const uint8_t *row = src->rgb + ((size_t)(by * m + r) * tw + (size_t)bx * m) * 3;
                for (int c = 0; c < m * 3; c++) *o++ = (float)row[c] * s;
            }
            out->pos[2 * i] = bx;
            out->pos[2 * i + 1] = by;
        }
    mimg_free(&rs);
    return G4_OK;
}

g4_status mm_audio_frames(const float *x, size_t n, int F, float **out, size_t *n_frames, g4_error *err) {
    size_t nf = (n + (size_t)F - 1) / (size_t)F;
    float *f = calloc(nf ? nf * (size_t)F : 1, sizeof *f);
    if (!f) return G4_FAIL(err, G4_ERR_NOMEM, "audio: out of memory");
    memcpy(f, x, n * sizeof *f);
    *out = f;
    *n_frames = nf;
    return G4_OK;
}

void mm_timestamp(double s, char buf[32]) {
    /* Python float // and % (floor division, result sign of the divisor) */
    double mod = fmod(s, 60.0);
    double div = (s - mod) / 60.0;
    if (mod != 0 && mod < 0) { mod += 60.0; div -= 1.0; }
    double fd = floor(div);
    if (div - fd > 0.5) fd += 1.0;
    snprintf(buf, 32, "%02lld:%02lld", (long long)fd, (long long)mod);
}

/* ---- loading ------------------------------------------------------------- */
static bool ext_is(const char *path, const char *const *exts) {
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot) return false;
    for (; *exts; exts++)
        if (!strcasecmp(dot + 1, *exts)) return true;
    return false;
}

static const char *const video_exts[] = {"mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "flv", "3gp", "wmv", "ogv", NULL};

static bool hint_is_video(const char *f) {
    if (!f) return false;
    if (!strncasecmp(f, "video/", 6) || ext_is(f, video_exts)) return true;
    for (const char *const *e = video_exts; *e; e++)
        if (!strcasecmp(f, *e)) return true;
    return false;
}

static g4_media_kind guess_kind(const uint8_t *d, size_t n, const char *hint) {
    if (img_sniff(d, n) != IMG_UNKNOWN) return G4_MEDIA_IMAGE;
    if (hint_is_video(hint)) return G4_MEDIA_VIDEO;
    if (n >= 12 && !memcmp(d + 4, "ftyp", 4)) return G4_MEDIA_VIDEO;              /* MP4/MOV */
    if (n >= 4 && !memcmp(d, "\x1a\x45\xdf\xa3", 4)) return G4_MEDIA_VIDEO;       /* Matroska/WebM */
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "AVI ", 4)) return G4_MEDIA_VIDEO;
    return G4_MEDIA_AUDIO;
}

static g4_status new_media(g4_media_kind kind, const g4_media_options *opt, g4_media **out, g4_error *err) {
    g4_media *m = calloc(1, sizeof *m);
    if (!m) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    m->kind = kind;
    if (opt) m->opt = *opt;
    if (m->opt.image_tokens && !mm_budget_valid(m->opt.image_tokens)) {
        int b = m->opt.image_tokens;
        free(m);
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "image token budget %d: must be 70, 140, 280, 560 or 1120", b);
    }
    if (m->opt.video_tokens && !mm_budget_valid(m->opt.video_tokens)) {
        int b = m->opt.video_tokens;
        free(m);
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "video token budget %d: must be 70, 140, 280, 560 or 1120", b);
    }
    *out = m;
    return G4_OK;
}

static size_t audio_cap(const g4_media_options *o) {
    double s = o->audio_max_seconds;
    if (s == 0) s = 30.0;
    if (s < 0) return 0;
    double n = ceil(s * 16000.0);
    return n < 1 ? 1 : n > 1e12 ? (size_t)1e12 : (size_t)n;
}

static g4_status decode_bytes(g4_media *m, const uint8_t *d, size_t n, g4_error *err) {
    g4_status st;
    if (m->kind == G4_MEDIA_IMAGE) {
        st = img_decode(d, n, m->opt.max_pixels, &m->img, err);
        if (!st) {
            m->w = m->img.w;
            m->h = m->img.h;
        }
    } else {
        st = audio_decode(d, n, audio_cap(&m->opt), &m->audio, &m->n_audio, NULL, NULL, err);
    }
    return st;
}

g4_status g4_media_load_memory(const void *data, size_t len, g4_media_kind kind, const char *format,
                               const g4_media_options *opt, g4_media **out, g4_error *err) {
    *out = NULL;
    if (!data || !len) return G4_FAIL(err, G4_ERR_FORMAT, "media: empty data");
    double t0 = now_s();
    if (kind == G4_MEDIA_AUTO) kind = guess_kind(data, len, format);
    g4_media *m;
    g4_status st = new_media(kind, opt, &m, err);
    if (st) return st;
    if (kind == G4_MEDIA_VIDEO) {
        const char *td = getenv("TMPDIR");
        char path[512];
        snprintf(path, sizeof path, "%s/g4-video-XXXXXX", td && *td ? td : "/tmp");
        int fd = mkstemp(path);
        if (fd < 0) st = G4_FAIL(err, G4_ERR_IO, "video: cannot create a temporary file: %s", strerror(errno));
        else {
            size_t w = 0;
            while (w < len) {
                ssize_t k = write(fd, (const char *)data + w, len - w);
                if (k <= 0) break;
                w += (size_t)k;
            }
            close(fd);
            if (w < len) st = G4_FAIL(err, G4_ERR_IO, "video: cannot write a temporary file");
            else st = video_decode_file(path, m->opt.video_frames, m->opt.max_pixels, &m->vid, err);
            unlink(path);
        }
        if (!st) {
            m->w = m->vid.w;
            m->h = m->vid.h;
        }
    } else {
        st = decode_bytes(m, data, len, err);
    }
    if (st) {
        g4_media_free(m);
        return st;
    }
    m->decode_s = now_s() - t0;
    *out = m;
    return G4_OK;
}

g4_status g4_media_load_file(const char *path, g4_media_kind kind, const g4_media_options *opt, g4_media **out,
                             g4_error *err) {
    *out = NULL;
    if (kind == G4_MEDIA_AUTO && ext_is(path, video_exts)) kind = G4_MEDIA_VIDEO;
    if (kind == G4_MEDIA_VIDEO) {
        double t0 = now_s();
        g4_media *m;
        g4_status st = new_media(kind, opt, &m, err);
        if (st) return st;
        if ((st = video_decode_file(path, m->opt.video_frames, m->opt.max_pixels, &m->vid, err))) {
            g4_media_free(m);
            return st;
        }
        m->w = m->vid.w;
        m->h = m->vid.h;
        m->decode_s = now_s() - t0;
        *out = m;
        return G4_OK;
    }
    double t0 = now_s();
    char *buf = NULL;
    size_t len = 0;
    g4_status st = read_file_all(path, MEDIA_MAX_FILE, &buf, &len, err);
    if (st) return st;
    st = g4_media_load_memory(buf, len, kind, path, opt, out, err);
    free(buf);
    if (st) g4_error_prefix(err, "%s", path);
    else (*out)->decode_s = now_s() - t0;
    return st;
}

void g4_media_free(g4_media *m) {
    if (!m) return;
    mimg_free(&m->img);
    mvideo_free(&m->vid);
    free(m->audio);
    free(m);
}

g4_media_kind g4_media_get_kind(const g4_media *m) { return m ? m->kind : G4_MEDIA_AUTO; }
double g4_media_decode_seconds(const g4_media *m) { return m ? m->decode_s : 0; }
void g4_media_size(const g4_media *m, int *w, int *h) {
    if (w) *w = m ? m->w : 0;
    if (h) *h = m ? m->h : 0;
}
size_t g4_media_length(const g4_media *m) {
    if (!m) return 0;
    return m->kind == G4_MEDIA_AUDIO ? m->n_audio : m->kind == G4_MEDIA_VIDEO ? (size_t)m->vid.n_frames : 1;
}

/* ---- prompt build -------------------------------------------------------- */
typedef struct mm_piece {       /* the strings of the model's media tokens */
    const char *img, *boi, *eoi, *aud, *boa, *eoa, *vid;
} mm_piece;

static g4_status pieces(const g4_engine *e, mm_piece *p, g4_error *err) {
    const g4_config *c = &e->ck->cfg;
    const g4_tokenizer *t = e->tok;
    if (!t) return G4_FAIL(err, G4_ERR_TOKENIZER, "media: the model has no tokenizer.json");
    *p = (mm_piece){g4_token_piece(t, c->image_token_id), g4_token_piece(t, c->boi_token_id),
                    g4_token_piece(t, c->eoi_token_id),   g4_token_piece(t, c->audio_token_id),
                    g4_token_piece(t, c->boa_token_id),   g4_token_piece(t, c->eoa_token_id),
                    g4_token_piece(t, c->video_token_id)};
    return G4_OK;
}

void g4_mm_prompt_free(g4_mm_prompt *p) {
    if (!p) return;
    free(p->ids);
    free(p->mm);
    memset(p, 0, sizeof *p);
}

static void put_rep(strbuf *b, const char *s, int n) {
    size_t l = strlen(s);
    if (!sb_reserve(b, l * (size_t)n)) return;
    for (int i = 0; i < n; i++) sb_put(b, s, l);
}

/* Preprocessed inputs of one prompt's media, in placeholder order: image / video frame
 * patches (resize done) or audio frames. Built by g4_mm_prompt_prepare without touching
 * the backend; g4_mm_prompt_embed runs the embedders over them. */
typedef struct mm_item {
    bool audio;
    mm_patches p;               /* image / video frame */
    float *frames;              /* audio [nf, F] */
    size_t nf;
    char label[32];             /* "image 1", "video 2 frame", "audio 3" (error prefix) */
} mm_item;

struct g4_mm_inputs {
    mm_item *it;
    size_t n, cap;
    size_t n_rows;              /* soft tokens in all items */
};

void g4_mm_inputs_free(g4_mm_inputs *in) {
    if (!in) return;
    for (size_t i = 0; i < in->n; i++) {
        mm_patches_free(&in->it[i].p);
        free(in->it[i].frames);
    }
    free(in->it);
    free(in);
}

static mm_item *inputs_add(g4_mm_inputs *in) {
    if (in->n == in->cap) {
        size_t nc = in->cap ? in->cap * 2 : 8;
        mm_item *ni = realloc(in->it, nc * sizeof *ni);
        if (!ni) return NULL;
        in->it = ni;
        in->cap = nc;
    }
    mm_item *r = &in->it[in->n++];
    memset(r, 0, sizeof *r);
    return r;
}

/* The patches of a video's frames, in parallel: each frame's resize + patchify is independent (the
 * antialiased bicubic resize of a 70-token frame is ~3 ms). */
typedef struct frames_job {
    const g4_media *m;
    mm_item *it;           /* [n] */
    int n, patch, k, budget;
    g4_status *st;         /* [n] */
    g4_error *err;         /* [n] */
} frames_job;

static void frame_task(void *ctx, int f, int thread) {
    (void)thread;
    const frames_job *j = ctx;
    mimg fr = {j->m->vid.w, j->m->vid.h, j->m->vid.rgb + (size_t)f * j->m->vid.w * j->m->vid.h * 3};
    j->st[f] = mm_image_patches(&fr, j->patch, j->k, j->budget, &j->it[f].p, &j->err[f]);
}

/* One pool of host threads for every request's frames: g4_mm_prompt_prepare runs on the server's
 * connection threads, concurrently, and tp_run serializes a pool's callers, so they take it one
 * video at a time (a video's frames use every core anyway); was a pool of up to 16 threads made
 * and joined per video. */
struct mm_prep {
    pthread_mutex_t mu;   /* guards the pool's creation */
    tp_pool *pool;        /* made on the first video with more than one frame */
    bool tried;
};

struct mm_prep *g4_mm_prep_new(void) {
    struct mm_prep *p = calloc(1, sizeof *p);
    if (p && pthread_mutex_init(&p->mu, NULL)) {
        free(p);
        p = NULL;
    }
    return p;
}

void g4_mm_prep_free(struct mm_prep *p) {
    if (!p) return;
    tp_free(p->pool);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static g4_status video_patches(struct mm_prep *prep, const g4_media *m, mm_item *it, int n, int patch, int k, int budget,
                               g4_error *err) {
    if (n <= 0) return G4_OK;
    g4_status *st = calloc((size_t)n, sizeof *st);
    g4_error *fe = calloc((size_t)n, sizeof *fe);
    if (!st || !fe) {
        free(st);
        free(fe);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for video frames");
    }
    frames_job j = {m, it, n, patch, k, budget, st, fe};
    pthread_mutex_lock(&prep->mu);
    if (n > 1 && !prep->tried) {   /* no pool (one core, or no threads to be had): frames in turn */
        prep->tried = true;
        const int nt = tp_cores(16);
        if (nt > 1 && tp_create(nt, &prep->pool, NULL)) prep->pool = NULL;
    }
    tp_pool *pool = prep->pool;
    pthread_mutex_unlock(&prep->mu);
    tp_run(pool, n, frame_task, &j);   /* callers of one pool run one after the other (tp_run) */
    g4_status r = G4_OK;
    for (int f = 0; f < n && !r; f++)
        if (st[f]) {
            r = st[f];
            *err = fe[f];
        }
    free(st);
    free(fe);
    return r;
}

g4_status g4_mm_prompt_prepare(const g4_engine *e, const char *text, size_t len, g4_media *const *media,
                               size_t n_media, const g4_media_options *ovr, g4_mm_prompt *out, g4_mm_inputs **inputs,
                               g4_error *err) {
    memset(out, 0, sizeof *out);
    *inputs = NULL;
    double t0 = now_s();
    mm_piece pc = {0};
    g4_status st = pieces(e, &pc, err);
    if (st) return st;
    const g4_config *c = &e->ck->cfg;
    const char *ph[3] = {pc.img, pc.aud, pc.vid};
    g4_mm_inputs *in = calloc(1, sizeof *in);
    if (!in) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    strbuf b;
    sb_init(&b);
    size_t pos = 0, mi = 0;
    while (!st) {
        /* the next placeholder of any kind */
        const char *best = NULL;
        int kind = -1;
        for (int k = 0; k < 3; k++) {
            if (!ph[k] || !*ph[k]) continue;
            const char *f = memmem(text + pos, len - pos, ph[k], strlen(ph[k]));
            if (f && (!best || f < best)) { best = f; kind = k; }
        }
        if (!best) break;
        sb_put(&b, text + pos, (size_t)(best - (text + pos)));
        pos = (size_t)(best - text) + strlen(ph[kind]);
        g4_media_kind want = kind == 0 ? G4_MEDIA_IMAGE : kind == 1 ? G4_MEDIA_AUDIO : G4_MEDIA_VIDEO;
        static const char *kname[] = {"image", "audio", "video"};
        if (mi >= n_media) {
            st = G4_FAIL(err, G4_ERR_INVALID_ARG, "prompt: %s placeholder %zu has no media (%zu given)", kname[kind],
                         mi + 1, n_media);
            break;
        }
        const g4_media *m = media[mi];
        if (!m || m->kind != want) {
            st = G4_FAIL(err, G4_ERR_INVALID_ARG, "prompt: placeholder %zu is %s but media %zu is %s", mi + 1,
                         kname[kind], mi + 1,
                         m && m->kind >= 1 && m->kind <= 3 ? kname[m->kind - 1] : "missing");
            break;
        }
        if (want == G4_MEDIA_IMAGE || want == G4_MEDIA_VIDEO) {
            const cfg_vision *vc = &c->vision;
            if (!vc->present || !e->ck->vision.present) {
                st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s %zu: the model has no vision embedder", kname[kind], mi + 1);
                break;
            }
            int budget;
            if (want == G4_MEDIA_IMAGE) {
                budget = ovr && ovr->image_tokens ? ovr->image_tokens
                         : m->opt.image_tokens    ? m->opt.image_tokens
                         : mm_budget_valid(vc->num_soft_tokens) ? vc->num_soft_tokens : 280;
            } else {
                budget = ovr && ovr->video_tokens ? ovr->video_tokens : m->opt.video_tokens ? m->opt.video_tokens : 70;
            }
            int nfr = want == G4_MEDIA_IMAGE ? 1 : m->vid.n_frames;
            /* the items first (inputs_add may move them), then every frame's patches in parallel */
            const size_t first = in->n;
            for (int f = 0; f < nfr && !st; f++) {
                mm_item *it = inputs_add(in);
                if (!it) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory for media inputs");
                else
                    snprintf(it->label, sizeof it->label, "%s %zu%s", kname[kind], mi + 1,
                             want == G4_MEDIA_VIDEO ? " frame" : "");
            }
            if (!st)
                st = want == G4_MEDIA_IMAGE
                         ? mm_image_patches(&m->img, vc->patch_size, vc->pooling_kernel_size, budget, &in->it[first].p,
                                            err)
                         : video_patches(e->prep, m, in->it + first, nfr, vc->patch_size, vc->pooling_kernel_size, budget,
                                         err);
            if (st) g4_error_prefix(err, "%s %zu%s", kname[kind], mi + 1, want == G4_MEDIA_VIDEO ? " frame" : "");
            for (int f = 0; f < nfr && !st; f++) {
                mm_item *it = &in->it[first + (size_t)f];
                /* the embedder's position table bounds the grid (checked here, before the engine) */
                for (int i = 0; !st && i < it->p.n; i++) {
                    int px = it->p.pos[2 * i], py = it->p.pos[2 * i + 1], S = (int)vc->mm_posemb_size;
                    if (px < 0 || px >= S || py < 0 || py >= S)
                        st = G4_FAIL(err, G4_ERR_INVALID_ARG,
                                     "image: patch position (%d, %d) outside the position table of %d (image too "
                                     "elongated for a budget of %d soft tokens)",
                                     px, py, S, budget);
                }
                if (!st) {
                    in->n_rows += (size_t)it->p.n;
                    if (want == G4_MEDIA_IMAGE) {
                        sb_puts(&b, pc.boi);
                        put_rep(&b, pc.img, it->p.n);
                        sb_puts(&b, pc.eoi);
                    } else {
                        char ts[32];
                        mm_timestamp(m->vid.index[f] / m->vid.fps, ts);
                        sb_printf(&b, "%s%s %s", f ? " " : "", ts, pc.boi);
                        put_rep(&b, pc.vid, it->p.n);
                        sb_puts(&b, pc.eoi);
                    }
                }
                if (st) g4_error_prefix(err, "%s %zu%s", kname[kind], mi + 1, want == G4_MEDIA_VIDEO ? " frame" : "");
            }
        } else {
            if (!c->audio.present || !e->ck->audio.present) {
                st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "audio %zu: the model has no audio embedder", mi + 1);
                break;
            }
            size_t cap = ovr && ovr->audio_max_seconds ? audio_cap(ovr) : 0;
            size_t ns = cap && cap < m->n_audio ? cap : m->n_audio;
            mm_item *it = inputs_add(in);
            if (!it) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory for media inputs");
            else {
                it->audio = true;
                snprintf(it->label, sizeof it->label, "audio %zu", mi + 1);
                st = mm_audio_frames(m->audio, ns, (int)c->audio.embed_dim, &it->frames, &it->nf, err);
            }
            if (!st) {
                in->n_rows += it->nf;
                sb_puts(&b, pc.boa);
                put_rep(&b, pc.aud, (int)it->nf);
                sb_puts(&b, pc.eoa);
            } else g4_error_prefix(err, "audio %zu", mi + 1);
        }
        mi++;
    }
    if (!st && mi != n_media)
        st = G4_FAIL(err, G4_ERR_INVALID_ARG, "prompt: %zu media given but the text has %zu placeholders", n_media, mi);
    if (!st) {
        sb_put(&b, text + pos, len - pos);
        if (b.oom) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory for the expanded prompt");
    }
    if (!st) st = g4_tokenize(e->tok, b.data ? b.data : "", b.len, 0, &out->ids, &out->n, err);
    sb_free(&b);
    if (!st) {
        /* every placeholder id of the result must have a row */
        size_t need = 0;
        for (size_t i = 0; i < out->n; i++)
            need += out->ids[i] == c->image_token_id || out->ids[i] == c->video_token_id ||
                    out->ids[i] == c->audio_token_id;
        if (need != in->n_rows)
            st = G4_FAIL(err, G4_ERR_INVALID_ARG,
                         "prompt: %zu media placeholder tokens after expansion but %zu soft tokens", need, in->n_rows);
    }
    if (st) {
        g4_mm_inputs_free(in);
        g4_mm_prompt_free(out);
        return st;
    }
    out->n_mm = in->n_rows;
    out->embed_s = now_s() - t0;
    *inputs = in;
    return G4_OK;
}

size_t g4_mm_inputs_rows(const g4_mm_inputs *in) { return in ? in->n_rows : 0; }

g4_status g4_mm_prompt_embed(g4_engine *e, const g4_mm_inputs *in, float **rows, g4_error *err) {
    *rows = NULL;
    if (!in || !in->n_rows) return G4_OK;
    size_t d = (size_t)e->ck->cfg.text.hidden;
    float *r = malloc(in->n_rows * d * sizeof *r);
    if (!r) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for %zu soft tokens", in->n_rows);
    g4_status st = G4_OK;
    size_t off = 0;
    mm_scratch scr = {0};
    const mm_patches **ps = malloc((in->n ? in->n : 1) * sizeof *ps);
    if (!ps) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < in->n && !st;) {
        const mm_item *it = &in->it[i];
        if (it->audio) {
            st = mm_embed_audio(e, it->frames, it->nf, r + off * d, &scr, err);
            off += it->nf;
            if (st) g4_error_prefix(err, "%s", it->label);
            i++;
            continue;
        }
        /* a run of images / video frames: embedded together */
        size_t j = i, nrow = 0;
        while (j < in->n && !in->it[j].audio) {
            ps[j - i] = &in->it[j].p;
            nrow += (size_t)in->it[j].p.n;
            j++;
        }
        st = mm_embed_vision(e, ps, (int)(j - i), r + off * d, &scr, err);
        if (st) g4_error_prefix(err, j - i > 1 ? "%s .. %s" : "%s", it->label, in->it[j - 1].label);
        off += nrow;
        i = j;
    }
    free(ps);
    mm_scratch_free(e, &scr);
    if (st) {
        free(r);
        return st;
    }
    *rows = r;
    return G4_OK;
}

g4_status g4_mm_prompt_build(g4_engine *e, const char *text, size_t len, g4_media *const *media, size_t n_media,
                             const g4_media_options *ovr, g4_mm_prompt *out, g4_error *err) {
    double t0 = now_s();
    g4_mm_inputs *in = NULL;
    g4_status st = g4_mm_prompt_prepare(e, text, len, media, n_media, ovr, out, &in, err);
    if (st) return st;
    st = g4_mm_prompt_embed(e, in, &out->mm, err);
    g4_mm_inputs_free(in);
    if (st) {
        g4_mm_prompt_free(out);
        return st;
    }
    out->embed_s = now_s() - t0;
    return G4_OK;
}
