/* fuzz_json.c - libFuzzer target: arbitrary bytes -> json_parse -> walk. */
#include <stddef.h>
#include <stdint.h>
#include "base/json.h"
#include "base/strbuf.h"

static size_t walk(const json_value *v, strbuf *b) {
    size_t n = 1;
    if (v->type == JSON_ARRAY)
        for (size_t i = 0; i < v->len; i++) n += walk(v->u.items[i], b);
    else if (v->type == JSON_OBJECT)
        for (size_t i = 0; i < v->len; i++) {
            sb_json_str(b, v->u.members[i].key, v->u.members[i].key_len);
            n += walk(v->u.members[i].val, b);
        }
    else if (v->type == JSON_STRING)
        sb_json_str(b, v->u.str, v->len);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_doc *d = NULL;
    if (json_parse((const char *)data, size, "fuzz", NULL, &d, NULL) == G4_OK) {
        strbuf b;
        sb_init(&b);
        walk(json_root(d), &b);
        (void)json_obj_dupkey(json_root(d));
        sb_free(&b);
        json_doc_free(d);
    }
    return 0;
}
