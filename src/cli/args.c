/* args.c - option parsing for run / logits / bench (see args.h). */
#include "cli/args.h"
#include "base/status.h"
#include "base/strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_prefill_weights(const char *s, bool *bf16) {
    if (!strcmp(s, "packed")) *bf16 = false;
    else if (!strcmp(s, "bf16")) *bf16 = true;
    else return false;
    return true;
}

bool cli_device(const char *s, g4_device *dev) {
    if (!strcmp(s, "cpu")) *dev = G4_DEVICE_CPU;
    else if (!strcmp(s, "cuda")) *dev = G4_DEVICE_CUDA;
    else if (!strcmp(s, "auto")) *dev = G4_DEVICE_AUTO;
    else return false;
    return true;
}

bool args_parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static bool parse_float(const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

int args_parse(args *a, int argc, char **argv, const char *cmd) {
    memset(a, 0, sizeof *a);
    g4_sampling_default(&a->sampling);
    a->bench_prompt = 128;
    a->bench_gen = 32;
    a->bench_reps = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = true;
        if (!strcmp(o, "--prompt") && v) a->prompt = v;
        else if (!strcmp(o, "--tokens") && v) a->tokens = v;
        else if (!strcmp(o, "--npy") && v) a->npy = v;
        else if (!strcmp(o, "--json-out") && v) a->json_out = v;
        else if (!strcmp(o, "--baseline") && v) a->bench_baseline = v;
        else if (!strcmp(o, "--threads") && v) ok = args_parse_int(v, 1, 4096, &a->threads);
        else if (!strcmp(o, "--ctx") && v) ok = args_parse_int(v, 1, 1 << 24, &a->ctx);
        else if (!strcmp(o, "--max-tokens") && v) ok = args_parse_int(v, 0, 1 << 24, &a->max_tokens);
        else if (!strcmp(o, "--prompt-len") && v) ok = args_parse_int(v, 1, 1 << 24, &a->bench_prompt);
        else if (!strcmp(o, "--gen") && v) ok = args_parse_int(v, 1, 1 << 24, &a->bench_gen);
        else if (!strcmp(o, "--reps") && v) ok = args_parse_int(v, 1, 1000, &a->bench_reps);
        else if (!strcmp(o, "--temperature") && v) ok = parse_float(v, 0, 100, &a->sampling.temperature);
        else if (!strcmp(o, "--top-k") && v) ok = args_parse_int(v, 0, 1 << 24, &a->sampling.top_k);
        else if (!strcmp(o, "--top-p") && v) ok = parse_float(v, 0, 1, &a->sampling.top_p);
        else if (!strcmp(o, "--min-p") && v) ok = parse_float(v, 0, 1, &a->sampling.min_p);
        else if (!strcmp(o, "--repetition-penalty") && v) ok = parse_float(v, 0.01f, 100, &a->sampling.repetition_penalty);
        else if (!strcmp(o, "--presence-penalty") && v) ok = parse_float(v, -2, 2, &a->sampling.presence_penalty);
        else if (!strcmp(o, "--frequency-penalty") && v) ok = parse_float(v, -2, 2, &a->sampling.frequency_penalty);
        else if (!strcmp(o, "--seed") && v) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            ok = !errno && end != v && !*end;
            a->sampling.seed = s;
        } else if (!strcmp(o, "--stop") && v) {
            ok = a->n_stop < ARGS_MAX_STOP && (a->stop[a->n_stop] = strdup(v)) != NULL;
            if (ok) a->n_stop++;
        } else if ((!strcmp(o, "--image") || !strcmp(o, "--audio") || !strcmp(o, "--video")) && v) {
            ok = a->n_media < ARGS_MAX_MEDIA;
            if (ok) {
                a->media[a->n_media].kind = o[2] == 'i' ? G4_MEDIA_IMAGE : o[2] == 'a' ? G4_MEDIA_AUDIO : G4_MEDIA_VIDEO;
                a->media[a->n_media++].path = v;
            }
        } else if (!strcmp(o, "--image-tokens") && v) {
            ok = args_parse_int(v, 1, 1120, &a->media_opt.image_tokens) &&
                 (a->media_opt.image_tokens == 70 || a->media_opt.image_tokens == 140 ||
                  a->media_opt.image_tokens == 280 || a->media_opt.image_tokens == 560 ||
                  a->media_opt.image_tokens == 1120);
        } else if (!strcmp(o, "--video-frames") && v) {
            ok = args_parse_int(v, 1, 1024, &a->media_opt.video_frames);
        } else if (!strcmp(o, "--audio-max-seconds") && v) {
            float f;
            ok = parse_float(v, 0.001f, 36000, &f);
            a->media_opt.audio_max_seconds = f;
        } else if (!strcmp(o, "--kv-cache-dtype") && v) {
            ok = g4_kv_dtype_parse(v, &a->kv_dtype);
        } else if (!strcmp(o, "--prefill-weights") && v) {
            ok = cli_prefill_weights(v, &a->prefill_bf16);
        } else if (!strcmp(o, "--device") && v) {
            ok = cli_device(v, &a->device);
        } else {
            takes = false;
            if (!strcmp(o, "--raw")) a->raw = true;
            else if (!strcmp(o, "--ids")) a->ids = true;
            else if (!strcmp(o, "--thinking")) a->thinking = true;
            else if (!strcmp(o, "--json")) a->json = true;
            else if (o[0] == '-' && o[1]) {
                fprintf(stderr, "g4 %s: unknown option or missing value: %s\n", cmd, o);
                args_free(a);
                return 1;
            } else if (!a->model) a->model = o;
            else {
                fprintf(stderr, "g4 %s: unexpected argument '%s'\n", cmd, o);
                args_free(a);
                return 1;
            }
        }
        if (!ok) {
            fprintf(stderr, "g4 %s: bad value for %s: '%s'\n", cmd, o, v);
            args_free(a);
            return 1;
        }
        if (takes) i++;
    }
    return 0;
}

void args_free(args *a) {
    for (size_t i = 0; i < a->n_stop; i++) free(a->stop[i]);
    a->n_stop = 0;
}

g4_status args_parse_ids(const char *s, int32_t **ids, size_t *n, g4_error *err) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    size_t k = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '[') p++;
        if (*p == ']' || !*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "--tokens: bad id near '%.20s'", p);
        }
        v[k++] = (int32_t)x;
        p = end;
        while (*p == ' ' || *p == ']') p++;
        if (*p == ',') p++;
        else if (*p) {
            free(v);
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "--tokens: expected ',' near '%.20s'", p);
        }
    }
    if (!k) {
        free(v);
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "--tokens: no ids");
    }
    *ids = v;
    *n = k;
    return G4_OK;
}

char *args_json_user_message(const char *text) {
    strbuf b;
    sb_init(&b);
    sb_puts(&b, "[{\"role\":\"user\",\"content\":");
    sb_json_str(&b, text, strlen(text));
    sb_puts(&b, "}]");
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return sb_take(&b);
}

char *args_json_user_message_mm(const char *text, const args_media *media, size_t n_media) {
    static const char *names[] = {"", "image", "audio", "video"};
    strbuf b;
    sb_init(&b);
    sb_puts(&b, "[{\"role\":\"user\",\"content\":[");
    for (size_t i = 0; i < n_media; i++) sb_printf(&b, "{\"type\":\"%s\"},", names[media[i].kind]);
    sb_puts(&b, "{\"type\":\"text\",\"text\":");
    sb_json_str(&b, text, strlen(text));
    sb_puts(&b, "}]}]");
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return sb_take(&b);
}
