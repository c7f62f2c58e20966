/* info.c - g4_model_info: a text or JSON description of a validated checkpoint
 * (what `g4 info` prints). Everything comes from ckpt_open; this file only
 * formats. JSON keys are stable (tests and scripts read them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "base/strbuf.h"
#include "g4.h"
#include "model/checkpoint.h"

static const char *rope_name(cfg_rope_type t) { return t == CFG_ROPE_PROPORTIONAL ? "proportional" : "default"; }

static const char *qmethod_name(cfg_qmethod m) {
    return m == CFG_QM_COMPRESSED_TENSORS ? "compressed-tensors" : m == CFG_QM_MODELOPT ? "modelopt" : "none";
}

static void json_rope(strbuf *b, const cfg_rope *r) {
    sb_printf(b, "{\"rope_type\":\"%s\",\"rope_theta\":%.17g,\"partial_rotary_factor\":%.17g,\"factor\":%.17g}",
              rope_name(r->type), r->theta, r->partial_rotary_factor, r->factor);
}

/* Summary of the layers of one type: count, head_dim / kv heads (0 = differ across layers). */
typedef struct tsum { int n, head_dim, kv, rope_pairs; bool k_eq_v; } tsum;

static tsum summarize(const cfg_text *t, cfg_layer_type ty) {
    tsum s = {0, -1, -1, -1, false};
    for (int i = 0; i < t->n_layers; i++) {
        const cfg_layer *L = &t->layers[i];
        if (L->type != ty) continue;
        s.head_dim = s.head_dim < 0 || s.head_dim == L->head_dim ? L->head_dim : 0;
        s.kv = s.kv < 0 || s.kv == L->n_kv_heads ? L->n_kv_heads : 0;
        s.rope_pairs = s.rope_pairs < 0 || s.rope_pairs == L->rope_pairs ? L->rope_pairs : 0;
        s.k_eq_v |= L->k_eq_v;
        s.n++;
    }
    if (s.head_dim < 0) s.head_dim = s.kv = s.rope_pairs = 0;
    return s;
}

