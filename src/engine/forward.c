/* forward.c - the Gemma 4 text decoder over the backend op API (backend.h).
 *
 * Written once for every backend and weight format. Per layer (arch doc §2.2-2.3):
 *   xn = rms(x; input_norm)
 *   q = xn Wq^T -> rms per head (q_norm) -> RoPE;  k = xn Wk^T (raw kept for V when k_eq_v)
 *   v = (k_eq_v ? raw k : xn Wv^T) -> parameter-free rms per head
 *   k -> rms per head (k_norm) -> RoPE;  store k, v in the cache; attention (scale 1.0)
 *   x += rms(att Wo^T; post_attn_norm)
 *   x += rms(down(gelu_tanh(gate(y)) * up(y)); post_ffn_norm),  y = rms(x; pre_ffn_norm)
 *   x *= layer_scalar
 * then final norm, tied lm_head, softcap. The residual stream stays float32. */
#include "engine/engine.h"
#include "base/status.h"

#include <math.h>
#include <string.h>

static g4_status layer_forward(g4_session *s, int l, int T, int p0, g4_error *err) {
    g4_engine *e = s->e;
    be *b = e->be;
    const cfg_text *tc = &e->ck->cfg.text;
    const ckpt_layer *L = &e->ck->layers[l];
    const eng_layer *EL = &e->layers[l];
    int d = (int)tc->hidden, nh = tc->n_heads, hd = L->geo.head_dim, nkv = L->geo.n_kv_heads;
    float eps = (float)tc->rms_norm_eps;
    size_t nd = (size_t)T * (size_t)d;
    g4_status st;

    b->rmsnorm(b, s->xn, s->x, EL->input_norm, (size_t)T, d, eps);
    if ((st = b->matmul(b, s->q, s->xn, T, &L->q_proj, err))) return st;
    if ((st = b->matmul(b, s->k, s->xn, T, &L->k_proj, err))) return st;
    if (L->geo.k_eq_v) b->copy(b, s->v, s->k, (size_t)T * nkv * hd);
    else if ((st = b->matmul(b, s->v, s->xn, T, &L->v_proj, err))) return st;

    b->rmsnorm(b, s->q, s->q, EL->q_norm, (size_t)T * nh, hd, eps);
    b->rope(b, s->q, T, nh, hd, p0, EL->inv_freq);
    b->rmsnorm(b, s->k, s->k, EL->k_norm, (size_t)T * nkv, hd, eps);
    b->rope(b, s->k, T, nkv, hd, p0, EL->inv_freq);
    b->rmsnorm(b, s->v, s->v, NULL, (size_t)T * nkv, hd, eps);

    b->kv_store(b, s->kc[l], s->vc[l], s->n_slots[l], nkv, hd, s->k, s->v, T, p0);
    int window = L->geo.type == CFG_SLIDING ? L->geo.window : 0;
    if ((st = b->attention(b, s->att, s->q, T, nh, hd, s->kc[l], s->vc[l], nkv, s->n_slots[l], p0, window,
                           NULL, 1.0f, err)))
        return st;
    if ((st = b->matmul(b, s->o, s->att, T, &L->o_proj, err))) return st;
    b->rmsnorm(b, s->o, s->o, EL->post_attn_norm, (size_t)T, d, eps);
    b->add(b, s->x, s->x, s->o, nd);

    b->rmsnorm(b, s->xn, s->x, EL->pre_ffn_norm, (size_t)T, d, eps);
    if ((st = b->matmul(b, s->gate, s->xn, T, &L->gate_proj, err))) return st;
    if ((st = b->matmul(b, s->up, s->xn, T, &L->up_proj, err))) return st;
    b->gelu_tanh_mul(b, s->gate, s->gate, s->up, (size_t)T * (size_t)L->gate_proj.n);
    if ((st = b->matmul(b, s->o, s->gate, T, &L->down_proj, err))) return st;
    b->rmsnorm(b, s->o, s->o, EL->post_ffn_norm, (size_t)T, d, eps);
    b->add(b, s->x, s->x, s->o, nd);
    if (L->layer_scalar != 1.0f) b->scale(b, s->x, L->layer_scalar, nd);
    return G4_OK;
}

g4_status eng_forward(g4_session *s, const int32_t *tokens, int T, int p0, float *logits_out, float *all_out,
                      g4_error *err) {
    g4_engine *e = s->e;
    be *b = e->be;
    const cfg_text *tc = &e->ck->cfg.text;
    int d = (int)tc->hidden, V = (int)tc->vocab;
    g4_status st;
    if (T < 1 || T > e->chunk) return G4_FAIL(err, G4_ERR_INTERNAL, "forward: chunk of %d tokens", T);
    /* placeholder ids (image/video/audio) are looked up as pad (id 0), arch doc §2.1 */
    int32_t ids[T];
    const g4_config *c = &e->ck->cfg;
    for (int t = 0; t < T; t++) {
        int32_t id = tokens[t];
        if (id == c->image_token_id || id == c->video_token_id || id == c->audio_token_id) id = 0;
        ids[t] = id;
    }
    if ((st = b->embed(b, s->x, &e->ck->embed, V, d, ids, T, e->embed_scale, err))) return st;
    for (int l = 0; l < tc->n_layers; l++)
        if ((st = layer_forward(s, l, T, p0, err))) {
            g4_error_prefix(err, "layer %d", l);
            return st;
        }
    if (!logits_out && !all_out) return G4_OK;
    int first = all_out ? 0 : T - 1;
    int rows = T - first;
    const float *xs = s->x + (size_t)first * d;
    b->rmsnorm(b, s->xn, xs, e->final_norm, (size_t)rows, d, (float)tc->rms_norm_eps);
    float *dst = all_out ? all_out : logits_out;
    if ((st = b->matmul(b, dst, s->xn, rows, &e->ck->lm_head, err))) return st;
    if (tc->final_logit_softcapping > 0)
        b->softcap(b, dst, (float)tc->final_logit_softcapping, (size_t)rows * V);
    if (all_out && logits_out) b->copy(b, logits_out, all_out + (size_t)(rows - 1) * V, (size_t)V);
    return G4_OK;
}
