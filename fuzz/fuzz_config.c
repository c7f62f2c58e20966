/* fuzz_config.c - libFuzzer target: bytes -> config.json / generation_config.json /
 * hf_quant_config.json parsers, plus quant matching on whatever parsed.
 *
 * The first byte picks the parser (0 config.json, 1 generation_config.json,
 * 2 hf_quant_config.json); the rest is the JSON text. Any input must parse or
 * fail with a message, never crash or leak; a parsed config must give a
 * consistent geometry (checked with cheap invariants).
 *   build-fuzz/fuzz_config -max_total_time=30 fuzz/corpus/config */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    g4_error err;
    g4_config cfg;
    memset(&cfg, 0, sizeof cfg);
    switch (data[0] % 3) {
    case 0:
        if (cfg_parse(text, len, "config.json", &cfg, &err) == G4_OK) {
            const cfg_text *t = &cfg.text;
            if (t->n_layers < 1 || t->n_layers > CFG_MAX_LAYERS) abort();
            if (t->layers[t->n_layers - 1].type != CFG_FULL) abort();
            for (int i = 0; i < t->n_layers; i++)
                if (t->layers[i].head_dim <= 0 || t->layers[i].n_kv_heads <= 0 ||
                    t->n_heads % t->layers[i].n_kv_heads || t->layers[i].rope_pairs < 0 ||
                    t->layers[i].rope_pairs > t->layers[i].head_dim / 2)
                    abort();
            (void)cfg_param_count(&cfg);
            const char *names[2] = {"model.language_model.layers.0.self_attn.q_proj", "lm_head"};
            (void)cfg_quant_lookup(&cfg.quant, names, 2, "Linear", NULL);
        }
        break;
    case 1:
        (void)cfg_parse_generation(text, len, NULL, &cfg, &err);
        break;
    default:
        if (cfg_parse_hf_quant(text, len, NULL, &cfg, &err) == G4_OK) {
            const char *names[1] = {"model.language_model.layers.3.mlp.up_proj"};
            (void)cfg_quant_lookup(&cfg.quant, names, 1, "Linear", NULL);
        }
        break;
    }
    cfg_free(&cfg);
    return 0;
}