static void render_json(const ckpt *c, strbuf *b) {
    const g4_config *cfg = &c->cfg;
    const cfg_text *t = &cfg->text;
    sb_puts(b, "{\"model_type\":\"gemma4_unified\",\"architecture\":{");
    sb_printf(b, "\"layers\":%d,\"hidden\":%lld,\"intermediate\":%lld,\"vocab\":%lld,\"heads\":%d,",
              t->n_layers, (long long)t->hidden, (long long)t->intermediate, (long long)t->vocab, t->n_heads);
    for (int k = 0; k < 2; k++) {
        cfg_layer_type ty = k ? CFG_FULL : CFG_SLIDING;
        tsum s = summarize(t, ty);
        sb_printf(b, "\"%s\":{\"layers\":%d,\"head_dim\":%d,\"kv_heads\":%d,\"k_eq_v\":%s,\"rope_pairs\":%d,",
                  k ? "full" : "sliding", s.n, s.head_dim, s.kv, s.k_eq_v ? "true" : "false", s.rope_pairs);
        if (!k) sb_printf(b, "\"window\":%d,", t->sliding_window);
        sb_puts(b, "\"rope\":");
        json_rope(b, k ? &t->rope_full : &t->rope_sliding);
        sb_puts(b, ",\"indices\":[");
        int first = 1;
        for (int i = 0; i < t->n_layers; i++)
            if (t->layers[i].type == ty) { sb_printf(b, "%s%d", first ? "" : ",", i); first = 0; }
        sb_puts(b, "]},");
    }
    sb_puts(b, "\"per_layer\":[");
    for (int i = 0; i < t->n_layers; i++) {
        const cfg_layer *L = &t->layers[i];
        sb_printf(b, "%s{\"type\":\"%s\",\"head_dim\":%d,\"kv_heads\":%d,\"k_eq_v\":%s,\"intermediate\":%lld,"
                  "\"window\":%d,\"rope_pairs\":%d}", i ? "," : "", L->type == CFG_FULL ? "full" : "sliding",
                  L->head_dim, L->n_kv_heads, L->k_eq_v ? "true" : "false", (long long)L->intermediate, L->window,
                  L->rope_pairs);
    }
    sb_puts(b, "],");
    if (t->final_logit_softcapping > 0) sb_printf(b, "\"final_logit_softcapping\":%.17g,", t->final_logit_softcapping);
    else sb_puts(b, "\"final_logit_softcapping\":null,");
    sb_printf(b, "\"rms_norm_eps\":%.17g,\"hidden_activation\":", t->rms_norm_eps);
    sb_json_str(b, t->hidden_activation, strlen(t->hidden_activation));
    sb_printf(b, ",\"max_position_embeddings\":%lld,\"tie_word_embeddings\":%s,\"bidirectional_attention\":%s},",
              (long long)t->max_position_embeddings, t->tie_word_embeddings ? "true" : "false",
              t->bidirectional ? "\"vision\"" : "null");
    sb_printf(b, "\"modalities\":[\"text\"%s%s],", cfg->vision.present ? ",\"vision\"" : "",
              cfg->audio.present ? ",\"audio\"" : "");
    if (cfg->vision.present) {
        const cfg_vision *v = &cfg->vision;
        sb_printf(b, "\"vision\":{\"patch_size\":%d,\"pooling_kernel_size\":%d,\"model_patch_size\":%d,"
                  "\"patch_dim\":%lld,\"mm_embed_dim\":%lld,\"mm_posemb_size\":%lld,\"output_proj_dims\":%lld,"
                  "\"num_soft_tokens\":%d,\"rms_norm_eps\":%.17g},",
                  v->patch_size, v->pooling_kernel_size, v->model_patch_size, (long long)v->patch_dim,
                  (long long)v->mm_embed_dim, (long long)v->mm_posemb_size, (long long)v->output_proj_dims,
                  v->num_soft_tokens, v->rms_norm_eps);
    } else sb_puts(b, "\"vision\":null,");
    if (cfg->audio.present)
        sb_printf(b, "\"audio\":{\"audio_embed_dim\":%lld,\"rms_norm_eps\":%.17g},", (long long)cfg->audio.embed_dim,
                  cfg->audio.rms_norm_eps);
    else sb_puts(b, "\"audio\":null,");
    sb_printf(b, "\"quantization\":{\"method\":\"%s\",\"format\":\"%s\",\"linear_format\":\"%s\"},",
              qmethod_name(cfg->quant.method), cfg_qformat_name(cfg->quant.format),
              c->linear_format == CKPT_NONE ? "mixed" : ckpt_format_name(c->linear_format));
    sb_puts(b, "\"tensor_bytes\":{");
    int first = 1;
    for (int f = 1; f < CKPT_FORMAT_COUNT; f++) {
        if (!c->stats.bytes_by_format[f]) continue;
        sb_printf(b, "%s\"%s\":%zu", first ? "" : ",", ckpt_format_name((ckpt_format)f), c->stats.bytes_by_format[f]);
        first = 0;
    }
    sb_printf(b, "},\"tensor_bytes_total\":%zu,\"tensors\":%d,\"parameters\":%lld,\"bytes_per_token\":%zu,",
              c->stats.bytes_total, c->stats.n_tensors, (long long)c->stats.params, c->stats.bytes_per_token);
    sb_puts(b, "\"unexpected_tensors\":[");
    for (int i = 0; i < c->n_unexpected; i++) {
        if (i) sb_putc(b, ',');
        sb_json_str(b, c->unexpected[i], strlen(c->unexpected[i]));
    }
    sb_puts(b, "]}\n");
}

static void human_bytes(char *buf, size_t cap, size_t n) {
    if (n >= (size_t)1 << 30) snprintf(buf, cap, "%zu (%.2f GiB)", n, n / 1073741824.0);
    else if (n >= (size_t)1 << 20) snprintf(buf, cap, "%zu (%.2f MiB)", n, n / 1048576.0);
    else snprintf(buf, cap, "%zu", n);
}

static void text_rope(strbuf *b, const cfg_rope *r) {
    sb_printf(b, "%s theta %g", rope_name(r->type), r->theta);
    if (r->partial_rotary_factor != 1.0) sb_printf(b, " partial %g", r->partial_rotary_factor);
    if (r->factor != 1.0) sb_printf(b, " factor %g", r->factor);
}

static void render_text(const ckpt *c, strbuf *b) {
    const g4_config *cfg = &c->cfg;
    const cfg_text *t = &cfg->text;
    char hb[64];
    sb_puts(b, "model_type      gemma4_unified\n");
    sb_printf(b, "layers          %d (%d sliding, %d full)\n", t->n_layers, t->n_layers - t->n_full, t->n_full);
    sb_printf(b, "hidden          %lld\nintermediate    %lld\nvocab           %lld\nheads           %d\n",
              (long long)t->hidden, (long long)t->intermediate, (long long)t->vocab, t->n_heads);
    for (int k = 0; k < 2; k++) {
        tsum s = summarize(t, k ? CFG_FULL : CFG_SLIDING);
        if (!s.n) continue;
        sb_printf(b, "%s  ", k ? "full layers   " : "sliding layers");
        if (s.head_dim) sb_printf(b, "head_dim %d", s.head_dim); else sb_puts(b, "head_dim varies");
        if (s.kv) sb_printf(b, ", kv_heads %d", s.kv); else sb_puts(b, ", kv_heads vary");
        if (k) sb_printf(b, "%s", s.k_eq_v ? ", k_eq_v (no v_proj)" : "");
        else sb_printf(b, ", window %d", t->sliding_window);
        sb_puts(b, ", rope ");
        text_rope(b, k ? &t->rope_full : &t->rope_sliding);
        sb_puts(b, "\n");
    }
    sb_puts(b, "full indices    ");
    for (int i = 0, first = 1; i < t->n_layers; i++)
        if (t->layers[i].type == CFG_FULL) { sb_printf(b, "%s%d", first ? "" : ",", i); first = 0; }
    sb_puts(b, "\n");
    if (t->final_logit_softcapping > 0) sb_printf(b, "softcap         %g\n", t->final_logit_softcapping);
    else sb_puts(b, "softcap         off\n");
    sb_printf(b, "rms_norm_eps    %g\nactivation      %s\nmax_positions   %lld\ntied lm_head    %s\n",
              t->rms_norm_eps, t->hidden_activation, (long long)t->max_position_embeddings,
              t->tie_word_embeddings ? "yes" : "no");
    sb_printf(b, "modalities      text%s%s\n", cfg->vision.present ? ", vision" : "", cfg->audio.present ? ", audio" : "");
    if (cfg->vision.present)
        sb_printf(b, "vision          patch %d (= %d x %d), patch_dim %lld, mm_embed_dim %lld, posemb %lld, "
                  "soft tokens %d\n", cfg->vision.model_patch_size, cfg->vision.patch_size,
                  cfg->vision.pooling_kernel_size, (long long)cfg->vision.patch_dim, (long long)cfg->vision.mm_embed_dim,
                  (long long)cfg->vision.mm_posemb_size, cfg->vision.num_soft_tokens);
    if (cfg->audio.present) sb_printf(b, "audio           audio_embed_dim %lld\n", (long long)cfg->audio.embed_dim);
    sb_printf(b, "quantization    %s", qmethod_name(cfg->quant.method));
    if (cfg->quant.method != CFG_QM_NONE) sb_printf(b, " (%s)", cfg_qformat_name(cfg->quant.format));
    sb_printf(b, "; decoder linears %s\n", c->linear_format == CKPT_NONE ? "mixed" : ckpt_format_name(c->linear_format));
    for (int f = 1; f < CKPT_FORMAT_COUNT; f++) {
        if (!c->stats.bytes_by_format[f]) continue;
        human_bytes(hb, sizeof hb, c->stats.bytes_by_format[f]);
        sb_printf(b, "bytes %-9s %s\n", ckpt_format_name((ckpt_format)f), hb);
    }
    human_bytes(hb, sizeof hb, c->stats.bytes_total);
    sb_printf(b, "bytes total     %s in %d tensors\n", hb, c->stats.n_tensors);
    sb_printf(b, "parameters      %lld\n", (long long)c->stats.params);
    human_bytes(hb, sizeof hb, c->stats.bytes_per_token);
    sb_printf(b, "bytes/token     %s\n", hb);
    if (c->n_unexpected) {
        sb_printf(b, "warning: %d unexpected tensor%s:", c->n_unexpected, c->n_unexpected > 1 ? "s" : "");
        for (int i = 0; i < c->n_unexpected; i++) sb_printf(b, " %s", c->unexpected[i]);
        sb_puts(b, "\n");
    }
}

g4_status g4_model_info(const char *model_dir, unsigned flags, char **out, g4_error *err) {
    *out = NULL;
    if (!model_dir) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_model_info: model_dir is NULL");
    ckpt *c;
    g4_status s = ckpt_open(model_dir, &c, err);
    if (s != G4_OK) return s;
    strbuf b;
    sb_init(&b);
    if (flags & G4_INFO_JSON) render_json(c, &b);
    else render_text(c, &b);
    ckpt_close(c);
    if (b.oom) {
        sb_free(&b);
        return G4_FAIL(err, G4_ERR_NOMEM, "g4_model_info: out of memory");
    }
    *out = sb_take(&b);
    return G4_OK;
}
